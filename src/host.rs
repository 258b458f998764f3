//! The host as gpurun finds it, read once per start and handed down as data: the process
//! environment ([`ProcessEnv`], the only place it is read), the caller's identity, the host paths
//! the default mounts use ([`HostFacts`]), and what the kernel allows. No other module reads the
//! process environment; nothing here changes the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// `PATH` when none is set (the Docker and Apptainer default), in the container as on the host.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process environment, taken once at start and passed down (variables whose name or value
/// is not UTF-8 are left out: none of gpurun's are, and the container's environment is text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessEnv {
    vars: BTreeMap<String, String>,
    /// Names of the variables left out because their value is not UTF-8.
    #[serde(skip)]
    not_utf8: Vec<String>,
}

impl ProcessEnv {
    /// The environment of this process, now. Called once, by `main`.
    pub fn capture() -> ProcessEnv {
        let mut env = ProcessEnv::default();
        for (k, v) in std::env::vars_os() {
            match (k.into_string(), v.into_string()) {
                (Ok(k), Ok(v)) => {
                    env.vars.insert(k, v);
                }
                (Ok(k), Err(_)) => env.not_utf8.push(k),
                _ => {}
            }
        }
        env
    }

    /// Whether `name` is set to a value that is not UTF-8 (and so left out).
    pub fn is_not_utf8(&self, name: &str) -> bool {
        self.not_utf8.iter().any(|n| n == name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// A variable that is set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    /// The host's `PATH`, or [`DEFAULT_PATH`].
    pub fn path(&self) -> &str {
        self.get("PATH").unwrap_or(DEFAULT_PATH)
    }
}

impl<'a> IntoIterator for &'a ProcessEnv {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.vars.iter()
    }
}

impl<K: Into<String>, V: Into<String>> Extend<(K, V)> for ProcessEnv {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        self.vars.extend(iter.into_iter().map(|(k, v)| (k.into(), v.into())));
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ProcessEnv {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> ProcessEnv {
        ProcessEnv {
            vars: iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            not_utf8: Vec::new(),
        }
    }
}

/// Whether a bind source is a directory or a single file (its mount point must match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Dir,
    File,
}

/// Host `/proc` paths made read-only in the host PID namespace: those runc and Docker make
/// read-only (their `readonlyPaths`). In a user namespace the caller could not write them anyway;
/// for a caller who is real root (no user namespace) they matter: a root workload keeps uid 0
/// after its capabilities are dropped, and most sysctls, `sysrq-trigger` and IRQ affinities check
/// only the file mode, so it could otherwise change or crash the host kernel.
pub const PROC_READ_ONLY: &[(&str, NodeKind)] = &[
    ("/proc/bus", NodeKind::Dir),
    ("/proc/fs", NodeKind::Dir),
    ("/proc/irq", NodeKind::Dir),
    ("/proc/sys", NodeKind::Dir),
    ("/proc/sysrq-trigger", NodeKind::File),
];

/// Everything the planner needs to know about the host, gathered once, as plain data.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFacts {
    /// Effective user and group id of the caller.
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (they stay in effect inside the container).
    pub groups: Vec<u32>,
    pub user_name: String,
    pub group_name: String,
    /// `$HOME`, else the passwd entry's home, else `/`.
    pub home: PathBuf,
    /// Whether `home` is a directory on the host (it is bound only then).
    pub home_is_dir: bool,
    /// The current directory; `None` when it has been removed or cannot be read.
    pub cwd: Option<PathBuf>,
    /// The process environment.
    pub env: ProcessEnv,
    /// Host paths the default mounts use, each present or not.
    pub has_etc_hosts: bool,
    pub has_resolv_conf: bool,
    pub has_dev_shm: bool,
    pub has_infiniband: bool,
    /// The caller's terminal when stdin, stdout or stderr is one on the host's devpts
    /// (`/dev/pts/N`): bound at `/dev/console`, so that `ttyname()` finds it in the container's
    /// own devpts-less `/dev` scan (`tty`, password prompts, tmux).
    pub terminal: Option<PathBuf>,
    /// `PMIX_SERVER_TMPDIR`, when it names a directory (a PMIx server's, e.g. `srun --mpi=pmix`).
    pub pmix_server_tmpdir: Option<PathBuf>,
    /// The entries of [`PROC_READ_ONLY`] that exist in the host's `/proc`.
    pub proc_read_only: Vec<PathBuf>,
    /// Subordinate id ranges and the setuid helpers, when `--fakeroot` can use them.
    pub subids: Option<SubIds>,
    /// Whether the kernel mounts overlayfs in a user namespace, and with the `userxattr` option
    /// ([`overlay_in_userns`]).
    pub overlay_in_userns: UsernsOverlay,
    /// fuse-overlayfs on `PATH`, looked up only for `--writable-tmpfs`
    /// ([`HostFacts::probe_fuse_overlayfs`]).
    pub fuse_overlayfs: Option<PathBuf>,
}

/// overlayfs in a user namespace: Linux 5.11 has it with `userxattr`; older kernels refuse it,
/// unless a distribution backported it (RHEL 8), possibly without that option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsernsOverlay {
    #[default]
    UserXattr,
    Plain,
    No,
}

/// Which [`UsernsOverlay`] this kernel offers: by version from 5.11 (free), else by trying it
/// once in a child process (a user and mount namespace of its own, a tmpfs, an overlay on it),
/// which older kernels cost about a millisecond per run.
pub fn overlay_in_userns() -> UsernsOverlay {
    if kernel_at_least(5, 11).1 {
        return UsernsOverlay::UserXattr;
    }
    match probe_overlay() {
        Some(0) => UsernsOverlay::UserXattr,
        Some(1) => UsernsOverlay::Plain,
        _ => UsernsOverlay::No,
    }
}

/// Forks a child that tries the overlay mount; its exit status says what worked (0: with
/// `userxattr`, 1: without, 2: neither or something before it failed).
fn probe_overlay() -> Option<i32> {
    use std::ffi::CString;
    let (uid, gid) = (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw());
    // Everything the child needs is made before the fork: it only makes system calls.
    let maps = [
        (CString::new("/proc/self/setgroups").ok()?, CString::new("deny").ok()?),
        (CString::new("/proc/self/uid_map").ok()?, CString::new(format!("0 {uid} 1")).ok()?),
        (CString::new("/proc/self/gid_map").ok()?, CString::new(format!("0 {gid} 1")).ok()?),
    ];
    let base = if Path::new("/tmp").is_dir() { "/tmp" } else { "/" };
    let dir = |name: &str| CString::new(format!("{}/{name}", base.trim_end_matches('/'))).ok();
    let (l, u, w, m) = (dir("l")?, dir("u")?, dir("w")?, dir("m")?);
    let base = CString::new(base).ok()?;
    let tmpfs = CString::new("tmpfs").ok()?;
    let overlay = CString::new("overlay").ok()?;
    let opts = |extra: &str| {
        let text = format!(
            "lowerdir={},upperdir={},workdir={}{extra}",
            l.to_string_lossy(),
            u.to_string_lossy(),
            w.to_string_lossy()
        );
        CString::new(text).ok()
    };
    let (with, without) = (opts(",userxattr")?, opts("")?);
    // SAFETY: the child only makes raw system calls on data prepared above and ends with _exit,
    // so the fork is sound even if another thread held a lock; the parent only waits for it.
    match unsafe { nix::unistd::fork() }.ok()? {
        nix::unistd::ForkResult::Child => {
            // SAFETY: plain system calls on valid NUL-terminated strings owned by this process.
            let code = unsafe {
                let step = |ok: bool| if ok { Ok(()) } else { Err(()) };
                let run = || -> Result<i32, ()> {
                    step(libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) == 0)?;
                    for (path, text) in &maps {
                        let fd = libc::open(path.as_ptr(), libc::O_WRONLY);
                        step(fd >= 0)?;
                        let n = libc::write(fd, text.as_ptr().cast(), text.as_bytes().len());
                        libc::close(fd);
                        step(n >= 0)?;
                    }
                    step(
                        libc::mount(tmpfs.as_ptr(), base.as_ptr(), tmpfs.as_ptr(), 0, std::ptr::null()) == 0,
                    )?;
                    for d in [&l, &u, &w, &m] {
                        step(libc::mkdir(d.as_ptr(), 0o755) == 0)?;
                    }
                    let mount = |o: &CString| {
                        libc::mount(overlay.as_ptr(), m.as_ptr(), overlay.as_ptr(), 0, o.as_ptr().cast()) == 0
                    };
                    Ok(if mount(&with) {
                        0
                    } else if mount(&without) {
                        1
                    } else {
                        2
                    })
                };
                run().unwrap_or(2)
            };
            // SAFETY: ends the child without running the parent's destructors or atexit hooks.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None).ok()? {
            nix::sys::wait::WaitStatus::Exited(_, code) => Some(code),
            _ => None,
        },
    }
}

/// The running kernel's release (`6.1.0-18-amd64`) and whether it is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> (String, bool) {
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    let version: Vec<u32> = release.split(['.', '-']).take(2).filter_map(|p| p.parse().ok()).collect();
    let at_least = version.as_slice() >= [major, minor].as_slice();
    (release, at_least)
}

/// Subordinate ids from `/etc/subuid` and `/etc/subgid`, with `newuidmap`/`newgidmap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubIds {
    pub uid_start: u32,
    pub uid_count: u32,
    pub gid_start: u32,
    pub gid_count: u32,
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

impl HostFacts {
    /// Which of the `/proc` paths the host PID namespace mode makes read-only exist here; only
    /// that mode needs them (`/proc` lookups are not free on every start).
    pub fn probe_proc_read_only(&mut self) {
        self.proc_read_only = PROC_READ_ONLY
            .iter()
            .map(|(path, _)| PathBuf::from(path))
            .filter(|p| p.symlink_metadata().is_ok())
            .collect();
    }

    /// Where fuse-overlayfs is, which `--writable-tmpfs` needs without the kernel's overlayfs;
    /// only such a run looks.
    pub fn probe_fuse_overlayfs(&mut self) {
        self.fuse_overlayfs = find_program("fuse-overlayfs", self.env.path());
    }

    /// Reads the caller's identity, environment and the host paths the default mounts need.
    /// `fakeroot` adds the subordinate-id lookup (skipped otherwise: it is not on the hot path).
    pub fn gather(fakeroot: bool, env: &ProcessEnv) -> HostFacts {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let accounts = crate::account::Files::default();
        let user = accounts.user(uid);
        let group_name = accounts.group_name(gid);
        let home = env
            .get("HOME")
            .filter(|v| v.starts_with('/'))
            .map(PathBuf::from)
            .or_else(|| user.as_ref().map(|u| u.home.clone()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let user_name = user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| format!("user{uid}"));
        let pmix_server_tmpdir = env
            .get("PMIX_SERVER_TMPDIR")
            .map(|v| Path::new(v).components().collect::<PathBuf>())
            .filter(|p| p.is_absolute() && p.is_dir());
        let subids = if fakeroot && uid != 0 { find_subids(&user_name, uid) } else { None };
        HostFacts {
            uid,
            gid,
            groups: nix::unistd::getgroups()
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_default(),
            group_name: group_name.unwrap_or_else(|| format!("group{gid}")),
            user_name,
            home_is_dir: home.is_dir(),
            home,
            cwd: std::env::current_dir().ok(),
            env: env.clone(),
            has_etc_hosts: Path::new("/etc/hosts").is_file(),
            has_resolv_conf: Path::new("/etc/resolv.conf").is_file(),
            has_dev_shm: Path::new("/dev/shm").is_dir(),
            has_infiniband: Path::new("/dev/infiniband").is_dir(),
            terminal: terminal(),
            pmix_server_tmpdir,
            proc_read_only: Vec::new(),
            subids,
            // Only a run in a user namespace asks (root mounts overlayfs anyway).
            overlay_in_userns: if uid == 0 { UsernsOverlay::UserXattr } else { overlay_in_userns() },
            fuse_overlayfs: None,
        }
    }
}

/// The host path of the first of stdin, stdout and stderr that is a pseudo-terminal, when
/// that path names this very terminal (same device numbers: a pty from another devpts
/// instance, passed in from a nested container, may share the name of a different one here).
fn terminal() -> Option<PathBuf> {
    use std::io::IsTerminal;
    use std::os::unix::fs::MetadataExt;
    let fd =
        [std::io::stdin().is_terminal(), std::io::stdout().is_terminal(), std::io::stderr().is_terminal()]
            .iter()
            .position(|&t| t)?;
    let path = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let name = path.strip_prefix("/dev/pts").ok()?.to_str()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None; // not a pty slave (e.g. /dev/pts/ptmx)
    }
    let open = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?;
    let named = std::fs::metadata(&path).ok()?;
    (open.rdev() == named.rdev() && open.dev() == named.dev()).then_some(path)
}

/// The first executable regular file `name` in the directories of `path` (a `PATH` value).
pub fn find_program(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The first `/etc/subuid` and `/etc/subgid` ranges for the caller, if both exist along with
/// the setuid helpers that can install them.
fn find_subids(user: &str, uid: u32) -> Option<SubIds> {
    let (uid_start, uid_count) = parse_subid(&std::fs::read_to_string("/etc/subuid").ok()?, user, uid)?;
    let (gid_start, gid_count) = parse_subid(&std::fs::read_to_string("/etc/subgid").ok()?, user, uid)?;
    let find = |name: &str| {
        ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    };
    Some(SubIds {
        uid_start,
        uid_count,
        gid_start,
        gid_count,
        newuidmap: find("newuidmap")?,
        newgidmap: find("newgidmap")?,
    })
}

/// The first `NAME:START:COUNT` (or `UID:START:COUNT`) line for the caller in a subid file.
pub fn parse_subid(text: &str, user: &str, uid: u32) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut parts = line.trim().split(':');
        let who = parts.next()?;
        if who != user && who.parse::<u32>().ok() != Some(uid) {
            return None;
        }
        let start = parts.next()?.parse().ok()?;
        let count: u32 = parts.next()?.parse().ok()?;
        (count > 0).then_some((start, count))
    })
}

fn read_sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Names the setting that disables unprivileged user namespaces on this host.
pub fn userns_hint() -> String {
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return "unprivileged user namespaces are disabled: sudo sysctl -w kernel.unprivileged_userns_clone=1 \
                (persist it in /etc/sysctl.d/)"
            .into();
    }
    if read_sysctl("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return "user namespaces are disabled: sudo sysctl -w user.max_user_namespaces=15000 (persist it in /etc/sysctl.d/)".into();
    }
    if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return "AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+): sudo sysctl -w \
                kernel.apparmor_restrict_unprivileged_userns=0, or install an AppArmor profile for gpurun \
                that allows `userns,`"
            .into();
    }
    "user namespaces seem unavailable: check kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0 \
     and kernel.apparmor_restrict_unprivileged_userns=0, and that no seccomp filter (e.g. a container runtime's) \
     blocks unshare(2)"
        .into()
}

#[cfg(test)]
mod tests {

    /// The probe forks, tries, and answers; on a kernel that has overlayfs in user namespaces
    /// (and where this process may make one) it finds it with `userxattr`.
    #[test]
    fn overlay_probe_answers() {
        let got = super::probe_overlay();
        let userns = std::process::Command::new("unshare")
            .args(["-U", "-m", "true"])
            .status()
            .is_ok_and(|s| s.success());
        if super::kernel_at_least(5, 11).1 && userns {
            assert_eq!(got, Some(0));
        } else {
            assert!(matches!(got, Some(0..=2) | None), "{got:?}");
        }
    }

    use super::*;

    #[test]
    fn subid_lines() {
        let text = "other:1:2\nalice:100000:65536\n1000:5:5\n";
        assert_eq!(parse_subid(text, "alice", 7), Some((100000, 65536)));
        assert_eq!(parse_subid(text, "bob", 1000), Some((5, 5)));
        assert_eq!(parse_subid(text, "bob", 1), None);
    }
}
