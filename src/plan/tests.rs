use std::path::{Path, PathBuf};

use super::*;
use crate::gpu::{EnvEdit, FileBind};
use crate::host::{DEFAULT_PATH, NodeKind, SubIds};
use crate::request::{BindSpec, PidNsChoice};

fn build(req: &RunRequest, host: &HostFacts, image: &ImageInfo) -> Result<LaunchPlan, PlanError> {
    super::build(req, host, image, &GpuEdits::default(), staging())
}

fn staging() -> Layout {
    Layout { base: "/staging".into() }
}

fn host() -> HostFacts {
    HostFacts {
        uid: 1000,
        gid: 100,
        groups: vec![44, 100],
        user_name: "alice".into(),
        group_name: "users".into(),
        home: "/home/alice".into(),
        home_is_dir: true,
        cwd: Some("/scratch/job".into()),
        env: [
            ("PATH", "/host/bin"),
            ("LANG", "C.UTF-8"),
            ("FOO", "host"),
            ("BAR", "host"),
            ("TERM", "xterm"),
            ("https_proxy", "http://proxy:3128"),
            ("GPURUN_ENV_BAR", "prefixed"),
            ("GPURUN_CACHE_DIR", "/c"),
            ("LD_LIBRARY_PATH", "/host/lib"),
        ]
        .into_iter()
        .collect(),
        has_etc_hosts: true,
        has_resolv_conf: true,
        has_dev_shm: true,
        has_infiniband: false,
        terminal: None,
        pmix_server_tmpdir: None,
        proc_read_only: vec!["/proc/sys".into(), "/proc/sysrq-trigger".into()],
        subids: None,
        overlay_in_userns: crate::host::UsernsOverlay::UserXattr,
        fuse_overlayfs: None,
    }
}

fn image() -> ImageInfo {
    let config = RunConfig {
        env: vec!["PATH=/opt/bin:/usr/bin".into(), "FOO=image".into(), "BAR=image".into()],
        cmd: vec!["/bin/sh".into()],
        working_dir: Some("/app".into()),
        ..RunConfig::default()
    };
    ImageInfo {
        rootfs: "/cache/rootfs".into(),
        config,
        passwd: Some("root:x:0:0::/root:/bin/sh\nalice:x:1:1::/:/bin/false\n".into()),
        group: Some("root:x:0:\nusers:x:100:\n".into()),
        workdir_missing: false,
    }
}

fn env_of(plan: &LaunchPlan, name: &str) -> Option<String> {
    plan.env.iter().find_map(|e| e.strip_prefix(&format!("{name}=")).map(str::to_string))
}

fn index(ops: &[MountOp], pred: impl Fn(&MountOp) -> bool) -> usize {
    ops.iter().position(pred).expect("op present")
}

fn target_of(op: &MountOp) -> Option<&Path> {
    match op {
        MountOp::Bind { target, .. }
        | MountOp::Tmpfs { target, .. }
        | MountOp::Proc { target }
        | MountOp::Devpts { target }
        | MountOp::Overlay { target, .. } => Some(target),
        _ => None,
    }
}

#[test]
fn env_precedence() {
    let req = RunRequest {
        env_file_vars: vec![("FILE".into(), "file".into()), ("ARG".into(), "file".into())],
        env_vars: vec![("ARG".into(), "arg".into())],
        ..RunRequest::default()
    };
    let plan = build(&req, &host(), &image()).unwrap();
    assert_eq!(env_of(&plan, "LANG").as_deref(), Some("C.UTF-8"), "host passes through");
    assert_eq!(env_of(&plan, "FOO").as_deref(), Some("image"), "image beats host");
    assert_eq!(env_of(&plan, "BAR").as_deref(), Some("prefixed"), "GPURUN_ENV_ beats image");
    assert_eq!(env_of(&plan, "ARG").as_deref(), Some("arg"), "--env beats --env-file");
    assert_eq!(env_of(&plan, "FILE").as_deref(), Some("file"));
    assert_eq!(env_of(&plan, "PATH").as_deref(), Some("/opt/bin:/usr/bin"), "host PATH never passes");
    assert_eq!(env_of(&plan, "HOME").as_deref(), Some("/home/alice"));
    assert_eq!(env_of(&plan, "LD_LIBRARY_PATH"), None);
    assert_eq!(env_of(&plan, "GPURUN_CACHE_DIR"), None);
    assert_eq!(env_of(&plan, "GPURUN_ENV_BAR"), None);
}

/// GPU selection reads the one merge: the host's selection variables outrank the image's
/// defaults, and `--cleanenv`, `--no-env` and `--env` mean to it what they mean to the workload.
#[test]
fn selection_reads_the_same_merge() {
    let mut h = host();
    h.env.extend([("NVIDIA_VISIBLE_DEVICES", "1"), ("ROCR_VISIBLE_DEVICES", "0")]);
    let mut img = image();
    img.config.env.extend(["NVIDIA_VISIBLE_DEVICES=all".to_string(), "FOO=image".into()]);
    let env = before_gpu(&RunRequest::default(), &h, &img.config);
    assert_eq!(env.get("NVIDIA_VISIBLE_DEVICES").map(String::as_str), Some("1"), "the host's choice");
    assert_eq!(env.get("FOO").map(String::as_str), Some("image"), "other variables: the image wins");
    let plan = build(&RunRequest::default(), &h, &img).unwrap();
    assert_eq!(env_of(&plan, "NVIDIA_VISIBLE_DEVICES").as_deref(), Some("1"), "the workload sees the same");
    // A job's allocation is no environment to clean away: it passes --cleanenv (review of issue 10).
    let clean = RunRequest { cleanenv: true, ..RunRequest::default() };
    let env = before_gpu(&clean, &h, &img.config);
    assert_eq!(env.get("NVIDIA_VISIBLE_DEVICES").map(String::as_str), Some("1"), "--cleanenv keeps it");
    assert_eq!(env.get("ROCR_VISIBLE_DEVICES").map(String::as_str), Some("0"));
    assert_eq!(env.get("LANG"), None, "other host variables do not pass --cleanenv");
    // NVIDIA_DRIVER_CAPABILITIES: the host's request outranks the image's default too.
    h.env.extend([("NVIDIA_DRIVER_CAPABILITIES", "all")]);
    img.config.env.push("NVIDIA_DRIVER_CAPABILITIES=compute,utility".into());
    let caps = before_gpu(&RunRequest::default(), &h, &img.config);
    assert_eq!(caps.get("NVIDIA_DRIVER_CAPABILITIES").map(String::as_str), Some("all"));
    let no_env = RunRequest { no_env: vec!["ROCR_*".into()], ..RunRequest::default() };
    assert_eq!(before_gpu(&no_env, &h, &img.config).get("ROCR_VISIBLE_DEVICES"), None);
    let set =
        RunRequest { env_vars: vec![("NVIDIA_VISIBLE_DEVICES".into(), "0".into())], ..RunRequest::default() };
    assert_eq!(
        before_gpu(&set, &h, &img.config).get("NVIDIA_VISIBLE_DEVICES").map(String::as_str),
        Some("0")
    );
    h.env.extend([("GPURUN_ENV_ROCR_VISIBLE_DEVICES", "3")]);
    let clean = RunRequest { cleanenv: true, ..RunRequest::default() };
    let env = before_gpu(&clean, &h, &img.config);
    assert_eq!(
        env.get("ROCR_VISIBLE_DEVICES").map(String::as_str),
        Some("3"),
        "GPURUN_ENV_ also with --cleanenv"
    );
}

/// The bind-kind check looks only at destinations no other mount of the plan covers.
#[test]
fn binds_onto_image_are_those_nothing_else_covers() {
    let bind = |dest: &str| BindSpec {
        source: "/data".into(),
        dest: dest.into(),
        read_only: false,
        kind: NodeKind::Dir,
    };
    let dests = [
        "/dev/x",
        "/proc/x",
        "/sys/x",
        "/tmp/x",
        "/home/alice/x",
        "/scratch/job/x",
        "/opt/x",
        "/opt/x/y",
        "/etc/hosts",
    ];
    let req = RunRequest { binds: dests.iter().map(|d| bind(d)).collect(), ..RunRequest::default() };
    let decided = |req: &RunRequest| -> Vec<String> {
        binds_onto_image(req, &host(), &image())
            .unwrap()
            .iter()
            .map(|b| b.dest.display().to_string())
            .collect()
    };
    assert_eq!(decided(&req), ["/opt/x", "/etc/hosts"], "/opt/x/y is below the /opt/x bind");
    // Without the home bind (--no-home) or the working directory's (--contain, whose home is a
    // tmpfs) the image decides those paths.
    let no_home = RunRequest { no_home: true, ..req.clone() };
    assert_eq!(decided(&no_home), ["/home/alice/x", "/opt/x", "/etc/hosts"]);
    let contained = RunRequest { contain: true, ..req.clone() };
    assert_eq!(decided(&contained), ["/scratch/job/x", "/opt/x", "/etc/hosts"]);
}

#[test]
fn cleanenv_keeps_term_and_proxies_only() {
    let req = RunRequest { cleanenv: true, ..RunRequest::default() };
    let mut img = image();
    img.config.env.clear();
    let plan = build(&req, &host(), &img).unwrap();
    let names: Vec<&str> = plan.env.iter().map(|e| e.split('=').next().unwrap()).collect();
    assert_eq!(names, ["BAR", "GPURUN_CONTAINER", "HOME", "PATH", "TERM", "https_proxy"]);
    assert_eq!(env_of(&plan, "PATH").as_deref(), Some(DEFAULT_PATH));
    let image = host().cwd.unwrap().join("img.tar");
    let req = RunRequest { image: "img.tar".into(), ..RunRequest::default() };
    let plan = build(&req, &host(), &img).unwrap();
    assert_eq!(env_of(&plan, "GPURUN_CONTAINER").as_deref(), image.to_str(), "the image, absolute");
}

#[test]
fn argv_follows_oci_rules() {
    let config = RunConfig { entrypoint: vec!["/ep".into()], cmd: vec!["c".into()], ..RunConfig::default() };
    let req = |command: &[&str], run| RunRequest {
        command: command.iter().map(|s| s.to_string()).collect(),
        run_entrypoint: run,
        ..RunRequest::default()
    };
    assert_eq!(argv(&req(&[], false), &config).unwrap(), ["/ep", "c"]);
    assert_eq!(argv(&req(&["ls", "-l"], false), &config).unwrap(), ["ls", "-l"]);
    assert_eq!(argv(&req(&["x"], true), &config).unwrap(), ["/ep", "x"]);
    assert_eq!(argv(&req(&[], true), &config).unwrap(), ["/ep", "c"]);
    assert!(matches!(argv(&req(&[], false), &RunConfig::default()), Err(PlanError::NoCommand)));
}

#[test]
fn contain_home_tmpfs_only_where_nothing_else_provides_it() {
    let contain = RunRequest { contain: true, ..RunRequest::default() };
    for home in ["/tmp", "/tmp/ci", "/dev/null", "/var/lib/svc", "/"] {
        let h = HostFacts { home: home.into(), ..host() };
        let plan = build(&contain, &h, &image()).unwrap();
        let private = plan.mounts.iter().any(|op| matches!(op, MountOp::Tmpfs { mode: 0o700, .. }));
        assert!(!private, "HOME={home}: {:?}", plan.mounts);
    }
}

#[test]
fn a_user_bind_over_a_default_binds_parent_wins() {
    let bind_to = |dest: &str| RunRequest {
        binds: vec![BindSpec {
            source: "/data".into(),
            dest: dest.into(),
            read_only: false,
            kind: NodeKind::Dir,
        }],
        ..RunRequest::default()
    };
    let targets = |req: &RunRequest| -> Vec<PathBuf> {
        build(req, &host(), &image())
            .unwrap()
            .mounts
            .iter()
            .filter_map(|op| target_of(op).map(Path::to_path_buf))
            .collect()
    };
    let etc = targets(&bind_to("/etc"));
    assert!(etc.contains(&"/staging/newroot/etc".into()));
    assert!(!etc.contains(&"/staging/newroot/etc/hosts".into()), "{etc:?}");
    let home = targets(&bind_to("/home"));
    assert!(!home.contains(&"/staging/newroot/home/alice".into()), "{home:?}");
    assert!(targets(&RunRequest::default()).contains(&"/staging/newroot/etc/hosts".into()));
}

#[test]
fn mounts_parents_before_children_and_read_only_last() {
    let req = RunRequest {
        binds: vec![
            BindSpec {
                source: "/data/sub".into(),
                dest: "/mnt/a/b".into(),
                read_only: true,
                kind: NodeKind::Dir,
            },
            BindSpec { source: "/data".into(), dest: "/mnt/a".into(), read_only: false, kind: NodeKind::Dir },
        ],
        ..RunRequest::default()
    };
    let plan = build(&req, &host(), &image()).unwrap();
    let ops = &plan.mounts;
    let pos = |p: &str| index(ops, |op| target_of(op) == Some(Path::new(p)));
    assert_eq!(index(ops, |op| matches!(op, MountOp::Staging { .. })), 1);
    assert!(pos("/staging/newroot") < pos("/staging/newroot/proc"));
    assert!(pos("/staging/newroot/mnt/a") < pos("/staging/newroot/mnt/a/b"), "parent bind first");
    assert!(pos("/staging/newroot/dev") < pos("/staging/newroot/dev/null"));
    assert!(pos("/staging/newroot/dev") < pos("/staging/newroot/dev/pts"));
    // Every mount point of the overlay root is staged in the upper layer before the overlay.
    for path in [
        "/staging/upper/mnt/a",
        "/staging/upper/home/alice",
        "/staging/upper/scratch/job",
        "/staging/upper/etc/hosts",
    ] {
        let made = index(
            ops,
            |op| matches!(op, MountOp::Mkdir { path: p, .. } | MountOp::CreateFile { path: p, .. } if p == Path::new(path)),
        );
        assert!(made < pos("/staging/newroot"), "{path}");
    }
    // /mnt/a/b lies in a host bind: nothing is created for it (the host is never modified).
    assert!(!ops.iter().any(|op| matches!(op, MountOp::Mkdir { path, .. } if path.ends_with("a/b"))));
    // /dev nodes get their mount points in the /dev tmpfs, after it is mounted.
    let dev_null = index(
        ops,
        |op| matches!(op, MountOp::CreateFile { path, .. } if path == Path::new("/staging/newroot/dev/null")),
    );
    assert!(pos("/staging/newroot/dev") < dev_null && dev_null < pos("/staging/newroot/dev/null"));
    let first_ro = index(ops, |op| matches!(op, MountOp::ReadOnly { .. }));
    let last_mount =
        ops.iter().rposition(|op| target_of(op).is_some() || matches!(op, MountOp::Symlink { .. })).unwrap();
    assert!(last_mount < first_ro, "read-only remounts come last");
    assert!(matches!(ops.last(), Some(MountOp::PivotRoot { .. })));
    let ro: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            MountOp::ReadOnly { target, recursive } => Some((target.to_str().unwrap(), *recursive)),
            _ => None,
        })
        .collect();
    assert!(
        ro.contains(&("/staging/newroot", false))
            && ro.contains(&("/staging/newroot/mnt/a/b", true))
            && ro.contains(&("/staging/newroot/sys", true))
    );
}

/// Apptainer's environment and home spellings (issue 9).
#[test]
fn apptainer_env_prefixes_no_env_and_home() {
    let mut h = host();
    h.env.extend([
        ("SINGULARITYENV_X", "singularity"),
        ("APPTAINERENV_X", "apptainer"),
        ("APPTAINERENV_Y", "y"),
        ("AWS_SECRET", "s"),
        ("TOKEN", "t"),
    ]);
    let req = RunRequest { no_env: vec!["TOKEN".into(), "AWS_*".into()], ..RunRequest::default() };
    let plan = build(&req, &h, &image()).unwrap();
    assert_eq!(env_of(&plan, "X").as_deref(), Some("apptainer"), "APPTAINERENV_ wins over SINGULARITYENV_");
    assert_eq!(env_of(&plan, "Y").as_deref(), Some("y"));
    for hidden in ["APPTAINERENV_X", "SINGULARITYENV_X", "AWS_SECRET", "TOKEN"] {
        assert_eq!(env_of(&plan, hidden), None, "{hidden}");
    }
    assert_eq!(env_of(&plan, "LANG").as_deref(), Some("C.UTF-8"), "the rest passes");
    let cleanenv = build(&RunRequest { cleanenv: true, ..RunRequest::default() }, &h, &image()).unwrap();
    assert_eq!(env_of(&cleanenv, "X").as_deref(), Some("apptainer"), "also with --cleanenv");

    let home = crate::request::HomeSpec { source: "/scratch/me".into(), dest: "/home/me".into() };
    for contain in [false, true] {
        let req = RunRequest { home: Some(home.clone()), contain, ..RunRequest::default() };
        let plan = build(&req, &host(), &image()).unwrap();
        assert_eq!(env_of(&plan, "HOME").as_deref(), Some("/home/me"), "contain {contain}");
        assert!(plan.mounts.iter().any(|op| matches!(op, MountOp::Bind { source, target, .. }
            if source == Path::new("/scratch/me") && target == Path::new("/staging/newroot/home/me"))));
        assert!(
            !plan.mounts.iter().any(|op| matches!(op, MountOp::Bind { target, .. }
            if target == Path::new("/staging/newroot/home/alice"))),
            "the host home is not bound"
        );
    }
}

#[test]
fn a_missing_working_dir_is_made_outside_the_rootfs() {
    let contain = RunRequest { contain: true, ..RunRequest::default() };
    let mkdir_at = |plan: &LaunchPlan, path: &str| {
        plan.mounts.iter().position(|op| matches!(op, MountOp::Mkdir { path: p, .. } if p == Path::new(path)))
    };
    let mut buildah = image();
    buildah.config.working_dir = Some("/work/dir".into());
    buildah.workdir_missing = true;
    let plan = build(&contain, &host(), &buildah).unwrap();
    assert_eq!(plan.cwd, Path::new("/work/dir"));
    let made = mkdir_at(&plan, "/staging/upper/work/dir").expect("made in the upper layer");
    assert!(made < index(&plan.mounts, |op| matches!(op, MountOp::Overlay { .. })), "before the overlay");
    assert!(mkdir_at(&plan, "/staging/newroot/work/dir").is_none(), "{:?}", plan.mounts);
    // Present in the image: nothing made (an upper directory would mask its owner and mode).
    buildah.workdir_missing = false;
    assert!(mkdir_at(&build(&contain, &host(), &buildah).unwrap(), "/staging/upper/work/dir").is_none());
    // Below --contain's /tmp tmpfs: made in the tmpfs, after it is mounted.
    buildah.config.working_dir = Some("/tmp/build".into());
    buildah.workdir_missing = true;
    let plan = build(&contain, &host(), &buildah).unwrap();
    let made = mkdir_at(&plan, "/staging/newroot/tmp/build").expect("made in the tmpfs");
    let tmpfs = index(
        &plan.mounts,
        |op| matches!(op, MountOp::Tmpfs { target, .. } if target == Path::new("/staging/newroot/tmp")),
    );
    assert!(tmpfs < made, "{:?}", plan.mounts);
    // The caller's own bound directory is the working directory: nothing made.
    let plan = build(&RunRequest::default(), &host(), &buildah).unwrap();
    assert_eq!(plan.cwd, Path::new("/scratch/job"));
    assert!(
        mkdir_at(&plan, "/staging/upper/tmp/build").is_none()
            && mkdir_at(&plan, "/staging/newroot/tmp/build").is_none()
    );
}

#[test]
fn default_binds_and_working_dir() {
    let plan = build(&RunRequest::default(), &host(), &image()).unwrap();
    assert_eq!(plan.cwd, Path::new("/scratch/job"), "a bound cwd is kept");
    let binds: Vec<_> = plan
        .mounts
        .iter()
        .filter_map(|op| match op {
            MountOp::Bind { target, .. } => Some(target.to_str().unwrap()),
            _ => None,
        })
        .collect();
    for t in [
        "/staging/newroot/tmp",
        "/staging/newroot/home/alice",
        "/staging/newroot/scratch/job",
        "/staging/newroot/etc/hosts",
        "/staging/newroot/dev/shm",
    ] {
        assert!(binds.contains(&t), "{t} in {binds:?}");
    }
    let contained = build(&RunRequest { contain: true, ..RunRequest::default() }, &host(), &image()).unwrap();
    assert_eq!(contained.cwd, Path::new("/app"), "image WorkingDir when cwd is not bound");
    assert!(contained.mounts.iter().any(
        |op| matches!(op, MountOp::Tmpfs { target, mode: 0o1777 } if target == Path::new("/staging/newroot/tmp"))
    ));
    assert!(
        !contained.mounts.iter().any(
            |op| matches!(op, MountOp::Bind { target, .. } if target.starts_with("/staging/newroot/home"))
        )
    );
    assert!(
        contained.mounts.iter().any(|op| matches!(op, MountOp::Tmpfs { target, mode: 0o700 }
            if target == Path::new("/staging/newroot/home/alice"))),
        "--contain gives an empty home"
    );
    let mut bare = image();
    bare.config.working_dir = None;
    let plan = build(&RunRequest { contain: true, ..RunRequest::default() }, &host(), &bare).unwrap();
    assert_eq!(plan.cwd, Path::new("/"));
    let pwd =
        build(&RunRequest { pwd: Some("/x".into()), ..RunRequest::default() }, &host(), &image()).unwrap();
    assert_eq!(pwd.cwd, Path::new("/x"));
    // The caller's directory inside the OS trees is never bound over the image's own.
    for (dir, bound) in [("/usr/bin", false), ("/var/lib/x", false), ("/etc", false), ("/var/tmp/job", true)]
    {
        let h = HostFacts { cwd: Some(dir.into()), ..host() };
        let plan = build(&RunRequest::default(), &h, &image()).unwrap();
        let target = Path::new("/staging/newroot").join(&dir[1..]);
        let has = plan.mounts.iter().any(|op| matches!(op, MountOp::Bind { target: t, .. } if *t == target));
        assert_eq!(has, bound, "cwd {dir}");
        assert_eq!(plan.cwd, if bound { Path::new(dir) } else { Path::new("/app") }, "cwd {dir}");
    }
    let writable =
        build(&RunRequest { writable_tmpfs: true, ..RunRequest::default() }, &host(), &image()).unwrap();
    assert!(
        !writable.mounts.iter().any(
            |op| matches!(op, MountOp::ReadOnly { target, .. } if target == Path::new("/staging/newroot"))
        )
    );
}

#[test]
fn identity_and_accounts() {
    let plan = build(&RunRequest::default(), &host(), &image()).unwrap();
    let ns = plan.user_namespace.as_ref().unwrap();
    assert_eq!(ns.uid_map, [IdMap { inside: 1000, outside: 1000, count: 1 }]);
    assert_eq!(ns.writer, MapWriter::Direct);
    assert!(!plan.keep_capabilities && plan.no_new_privs);
    let passwd = plan
        .mounts
        .iter()
        .find_map(|op| match op {
            MountOp::WriteFile { path, contents, .. } if path.ends_with("passwd") => Some(contents.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(passwd, "root:x:0:0::/root:/bin/sh\nalice:x:1000:100:alice:/home/alice:/bin/sh\n");
    let fake = build(&RunRequest { fakeroot: true, ..RunRequest::default() }, &host(), &image()).unwrap();
    assert_eq!((fake.uid, fake.gid, fake.keep_capabilities), (0, 0, true));
    assert_eq!(fake.user_namespace.unwrap().uid_map, [IdMap { inside: 0, outside: 1000, count: 1 }]);
    let root = HostFacts { uid: 0, gid: 0, ..host() };
    let plan = build(&RunRequest::default(), &root, &image()).unwrap();
    assert!(plan.user_namespace.is_none() && !plan.namespaces.contains(&Namespace::User));
    assert!(plan.mounts.iter().any(|op| matches!(op, MountOp::Overlay { userxattr: false, .. })));
}

#[test]
fn gpu_edits_become_ordered_binds_and_env() {
    let dev = |p: &str| FileBind { host: p.into(), container: p.into(), dir: false, read_only: false };
    let gpu = GpuEdits {
        devices: vec![dev("/dev/kfd"), dev("/dev/dri/renderD128")],
        files: vec![
            FileBind::read_only("/usr/bin/rocminfo", "/.gpurun/bin/rocminfo"),
            FileBind::read_only("/usr/lib/x/libhsa-runtime64.so.1", "/.gpurun/lib/libhsa-runtime64.so.1"),
        ],
        symlinks: vec![("libcuda.so.1".into(), "/usr/lib/libcuda.so".into())],
        env: vec![
            EnvEdit::Set { name: "ROCR_VISIBLE_DEVICES".into(), value: "0".into() },
            EnvEdit::Append { name: "PATH".into(), value: "/.gpurun/bin".into() },
            EnvEdit::Append { name: "LD_LIBRARY_PATH".into(), value: "/.gpurun/lib".into() },
        ],
        warnings: vec![],
        notices: vec![],
    };
    let req =
        RunRequest { env_vars: vec![("LD_LIBRARY_PATH".into(), "/opt/lib".into())], ..RunRequest::default() };
    let plan = super::build(&req, &host(), &image(), &gpu, staging()).unwrap();
    let ops = &plan.mounts;
    let pos = |p: &str| index(ops, |op| target_of(op) == Some(Path::new(p)));
    let made = |p: &str| {
        index(
            ops,
            |op| matches!(op, MountOp::CreateFile { path, .. } | MountOp::Mkdir { path, .. } if path == Path::new(p)),
        )
    };
    let render = "/staging/newroot/dev/dri/renderD128";
    assert!(
        pos("/staging/newroot/dev") < made(render) && made(render) < pos(render),
        "node inside the /dev tmpfs"
    );
    let lib = "/staging/newroot/.gpurun/lib/libhsa-runtime64.so.1";
    assert!(
        made("/staging/upper/.gpurun/lib/libhsa-runtime64.so.1") < pos("/staging/newroot"),
        "staged before the overlay"
    );
    let ro = index(ops, |op| matches!(op, MountOp::ReadOnly { target, .. } if target == Path::new(lib)));
    assert!(pos(lib) < ro);
    assert!(
        !ops.iter().any(|op| matches!(op, MountOp::ReadOnly { target, .. } if target == Path::new(render)))
    );
    let link = index(
        ops,
        |op| matches!(op, MountOp::Symlink { link, .. } if link == Path::new("/staging/upper/usr/lib/libcuda.so")),
    );
    assert!(link < pos("/staging/newroot"));
    assert_eq!(env_of(&plan, "PATH").as_deref(), Some("/opt/bin:/usr/bin:/.gpurun/bin"));
    assert_eq!(env_of(&plan, "LD_LIBRARY_PATH").as_deref(), Some("/opt/lib:/.gpurun/lib"), "--env extended");
    assert_eq!(env_of(&plan, "ROCR_VISIBLE_DEVICES").as_deref(), Some("0"));
}

#[test]
fn host_pid_namespace_binds_the_host_proc() {
    let private = build(&RunRequest::default(), &host(), &image()).unwrap();
    let host_ns = PidNsChoice { mode: PidNamespace::Host, reason: "test".into() };
    let req = RunRequest { pid_ns: host_ns.clone(), ..RunRequest::default() };
    let plan = build(&req, &host(), &image()).unwrap();
    assert_eq!(private.namespaces, [Namespace::User, Namespace::Mount, Namespace::Pid]);
    assert_eq!(plan.namespaces, [Namespace::User, Namespace::Mount], "no PID namespace");
    assert_eq!(plan.pid_ns, host_ns);
    assert!(!plan.mounts.iter().any(|op| matches!(op, MountOp::Proc { .. })), "no new procfs");
    let ops = &plan.mounts;
    let pos = |p: &str| index(ops, |op| target_of(op) == Some(Path::new(p)));
    let proc_bind =
        MountOp::Bind { source: "/proc".into(), target: "/staging/newroot/proc".into(), recursive: true };
    assert_eq!(ops[pos("/staging/newroot/proc")], proc_bind);
    assert!(pos("/staging/newroot") < pos("/staging/newroot/proc"));
    let sys = MountOp::Bind {
        source: "/proc/sys".into(),
        target: "/staging/newroot/proc/sys".into(),
        recursive: true,
    };
    assert_eq!(ops[pos("/staging/newroot/proc/sys")], sys, "over the /proc bind");
    assert!(pos("/staging/newroot/proc") < pos("/staging/newroot/proc/sys"));
    assert!(matches!(
        &ops[pos("/staging/newroot/proc/sysrq-trigger")],
        MountOp::Bind { recursive: false, .. }
    ));
    assert!(
        !ops.iter().any(|op| target_of(op) == Some(Path::new("/staging/newroot/proc/irq"))),
        "absent on the host"
    );
    for (target, recursive) in
        [("/staging/newroot/proc/sys", true), ("/staging/newroot/proc/sysrq-trigger", false)]
    {
        let ro = MountOp::ReadOnly { target: target.into(), recursive };
        assert!(index(ops, |op| *op == ro) > pos(target), "{target} read-only after its bind");
    }
    assert!(!ops.iter().any(
        |op| matches!(op, MountOp::ReadOnly { target, .. } if target == Path::new("/staging/newroot/proc"))
    ));
    assert!(!ops.iter().any(|op| matches!(op, MountOp::Mkdir { path, .. } | MountOp::CreateFile { path, .. } if path.starts_with("/staging/newroot/proc"))), "nothing is created in the host /proc");
    // Everything else is the private plan's.
    let touches_proc = |op: &MountOp| match op {
        MountOp::Proc { target } | MountOp::Bind { target, .. } | MountOp::ReadOnly { target, .. } => {
            target.starts_with("/staging/newroot/proc")
        }
        _ => false,
    };
    let rest = |p: &LaunchPlan| p.mounts.iter().filter(|op| !touches_proc(op)).cloned().collect::<Vec<_>>();
    assert_eq!(rest(&plan), rest(&private));
    assert_eq!((&plan.argv, &plan.env, &plan.cwd), (&private.argv, &private.env, &private.cwd));
}

#[test]
fn pmix_server_tmpdir_is_bound() {
    let dir = Path::new("/var/spool/slurmd/pmix.7.0");
    let facts = HostFacts { pmix_server_tmpdir: Some(dir.into()), ..host() };
    let contained = RunRequest { contain: true, ..RunRequest::default() };
    for req in [RunRequest::default(), contained] {
        let plan = build(&req, &facts, &image()).unwrap();
        let bind = MountOp::Bind {
            source: "/var/spool/slurmd/pmix.7.0".into(),
            target: "/staging/newroot/var/spool/slurmd/pmix.7.0".into(),
            recursive: true,
        };
        let at = index(&plan.mounts, |op| *op == bind);
        let made = index(
            &plan.mounts,
            |op| matches!(op, MountOp::Mkdir { path, .. } if path == Path::new("/staging/upper/var/spool/slurmd/pmix.7.0")),
        );
        assert!(made < at);
    }
    let plan = build(&RunRequest::default(), &host(), &image()).unwrap();
    assert!(
        !plan.mounts.iter().any(|op| target_of(op).is_some_and(|t| t.starts_with("/staging/newroot/var")))
    );
}

#[test]
fn strict_numeric_ids() {
    assert_eq!(parse_id("0"), Some(Some(0)));
    assert_eq!(parse_id("2147483647"), Some(Some(i32::MAX as u32)));
    assert_eq!(parse_id("2147483648"), Some(None), "2^31 is out of range");
    assert_eq!(parse_id("4294967296"), Some(None), "must not wrap to 0");
    for bad in ["", "+1", "-1", " 1", "1 ", "0x10", "1e3", "١"] {
        assert_eq!(parse_id(bad), None, "{bad:?}");
    }
}

#[test]
fn image_user_resolution() {
    let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nodd:x:12a:1::/:/bin/sh\n";
    let group = "root:x:0:\nstaff:x:50:\n";
    let r = |spec| resolve_user(spec, Some(passwd), Some(group));
    assert_eq!(r("app").unwrap(), (1000, 1001, Some("/home/app".into())));
    assert_eq!(r("1000").unwrap(), (1000, 1001, Some("/home/app".into())));
    assert_eq!(r("4242").unwrap(), (4242, 0, None), "numeric without an entry: gid 0");
    assert_eq!(r("app:staff").unwrap().1, 50);
    assert_eq!(r("app:7").unwrap().1, 7);
    assert!(matches!(r("nobody"), Err(PlanError::BadUser { .. })));
    assert!(matches!(r("odd"), Err(PlanError::BadUser { .. })));
    assert!(matches!(r("app:nogroup"), Err(PlanError::BadUser { .. })));
    assert!(matches!(r("4294967296"), Err(PlanError::BadUser { .. })));
}

#[test]
fn fakeroot_identity_and_home() {
    let fake = RunRequest { fakeroot: true, ..RunRequest::default() };
    let plan = build(&fake, &host(), &image()).unwrap();
    assert_eq!(env_of(&plan, "HOME").as_deref(), Some("/root"));
    assert!(plan.mounts.iter().any(|op| matches!(op, MountOp::Bind { source, target, .. }
        if source == Path::new("/home/alice") && target == Path::new("/staging/newroot/root"))));
    assert_eq!(plan.cwd, Path::new("/scratch/job"));
    assert!(plan.switch_user.is_none() && plan.keep_capabilities);
    // Without --fakeroot the image's User is ignored: the caller runs.
    let mut img = image();
    img.config.user = Some("alice".into());
    let plain = build(&RunRequest::default(), &host(), &img).unwrap();
    assert_eq!((plain.uid, plain.switch_user.clone()), (1000, None));
    // Under --fakeroot a named user must be mapped: one id only maps root.
    assert!(matches!(build(&fake, &host(), &img), Err(PlanError::UserNotMapped { .. })));
    let mut sub = host();
    sub.subids = Some(SubIds {
        uid_start: 100000,
        uid_count: 65536,
        gid_start: 100000,
        gid_count: 65536,
        newuidmap: "/usr/bin/newuidmap".into(),
        newgidmap: "/usr/bin/newgidmap".into(),
    });
    let plan = build(&fake, &sub, &img).unwrap();
    assert_eq!(plan.switch_user, Some(SwitchUser { uid: 1, gid: 1, groups: Some(vec![1]) }));
    assert_eq!((plan.uid, plan.keep_capabilities), (1, false));
    assert_eq!(env_of(&plan, "HOME").as_deref(), Some("/"));
    img.config.user = Some("0".into());
    assert!(build(&fake, &host(), &img).unwrap().switch_user.is_none());
}

#[test]
fn group_file_gets_the_callers_group() {
    assert_eq!(
        group_with_caller(Some("root:x:0:\nstaff:x:100:\n"), "users", 100),
        "root:x:0:\nusers:x:100:\n"
    );
    assert_eq!(group_with_caller(None, "users", 100), "users:x:100:\n");
    assert_eq!(group_with_caller(Some("users:x:100:bob\n"), "users", 100), "users:x:100:bob\n");
}

/// Issue 12: where overlayfs cannot be used, the root is assembled from binds: the upper layer's
/// nodes become the assembly's mount points, generated files are bound onto theirs, every opened
/// directory is frozen before the pivot; `--writable-tmpfs` is refused; root keeps the overlay.
#[test]
fn bind_assembly_replaces_the_overlay() {
    let old_kernel = HostFacts { overlay_in_userns: crate::host::UsernsOverlay::No, ..host() };
    let plan = build(&RunRequest::default(), &old_kernel, &image()).unwrap();
    assert_eq!(plan.root, RootKind::Bind);
    let ops = &plan.mounts;
    assert!(!ops.iter().any(|op| matches!(op, MountOp::Overlay { .. })), "{ops:#?}");
    let assemble = index(ops, |op| matches!(op, MountOp::AssembleRoot { .. }));
    let MountOp::AssembleRoot { mount_points, target, image: from, .. } = &ops[assemble] else {
        unreachable!()
    };
    assert_eq!(
        (target.as_path(), from.as_path()),
        (Path::new("/staging/newroot"), Path::new("/cache/rootfs"))
    );
    let point = |p: &str| mount_points.iter().find(|m| m.path == Path::new(p)).map(|m| m.kind);
    assert_eq!(point("/etc/passwd"), Some(NodeKind::File));
    assert_eq!(point("/home/alice"), Some(NodeKind::Dir));
    assert_eq!(point("/scratch/job"), Some(NodeKind::Dir));
    let passwd = index(
        ops,
        |op| matches!(op, MountOp::Bind { target, .. } if target == Path::new("/staging/newroot/etc/passwd")),
    );
    assert!(passwd > assemble, "generated files are bound after the assembly");
    let home = index(
        ops,
        |op| matches!(op, MountOp::Bind { target, .. } if target == Path::new("/staging/newroot/home/alice")),
    );
    let freeze = index(ops, |op| matches!(op, MountOp::FreezeAssembly));
    assert!(passwd < freeze && freeze < home, "frozen before the user's mounts: {ops:#?}");
    assert!(!ops.iter().any(|op| op_path(op).is_some_and(|p| p.starts_with("/staging/upper"))), "{ops:#?}");
    let writable = RunRequest { writable_tmpfs: true, ..RunRequest::default() };
    let err = build(&writable, &old_kernel, &image()).unwrap_err();
    assert!(matches!(err, PlanError::WritableTmpfsNeedsFuseOverlayfs { .. }));
    assert!(err.hint().unwrap().contains("install fuse-overlayfs"), "{:?}", err.hint());
    let as_root = HostFacts { uid: 0, gid: 0, ..old_kernel.clone() };
    assert_eq!(build(&RunRequest::default(), &as_root, &image()).unwrap().root, RootKind::Overlay);
    let forced = RunRequest { root_mode: crate::cli::RootMode::Bind, ..RunRequest::default() };
    assert_eq!(build(&forced, &host(), &image()).unwrap().root, RootKind::Bind);
    // A backport without userxattr (RHEL 8): the overlay, without that option.
    let backport = HostFacts { overlay_in_userns: crate::host::UsernsOverlay::Plain, ..host() };
    let plan = build(&RunRequest::default(), &backport, &image()).unwrap();
    assert_eq!(plan.root, RootKind::Overlay);
    assert!(plan.mounts.iter().any(|op| matches!(op, MountOp::Overlay { userxattr: false, .. })));
    let overlay = RunRequest { root_mode: crate::cli::RootMode::Overlay, ..RunRequest::default() };
    assert_eq!(build(&overlay, &old_kernel, &image()).unwrap().root, RootKind::Overlay);
}

/// Issue 12: `--writable-tmpfs` without the kernel's overlayfs gets fuse-overlayfs's, on the
/// same layers as the overlay would use (mount points and account files staged in its upper
/// directory), and a writable root; it needs the program, and a real overlay keeps the kernel's.
#[test]
fn writable_tmpfs_without_overlayfs_uses_fuse_overlayfs() {
    let fuse = Some(PathBuf::from("/usr/bin/fuse-overlayfs"));
    let old_kernel = HostFacts {
        overlay_in_userns: crate::host::UsernsOverlay::No,
        fuse_overlayfs: fuse.clone(),
        ..host()
    };
    let writable = RunRequest { writable_tmpfs: true, ..RunRequest::default() };
    let plan = build(&writable, &old_kernel, &image()).unwrap();
    assert_eq!(plan.root, RootKind::FuseOverlay);
    let ops = &plan.mounts;
    let fuse_op = index(ops, |op| matches!(op, MountOp::FuseOverlay { .. }));
    assert_eq!(
        ops[fuse_op],
        MountOp::FuseOverlay {
            program: "/usr/bin/fuse-overlayfs".into(),
            lower: "/cache/rootfs".into(),
            upper: "/staging/upper".into(),
            work: "/staging/work".into(),
            target: "/staging/newroot".into(),
        }
    );
    let passwd = index(
        ops,
        |op| matches!(op, MountOp::WriteFile { path, .. } if path == Path::new("/staging/upper/etc/passwd")),
    );
    let home = index(
        ops,
        |op| matches!(op, MountOp::Bind { target, .. } if target == Path::new("/staging/newroot/home/alice")),
    );
    assert!(passwd < fuse_op && fuse_op < home, "{ops:#?}");
    assert!(!ops.iter().any(|op| matches!(op, MountOp::AssembleRoot { .. } | MountOp::Overlay { .. })));
    assert!(
        !ops.iter().any(
            |op| matches!(op, MountOp::ReadOnly { target, .. } if target == Path::new("/staging/newroot"))
        ),
        "the root stays writable: {ops:#?}"
    );
    let forced = RunRequest { root_mode: crate::cli::RootMode::Bind, ..writable.clone() };
    assert_eq!(
        build(&forced, &HostFacts { fuse_overlayfs: fuse, ..host() }, &image()).unwrap().root,
        RootKind::FuseOverlay
    );
    assert_eq!(
        build(&writable, &host(), &image()).unwrap().root,
        RootKind::Overlay,
        "the kernel's when it can"
    );
    // Without a PID namespace too (the sandbox then keeps an init without one).
    let host_pid = RunRequest {
        pid_ns: PidNsChoice { mode: crate::request::PidNamespace::Host, reason: String::new() },
        ..writable
    };
    let plan = build(&host_pid, &old_kernel, &image()).unwrap();
    assert_eq!(plan.root, RootKind::FuseOverlay);
    assert!(!plan.namespaces.contains(&Namespace::Pid));
}

fn op_path(op: &MountOp) -> Option<&Path> {
    match op {
        MountOp::Mkdir { path, .. } | MountOp::CreateFile { path, .. } | MountOp::WriteFile { path, .. } => {
            Some(path)
        }
        MountOp::Symlink { link, .. } => Some(link),
        MountOp::Bind { target, .. } | MountOp::Tmpfs { target, .. } | MountOp::ReadOnly { target, .. } => {
            Some(target)
        }
        _ => None,
    }
}

#[test]
fn a_shared_container_has_no_console_and_a_fuse_root_is_not_shared() {
    let tty = HostFacts { terminal: Some("/dev/pts/3".into()), ..host() };
    let console = |plan: &LaunchPlan| {
        plan.mounts.iter().any(|op| target_of(op) == Some(Path::new("/staging/newroot/dev/console")))
    };
    assert!(console(&build(&RunRequest::default(), &tty, &image()).unwrap()));
    let join = crate::join::JoinChoice { key: Some("slurm:1.0@n1".into()), ..Default::default() };
    let shared = RunRequest { join: join.clone(), ..RunRequest::default() };
    let plan = build(&shared, &tty, &image()).unwrap();
    assert!(!console(&plan), "each rank has its own terminal: none is the shared container's console");
    assert_eq!(plan.join, join);
    let old_kernel = HostFacts {
        overlay_in_userns: crate::host::UsernsOverlay::No,
        fuse_overlayfs: Some("/usr/bin/fuse-overlayfs".into()),
        ..host()
    };
    let writable = RunRequest { writable_tmpfs: true, ..shared };
    let plan = build(&writable, &old_kernel, &image()).unwrap();
    assert_eq!(plan.root, RootKind::FuseOverlay);
    assert_eq!(plan.join.key, None, "the daemon dies with the init of the run that made it");
    assert!(plan.join.reason.contains("fuse-overlayfs"), "{}", plan.join.reason);
}
