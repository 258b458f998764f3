//! Real runs of the built `gpurun` against a busybox root filesystem directory: identity, exit
//! codes, signals, environment precedence, the read-only shared rootfs, binds, `--contain`,
//! `--writable-tmpfs`, the working directory rules, interactive use through a pty, and the host
//! PID namespace (`--pid-ns host`, exec in place), runs sharing one container (`--join`: per-run
//! settings, a leader killed, a container that differs, another uid, the errors). Every test
//! works as root (real-root mode) and as an unprivileged user (user-namespace mode); the join
//! tests run as the unprivileged `gpurun-test` when root.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{TempDir, describe, is_root, output, processes_with, skip};

/// A fresh busybox rootfs in a temporary directory (busybox from Debian's busybox-static).
struct Rootfs {
    dir: TempDir,
    cache: TempDir,
}

impl Rootfs {
    fn root(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
}

fn busybox() -> Option<PathBuf> {
    let path = PathBuf::from("/bin/busybox");
    if !path.exists() && is_root() {
        let _ = Command::new("apt-get").args(["install", "-y", "-q", "busybox-static"]).output();
    }
    path.exists().then_some(path)
}

/// Builds the rootfs and checks gpurun can start a container here; `None` after a SKIP line.
fn setup(tag: &str) -> Option<Rootfs> {
    let Some(busybox) = busybox() else {
        skip("no /bin/busybox: apt-get install busybox-static");
        return None;
    };
    let fs = Rootfs { dir: TempDir::new(tag), cache: TempDir::new(&format!("{tag}-cache")) };
    let root = fs.root();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(&busybox, root.join("bin/busybox")).unwrap();
    let list = output(Command::new(&busybox).arg("--list"));
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let probe = run(&fs, &[], &["true"]);
    if probe.status.code() != Some(0) {
        let text = String::from_utf8_lossy(&probe.stderr);
        if text.contains("user namespace") {
            skip(&format!("user namespaces unavailable here: {text}"));
            return None;
        }
        panic!("gpurun cannot start a container: {}", describe(&probe));
    }
    Some(fs)
}

fn gpurun(fs: &Rootfs, opts: &[&str], command: &[&str]) -> Command {
    let mut cmd = support::gpurun(fs.cache.path());
    cmd.args(opts).arg(fs.root()).args(command).stdin(Stdio::null());
    cmd
}

fn run(fs: &Rootfs, opts: &[&str], command: &[&str]) -> Output {
    output(&mut gpurun(fs, opts, command))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Runs and requires exit 0; returns stdout.
fn ok(fs: &Rootfs, opts: &[&str], command: &[&str]) -> String {
    let out = run(fs, opts, command);
    assert_eq!(out.status.code(), Some(0), "{opts:?} {command:?}: {}", describe(&out));
    stdout(&out)
}

fn host_id(flag: &str) -> String {
    stdout(&output(Command::new("id").arg(flag)))
}

/// Every path below `root` with type, size, mode and mtime: a change anywhere shows.
fn listing(root: &Path) -> BTreeMap<PathBuf, (u32, u64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.insert(entry.path(), (meta.mode(), meta.size(), meta.mtime()));
        }
    }
    out.insert(root.into(), std::fs::metadata(root).map(|m| (m.mode(), 0, m.mtime())).unwrap());
    out
}

#[test]
fn identity_is_the_caller() {
    let Some(fs) = setup("identity") else { return };
    assert_eq!(ok(&fs, &[], &["id", "-u"]), host_id("-u"));
    assert_eq!(ok(&fs, &[], &["id", "-g"]), host_id("-g"));
    assert_eq!(ok(&fs, &[], &["whoami"]), host_id("-un"));
    assert_eq!(ok(&fs, &[], &["id", "-gn"]), host_id("-gn"));
    // Files the caller owns show the caller's name.
    let owner = ok(&fs, &[], &["sh", "-c", "ls -ld \"$HOME\" /tmp/. | head -1"]);
    if !is_root() {
        assert!(owner.contains(&host_id("-un")[..8.min(host_id("-un").len())]), "{owner}");
    }
    // Supplementary groups stay in effect (unmapped ones show as the overflow gid).
    let groups = ok(&fs, &[], &["sh", "-c", "grep Groups: /proc/self/status"]);
    let inside = groups.split_whitespace().skip(1).count();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_line = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    let host = host_line.split_whitespace().skip(1).count();
    assert_eq!(inside, host, "{groups} vs {host_line}");
    // --fakeroot maps the caller to root.
    assert_eq!(ok(&fs, &["--fakeroot"], &["id", "-u"]), "0");
    assert_eq!(ok(&fs, &["--fakeroot"], &["whoami"]), "root");
}

#[test]
fn capabilities_dropped_and_no_new_privs() {
    let Some(fs) = setup("caps") else { return };
    let status = ok(&fs, &[], &["cat", "/proc/self/status"]);
    for line in ["CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"] {
        assert!(status.contains(line), "{line} missing in\n{status}");
    }
    let fake = ok(&fs, &["--fakeroot"], &["cat", "/proc/self/status"]);
    assert!(!fake.contains("CapEff:\t0000000000000000"), "--fakeroot keeps capabilities\n{fake}");
}

#[test]
fn exit_codes() {
    let Some(fs) = setup("exit") else { return };
    assert_eq!(run(&fs, &[], &["true"]).status.code(), Some(0));
    assert_eq!(run(&fs, &[], &["sh", "-c", "exit 3"]).status.code(), Some(3));
    let missing = run(&fs, &[], &["no-such-command-xyz"]);
    assert_eq!(missing.status.code(), Some(127), "{}", describe(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no-such-command-xyz"),
        "{}",
        describe(&missing)
    );
    assert_eq!(run(&fs, &[], &["/etc/passwd"]).status.code(), Some(126));
    // A directory that is no root filesystem (`gpurun /etc cmd`) says so beside the 127.
    let not_root = TempDir::new("not-a-rootfs");
    let out = output(support::gpurun(fs.cache.path()).arg(not_root.path()).arg("true").stdin(Stdio::null()));
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not look like a root filesystem"),
        "{}",
        describe(&out)
    );
    // Everything after IMAGE is the workload's, options included (docker run's rule): `-c`
    // here is sh's, not gpurun's --contain, and a gpurun option there is a command (with a hint).
    assert_eq!(ok(&fs, &[], &["sh", "-c", "echo $0", "--contain"]), "--contain");
    let late = run(&fs, &[], &["--nv", "true"]);
    assert_eq!(late.status.code(), Some(127), "{}", describe(&late));
    assert!(String::from_utf8_lossy(&late.stderr).contains("go before IMAGE"), "{}", describe(&late));
    assert_eq!(run(&fs, &[], &["sh", "-c", "kill -TERM $$"]).status.code(), Some(128 + 15));
    let no_cmd = run(&fs, &[], &[]);
    assert_eq!(no_cmd.status.code(), Some(125), "{}", describe(&no_cmd));
}

#[test]
fn sigterm_reaches_the_workload() {
    let Some(fs) = setup("sigterm") else { return };
    sigterm_trap(&fs, &[]);
    sigterm_trap(&fs, &["--pid-ns", "host"]);
}

/// SIGTERM to gpurun runs the workload's trap, and its exit code is gpurun's.
fn sigterm_trap(fs: &Rootfs, opts: &[&str]) {
    let script = "trap 'echo trapped; exit 7' TERM; echo ready; while :; do sleep 0.1; done";
    let mut child = gpurun(fs, opts, &["sh", "-c", script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // SAFETY: kill with plain integers on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(lines.next().map(|l| l.unwrap()).as_deref(), Some("trapped"), "{opts:?}");
    assert_eq!(status.code(), Some(7), "{opts:?}");
}

#[test]
fn sigkill_of_gpurun_leaves_nothing_behind() {
    let Some(fs) = setup("sigkill") else { return };
    let seconds = format!("{}", 900_000 + std::process::id() % 99_999);
    let script = format!("sleep {seconds} & sleep {seconds}");
    let mut child = gpurun(&fs, &[], &["sh", "-c", &script]).spawn().unwrap();
    let marker = format!("sleep\0{seconds}");
    let start = Instant::now();
    while processes_with(&marker).len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(10), "workload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let start = Instant::now();
    while !processes_with(&marker).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "left behind: {:?}", processes_with(&marker));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn environment_precedence() {
    let Some(fs) = setup("env") else { return };
    let file = fs.dir.path().join("vars.env");
    std::fs::write(&file, "# comment\nFROM_FILE=file\nBOTH=file\n").unwrap();
    let file_arg = format!("--env-file={}", file.display());
    let mut cmd = gpurun(&fs, &["--env", "BOTH=arg", "--env", "PREFIXED=arg", &file_arg], &["env"]);
    cmd.env("HOST_VAR", "host")
        .env("GPURUN_ENV_PREFIXED", "prefix")
        .env("GPURUN_ENV_ONLY_PREFIX", "prefix")
        .env("LD_LIBRARY_PATH", "/host/lib")
        .env("PATH", "/host/bin:/usr/bin:/bin")
        .env("TERM", "vt100")
        .env("https_proxy", "http://proxy:3128");
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let env = stdout(&out);
    let has = |line: &str| env.lines().any(|l| l == line);
    assert!(has("HOST_VAR=host"), "{env}");
    assert!(has("ONLY_PREFIX=prefix"), "{env}");
    assert!(has("PREFIXED=arg") && has("BOTH=arg") && has("FROM_FILE=file"), "{env}");
    assert!(!env.contains("LD_LIBRARY_PATH") && !env.contains("GPURUN_ENV_"), "{env}");
    assert!(has("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("HOME=/")), "{env}");

    let mut clean = gpurun(&fs, &["--cleanenv"], &["env"]);
    clean
        .env("HOST_VAR", "host")
        .env("TERM", "vt100")
        .env("https_proxy", "http://proxy:3128")
        .env("GPURUN_ENV_X", "1");
    let env = stdout(&output(&mut clean));
    assert!(
        !env.contains("HOST_VAR")
            && env.contains("TERM=vt100")
            && env.contains("https_proxy=")
            && env.contains("X=1"),
        "{env}"
    );

    // `-e` is Apptainer's --cleanenv now; gpurun's old `-e NAME=VALUE` says what to write.
    let old = run(&fs, &["-e", "X=1"], &["true"]);
    assert_eq!(old.status.code(), Some(125), "{}", describe(&old));
    let err = String::from_utf8_lossy(&old.stderr);
    assert!(err.contains("--env X=1") && err.contains("-e is --cleanenv"), "{err}");

    let bad = run(&fs, &["--env", "1BAD"], &["true"]);
    assert_eq!(bad.status.code(), Some(125), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--env"), "{}", describe(&bad));
}

#[test]
fn rootfs_is_read_only_and_unchanged() {
    let Some(fs) = setup("readonly") else { return };
    let before = listing(&fs.root());
    for path in ["/newfile", "/etc/newfile", "/bin/busybox"] {
        let out = run(&fs, &[], &["sh", "-c", &format!("echo x >> {path}")]);
        assert_ne!(out.status.code(), Some(0), "{path} writable: {}", describe(&out));
    }
    // --writable-tmpfs: writes succeed inside and vanish afterwards.
    let script = "echo hello > /newfile && mkdir -p /etc/new/dir && rm /bin/ls && cat /newfile";
    assert_eq!(ok(&fs, &["--writable-tmpfs"], &["sh", "-c", script]), "hello");
    let gone = run(&fs, &[], &["ls", "/newfile"]);
    assert_ne!(gone.status.code(), Some(0), "{}", describe(&gone));
    ok(&fs, &[], &["ls", "/bin/ls"]);
    // Binds with missing destinations, generated accounts, /dev, /proc: none touch the rootfs.
    let data = TempDir::new("readonly-data");
    let bind = format!("{}:/opt/new/place", data.path().display());
    ok(&fs, &["-B", &bind], &["ls", "/opt/new/place", "/proc/self", "/dev/null"]);
    assert_eq!(before, listing(&fs.root()), "the rootfs changed");
}

/// Issue 12: on a 4.18 feature set (every system call added after Linux 4.18 fails with ENOSYS:
/// no mount_setattr, openat2, clone3, close_range), the run path still works: binds made
/// read-only by a bind remount that keeps the host mount's locked flags, a read-only root,
/// --contain, --writable-tmpfs, exit codes.
#[test]
fn runs_on_a_4_18_feature_set() {
    let Some(fs) = setup("old-kernel") else { return };
    let old = |opts: &[&str], command: &[&str]| {
        let mut cmd = support::gpurun_on(fs.cache.path(), support::Kernel::As4_18);
        output(cmd.args(opts).arg(fs.root()).args(command).stdin(Stdio::null()))
    };
    // On /dev/shm where there is one: a tmpfs the host mounts nosuid,nodev, flags a user
    // namespace cannot clear, which the remount must therefore repeat.
    let shm = Path::new("/dev/shm");
    let data =
        if shm.is_dir() { TempDir::new_in(shm, "old-kernel-data") } else { TempDir::new("old-kernel-data") };
    std::fs::write(data.path().join("in.txt"), "from host").unwrap();
    let ro = format!("{}:/ro:ro", data.path().display());
    // The bind is read-only, and keeps what the host's mount had (here /tmp's nosuid/nodev, if
    // it has them): compared with the same bind made read-write.
    let opts_of = |spec: &str| {
        let out =
            old(&["-B", spec], &["sh", "-c", "touch /ro/x 2>/dev/null; grep ' /ro ' /proc/self/mountinfo"]);
        assert_eq!(out.status.code(), Some(0), "{spec}: {}", describe(&out));
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let opts = line.split(' ').nth(5).unwrap_or_default().to_string();
        opts.split(',').map(str::to_string).collect::<Vec<_>>()
    };
    let ro_opts = opts_of(&ro);
    assert!(!data.path().join("x").exists(), "wrote through a :ro bind");
    let rw_opts = opts_of(&format!("{}:/ro", data.path().display()));
    assert!(ro_opts.contains(&"ro".to_string()), "{ro_opts:?}");
    assert!(rw_opts.contains(&"rw".to_string()), "{rw_opts:?}");
    for kept in rw_opts.iter().filter(|o| *o != "rw") {
        assert!(ro_opts.contains(kept), "{kept} lost by the read-only remount: {ro_opts:?} vs {rw_opts:?}");
    }
    let out = old(&[], &["sh", "-c", "echo x > /newfile"]);
    assert_ne!(out.status.code(), Some(0), "root writable: {}", describe(&out));
    assert_eq!(old(&[], &["sh", "-c", "exit 7"]).status.code(), Some(7));
    assert_eq!(old(&[], &["no-such-command"]).status.code(), Some(127));
    let contained = old(&["--contain"], &["sh", "-c", "echo x > /tmp/p && cat /tmp/p"]);
    assert_eq!(stdout(&contained), "x", "{}", describe(&contained));
    let tmpfs = old(&["--writable-tmpfs"], &["sh", "-c", "echo w > /new && cat /new"]);
    assert_eq!(stdout(&tmpfs), "w", "{}", describe(&tmpfs));
    // doctor names what this kernel lacks and what gpurun does instead.
    let mut doctor = support::gpurun_on(fs.cache.path(), support::Kernel::As4_18);
    let doctor = stdout(&output(doctor.arg("doctor")));
    assert!(doctor.contains("no openat2: paths in images resolved in userspace"), "{doctor}");
    assert!(doctor.contains("no mount_setattr: read-only binds by remount"), "{doctor}");
}

/// Issue 12: in a user namespace the kernel locks the flags of a mount inherited from the host
/// (nosuid, nodev, noexec, the atime mode), and a bind remount that omits one fails with EPERM.
/// As root: a tmpfs mounted nosuid,nodev,noexec,noatime in a private mount namespace, bound
/// `:ro` by the unprivileged `gpurun-test` on a 4.18 feature set (no mount_setattr).
#[test]
fn a_read_only_bind_keeps_the_locked_flags_on_4_18() {
    if !support::needs_root("mounting a tmpfs with locked flags needs root; CI runs this as root") {
        return;
    }
    let Some(fs) = setup("locked") else { return };
    let locked = fs.dir.path().join("locked");
    let cache = fs.dir.path().join("user-cache");
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    let helper = support::old_kernel_helper();
    for p in [fs.dir.path(), helper.parent().unwrap()] {
        output(Command::new("chmod").arg("-R").arg("a+rX").arg(p));
    }
    output(Command::new("chmod").arg("1777").arg(&cache));
    let cache = cache.join("gpurun-test");
    let script = format!(
        "set -e\nid gpurun-test >/dev/null 2>&1 || useradd -M -s /bin/sh gpurun-test\n\
         mount -t tmpfs -o nosuid,nodev,noexec,noatime,mode=1777 locked {locked}\n\
         echo hi > {locked}/f\n\
         exec setpriv --reuid=gpurun-test --regid=gpurun-test --clear-groups -- env HOME=/tmp \
         GPURUN_CACHE_DIR={cache} {helper} {gpurun} -B {locked}:/ro:ro {root} \
         sh -c 'cat /ro/f; touch /ro/x 2>/dev/null && echo WROTE; grep \" /ro \" /proc/self/mountinfo'\n",
        locked = locked.display(),
        cache = cache.display(),
        helper = helper.display(),
        gpurun = support::gpurun_bin().display(),
        root = fs.root().display(),
    );
    let out = output(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.starts_with("hi\n") && !text.contains("WROTE"), "{text}");
    let opts = text.lines().last().unwrap_or_default().split(' ').nth(5).unwrap_or_default().to_string();
    for flag in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(opts.split(',').any(|o| o == flag), "{flag} missing from {opts}: {text}");
    }
}

/// Issue 12: the root assembled from binds (`--root-mode bind`, what a kernel without overlayfs
/// in user namespaces gets): the image's tree as with an overlay, read-only and unchanged,
/// generated accounts, mount points made at any depth and through an image symlink without
/// writing the image, --writable-tmpfs refused with what to do; also on a 4.18 feature set.
#[test]
fn root_assembled_from_binds() {
    let Some(fs) = setup("bind-root") else { return };
    let root = fs.root();
    std::fs::create_dir_all(root.join("var/lib/deep")).unwrap();
    std::fs::write(root.join("var/lib/deep/kept"), "image file").unwrap();
    std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
    std::fs::write(root.join("top-file"), "top").unwrap();
    // A link to another top-level directory, replaced by a directory for a mount point below it:
    // the directory it pointed to must stay whole.
    std::fs::create_dir_all(root.join("usr")).unwrap();
    std::fs::write(root.join("usr/hello"), "still here").unwrap();
    std::os::unix::fs::symlink("usr", root.join("data2")).unwrap();
    let before = listing(&root);
    let data = TempDir::new("bind-root-data");
    std::fs::write(data.path().join("in.txt"), "from host").unwrap();
    let d = data.path().display();
    for kernel in [support::Kernel::Host, support::Kernel::As4_18] {
        let bind = |opts: &[&str], command: &[&str]| {
            let mut cmd = support::gpurun_on(fs.cache.path(), kernel);
            cmd.arg("--root-mode").arg("bind").args(opts).arg(&root).args(command).stdin(Stdio::null());
            output(&mut cmd)
        };
        let opts = [
            "-B".to_string(),
            format!("{d}:/var/lib/deep/new/place:ro"),
            "-B".into(),
            format!("{d}:/var/run/sock"),
            "-B".into(),
            format!("{d}/in.txt:/etc/extra.conf"),
        ];
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let script = "cat /var/lib/deep/kept /top-file /var/lib/deep/new/place/in.txt /var/run/sock/in.txt \
                      /etc/extra.conf; echo; id -un; ls /bin/sh; \
                      for p in / /bin /etc /var /var/lib/deep /var/lib/deep/new/place; do \
                      touch $p/w 2>/dev/null && echo \"wrote $p\"; done; \
                      echo ok > /var/run/sock/out";
        let out = bind(&opts, &["sh", "-c", script]);
        assert_eq!(out.status.code(), Some(0), "{kernel:?}: {}", describe(&out));
        let text = stdout(&out);
        assert!(
            text.starts_with(
                "image filetopfrom hostfrom hostfrom host
"
            ),
            "{kernel:?}: {text}"
        );
        assert!(text.contains(&host_id("-un")) && text.contains("/bin/sh"), "{kernel:?}: {text}");
        assert!(!text.contains("wrote"), "{kernel:?}: writable: {text}");
        assert_eq!(std::fs::read_to_string(data.path().join("out")).unwrap(), "ok\n", "rw bind");
        std::fs::remove_file(data.path().join("out")).unwrap();
        assert_eq!(bind(&[], &["sh", "-c", "exit 9"]).status.code(), Some(9));
        let through = format!("{d}:/data2/x");
        let kept = bind(&["-B", &through], &["cat", "/usr/hello"]);
        assert_eq!(stdout(&kept), "still here", "{kernel:?}: {}", describe(&kept));
        // A writable bind over an image directory stays writable.
        let etc = format!("{d}:/etc");
        let rw = bind(&["-B", &etc], &["sh", "-c", "touch /etc/w && echo written"]);
        assert_eq!(stdout(&rw), "written", "{kernel:?}: {}", describe(&rw));
        std::fs::remove_file(data.path().join("w")).unwrap();
        // The cache lies below the bound /tmp: the staging tree must not be reachable through it.
        for mode in ["bind", "overlay"] {
            let staging = fs.cache.path().join("mnt");
            let probe = format!("ls -A {} | wc -l", staging.display());
            let mut cmd = support::gpurun_on(fs.cache.path(), kernel);
            cmd.args(["--root-mode", mode]).arg(&root).args(["sh", "-c", &probe]).stdin(Stdio::null());
            let seen = output(&mut cmd);
            assert_eq!(stdout(&seen), "0", "{mode}: the staging tree shows inside: {}", describe(&seen));
        }
        let contained = bind(&["--contain"], &["sh", "-c", "echo x > /tmp/p && cat /tmp/p"]);
        assert_eq!(stdout(&contained), "x", "{kernel:?}: {}", describe(&contained));
        // --writable-tmpfs needs fuse-overlayfs here (writable_tmpfs_through_fuse_overlayfs).
        let mut refused = support::gpurun_on(fs.cache.path(), kernel);
        refused
            .args(["--root-mode", "bind", "--writable-tmpfs"])
            .arg(&root)
            .arg("true")
            .env("PATH", "/nonexistent");
        let refused = output(&mut refused);
        assert_eq!(refused.status.code(), Some(125), "{}", describe(&refused));
        let text = String::from_utf8_lossy(&refused.stderr);
        assert!(
            text.contains("--writable-tmpfs needs fuse-overlayfs") && text.contains("apt install"),
            "{text}"
        );
    }
    assert_eq!(before, listing(&root), "the image changed");
}

/// Issue 12: `--writable-tmpfs` where overlayfs cannot be used (`--root-mode bind` here, on the
/// host kernel and on a 4.18 feature set) runs on fuse-overlayfs, as the unprivileged
/// `gpurun-test`: writes land in the tmpfs and never in the image; the host PID namespace works
/// too; exit codes pass through; no daemon outlives a run, even one whose gpurun is SIGKILLed;
/// a daemon that fails says why. As root, because /dev/fuse is made usable by every user only
/// in a private mount namespace (a 0666 node bound over it, the mode distributions give it), so
/// the host is left as it was.
#[test]
fn writable_tmpfs_through_fuse_overlayfs() {
    if !support::needs_root("making /dev/fuse usable by gpurun-test in a private mount namespace needs root")
    {
        return;
    }
    let Some(program) = support::which("fuse-overlayfs") else {
        skip("fuse-overlayfs missing: apt-get install fuse-overlayfs");
        return;
    };
    let Some(fs) = setup("fuse-root") else { return };
    let root = fs.root();
    // A directory of the user's, holding an image file to delete (a whiteout in the tmpfs; as
    // with the kernel's overlay, a directory whose owner the namespace does not map cannot be
    // copied up).
    std::fs::create_dir_all(root.join("scratch")).unwrap();
    std::fs::write(root.join("scratch/old"), "image").unwrap();
    let own = format!(
        "id gpurun-test >/dev/null 2>&1 || useradd -M -s /bin/sh gpurun-test; chown -R gpurun-test:$(id -g gpurun-test) {}",
        root.join("scratch").display()
    );
    let owned = output(Command::new("sh").args(["-c", &own]));
    assert!(owned.status.success(), "{}", describe(&owned));
    let before = listing(&root);
    let dir = fs.dir.path();
    let fake = dir.join("fakebin/fuse-overlayfs");
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::write(&fake, "#!/bin/sh\necho 'fuse: device boom' >&2\nexit 1\n").unwrap();
    output(Command::new("chmod").arg("755").arg(&fake));
    let helper = support::old_kernel_helper();
    for p in [dir, helper.parent().unwrap()] {
        output(Command::new("chmod").arg("-R").arg("a+rX").arg(p));
    }
    for (tag, wrap) in [("host", String::new()), ("4.18", helper.display().to_string())] {
        let cache = dir.join(format!("cache-{}", tag.replace('.', "-")));
        let marks = dir.join(format!("marks-{}", tag.replace('.', "-")));
        for d in [&cache, &marks] {
            std::fs::create_dir_all(d).unwrap();
            output(Command::new("chmod").arg("1777").arg(d));
        }
        let user_script = format!(
            "G='{wrap} {gpurun} --root-mode bind --writable-tmpfs'\nR={root}\n\
             echo \"write:$($G $R sh -c 'echo w > /new && cat /new && echo t > /tmp/t && cat /tmp/t' | tr '\\n' ' ')\"\n\
             echo \"hostpid:$($G --pid-ns host $R sh -c 'echo h > /new && cat /new')\"\n\
             $G $R sh -c 'exit 7'; echo \"code:$?\"\n\
             $G --pid-ns host $R sh -c 'exit 8'; echo \"code:$?\"\n\
             echo \"deleted:$($G $R sh -c 'rm /scratch/old && echo removed; ls -A /scratch; echo x > /scratch/new; cat /scratch/new' | tr '\\n' ' ')\"\n\
             for ns in private host; do\n\
               $G --pid-ns $ns -B {marks}:/marks $R sh -c \"touch /marks/$ns; exec sleep 6061\" >/dev/null 2>&1 & pid=$!\n\
               i=0; while [ ! -e {marks}/$ns ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n\
               echo \"started:$ns:$(test -e {marks}/$ns && echo yes)\"\n\
               kill -KILL $pid; wait $pid 2>/dev/null\n\
             done\n\
             PATH={fakebin}:/usr/bin:/bin $G $R true 2>&1; echo \"code:$?\"\n",
            gpurun = support::gpurun_bin().display(),
            root = root.display(),
            fakebin = fake.parent().unwrap().display(),
            marks = marks.display(),
        );
        let script_file = dir.join(format!("user-{tag}.sh"));
        std::fs::write(&script_file, user_script).unwrap();
        output(Command::new("chmod").arg("644").arg(&script_file));
        let script = format!(
            "set -e\nrm -f {dir}/fuse-node; mknod -m 666 {dir}/fuse-node c 10 229\n\
             mount --bind {dir}/fuse-node /dev/fuse\n\
             exec setpriv --reuid=gpurun-test --regid=gpurun-test --clear-groups -- env -i HOME=/tmp \
             PATH={bin}:/usr/bin:/bin GPURUN_CACHE_DIR={cache}/gpurun-test sh {script}\n",
            dir = dir.display(),
            bin = program.parent().unwrap().display(),
            cache = cache.display(),
            script = script_file.display(),
        );
        let out =
            output(Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]));
        let text = stdout(&out);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("write:w t "), "{tag}: {text}\n{err}");
        assert!(text.contains("hostpid:h"), "{tag}: {text}\n{err}");
        assert!(text.contains("code:7") && text.contains("code:8"), "{tag}: {text}\n{err}");
        assert!(
            text.contains("deleted:removed x \n"),
            "{tag}: an image file deleted, a new one written: {text}\n{err}"
        );
        assert!(
            text.contains("started:private:yes") && text.contains("started:host:yes"),
            "{tag}: {text}\n{err}"
        );
        assert!(
            text.contains("it said: fuse: device boom") && text.contains("code:125"),
            "{tag}: the daemon's failure: {text}\n{err}"
        );
        let cache_text = cache.display().to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        let left = loop {
            let left: Vec<u32> = [processes_with(&cache_text), processes_with("sleep\x006061")].concat();
            if left.is_empty() || Instant::now() > deadline {
                break left;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(left.is_empty(), "{tag}: processes outlived their runs: {left:?}");
    }
    assert!(!root.join("new").exists(), "a write reached the image");
    assert_eq!(before, listing(&root), "the image changed");
}

#[test]
fn binds() {
    let Some(fs) = setup("binds") else { return };
    let data = TempDir::new("binds-data");
    std::fs::write(data.path().join("in.txt"), "from host").unwrap();
    let rw = format!("{}:/mnt/data", data.path().display());
    assert_eq!(ok(&fs, &["-B", &rw], &["cat", "/mnt/data/in.txt"]), "from host");
    ok(&fs, &["-B", &rw], &["sh", "-c", "echo back > /mnt/data/out.txt"]);
    assert_eq!(std::fs::read_to_string(data.path().join("out.txt")).unwrap(), "back\n");
    let ro = format!("{}:/ro:ro", data.path().display());
    let out = run(&fs, &["-B", &ro], &["sh", "-c", "touch /ro/x"]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    // Comma-separated, a file bind, and a bind onto a path the image lacks below another bind.
    let file = format!("{}/in.txt:/etc/in.txt", data.path().display());
    let both = format!("{rw},{file}");
    assert_eq!(
        ok(&fs, &["--bind", &both], &["cat", "/etc/in.txt", "/mnt/data/in.txt"]),
        "from hostfrom host"
    );
    // A directory onto a file of the image, or a file onto a directory, is refused (Docker's
    // rule) instead of silently replacing the image's node.
    for (spec, what) in [
        (format!("{}:/bin/sh", data.path().display()), "a directory onto"),
        (format!("{}/in.txt:/bin", data.path().display()), "a file onto"),
    ] {
        let out = run(&fs, &["-B", &spec], &["true"]);
        assert_eq!(out.status.code(), Some(125), "{spec}: {}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains(what), "{spec}: {}", describe(&out));
    }
    // Identity bind (no DST).
    let same = data.path().display().to_string();
    assert_eq!(ok(&fs, &["-B", &same], &["cat", &format!("{same}/in.txt")]), "from host");
    let missing = run(&fs, &["-B", "/no/such/source:/x"], &["true"]);
    assert_eq!(missing.status.code(), Some(125), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/source"), "{}", describe(&missing));
}

#[test]
fn default_mounts_and_contain() {
    let Some(fs) = setup("contain") else { return };
    let marker = fs.dir.path().join("host-tmp-marker");
    std::fs::write(&marker, "x").unwrap();
    let marker = marker.display().to_string();
    ok(&fs, &[], &["test", "-f", &marker]);
    ok(&fs, &[], &["test", "-e", "/etc/hosts"]);
    ok(&fs, &[], &["test", "-c", "/dev/null"]);
    ok(&fs, &[], &["sh", "-c", "echo x > /dev/null && test -d /dev/pts && test -d /dev/shm"]);
    assert_eq!(ok(&fs, &[], &["sh", "-c", "echo $$"]), "2", "PID namespace with an init as PID 1");
    let out = run(&fs, &["--contain"], &["test", "-e", &marker]);
    assert_ne!(out.status.code(), Some(0), "--contain still shows host /tmp: {}", describe(&out));
    ok(&fs, &["--contain"], &["sh", "-c", "echo x > /tmp/private && test -f /tmp/private"]);
    let home = std::env::var("HOME").unwrap_or_default();
    if Path::new(&home).is_dir() && !["/", "/root"].contains(&home.as_str()) {
        ok(&fs, &[], &["test", "-d", &home]);
        assert_ne!(run(&fs, &["--no-home"], &["test", "-d", &home]).status.code(), Some(0));
        // --contain: an empty, writable home of its own (Apptainer's), not the host's.
        let marker = Path::new(&home).join(format!(".gpurun-contain-marker-{}", std::process::id()));
        std::fs::write(&marker, "x").unwrap();
        let written = format!(".gpurun-contain-write-{}", std::process::id());
        let script = format!(
            "cd && test \"$PWD\" = \"$HOME\" && test ! -e {m} && echo x > ~/{w} && test \"$(ls -A {h})\" = {w}",
            m = marker.display(),
            h = home,
            w = written
        );
        let contained = run(&fs, &["--contain"], &["sh", "-c", &script]);
        let _ = std::fs::remove_file(&marker);
        assert_eq!(contained.status.code(), Some(0), "--contain home: {}", describe(&contained));
        assert!(!Path::new(&home).join(&written).exists(), "--contain wrote to the host's home");
    }
}

#[test]
fn working_directory_rules() {
    let Some(fs) = setup("pwd") else { return };
    let cwd = TempDir::new("pwd-cwd");
    let cwd_path = cwd.path().canonicalize().unwrap();
    let in_dir = |opts: &[&str]| {
        let out = output(gpurun(&fs, opts, &["pwd"]).current_dir(&cwd_path));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        stdout(&out)
    };
    assert_eq!(in_dir(&[]), cwd_path.display().to_string(), "bound cwd is kept");
    assert_eq!(in_dir(&["--contain"]), "/", "unbound cwd falls back to /");
    assert_eq!(in_dir(&["--pwd", "/bin"]), "/bin");
    let bad = run(&fs, &["--pwd", "/no/such/dir"], &["true"]);
    assert_eq!(bad.status.code(), Some(125), "{}", describe(&bad));
    assert_eq!(run(&fs, &["--pwd", "relative"], &["true"]).status.code(), Some(125));
}

#[test]
fn dry_run_prints_the_plan() {
    let Some(fs) = setup("dryrun") else { return };
    let out = run(&fs, &["--dry-run", "-B", "/tmp:/scratch:ro"], &["echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
    assert_eq!(plan["argv"], serde_json::json!(["echo", "hi"]));
    let mounts = plan["mounts"].as_array().unwrap();
    let root = plan["layout"]["base"].as_str().unwrap().to_string() + "/newroot";
    assert!(root.ends_with("/mnt/newroot"), "assembled in the cache's mnt directory: {plan}");
    assert!(mounts.iter().any(|m| m["op"] == "bind" && m["target"] == root.clone() + "/scratch"), "{plan}");
    assert_eq!(mounts.iter().filter(|m| m["op"] == "pivot_root").count(), 1, "one pivot: {plan}");
    assert_eq!(mounts.last().unwrap()["op"], "pivot_root");
}

/// Runs `command` on a fresh pty (util-linux `script`), feeding `input`; returns the transcript.
fn in_pty(command: &str, input: &str) -> Option<Output> {
    if Command::new("script").arg("--version").output().is_err() {
        skip("no `script` (bsdutils) to open a pty");
        return None;
    }
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    for line in input.lines() {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    Some(out)
}

#[test]
fn interactive_shell_on_a_terminal() {
    let Some(fs) = setup("pty") else { return };
    interactive_shell(&fs, "");
    interactive_shell(&fs, "--pid-ns host");
}

fn interactive_shell(fs: &Rootfs, opts: &str) {
    let cmd = format!(
        "GPURUN_CACHE_DIR={} {} {opts} {} sh -i",
        fs.cache.path().display(),
        support::gpurun_bin().display(),
        fs.root().display()
    );
    let input = "awk '{print \"pgrp=\" $5 \" tpgid=\" $8}' /proc/self/stat\necho sum=$((40+2))\ntty >/dev/null && echo tty-$((6*7))-named\nexit 5\n";
    let Some(out) = in_pty(&cmd, input) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sum=42"), "{opts}: {}", describe(&out));
    assert!(text.contains("tty-42-named"), "{opts}: ttyname() fails inside: {}", describe(&out));
    assert!(!text.contains("job control turned off"), "{}", describe(&out));
    // The command the shell ran is the terminal's foreground process group.
    let fg = text.lines().find_map(|l| l.trim().strip_prefix("pgrp=")).expect("stat line");
    let (pgrp, tpgid) = fg.split_once(" tpgid=").unwrap();
    assert_eq!(pgrp.trim(), tpgid.trim(), "{text}");
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
}

#[test]
fn job_control_stops_and_resumes_a_plain_command() {
    let Some(fs) = setup("jobctl") else { return };
    job_control(&fs, "");
    // In place there is no relay: the shell stops and continues the workload itself.
    job_control(&fs, "--pid-ns host");
}

fn job_control(fs: &Rootfs, opts: &str) {
    // A host shell with job control runs `cat` (not a shell) in the container on the pty:
    // Ctrl-Z must stop the whole job and give the terminal back to the shell, `fg` must hand it
    // to cat again, and cat must then still read the terminal.
    let cmd = format!(
        "GPURUN_CACHE_DIR={} {} {opts} {} cat",
        fs.cache.path().display(),
        support::gpurun_bin().display(),
        fs.root().display()
    );
    let input =
        format!("{cmd}\nfirst-line\n\x1a\necho marker-$((6*7))\nfg\nsecond-line\n\x04\necho rc=$?\nexit\n");
    let Some(out) = in_pty("sh -i", &input) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // The shell ran a command while cat was stopped, then cat read the next line.
    let marker = text.find("marker-42").unwrap_or_else(|| panic!("{opts}: no terminal after Ctrl-Z: {text}"));
    let second =
        text.rfind("second-line").unwrap_or_else(|| panic!("{opts}: cat did not read after fg: {text}"));
    assert!(marker < second, "{opts}: {text}");
    assert_eq!(
        text.matches("second-line").count(),
        2,
        "{opts}: echoed by the tty and printed by cat: {text}"
    );
    assert!(text.contains("rc=0"), "{opts}: {text}");
}

#[test]
fn fakeroot_home_is_root() {
    let Some(fs) = setup("fakehome") else { return };
    assert_eq!(ok(&fs, &["--fakeroot"], &["sh", "-c", "echo $HOME"]), "/root");
    let home = std::env::var("HOME").unwrap_or_default();
    if !is_root() && Path::new(&home).is_dir() && !["/", "/root"].contains(&home.as_str()) {
        // The caller's home is bound at /root (Apptainer's --fakeroot layout).
        let marker = format!("gpurun-fakehome-{}", std::process::id());
        std::fs::write(Path::new(&home).join(&marker), "x").unwrap();
        let seen = run(&fs, &["--fakeroot"], &["test", "-f", &format!("/root/{marker}")]);
        let _ = std::fs::remove_file(Path::new(&home).join(&marker));
        assert_eq!(seen.status.code(), Some(0), "{}", describe(&seen));
    }
}

/// Runs with stdout captured and returns gpurun's own pid with the output.
fn run_with_pid(cmd: &mut Command) -> (u32, Output) {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    (pid, child.wait_with_output().unwrap())
}

#[test]
fn host_pid_namespace_execs_in_place() {
    let Some(fs) = setup("hostpid") else { return };
    let host = ["--pid-ns", "host"];
    // No process in between: the workload is gpurun's own process, still the caller's child.
    let (pid, out) = run_with_pid(&mut gpurun(&fs, &host, &["sh", "-c", "echo $$ $PPID"]));
    assert_eq!(stdout(&out), format!("{pid} {}", std::process::id()), "{}", describe(&out));
    // The host's /proc, with the kernel's knobs read-only; a private namespace sees neither.
    let me = format!("/proc/{}", std::process::id());
    ok(&fs, &host, &["test", "-d", &me]);
    assert_ne!(run(&fs, &[], &["test", "-d", &me]).status.code(), Some(0), "private /proc shows the host");
    let mounts = ok(&fs, &host, &["cat", "/proc/self/mountinfo"]);
    for path in ["/proc/sys", "/proc/irq", "/proc/bus"] {
        assert!(mounts.contains(&format!(" {path} ro,")), "{path} not read-only:\n{mounts}");
    }
    assert!(mounts.lines().any(|l| l.contains(" /proc rw,")), "{mounts}");
    let out = run(&fs, &host, &["sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]);
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    // Capabilities and no_new_privs as in the private path.
    let status = ok(&fs, &host, &["cat", "/proc/self/status"]);
    for line in ["CapEff:\t0000000000000000", "CapBnd:\t0000000000000000", "NoNewPrivs:\t1"] {
        assert!(status.contains(line), "{line} missing in\n{status}");
    }
    // Exit status: the workload's own (its death by a signal too), 126, 127 naming it, 125.
    assert_eq!(run(&fs, &host, &["sh", "-c", "exit 3"]).status.code(), Some(3));
    let killed = run(&fs, &host, &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.signal(), Some(libc::SIGTERM), "{}", describe(&killed));
    let missing = run(&fs, &host, &["no-such-command-xyz"]);
    assert_eq!(missing.status.code(), Some(127), "{}", describe(&missing));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no-such-command-xyz"),
        "{}",
        describe(&missing)
    );
    assert_eq!(run(&fs, &host, &["/etc/passwd"]).status.code(), Some(126));
    let bad = run(&fs, &["--pid-ns", "host", "--pwd", "/no/such/dir"], &["true"]);
    assert_eq!(bad.status.code(), Some(125), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("gpurun: error:"), "{}", describe(&bad));
    // Rust ignores SIGPIPE in gpurun; the workload gets the default back in both modes.
    for opts in [&host[..], &[]] {
        let out = run(&fs, opts, &["sh", "-c", "yes | head -n 1"]);
        assert_eq!(stdout(&out), "y", "{opts:?}: {}", describe(&out));
        assert!(out.stderr.is_empty(), "{opts:?}: `yes` saw EPIPE, not SIGPIPE: {}", describe(&out));
    }
}

#[test]
fn pid_ns_auto_follows_mpi_rank_variables() {
    let Some(fs) = setup("pidauto") else { return };
    assert_eq!(ok(&fs, &[], &["sh", "-c", "echo $$"]), "2", "not an MPI rank: private");
    for var in ["OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"] {
        let (pid, out) = run_with_pid(gpurun(&fs, &[], &["sh", "-c", "echo $$"]).env(var, "0"));
        assert_eq!(stdout(&out), pid.to_string(), "{var}: {}", describe(&out));
    }
    let plan = |cmd: &mut Command| {
        let out = output(cmd);
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON plan")
    };
    let p = plan(gpurun(&fs, &["--dry-run"], &["true"]).env("OMPI_COMM_WORLD_RANK", "1"));
    assert_eq!(p["pid_ns"]["mode"], "host", "{p}");
    assert!(p["pid_ns"]["reason"].as_str().unwrap().contains("OMPI_COMM_WORLD_RANK"), "{p}");
    assert!(!p["namespaces"].as_array().unwrap().contains(&"pid".into()), "{p}");
    let p = plan(gpurun(&fs, &["--dry-run", "--pid-ns", "private"], &["true"]).env("PMIX_RANK", "1"));
    assert_eq!(p["pid_ns"]["mode"], "private", "{p}");
    assert!(p["namespaces"].as_array().unwrap().contains(&"pid".into()), "{p}");
    let p = plan(gpurun(&fs, &["--dry-run"], &["true"]).env("GPURUN_PID_NS", "host"));
    assert_eq!(p["pid_ns"]["mode"], "host", "{p}");
    let p = plan(gpurun(&fs, &["--dry-run"], &["true"]).env("SLURM_PROCID", "0"));
    assert_eq!(p["pid_ns"]["mode"], "private", "plain srun is not MPI: {p}");
}

#[test]
fn host_pid_namespace_workload_holds_the_cache_lease() {
    let Some(image) = support::fixture("oci-archive.tar") else { return };
    let cache = TempDir::new("lease-cache");
    let mut child = support::gpurun(cache.path())
        .args(["--pid-ns", "host"])
        .arg(&image)
        .args(["sh", "-c", "echo up; exec sleep 60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "up");
    // gpurun is gone (it became sh, then sleep), yet the image stays in use.
    let rm = output(support::gpurun(cache.path()).arg("rm").arg(&image));
    assert_eq!(rm.status.code(), Some(125), "{}", describe(&rm));
    assert!(String::from_utf8_lossy(&rm.stderr).contains("in use"), "{}", describe(&rm));
    child.kill().unwrap();
    child.wait().unwrap();
    let rm = output(support::gpurun(cache.path()).arg("rm").arg(&image));
    assert_eq!(rm.status.code(), Some(0), "{}", describe(&rm));
}

/// What an image may hold where gpurun reads its files (issue 9): a FIFO (whose open blocks), a
/// device node (root only: mknod), a symlink into `/proc/self`, a 2 GiB sparse file and a
/// directory, at each path gpurun reads (the loader cache, the account files, libc for its
/// version). Plain, `--fakeroot`, `--rocm` and `--nv` runs each either work or fail with a
/// clear error, quickly: gpurun must never block on, or read without bound, what an image says.
#[test]
fn hostile_nodes_where_gpurun_reads_the_image() {
    use std::os::unix::fs::symlink;
    let Some(fs) = setup("hostile-nodes") else { return };
    let root = fs.root();
    std::fs::create_dir_all(root.join("lib/x86_64-linux-gnu")).unwrap();
    let paths = ["etc/ld.so.cache", "etc/passwd", "etc/group", "lib/x86_64-linux-gnu/libc.so.6"];
    let mut kinds = vec!["fifo", "proc-self-symlink", "sparse-2GiB", "directory"];
    if is_root() {
        kinds.push("char-device");
    }
    let modes: [&[&str]; 4] = [&[], &["--fakeroot"], &["--rocm"], &["--nv"]];
    for path in paths {
        let target = root.join(path);
        let saved = std::fs::read(&target).ok();
        for kind in &kinds {
            let _ = std::fs::remove_file(&target);
            match *kind {
                "fifo" => assert!(output(Command::new("mkfifo").arg(&target)).status.success()),
                "proc-self-symlink" => symlink("/proc/self/fd/0", &target).unwrap(),
                "sparse-2GiB" => std::fs::File::create(&target).unwrap().set_len(2 << 30).unwrap(),
                "directory" => std::fs::create_dir(&target).unwrap(),
                _ => {
                    assert!(output(Command::new("mknod").arg(&target).args(["c", "1", "5"])).status.success())
                }
            }
            for mode in modes {
                let mut cmd = gpurun(&fs, mode, &["true"]);
                let got = support::run_limited(&mut cmd, Duration::from_secs(20));
                let what = format!("{kind} at /{path}, gpurun {mode:?}");
                assert!(!got.timed_out, "{what}: gpurun hung");
                assert!(got.elapsed < Duration::from_secs(3), "{what}: took {:?}", got.elapsed);
                let code = got.output.status.code();
                let err = String::from_utf8_lossy(&got.output.stderr);
                assert!(
                    code == Some(0) || (code == Some(125) && err.contains("gpurun: error:")),
                    "{what}: neither worked nor failed clearly: {}",
                    describe(&got.output)
                );
                assert!(!err.contains("panicked"), "{what}: {err}");
            }
            if *kind == "directory" {
                std::fs::remove_dir(&target).unwrap();
            }
        }
        let _ = std::fs::remove_file(&target);
        if let Some(bytes) = saved {
            std::fs::write(&target, bytes).unwrap();
        }
    }
}

/// An Apptainer user's command line works unchanged (issue 9): the verbs, `-C` (containall),
/// `-e` (cleanenv), comma lists in `--env`, `APPTAINERENV_*`, `APPTAINER_BIND`, `--no-env`,
/// `-H SRC:DST`; an option gpurun lacks fails saying what to write instead.
#[test]
fn apptainer_command_lines_work_unchanged() {
    let Some(fs) = setup("apptainer") else { return };
    let root = fs.root();
    let root = root.to_str().unwrap();
    let data = TempDir::new("apptainer-data");
    std::fs::write(data.path().join("marker"), "bound").unwrap();
    // A host /tmp marker, visible through the default /tmp bind, hidden by -C.
    let marker = TempDir::new_in(Path::new("/tmp"), "apptainer-tmp");
    let with = |vars: &[(&str, &str)], args: &[&str]| {
        let mut cmd = support::gpurun(fs.cache.path());
        cmd.args(args).stdin(Stdio::null()).env("SECRET", "s3cret");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = output(&mut cmd);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        stdout(&out)
    };
    assert_eq!(with(&[], &["exec", root, "echo", "hi"]), "hi");
    assert_eq!(with(&[], &["shell", root, "-c", "echo shell-ok"]), "shell-ok");
    assert_eq!(with(&[], &["exec", "--env", "A=1,B=2", root, "sh", "-c", "echo $A$B"]), "12");
    let env_line = "echo \"$FOO|${APPTAINERENV_FOO-unset}|${SECRET-unset}\"";
    assert_eq!(
        with(&[("APPTAINERENV_FOO", "bar")], &["exec", root, "sh", "-c", env_line]),
        "bar|unset|s3cret"
    );
    assert_eq!(with(&[], &["exec", "--no-env", "SECRET", root, "sh", "-c", env_line]), "|unset|unset");
    assert_eq!(with(&[], &["exec", "-e", root, "sh", "-c", env_line]), "|unset|unset", "-e is --cleanenv");
    let bind = format!("{}:/mnt/data", data.path().display());
    assert_eq!(with(&[("APPTAINER_BIND", &bind)], &["exec", root, "cat", "/mnt/data/marker"]), "bound");
    let probe = format!("test -e {} && echo seen || echo hidden", marker.path().display());
    assert_eq!(with(&[], &["exec", root, "sh", "-c", &probe]), "seen");
    assert_eq!(with(&[], &["exec", "-C", root, "sh", "-c", &probe]), "hidden", "-C is --containall");
    let home = format!("{}:/home/me", data.path().display());
    assert_eq!(
        with(&[], &["exec", "-H", &home, "-C", root, "sh", "-c", "echo $HOME; cat ~/marker"]),
        "/home/me\nbound"
    );
    let out = output(support::gpurun(fs.cache.path()).args(["exec", "--nvccli", root, "true"]));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--nvccli") && err.contains("hint: use --nv"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Runs that share one container (`--join`): `src/join.rs` decides the key and count,
// `src/sandbox/join.rs` makes the rendezvous on an abstract socket named by uid and key.

/// The launchers' variables from which a run in the host PID namespace joins others by itself,
/// and `SLURMD_NODENAME`, which names the node in a key: removed from the join tests' runs, so
/// that only their `--join` decides, even when the suite itself runs as a Slurm task or MPI rank.
const LAUNCHER_VARS: [&str; 9] = [
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_STEPID",
    "SLURMD_NODENAME",
    "SLURM_STEP_TASKS_PER_NODE",
    "SLURM_NODEID",
    "PMIX_NAMESPACE",
    "OMPI_MCA_ess_base_jobid",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
];

const TEST_USER: &str = "gpurun-test";

/// Who starts the containers of a join test, with a cache of their own.
struct Who {
    /// `None`: this test process's user.
    user: Option<&'static str>,
    uid: u32,
    cache: PathBuf,
}

impl Who {
    fn caller(fs: &Rootfs) -> Who {
        Who { user: None, uid: rustix::process::geteuid().as_raw(), cache: fs.cache.path().to_path_buf() }
    }

    /// The unprivileged `gpurun-test` (made if missing) when this test runs as root, else the
    /// caller: ranks share a container for the sake of the user namespace that every
    /// unprivileged run makes (real root makes none), so that case is tested on every pass.
    fn unprivileged(fs: &Rootfs) -> Who {
        if !is_root() {
            return Who::caller(fs);
        }
        let made =
            output(Command::new("sh").args([
                "-c",
                &format!("id {TEST_USER} >/dev/null 2>&1 || useradd -M -s /bin/sh {TEST_USER}"),
            ]));
        assert!(made.status.success(), "{}", describe(&made));
        let cache = fs.dir.path().join("user-cache");
        std::fs::create_dir_all(&cache).unwrap();
        output(Command::new("chmod").arg("-R").arg("a+rX").arg(fs.dir.path()));
        output(Command::new("chmod").arg("1777").arg(&cache));
        let uid = support::user_id(TEST_USER).expect("the test user's uid");
        Who { user: Some(TEST_USER), uid, cache: cache.join(TEST_USER) }
    }

    /// `wrapper... gpurun opts ROOTFS command` as this user, in the test's directory, with no
    /// launcher variables.
    fn run_via(&self, fs: &Rootfs, wrapper: &[&str], opts: &[&str], command: &[&str]) -> Command {
        let mut line: Vec<std::ffi::OsString> = wrapper.iter().map(Into::into).collect();
        line.push(support::gpurun_bin().into());
        let mut cmd = match self.user {
            None => Command::new(&line[0]),
            Some(user) => {
                let mut c = Command::new("setpriv");
                c.args([&format!("--reuid={user}"), &format!("--regid={user}"), "--init-groups", "--"]);
                c.arg(&line[0]).env("HOME", "/tmp");
                c
            }
        };
        cmd.args(&line[1..]).env("GPURUN_CACHE_DIR", &self.cache).env_remove("RUST_LOG");
        for var in support::PID_NS_VARS.iter().chain(&LAUNCHER_VARS) {
            cmd.env_remove(var);
        }
        cmd.args(opts).arg(fs.root()).args(command).stdin(Stdio::null()).current_dir(fs.dir.path());
        cmd
    }

    fn gpurun(&self, fs: &Rootfs, opts: &[&str], command: &[&str]) -> Command {
        self.run_via(fs, &[], opts, command)
    }

    /// The name of the socket that this user's `--join key` runs meet on.
    fn socket(&self, key: &str) -> String {
        support::join_socket(self.uid, &format!("user:{key}@{}", support::node_name()), &self.cache)
    }
}

/// A run in the background. Its stdout lines come through a channel, so that every wait on it
/// is bounded; it is killed and reaped when dropped, so a failing test strands nothing.
struct Bg {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Bg {
    fn start(cmd: &mut Command) -> Bg {
        use std::io::Read;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"));
        let (out_tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if out_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (err_tx, stderr) = std::sync::mpsc::channel();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            let _ = err_tx.send(text);
        });
        Bg { child, lines, stderr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line of its stdout, within `limit`.
    fn line(&self, what: &str, limit: Duration) -> String {
        self.lines.recv_timeout(limit).unwrap_or_else(|e| panic!("{what}: no line within {limit:?}: {e}"))
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn kill(&mut self) {
        if self.running() {
            // SAFETY: kill with plain integers on our own unreaped child.
            unsafe { libc::kill(self.pid() as i32, libc::SIGKILL) };
        }
    }

    /// Waits at most `limit` for it to exit: its status, the rest of its stdout and its stderr.
    fn finish(mut self, what: &str, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{what}: still running after {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        let mut stdout = String::new();
        loop {
            match self.lines.recv_timeout(left()) {
                Ok(line) => stdout.push_str(&format!("{line}\n")),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("{what}: its stdout stays open after its exit: {e}"),
            }
        }
        let stderr = self.stderr.recv_timeout(left()).unwrap_or_else(|e| panic!("{what}: stderr: {e}"));
        Output { status, stdout: stdout.into_bytes(), stderr: stderr.into_bytes() }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` every 20 ms for at most `limit`.
fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A workload's line that says where it runs: `RANK|HOSTVAR|cwd|mount ns|user ns|uid|/join-marker
/// of the image|capability and no_new_privs lines`.
const WHERE: &str = "echo \"$RANK|$HOSTVAR|$(pwd)|$(readlink /proc/self/ns/mnt)|$(readlink /proc/self/ns/user)|\
                     $(id -u)|$(cat /join-marker)|$(grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status \
                     | tr -s '\\t\\n' '  ')\"";

/// The image of a join test: the test image with the `/join-marker` that [`WHERE`] reports.
fn join_setup(tag: &str) -> Option<Rootfs> {
    let fs = setup(tag)?;
    std::fs::write(fs.root().join("join-marker"), "image").unwrap();
    Some(fs)
}

/// [`WHERE`]'s line split at `|`.
fn place(line: &str) -> Vec<String> {
    let fields: Vec<String> = line.split('|').map(str::to_string).collect();
    assert_eq!(fields.len(), 8, "not a WHERE line: {line:?}");
    fields
}

/// The mount namespace in a [`WHERE`] line.
fn mnt(line: &str) -> String {
    place(line)[3].clone()
}

/// Shell that puts this rank's file into the bound `/sync` and waits (at most 60 s, then exit 9)
/// until `n` ranks did: the ranks of a group then all run at the same time.
fn all_up(n: usize) -> String {
    format!(
        "echo > /sync/$RANK; i=0; while [ $(ls /sync | wc -l) -lt {n} ]; do i=$((i+1)); \
         [ $i -lt 600 ] || exit 9; sleep 0.1; done"
    )
}

/// A directory every user may write, to bind at `/sync` for [`all_up`].
fn sync_dir(fs: &Rootfs, tag: &str) -> PathBuf {
    let dir = fs.dir.path().join(format!("sync-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    output(Command::new("chmod").arg("0777").arg(&dir));
    dir
}

/// Waits until nothing of a join group is left: no process whose command line names `key`
/// (a gpurun before its exec, a leader's server, which never execs) or `also` (the workload),
/// and no socket named `socket` in this network namespace.
fn nothing_left_of(key: &str, also: &str, socket: &str) {
    let start = Instant::now();
    loop {
        let left = (processes_with(key), processes_with(also), support::unix_sockets(socket));
        if left.0.is_empty() && left.1.is_empty() && left.2.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "left behind by the join group {key}: processes {:?} and {:?}, sockets {:?}",
            left.0,
            left.1,
            left.2
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `sleep` argument unique to this test process and `tag`, to find its workloads by.
fn unique_sleep(tag: u32) -> String {
    format!("{}", 800_000 + (std::process::id() % 9_999) * 10 + tag)
}

#[test]
fn join_three_runs_share_one_container_each_with_its_own_settings() {
    let Some(fs) = join_setup("join") else { return };
    let mut who = vec![Who::unprivileged(&fs)];
    if is_root() {
        // Real root: no user namespace, the mount namespace alone is shared.
        who.push(Who::caller(&fs));
    }
    for who in &who {
        join_three(&fs, who);
    }
}

fn join_three(fs: &Rootfs, who: &Who) {
    let key = format!("three-{}-{}", std::process::id(), who.uid);
    let bind = format!("{}:/sync", sync_dir(fs, &who.uid.to_string()).display());
    // Three joined runs and a plain one, all up at once: a namespace's number may be reused
    // once the namespace is gone, so they are compared while all live.
    let script = format!("{}; {WHERE}", all_up(4));
    let pwds = ["/", "/bin", "/etc"];
    let mut runs: Vec<Bg> = (0..3)
        .map(|i| {
            let rank = format!("RANK=r{i}");
            let opts = ["--join", &key, "--join-count", "3", "-B", &bind, "--env", &rank, "--pwd", pwds[i]];
            Bg::start(who.gpurun(fs, &opts, &["sh", "-c", &script]).env("HOSTVAR", format!("h{i}")))
        })
        .collect();
    // Without --join: a container of its own, with the same identity and privileges.
    let plain = ["--pid-ns", "host", "-B", &bind, "--env", "RANK=plain"];
    runs.push(Bg::start(&mut who.gpurun(fs, &plain, &["sh", "-c", &script])));
    let mut outs: Vec<Output> =
        runs.into_iter().map(|r| r.finish("a joined run", Duration::from_secs(90))).collect();
    let plain = outs.pop().unwrap();
    assert_eq!(plain.status.code(), Some(0), "{}", describe(&plain));
    let plain = place(&stdout(&plain));
    let mut places = Vec::new();
    for (i, out) in outs.iter().enumerate() {
        assert_eq!(out.status.code(), Some(0), "run {i} as {:?}: {}", who.user, describe(out));
        assert!(out.stderr.is_empty(), "run {i} warned: {}", describe(out));
        let p = place(&stdout(out));
        // Its own --env, host variable and --pwd; the image's root.
        assert_eq!(
            (p[0].as_str(), p[1].as_str(), p[2].as_str()),
            (&*format!("r{i}"), &*format!("h{i}"), pwds[i])
        );
        assert_eq!(p[6], "image", "{}", describe(out));
        places.push(p);
    }
    for p in &places[1..] {
        assert_eq!(
            (&p[3], &p[4]),
            (&places[0][3], &places[0][4]),
            "one mount and user namespace: {places:?}"
        );
    }
    assert_ne!(plain[3], places[0][3], "a plain run entered the joined container");
    assert_eq!((&plain[5], &plain[7]), (&places[0][5], &places[0][7]), "identity and privileges differ");
    for line in ["CapEff: 0000000000000000", "CapBnd: 0000000000000000", "NoNewPrivs: 1"] {
        assert!(places[0][7].contains(line), "{line} missing: {places:?}");
    }
    let host_ns = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap().display().to_string();
    assert_ne!(places[0][3], host_ns("mnt"));
    if who.user.is_some() || !is_root() {
        assert_ne!(places[0][4], host_ns("user"), "an unprivileged run has a user namespace");
    }
    // The server left once the third run joined, and took the socket with it.
    nothing_left_of(&key, &key, &who.socket(&key));
}

#[test]
fn join_a_run_whose_container_differs_runs_alone_with_a_warning() {
    let Some(fs) = join_setup("join-differs") else { return };
    let who = Who::unprivileged(&fs);
    let key = format!("differs-{}", std::process::id());
    let seconds = unique_sleep(1);
    let lead = Bg::start(&mut who.gpurun(
        &fs,
        &["--join", &key, "--join-count", "2"],
        &["sh", "-c", &format!("{WHERE}; exec sleep {seconds}")],
    ));
    let lead_ns = mnt(&lead.line("the leader", Duration::from_secs(30)));
    let extra = TempDir::new("join-differs-bind");
    let bind = format!("{}:/x", extra.path().display());
    let other = output(&mut who.gpurun(&fs, &["--join", &key, "-B", &bind], &["sh", "-c", WHERE]));
    assert_eq!(other.status.code(), Some(0), "{}", describe(&other));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("gets a container of its own instead of joining") && err.contains("container differs"),
        "{}",
        describe(&other)
    );
    assert_ne!(mnt(&stdout(&other)), lead_ns, "a run with other binds entered the container");
    drop(lead);
    nothing_left_of(&key, &format!("sleep\0{seconds}"), &who.socket(&key));
}

/// A run refused for its other binds must not count as one of the `--join-count` runs: the
/// rank that fits, arriving after it, still joins (were the refused run counted, the server
/// would leave after it and the fitting rank silently get a container of its own; under MPI
/// with CMA required, the job would then fail).
#[test]
fn join_a_refused_run_does_not_take_the_place_of_a_rank() {
    let Some(fs) = join_setup("join-place") else { return };
    let who = Who::unprivileged(&fs);
    let key = format!("place-{}", std::process::id());
    let seconds = unique_sleep(2);
    let opts = ["--join", key.as_str(), "--join-count", "2"];
    let lead =
        Bg::start(&mut who.gpurun(&fs, &opts, &["sh", "-c", &format!("{WHERE}; exec sleep {seconds}")]));
    let lead_ns = mnt(&lead.line("the leader", Duration::from_secs(30)));
    let extra = TempDir::new("join-place-bind");
    let bind = format!("{}:/x", extra.path().display());
    let other = output(&mut who.gpurun(&fs, &["--join", &key, "-B", &bind], &["true"]));
    assert_eq!(other.status.code(), Some(0), "{}", describe(&other));
    let rank = output(&mut who.gpurun(&fs, &opts, &["sh", "-c", WHERE]));
    assert_eq!(rank.status.code(), Some(0), "{}", describe(&rank));
    assert_eq!(mnt(&stdout(&rank)), lead_ns, "the second rank did not join: {}", describe(&rank));
    drop(lead);
    nothing_left_of(&key, &format!("sleep\0{seconds}"), &who.socket(&key));
}

#[test]
fn join_outlives_its_leader_killed() {
    let Some(fs) = join_setup("join-kill") else { return };
    let who = Who::unprivileged(&fs);
    let key = format!("kill-{}", std::process::id());
    let seconds = unique_sleep(3);
    let script = format!("{WHERE}; exec sleep {seconds}");
    let start = |rank: &str| {
        let opts = ["--join", key.as_str(), "--join-count", "3", "--env", &format!("RANK={rank}")];
        let run = Bg::start(&mut who.gpurun(&fs, &opts, &["sh", "-c", &script]));
        let line = run.line(&format!("run {rank}"), Duration::from_secs(30));
        (run, mnt(&line))
    };
    let (mut a, a_ns) = start("a");
    let (mut b, b_ns) = start("b");
    assert_eq!(b_ns, a_ns, "B did not join A");
    a.kill();
    let a = a.finish("the killed leader", Duration::from_secs(10));
    assert_eq!(a.status.signal(), Some(libc::SIGKILL), "{}", describe(&a));
    // The leader's server goes with it (its parent-death signal), and so does the socket...
    wait_until("the killed leader's server and socket to go", Duration::from_secs(10), || {
        processes_with(&key).is_empty() && support::unix_sockets(&who.socket(&key)).is_empty()
    });
    // ...while B runs on in the container: namespaces live as long as a process is in them.
    assert!(b.running(), "B died with its leader");
    let b_mnt = std::fs::read_link(format!("/proc/{}/ns/mnt", b.pid())).unwrap();
    assert_eq!(b_mnt.display().to_string(), a_ns);
    // C, same key, leads a container of its own, and D joins it.
    let (mut c, c_ns) = start("c");
    assert_ne!(c_ns, a_ns, "C entered the dead leader's container");
    let (mut d, d_ns) = start("d");
    assert_eq!(d_ns, c_ns, "D did not join C, the new leader");
    for run in [&mut b, &mut c, &mut d] {
        assert!(run.running());
        run.kill();
    }
    drop((b, c, d));
    nothing_left_of(&key, &format!("sleep\0{seconds}"), &who.socket(&key));
}

#[test]
fn join_after_a_dead_leader_the_next_runs_meet_anew() {
    let Some(fs) = join_setup("join-dead") else { return };
    let who = Who::unprivileged(&fs);
    let key = format!("dead-{}", std::process::id());
    let seconds = unique_sleep(4);
    // A leads, expects two more, and is killed before any came.
    let mut a = Bg::start(&mut who.gpurun(
        &fs,
        &["--join", &key, "--join-count", "3"],
        &["sh", "-c", &format!("{WHERE}; exec sleep {seconds}")],
    ));
    place(&a.line("the leader's workload", Duration::from_secs(30)));
    assert_eq!(support::unix_sockets(&who.socket(&key)).len(), 1, "the leader's socket");
    a.kill();
    drop(a);
    nothing_left_of(&key, &format!("sleep\0{seconds}"), &who.socket(&key));
    // B and C, two of a kind, share a container of their own and both succeed.
    let bind = format!("{}:/sync", sync_dir(&fs, "dead").display());
    let script = format!("{}; {WHERE}", all_up(2));
    let runs: Vec<Bg> = ["b", "c"]
        .iter()
        .map(|rank| {
            let rank = format!("RANK={rank}");
            let opts = ["--join", key.as_str(), "--join-count", "2", "-B", &bind, "--env", &rank];
            Bg::start(&mut who.gpurun(&fs, &opts, &["sh", "-c", &script]))
        })
        .collect();
    let outs: Vec<Output> = runs.into_iter().map(|r| r.finish("B or C", Duration::from_secs(90))).collect();
    for out in &outs {
        assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    }
    let (b_ns, c_ns) = (mnt(&stdout(&outs[0])), mnt(&stdout(&outs[1])));
    assert_eq!(b_ns, c_ns, "B and C did not join each other");
    nothing_left_of(&key, &key, &who.socket(&key));
}

/// The leader dies between winning the election (its socket bound) and serving, while a run
/// waits for its answer: that run must elect again (here: lead) instead of giving up. strace
/// holds the leader at its first `unshare`, the step right after it bound the socket.
#[test]
fn join_leader_killed_during_its_setup_hands_over_to_the_waiting_run() {
    let Some(strace) = support::which("strace") else {
        skip("strace missing (apt-get install strace): it holds the leader in its setup");
        return;
    };
    let Some(fs) = join_setup("join-setup") else { return };
    let who = Who::unprivileged(&fs);
    let key = format!("setup-{}", std::process::id());
    // Named by the user's secret, which the first run makes: looked up when needed.
    let socket = || who.socket(&key);
    let bind = format!("{}:/sync", sync_dir(&fs, "setup").display());
    let script = format!("{}; {WHERE}", all_up(2));
    let opts = |rank: &str| -> Vec<String> {
        let rank = format!("RANK={rank}");
        ["--join", &key, "--join-count", "2", "-B", &bind, "--env", &rank].map(str::to_string).to_vec()
    };
    let strace = strace.display().to_string();
    let hold =
        ["-f", "-o", "/dev/null", "-e", "trace=unshare", "-e", "inject=unshare:delay_enter=120000000:when=1"];
    let wrapper: Vec<&str> = std::iter::once(strace.as_str()).chain(hold).chain(["--"]).collect();
    let a_opts = opts("a");
    let a_opts: Vec<&str> = a_opts.iter().map(String::as_str).collect();
    let mut a = Bg::start(&mut who.run_via(&fs, &wrapper, &a_opts, &["sh", "-c", &script]));
    wait_until("the held leader's socket", Duration::from_secs(30), || {
        support::unix_sockets(&socket()).len() == 1
    });
    let b_opts = opts("b");
    let b_opts: Vec<&str> = b_opts.iter().map(String::as_str).collect();
    let b = Bg::start(&mut who.gpurun(&fs, &b_opts, &["sh", "-c", &script]));
    // B's connection waits in the held leader's backlog (it carries the socket's name too).
    wait_until("B to connect to the held leader", Duration::from_secs(30), || {
        support::unix_sockets(&socket()).len() == 2
    });
    let leader = children(a.pid());
    assert_eq!(leader.len(), 1, "strace's child, the held gpurun: {leader:?}");
    // SAFETY: kill with plain integers; the pid is our grandchild, held by strace.
    unsafe { libc::kill(leader[0] as i32, libc::SIGKILL) };
    // A tracee stopped by its tracer dies only once let go: strace goes too, and its tracee,
    // dead already, cannot run on.
    a.kill();
    let a = a.finish("strace", Duration::from_secs(10));
    wait_until("the held leader to die", Duration::from_secs(10), || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", leader[0])).unwrap_or_default();
        stat.rsplit_once(')').is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
    });
    assert!(stdout(&a).is_empty(), "the held leader ran its workload: {}", describe(&a));
    let c_opts = opts("c");
    let c_opts: Vec<&str> = c_opts.iter().map(String::as_str).collect();
    let c = Bg::start(&mut who.gpurun(&fs, &c_opts, &["sh", "-c", &script]));
    let b = b.finish("B", Duration::from_secs(90));
    let c = c.finish("C", Duration::from_secs(90));
    for out in [&b, &c] {
        assert_eq!(out.status.code(), Some(0), "{}", describe(out));
    }
    assert!(b.stderr.is_empty(), "B gave up instead of electing again: {}", describe(&b));
    assert_eq!(mnt(&stdout(&b)), mnt(&stdout(&c)), "B and C do not share a container");
    nothing_left_of(&key, &key, &socket());
}

/// The pids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the comm may hold spaces and parentheses.
            let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

#[test]
fn join_refused_where_it_cannot_work() {
    let Some(fs) = setup("join-errors") else { return };
    let who = Who::caller(&fs);
    let fails = |opts: &[&str], wanted: &[&str]| {
        let out = output(&mut who.gpurun(&fs, opts, &["true"]));
        assert_eq!(out.status.code(), Some(125), "{opts:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for w in wanted {
            assert!(err.contains(w), "{opts:?}: {w:?} missing: {}", describe(&out));
        }
        assert!(err.contains("gpurun: hint:"), "{opts:?}: {}", describe(&out));
    };
    fails(&["--join", "k", "-p"], &["--join", "host PID namespace"]);
    fails(&["--join", "k", "--pid-ns", "private"], &["--join", "host PID namespace"]);
    fails(&["--join-count", "2"], &["--join-count 2", "no launcher's job id"]);
    fails(&["--pid-ns", "host", "--join-count", "2"], &["--join-count 2", "no launcher's job id"]);
    fails(&["--join", ""], &["--join", "the key must be"]);
    // What --dry-run says: the key (with the node), the count, why, whether asked for.
    let plan = |opts: &[&str], vars: &[(&str, &str)]| {
        let out = output(who.gpurun(&fs, opts, &["true"]).envs(vars.iter().copied()));
        assert_eq!(out.status.code(), Some(0), "{opts:?} {vars:?}: {}", describe(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
        (plan["join"].clone(), plan["pid_ns"]["mode"].clone())
    };
    let node = support::node_name();
    let (join, pid_ns) = plan(&["--dry-run", "--join", "k", "--join-count", "3"], &[]);
    assert_eq!(join["key"], format!("user:k@{node}"), "{join}");
    assert_eq!(
        (&join["count"], &join["explicit"], &pid_ns),
        (&3.into(), &true.into(), &"host".into()),
        "{join}"
    );
    let slurm = [("SLURM_JOB_ID", "71"), ("SLURM_STEP_ID", "2"), ("SLURM_STEP_TASKS_PER_NODE", "3(x2)")];
    let (join, _) = plan(&["--dry-run", "--pid-ns", "host"], &slurm);
    assert_eq!((&join["key"], &join["count"]), (&format!("slurm:71.2@{node}").into(), &3.into()), "{join}");
    assert_eq!(join["explicit"], false, "{join}");
    let (join, _) = plan(&["--dry-run", "--pid-ns", "host", "--no-join"], &slurm);
    assert_eq!((&join["key"], &join["reason"]), (&serde_json::Value::Null, &"--no-join".into()), "{join}");
    // Plain Slurm tasks get a PID namespace each, and so no join.
    let (join, pid_ns) = plan(&["--dry-run"], &slurm);
    assert_eq!((&join["key"], &pid_ns), (&serde_json::Value::Null, &"private".into()), "{join}");
    let ompi =
        [("OMPI_COMM_WORLD_RANK", "1"), ("PMIX_NAMESPACE", "ns9"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "4")];
    let (join, pid_ns) = plan(&["--dry-run"], &ompi);
    assert_eq!((&join["key"], &join["count"]), (&format!("ompi:ns9@{node}").into(), &4.into()), "{join}");
    assert_eq!(pid_ns, "host");
}

/// The meeting point belongs to one uid: root giving gpurun-test's key gets a container of its
/// own; a client of another uid on gpurun-test's socket gets no descriptors and takes no place
/// of the count; and the name held by another uid (squatted) makes gpurun-test's run go alone,
/// warned, instead of failing or hanging.
#[test]
fn join_no_other_user_enters_or_holds_up_the_group() {
    if !support::needs_root("a second user beside gpurun-test (here root) needs root") {
        return;
    }
    let Some(fs) = join_setup("join-users") else { return };
    let user = Who::unprivileged(&fs);
    let root = Who::caller(&fs);
    let key = format!("users-{}", std::process::id());
    let seconds = unique_sleep(5);
    let opts = ["--join", key.as_str(), "--join-count", "2"];
    let lead =
        Bg::start(&mut user.gpurun(&fs, &opts, &["sh", "-c", &format!("{WHERE}; exec sleep {seconds}")]));
    let lead_ns = mnt(&lead.line("gpurun-test's leader", Duration::from_secs(30)));
    let other = output(&mut root.gpurun(&fs, &["--join", &key], &["sh", "-c", WHERE]));
    assert_eq!(other.status.code(), Some(0), "{}", describe(&other));
    assert_ne!(mnt(&stdout(&other)), lead_ns, "root entered gpurun-test's container");
    // This process, root, knocks on gpurun-test's socket itself: the server hangs up.
    let (bytes, fds) = knock(&user.socket(&key));
    assert_eq!((bytes, fds), (0, 0), "the server answered another uid");
    // ...without counting it: gpurun-test's second run still joins.
    let second = output(&mut user.gpurun(&fs, &opts, &["sh", "-c", WHERE]));
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_eq!(mnt(&stdout(&second)), lead_ns, "the second run did not join: {}", describe(&second));
    drop(lead);
    nothing_left_of(&key, &format!("sleep\0{seconds}"), &user.socket(&key));
    assert!(support::unix_sockets(&root.socket(&key)).is_empty(), "root's run left its socket");

    // Root holds the name gpurun-test's group would meet on.
    let key = format!("squat-{}", std::process::id());
    let squatter = listen_on(&user.socket(&key));
    let mut run = user.gpurun(&fs, &["--join", &key, "--join-count", "2"], &["sh", "-c", "echo ran"]);
    let got = support::run_limited(&mut run, Duration::from_secs(90));
    assert!(!got.timed_out, "a squatted name held the run up: {}", describe(&got.output));
    assert_eq!(got.output.status.code(), Some(0), "{}", describe(&got.output));
    assert_eq!(stdout(&got.output), "ran");
    let err = String::from_utf8_lossy(&got.output.stderr);
    assert!(
        err.contains("gets a container of its own instead of joining") && err.contains("held by uid 0"),
        "{}",
        describe(&got.output)
    );
    drop(squatter);

    // The name bound without a listener (a leader is so for microseconds only): the run goes
    // alone within seconds, not after the minute a slow leader gets.
    let key = format!("bound-{}", std::process::id());
    let bound = bind_to(&user.socket(&key));
    let started = std::time::Instant::now();
    let mut run = user.gpurun(&fs, &["--join", &key, "--join-count", "2"], &["sh", "-c", "echo ran"]);
    let got = support::run_limited(&mut run, Duration::from_secs(90));
    assert_eq!(
        (got.output.status.code(), stdout(&got.output).as_str()),
        (Some(0), "ran"),
        "{}",
        describe(&got.output)
    );
    assert!(started.elapsed() < Duration::from_secs(20), "held up for {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&got.output.stderr);
    assert!(err.contains("nobody listens"), "{}", describe(&got.output));
    drop(bound);
}

/// A socket of this process bound to the abstract `name`, not listening.
fn bind_to(name: &str) -> std::os::fd::OwnedFd {
    use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
    use std::os::fd::AsRawFd;
    let sock = socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
    socket::bind(sock.as_raw_fd(), &addr).unwrap_or_else(|e| panic!("bind @{name}: {e}"));
    sock
}

/// A socket of this process bound to the abstract `name`, listening.
fn listen_on(name: &str) -> std::os::fd::OwnedFd {
    let sock = bind_to(name);
    nix::sys::socket::listen(&sock, nix::sys::socket::Backlog::new(8).unwrap()).unwrap();
    sock
}

/// Connects to the abstract `name` as a joiner would and reads the answer (at most 20 s): how
/// many bytes and how many descriptors came.
fn knock(name: &str) -> (usize, usize) {
    use nix::sys::socket::{
        self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    let sock = socket::socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
    let addr = UnixAddr::new_abstract(name.as_bytes()).unwrap();
    socket::connect(sock.as_raw_fd(), &addr).unwrap_or_else(|e| panic!("connect @{name}: {e}"));
    let timeout = nix::sys::time::TimeVal::new(20, 0);
    socket::setsockopt(&sock, socket::sockopt::ReceiveTimeout, &timeout).unwrap();
    let mut buf = [0u8; 64];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .unwrap_or_else(|e| panic!("no answer and no hang-up on @{name}: {e}"));
    let mut fds = 0;
    for cmsg in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(received) = cmsg {
            fds += received.len();
            // SAFETY: SCM_RIGHTS installed these descriptors for this process alone.
            drop(received.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect::<Vec<_>>());
        }
    }
    (msg.bytes, fds)
}

/// A root that fuse-overlayfs serves (`--writable-tmpfs` without the kernel's overlay) dies with
/// the run that made it, so it is never shared: with `--join`, the plan says so, and the run
/// warns and runs alone.
#[test]
fn join_warns_that_a_fuse_overlayfs_root_is_not_shared() {
    if support::which("fuse-overlayfs").is_none() {
        skip("fuse-overlayfs missing: apt-get install fuse-overlayfs");
        return;
    }
    let Some(fs) = setup("join-fuse") else { return };
    let who = Who::caller(&fs);
    let opts = ["--join", "fuse", "--join-count", "2", "--root-mode", "bind", "--writable-tmpfs"];
    let plan = output(&mut who.gpurun(&fs, &[&["--dry-run"][..], &opts].concat(), &["true"]));
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("JSON plan");
    let join = &plan["join"];
    assert_eq!((&join["key"], &join["explicit"]), (&serde_json::Value::Null, &true.into()), "{join}");
    assert!(join["reason"].as_str().is_some_and(|r| r.contains("fuse-overlayfs")), "{join}");
    // /dev/fuse is root's alone on most hosts: the run itself as root only.
    if is_root() {
        let out = output(&mut who.gpurun(&fs, &opts, &["sh", "-c", "echo w > /new && cat /new"]));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        assert_eq!(stdout(&out), "w");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--join: this run gets a container of its own") && err.contains("fuse"),
            "{err}"
        );
    }
}
