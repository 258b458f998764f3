//! The pure planner: a validated [`RunRequest`], the host's facts and the image's settings become
//! a [`LaunchPlan`]: id maps, namespaces, an ordered list of mount operations, environment,
//! working directory and argv. No I/O happens here (the caller passes in everything it read), so
//! every ordering rule is a unit test away, and `gpurun --dry-run` prints exactly what will run.
//!
//! # How the read-only rootfs gets mount points it does not have
//!
//! The rootfs is a cache entry shared by every job, so nothing may ever be written into it. In its
//! private mount namespace the sandbox first mounts a tmpfs (the *staging* tmpfs) on an empty
//! directory of gpurun's cache ([`Layout`]); host paths keep their names, so bind sources need no
//! translation and there is only one `pivot_root`, at the end. The container root is an overlay at
//! `STAGING/newroot` whose lower layer is the rootfs and whose upper layer `STAGING/upper` lives in
//! the staging tmpfs. Before the overlay is mounted, the planner writes the generated
//! `/etc/passwd` and `/etc/group` and creates every missing mount point (directories and empty
//! files) directly in the upper layer. Creating them in the upper directory
//! rather than through the overlay matters: in an unprivileged user namespace the image's
//! root-owned directories are not writable, but the upper directory is ours. The overlay root is
//! then made read-only (unless `--writable-tmpfs`, where writes land in the upper layer and vanish
//! with the tmpfs). A directory created in the upper layer shadows the image's attributes for that directory
//! (owner and mode show as the caller's; its contents still merge), and shadows a symlink at the
//! same path. Mount points below a tmpfs the plan mounts (`/dev`, a contained `/tmp`) are created
//! in that tmpfs right before use; destinations below a host bind must already exist there.
//!
//! # Environment precedence
//!
//! Later rows win:
//!
//! | # | source                                      | notes                                         |
//! |---|---------------------------------------------|-----------------------------------------------|
//! | 1 | host environment                            | minus [`HOST_ONLY_VARS`], `GPURUN_*`, [`SET_PREFIXES`] and `--no-env` names; with `--cleanenv` only `TERM` and the proxy variables ([`CLEANENV_KEEP`]) |
//! | 2 | image `Env`                                 | the image wins over the host                  |
//! | 3 | gpurun: `PATH` (when the image sets none), `HOME`, `GPURUN_CONTAINER` | `HOME` is the caller's home directory (`--home`'s DST); `GPURUN_CONTAINER` the IMAGE, absolute |
//! | 4 | GPU settings (`NVIDIA_VISIBLE_DEVICES`, renumbered `ROCR_VISIBLE_DEVICES`, CDI `env`) | consistent with the bound GPUs |
//! | 5 | host `SINGULARITYENV_NAME`, `APPTAINERENV_NAME`, `GPURUN_ENV_NAME` (that order) | sets `NAME`, also with `--cleanenv` |
//! | 6 | `--env-file FILE` (files and lines in order) |                                              |
//! | 7 | `--env NAME=value` (in order)               | the last word                                 |
//! | 8 | GPU search paths: `/.gpurun/bin` appended to `PATH`, `/.gpurun/lib` to `LD_LIBRARY_PATH` | appended last, so the image's own tools and libraries keep priority and an `--env` value is extended, not lost |
//!
//! # GPU edits
//!
//! [`GpuEdits`] from `gpu` become ordinary specs: device nodes are read-write binds below the
//! `/dev` tmpfs (so only the selected GPUs' nodes exist in the container), host tools and
//! libraries are read-only file binds into `/.gpurun/bin` and `/.gpurun/lib` (mount points staged
//! in the upper layer like any other), ICD files and sockets are read-only binds at their host
//! paths. A user `-B` onto the same destination wins.
//!
//! # PID namespace
//!
//! With a private PID namespace (the default outside MPI jobs) the plan lists [`Namespace::Pid`]
//! and mounts a new procfs. In the host PID namespace (`--pid-ns host`, or `auto` for an MPI
//! rank) the list has no `Pid`, and `/proc` is a recursive bind of the host's: a new procfs
//! cannot be mounted there, because mounting proc needs `CAP_SYS_ADMIN` in the user namespace
//! that owns the PID namespace, here the initial one (proc(5), `mount_too_revealing` in
//! fs/namespace.c). Like Charliecloud, enroot and Apptainer the bind is writable (`/proc/self`
//! must stay writable for `oom_score_adj`, `comm` and the like), but [`PROC_READ_ONLY`] is bound
//! read-only over it. Everything else is the same plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::gpu::{EnvEdit, GpuEdits};
use crate::image::RunConfig;
use crate::request::{HostFacts, NodeKind, PidNamespace, PidNsChoice, RunRequest};

/// Host variables that never pass into the container, and why. The README cites this table.
pub const HOST_ONLY_VARS: &[(&str, &str)] = &[
    ("PATH", "names host directories; the image's PATH or the default applies"),
    ("LD_LIBRARY_PATH", "host libraries would be loaded against the image's libc"),
    ("LD_PRELOAD", "host libraries would be loaded against the image's libc"),
    ("LD_AUDIT", "host libraries would be loaded against the image's libc"),
    ("HOME", "gpurun sets it to the caller's home directory"),
    ("PWD", "describes the host working directory, not the container's"),
    ("OLDPWD", "describes the host shell's history"),
    ("PS1", "host prompts often call host-only commands"),
    ("PROMPT_COMMAND", "host prompts often call host-only commands"),
    ("BASH_ENV", "would make shells in the image source host startup files"),
    ("ENV", "would make shells in the image source host startup files"),
];

/// What `--cleanenv` still passes from the host.
pub const CLEANENV_KEEP: &[&str] = &[
    "TERM",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// `PATH` when the image sets none (the Docker and Apptainer default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host prefix for `NAME=value` pairs meant for the container.
pub const ENV_PREFIX: &str = "GPURUN_ENV_";

/// Host variables that set a container variable (row 5), lowest priority first: Apptainer's
/// (and Singularity's) spellings are honoured so that a user's existing job scripts work.
/// They never pass into the container as themselves.
pub const SET_PREFIXES: [&str; 3] = ["SINGULARITYENV_", "APPTAINERENV_", ENV_PREFIX];

/// Where the sandbox assembles the container: the staging tmpfs, mounted on `base` (the cache's
/// empty `mnt` directory; the mount exists only in the run's own mount namespace, so concurrent
/// runs share the directory without seeing each other), holds the overlay's upper and work
/// directories and the container root. Mounting it on a directory of our own instead of pivoting
/// into it first keeps every host path valid as a bind source, and saves a `pivot_root`, which
/// walks every task on the machine (`chroot_fs_refs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub base: PathBuf,
}

impl Layout {
    /// The container root while it is being assembled.
    pub fn root(&self) -> PathBuf {
        self.base.join("newroot")
    }
    /// The overlay's upper directory: mount points and generated files go here.
    pub fn upper(&self) -> PathBuf {
        self.base.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.base.join("work")
    }
    /// `path` in the container as a path below the root being assembled.
    pub fn in_root(&self, path: &Path) -> PathBuf {
        under(&self.root(), path)
    }
    /// `path` in the container as a path below the upper directory.
    pub fn in_upper(&self, path: &Path) -> PathBuf {
        under(&self.upper(), path)
    }
    /// The container path of `path` when it lies below the root being assembled.
    pub fn container_path(&self, path: &Path) -> Option<PathBuf> {
        path.strip_prefix(self.root()).ok().map(|p| Path::new("/").join(p))
    }
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

/// Directories whose host copy is never bound as the working directory (they are the image's).
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/opt", "/proc", "/root", "/run",
    "/sbin", "/srv", "/sys", "/usr", "/var",
];

/// Everything the sandbox does, in order, as data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LaunchPlan {
    /// The image's root filesystem on the host (read-only; the overlay's lower layer).
    pub rootfs: PathBuf,
    /// `None` when the caller is real root: no user namespace is needed.
    pub user_namespace: Option<UserNamespace>,
    /// Namespaces unshared, in order (network, UTS and IPC stay the host's).
    pub namespaces: Vec<Namespace>,
    /// Whether there is a PID namespace (`Namespace::Pid` in `namespaces`) and why.
    pub pid_ns: PidNsChoice,
    /// Where the container is assembled before the final pivot.
    pub layout: Layout,
    /// Mount operations, applied in order by the PID namespace's init (by gpurun itself in the
    /// host PID namespace).
    pub mounts: Vec<MountOp>,
    pub argv: Vec<String>,
    /// `NAME=value`, sorted by name.
    pub env: Vec<String>,
    pub cwd: PathBuf,
    /// Identity of the workload inside the container.
    pub uid: u32,
    pub gid: u32,
    /// Whether the workload keeps its capabilities (`--fakeroot`); otherwise all are dropped.
    pub keep_capabilities: bool,
    pub no_new_privs: bool,
    /// Set when the workload must change identity before exec (`--fakeroot` with an image
    /// `User` other than root); `None`: it runs with the identity the namespace gives it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_user: Option<SwitchUser>,
}

/// `setgroups` (when allowed), `setresgid`, `setresuid` in the workload, in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwitchUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; `None` where `setgroups` is denied (a single-id user namespace).
    pub groups: Option<Vec<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Namespace {
    User,
    Mount,
    Pid,
}

/// One line of `uid_map` or `gid_map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// How the id maps get written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapWriter {
    /// gpurun writes its own single-id maps (`setgroups` must be denied first).
    Direct,
    /// The setuid `newuidmap`/`newgidmap` install subordinate ranges; `setgroups` stays allowed.
    Helpers { newuidmap: PathBuf, newgidmap: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserNamespace {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
    pub writer: MapWriter,
}

/// One step of the mount setup. Paths are host paths up to [`MountOp::PivotRoot`]; the container
/// is assembled below [`Layout::root`] (GPU device binds are `Bind` ops below its `dev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MountOp {
    /// Stop mount events propagating between the host and the new namespace.
    MakePrivate {
        target: PathBuf,
    },
    /// Mount the staging tmpfs on the [`Layout`]'s base.
    Staging {
        target: PathBuf,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    CreateFile {
        path: PathBuf,
        mode: u32,
    },
    WriteFile {
        path: PathBuf,
        contents: String,
        mode: u32,
    },
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
        userxattr: bool,
    },
    Bind {
        source: PathBuf,
        target: PathBuf,
        recursive: bool,
    },
    Tmpfs {
        target: PathBuf,
        mode: u32,
    },
    Proc {
        target: PathBuf,
    },
    Devpts {
        target: PathBuf,
    },
    ReadOnly {
        target: PathBuf,
        recursive: bool,
    },
    /// Make `new_root` the root and detach the staging tmpfs and the host tree below it.
    PivotRoot {
        new_root: PathBuf,
    },
}

/// The image's settings and the account files it ships, read by the caller (in-root).
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    pub rootfs: PathBuf,
    pub config: RunConfig,
    pub passwd: Option<String>,
    pub group: Option<String>,
    /// The config's WorkingDir names nothing in the rootfs: Buildah commits no layer for a
    /// WORKDIR (Podman creates it at start), so the planner makes it, never in the rootfs.
    pub workdir_missing: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no COMMAND given and the image has no ENTRYPOINT or CMD")]
    NoCommand,
    #[error("the image's User {spec:?}: {why}")]
    BadUser { spec: String, why: String },
    #[error("the image's User {spec:?} is uid {uid} gid {gid}, which the user namespace does not map")]
    UserNotMapped { spec: String, uid: u32, gid: u32 },
}

impl PlanError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::NoCommand => Some("name a command after IMAGE, e.g. `gpurun IMAGE /bin/sh`".into()),
            PlanError::BadUser { .. } => {
                Some("the image's /etc/passwd and /etc/group must name it; run without --fakeroot to run as yourself".into())
            }
            PlanError::UserNotMapped { .. } => Some(
                "--fakeroot maps only root unless /etc/subuid and /etc/subgid give you a range (and newuidmap/\
                 newgidmap are installed); ask for one, or run without --fakeroot to run as yourself"
                    .into(),
            ),
        }
    }
}

/// The identity the workload gets, and its home directory.
///
/// As Apptainer does, gpurun runs the workload as the caller and ignores the image's `User`.
/// Under `--fakeroot` it runs as root with `HOME=/root` (the caller's home bound there), unless
/// the image names another `User`: then that user, resolved in the image's own `/etc/passwd`
/// and `/etc/group`, with `HOME` from its passwd entry; it must be mapped in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    uid: u32,
    gid: u32,
    home: PathBuf,
    /// Set when the workload must change to it before exec.
    switch: bool,
}

/// A uid or gid written as a number: ASCII digits only (no sign, no spaces), 0..=2^31-1, the
/// range every tool agrees on (CVE-2024-40635: a larger value must not wrap to root).
pub fn parse_id(text: &str) -> Option<Option<u32>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u32>().ok().filter(|&n| n <= i32::MAX as u32))
}

/// Resolves an OCI `User` (`user`, `uid`, `user:group`, `uid:gid`) against the image's account
/// files. Returns uid, gid and the passwd entry's home (if any).
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32, Option<PathBuf>), PlanError> {
    let bad = |why: &str| PlanError::BadUser { spec: spec.into(), why: why.into() };
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let fields = |line: &str| line.split(':').map(str::to_string).collect::<Vec<_>>();
    let passwd_entry = |pred: &dyn Fn(&[String]) -> bool| {
        passwd.unwrap_or("").lines().map(fields).find(|f| f.len() >= 6 && pred(f))
    };
    let (uid, mut gid, home) = match parse_id(user) {
        Some(None) => return Err(bad("the uid is larger than 2147483647")),
        Some(Some(uid)) => {
            let entry = passwd_entry(&|f| parse_id(&f[2]) == Some(Some(uid)));
            let gid = entry.as_ref().and_then(|f| parse_id(&f[3]).flatten()).unwrap_or(0);
            (uid, gid, entry.map(|f| PathBuf::from(&f[5])))
        }
        None => {
            let entry = passwd_entry(&|f| f[0] == user).ok_or_else(|| bad("no such user in the image"))?;
            let uid = parse_id(&entry[2]).flatten().ok_or_else(|| bad("its passwd entry has a bad uid"))?;
            let gid = parse_id(&entry[3]).flatten().ok_or_else(|| bad("its passwd entry has a bad gid"))?;
            (uid, gid, Some(PathBuf::from(&entry[5])))
        }
    };
    if let Some(g) = grp.filter(|g| !g.is_empty()) {
        gid = match parse_id(g) {
            Some(Some(n)) => n,
            Some(None) => return Err(bad("the gid is larger than 2147483647")),
            None => group
                .unwrap_or("")
                .lines()
                .map(fields)
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| parse_id(&f[2]).flatten())
                .ok_or_else(|| bad("no such group in the image"))?,
        };
    }
    let home = home.filter(|h| h.is_absolute());
    Ok((uid, gid, home))
}

fn mapped(map: &[IdMap], id: u32) -> bool {
    map.iter().any(|m| id >= m.inside && id - m.inside < m.count)
}

fn identity(
    req: &RunRequest,
    host: &HostFacts,
    image: &ImageInfo,
    userns: Option<&UserNamespace>,
) -> Result<Identity, PlanError> {
    let chosen_home = req.home.as_ref().map(|h| h.dest.clone());
    if !req.fakeroot {
        let home = chosen_home.unwrap_or_else(|| host.home.clone());
        return Ok(Identity { uid: host.uid, gid: host.gid, home, switch: false });
    }
    let root = Identity {
        uid: 0,
        gid: 0,
        home: chosen_home.clone().unwrap_or_else(|| "/root".into()),
        switch: false,
    };
    let Some(spec) = image.config.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(root);
    };
    let (uid, gid, home) = resolve_user(spec, image.passwd.as_deref(), image.group.as_deref())?;
    if (uid, gid) == (0, 0) {
        return Ok(root);
    }
    if let Some(ns) = userns
        && (!mapped(&ns.uid_map, uid) || !mapped(&ns.gid_map, gid))
    {
        return Err(PlanError::UserNotMapped { spec: spec.into(), uid, gid });
    }
    let home = chosen_home.or(home).unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
    Ok(Identity { uid, gid, home, switch: true })
}

/// Builds the launch plan. Pure: the same inputs always give the same plan.
pub fn build(
    req: &RunRequest,
    host: &HostFacts,
    image: &ImageInfo,
    gpu: &GpuEdits,
) -> Result<LaunchPlan, PlanError> {
    let argv = argv(req, &image.config)?;
    let user_namespace = user_namespace(req, host);
    let who = identity(req, host, image, user_namespace.as_ref())?;
    let mut namespaces = vec![Namespace::Mount, Namespace::Pid];
    if user_namespace.is_some() {
        namespaces.insert(0, Namespace::User);
    }
    if req.pid_ns.mode == PidNamespace::Host {
        namespaces.retain(|ns| *ns != Namespace::Pid);
    }
    let specs = mount_specs(req, host, &who, gpu);
    let cwd = working_dir(req, host, &image.config, &specs);
    let accounts = Accounts::new(host, &who);
    let layout = Layout { base: host.staging.clone() };
    let mut mounts = mount_ops(req, image, &layout, &specs, &accounts, user_namespace.is_some());
    stage_symlinks(&mut mounts, &layout, &gpu.symlinks);
    if image.workdir_missing && image.config.working_dir.as_deref().is_some_and(|w| cwd == Path::new(w)) {
        make_working_dir(&mut mounts, &layout, &specs, &cwd);
    }
    // setgroups is denied in a namespace whose maps gpurun wrote itself (see sandbox::idmap).
    let may_setgroups = user_namespace.as_ref().is_none_or(|ns| ns.writer != MapWriter::Direct);
    let switch_user = who.switch.then(|| SwitchUser {
        uid: who.uid,
        gid: who.gid,
        groups: may_setgroups.then(|| vec![who.gid]),
    });
    Ok(LaunchPlan {
        rootfs: image.rootfs.clone(),
        user_namespace,
        namespaces,
        pid_ns: req.pid_ns.clone(),
        layout,
        mounts,
        argv,
        env: environment_with_home(req, host, &image.config, &who.home, &gpu.env),
        cwd,
        uid: who.uid,
        gid: who.gid,
        // A non-root image user runs without capabilities, as in Docker and Podman.
        keep_capabilities: req.fakeroot && who.uid == 0,
        no_new_privs: true,
        switch_user,
    })
}

/// OCI conversion rules: COMMAND replaces ENTRYPOINT and CMD; `--run` keeps the ENTRYPOINT and
/// replaces only CMD; no COMMAND runs ENTRYPOINT + CMD.
pub fn argv(req: &RunRequest, config: &RunConfig) -> Result<Vec<String>, PlanError> {
    let argv: Vec<String> = if req.run_entrypoint {
        let tail = if req.command.is_empty() { &config.cmd } else { &req.command };
        config.entrypoint.iter().chain(tail).cloned().collect()
    } else if !req.command.is_empty() {
        req.command.clone()
    } else {
        config.entrypoint.iter().chain(&config.cmd).cloned().collect()
    };
    if argv.is_empty() { Err(PlanError::NoCommand) } else { Ok(argv) }
}

fn user_namespace(req: &RunRequest, host: &HostFacts) -> Option<UserNamespace> {
    if host.uid == 0 {
        return None;
    }
    let single = |inside, outside| vec![IdMap { inside, outside, count: 1 }];
    if !req.fakeroot {
        return Some(UserNamespace {
            uid_map: single(host.uid, host.uid),
            gid_map: single(host.gid, host.gid),
            writer: MapWriter::Direct,
        });
    }
    match &host.subids {
        Some(s) => Some(UserNamespace {
            uid_map: vec![
                IdMap { inside: 0, outside: host.uid, count: 1 },
                IdMap { inside: 1, outside: s.uid_start, count: s.uid_count },
            ],
            gid_map: vec![
                IdMap { inside: 0, outside: host.gid, count: 1 },
                IdMap { inside: 1, outside: s.gid_start, count: s.gid_count },
            ],
            writer: MapWriter::Helpers { newuidmap: s.newuidmap.clone(), newgidmap: s.newgidmap.clone() },
        }),
        None => Some(UserNamespace {
            uid_map: single(0, host.uid),
            gid_map: single(0, host.gid),
            writer: MapWriter::Direct,
        }),
    }
}

/// The environment, by the precedence table in the module documentation, with `HOME` the
/// caller's home directory.
pub fn environment(req: &RunRequest, host: &HostFacts, config: &RunConfig, gpu: &[EnvEdit]) -> Vec<String> {
    environment_with_home(req, host, config, &host.home, gpu)
}

/// Set in every container to the IMAGE it runs (row 3 of the environment table).
pub const CONTAINER_VAR: &str = "GPURUN_CONTAINER";

fn environment_with_home(
    req: &RunRequest,
    host: &HostFacts,
    config: &RunConfig,
    home: &Path,
    gpu: &[EnvEdit],
) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &host.env {
        let passes = if req.cleanenv {
            CLEANENV_KEEP.contains(&name.as_str())
        } else {
            !name.starts_with("GPURUN_")
                && !SET_PREFIXES.iter().any(|p| name.starts_with(p))
                && !HOST_ONLY_VARS.iter().any(|(n, _)| n == name)
        };
        let blocked = req.no_env.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        });
        if passes && !blocked {
            env.insert(name.clone(), value.clone());
        }
    }
    for entry in &config.env {
        if let Some((name, value)) = entry.split_once('=') {
            env.insert(name.into(), value.into());
        }
    }
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    env.insert("HOME".into(), home.display().to_string());
    // The marker that a process runs in gpurun (as Apptainer sets APPTAINER_CONTAINER): the
    // image as given, made absolute against the caller's directory.
    let image = match &host.cwd {
        Some(cwd) if req.image.is_relative() => cwd.join(&req.image),
        _ => req.image.clone(),
    };
    env.insert(CONTAINER_VAR.into(), image.display().to_string());
    for edit in gpu {
        match edit {
            EnvEdit::Set { name, value } => {
                env.insert(name.clone(), value.clone());
            }
            EnvEdit::Unset { name } => {
                env.remove(name);
            }
            EnvEdit::Append { .. } => {}
        }
    }
    // Lowest-priority prefix first, so that GPURUN_ENV_X wins over APPTAINERENV_X.
    for prefix in SET_PREFIXES {
        for (name, value) in &host.env {
            if let Some(inner) = name.strip_prefix(prefix).filter(|n| !n.is_empty()) {
                env.insert(inner.into(), value.clone());
            }
        }
    }
    for (name, value) in req.env_file_vars.iter().chain(&req.env_vars) {
        env.insert(name.clone(), value.clone());
    }
    for edit in gpu {
        if let EnvEdit::Append { name, value } = edit {
            let list = env.entry(name.clone()).or_default();
            if !list.split(':').any(|p| p == value) {
                if !list.is_empty() {
                    list.push(':');
                }
                list.push_str(value);
            }
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A mount before ordering: what goes where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    dest: PathBuf,
    what: What,
    mountpoint: NodeKind,
    read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum What {
    Bind { source: PathBuf, recursive: bool },
    Tmpfs { mode: u32 },
    Proc,
    Devpts,
}

fn bind(source: impl Into<PathBuf>, dest: impl Into<PathBuf>, kind: NodeKind, read_only: bool) -> Spec {
    let recursive = kind == NodeKind::Dir;
    Spec {
        dest: dest.into(),
        what: What::Bind { source: source.into(), recursive },
        mountpoint: kind,
        read_only,
    }
}

/// Every mount the container gets, sorted so parents come before children (a stable sort by
/// depth: a child mounted first would be hidden by its parent, bubblewrap's rule too).
fn mount_specs(req: &RunRequest, host: &HostFacts, who: &Identity, gpu: &GpuEdits) -> Vec<Spec> {
    let mut specs = system_specs(host);
    if req.pid_ns.mode == PidNamespace::Host {
        use_host_proc(&mut specs, host);
    }
    // A user bind over a default one's parent wins (-B /mydata:/etc drops the /etc/hosts bind,
    // which would otherwise need /mydata/hosts): Apptainer lets user binds take precedence too.
    let under_user_bind =
        |d: &Spec| req.binds.iter().any(|b| d.dest.starts_with(&b.dest) && d.dest != b.dest);
    specs.extend(default_bind_specs(req, host, who).into_iter().filter(|d| !under_user_bind(d)));
    for f in gpu.devices.iter().chain(&gpu.files) {
        let kind = if f.dir { NodeKind::Dir } else { NodeKind::File };
        specs.retain(|s| s.dest != f.container);
        specs.push(bind(&f.host, &f.container, kind, f.read_only));
    }
    for b in &req.binds {
        // A user bind replaces a default one on the same destination (e.g. -B /scratch:/tmp).
        specs.retain(|s| s.dest != b.dest);
        specs.push(bind(&b.source, &b.dest, b.kind, b.read_only));
    }
    specs.sort_by_key(|s| s.dest.components().count());
    specs
}

/// `/proc`, read-only `/sys`, and a minimal `/dev` (the enroot `ENROOT_RESTRICT_DEV` set).
fn system_specs(host: &HostFacts) -> Vec<Spec> {
    let mut specs = vec![
        Spec { dest: "/proc".into(), what: What::Proc, mountpoint: NodeKind::Dir, read_only: false },
        bind("/sys", "/sys", NodeKind::Dir, true),
        Spec {
            dest: "/dev".into(),
            what: What::Tmpfs { mode: 0o755 },
            mountpoint: NodeKind::Dir,
            read_only: true,
        },
    ];
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let path = Path::new("/dev").join(node);
        specs.push(bind(&path, &path, NodeKind::File, false));
    }
    specs.push(Spec {
        dest: "/dev/pts".into(),
        what: What::Devpts,
        mountpoint: NodeKind::Dir,
        read_only: false,
    });
    // The container's devpts is its own, so the caller's terminal (a host /dev/pts/N) has no
    // name inside and ttyname() fails ("not a tty"); glibc's fallback scan of /dev finds it
    // here, where LXC and Docker put a container's terminal too.
    if let Some(tty) = &host.terminal {
        specs.push(bind(tty, "/dev/console", NodeKind::File, false));
    }
    // MPI ranks of one job talk through POSIX shared memory in /dev/shm: it must be the host's.
    if host.has_dev_shm {
        specs.push(bind("/dev/shm", "/dev/shm", NodeKind::Dir, false));
    }
    if host.has_infiniband {
        specs.push(bind("/dev/infiniband", "/dev/infiniband", NodeKind::Dir, false));
    }
    specs
}

/// The host PID namespace's `/proc`: the host's, bound recursively, with the existing
/// [`PROC_READ_ONLY`] paths bound read-only over it (see the module documentation).
fn use_host_proc(specs: &mut Vec<Spec>, host: &HostFacts) {
    for spec in specs.iter_mut().filter(|s| s.what == What::Proc) {
        *spec = bind("/proc", "/proc", NodeKind::Dir, false);
    }
    for (path, kind) in
        PROC_READ_ONLY.iter().filter(|(p, _)| host.proc_read_only.iter().any(|h| h == Path::new(p)))
    {
        specs.push(bind(path, path, *kind, true));
    }
}

/// `$HOME`, the working directory, `/tmp`, `/etc/hosts`, `/etc/resolv.conf`.
fn default_bind_specs(req: &RunRequest, host: &HostFacts, who: &Identity) -> Vec<Spec> {
    let mut specs = Vec::new();
    if req.contain {
        specs.push(Spec {
            dest: "/tmp".into(),
            what: What::Tmpfs { mode: 0o1777 },
            mountpoint: NodeKind::Dir,
            read_only: false,
        });
    } else {
        specs.push(bind("/tmp", "/tmp", NodeKind::Dir, false));
    }
    // `--home SRC[:DST]` is bound whatever else is asked (Apptainer: also with --contain).
    // Otherwise, under --fakeroot as root the caller's home is bound at /root, HOME's value
    // (Apptainer's choice); a non-root image user keeps it at its own path.
    let (home_src, home_dest, home_bound) = match &req.home {
        Some(h) => (h.source.as_path(), h.dest.as_path(), true),
        None => (
            host.home.as_path(),
            if req.fakeroot && who.uid == 0 { Path::new("/root") } else { host.home.as_path() },
            !req.contain && !req.no_home && host.home_is_dir && !is_system_dir(&host.home),
        ),
    };
    if home_bound {
        specs.push(bind(home_src, home_dest, NodeKind::Dir, false));
    } else if req.contain
        && home_dest.is_absolute()
        && !is_system_dir(home_dest)
        && !is_in_os_tree(home_dest)
        && !home_dest.starts_with("/tmp")
    {
        // Not where another mount provides the directory (HOME=/tmp: the private /tmp tmpfs
        // is home enough) nor in the system's trees (HOME=/dev/null, /var/lib/x).
        // Apptainer's --contain: an empty home instead of the host's, so that programs that
        // write dotfiles still work (HOME pointed at a directory the image does not have).
        specs.push(Spec {
            dest: home_dest.to_path_buf(),
            what: What::Tmpfs { mode: 0o700 },
            mountpoint: NodeKind::Dir,
            read_only: false,
        });
    }
    if let Some(cwd) = host.cwd.as_ref().filter(|_| !req.contain) {
        let in_home = home_bound && home_dest == home_src && cwd.starts_with(home_src);
        let covered = in_home || cwd.starts_with("/tmp");
        if !covered && !is_system_dir(cwd) && !is_in_os_tree(cwd) {
            specs.push(bind(cwd, cwd, NodeKind::Dir, false));
        }
    }
    for (present, file) in [(host.has_etc_hosts, "/etc/hosts"), (host.has_resolv_conf, "/etc/resolv.conf")] {
        if present {
            specs.push(bind(file, file, NodeKind::File, true));
        }
    }
    // A PMIx server (slurmstepd under `srun --mpi=pmix`) keeps the job's shared-memory datastore
    // there and names it in PMIX_DSTORE_*_BASE_PATH; ranks that cannot map it print "PMIX
    // ERROR" lines and fall back to asking the server. pyxis binds it for the same reason.
    if let Some(dir) = host.pmix_server_tmpdir.as_ref().filter(|d| !is_system_dir(d)) {
        specs.push(bind(dir, dir, NodeKind::Dir, false));
    }
    specs
}

fn is_system_dir(path: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|d| Path::new(d) == path)
}

/// Trees that belong to the operating system, in the image as on the host. The caller's
/// directory is never bound when it lies in one: from `/usr/bin` that would put the host's
/// binaries over the image's (Apptainer does not bind such a directory either). `/var/tmp` is
/// scratch space, not the system's.
const OS_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys",
    "/usr", "/var",
];

fn is_in_os_tree(path: &Path) -> bool {
    OS_TREES.iter().any(|t| path.starts_with(t)) && !path.starts_with("/var/tmp")
}

/// `--pwd`, else the caller's directory when it is visible at the same path inside (bound), else
/// the image's WorkingDir, else `/`.
fn working_dir(req: &RunRequest, host: &HostFacts, config: &RunConfig, specs: &[Spec]) -> PathBuf {
    if let Some(pwd) = &req.pwd {
        return pwd.clone();
    }
    let visible = |cwd: &Path| {
        specs.iter().any(|s| match &s.what {
            What::Bind { source, .. } => {
                source == &s.dest && cwd.starts_with(&s.dest) && s.mountpoint == NodeKind::Dir
            }
            _ => false,
        }) && !cwd.starts_with("/dev")
            && !cwd.starts_with("/sys")
            && !cwd.starts_with("/proc")
    };
    if let Some(cwd) = host.cwd.as_ref().filter(|c| visible(c)) {
        return cwd.clone();
    }
    match config.working_dir.as_deref() {
        Some(dir) if dir.starts_with('/') => PathBuf::from(dir),
        _ => PathBuf::from("/"),
    }
}

/// The caller's identity inside, for the generated `/etc/passwd` and `/etc/group`.
struct Accounts {
    user: String,
    group: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
    /// The identity is the image's own User: its account files are used unchanged.
    image_user: bool,
}

impl Accounts {
    fn new(host: &HostFacts, who: &Identity) -> Accounts {
        let (user, group) = if who.uid == 0 {
            ("root".into(), "root".into())
        } else {
            (host.user_name.clone(), host.group_name.clone())
        };
        Accounts { user, group, uid: who.uid, gid: who.gid, home: who.home.clone(), image_user: who.switch }
    }
}

/// Name and numeric id (third field) of a passwd or group line.
fn entry(line: &str) -> (&str, Option<u32>) {
    let mut fields = line.split(':');
    let name = fields.next().unwrap_or("");
    (name, fields.nth(1).and_then(|id| id.parse().ok()))
}

/// The image's passwd with the caller's entry in place of any that shares its name or uid, so
/// `id`, `whoami` and `ls -l` name the caller. Root keeps the image's own root entry.
pub fn passwd_with_caller(image: Option<&str>, user: &str, uid: u32, gid: u32, home: &Path) -> String {
    let image = image.unwrap_or("");
    let already = image.lines().any(|l| entry(l) == (user, Some(uid)));
    let mut out: String = image
        .lines()
        .filter(|l| {
            already || {
                let (n, u) = entry(l);
                n != user && u != Some(uid)
            }
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    if !already {
        out.push_str(&format!("{user}:x:{uid}:{gid}:{user}:{}:/bin/sh\n", home.display()));
    }
    out
}

/// The image's group file with the caller's primary group in place of any sharing its name or gid.
pub fn group_with_caller(image: Option<&str>, group: &str, gid: u32) -> String {
    let image = image.unwrap_or("");
    let already = image.lines().any(|l| entry(l) == (group, Some(gid)));
    let mut out: String = image
        .lines()
        .filter(|l| {
            already || {
                let (n, g) = entry(l);
                n != group && g != Some(gid)
            }
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    if !already {
        out.push_str(&format!("{group}:x:{gid}:\n"));
    }
    out
}

/// Joins a container path below a staging directory (`/newroot`, `/upper`).
fn under(base: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::from(base);
    out.extend(path.components().filter(|c| matches!(c, Component::Normal(_))));
    out
}

/// Emits mkdir ops for every missing ancestor of `path` (below `base`) and then its mount point.
fn make_mountpoint(
    ops: &mut Vec<MountOp>,
    made: &mut BTreeSet<PathBuf>,
    base: &Path,
    path: &Path,
    kind: NodeKind,
) {
    let parts: Vec<_> = path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    let mut current = PathBuf::from(base);
    for (i, part) in parts.iter().enumerate() {
        current.push(part);
        let last = i + 1 == parts.len();
        if !made.insert(current.clone()) {
            continue;
        }
        if last && kind == NodeKind::File {
            ops.push(MountOp::CreateFile { path: current.clone(), mode: 0o644 });
        } else {
            ops.push(MountOp::Mkdir { path: current.clone(), mode: 0o755 });
        }
    }
}

/// The ordered mount operations (see the module documentation for the design).
fn mount_ops(
    req: &RunRequest,
    image: &ImageInfo,
    layout: &Layout,
    specs: &[Spec],
    accounts: &Accounts,
    userns: bool,
) -> Vec<MountOp> {
    let mut staged = vec![
        MountOp::MakePrivate { target: "/".into() },
        MountOp::Staging { target: layout.base.clone() },
        MountOp::Mkdir { path: layout.upper(), mode: 0o755 },
        MountOp::Mkdir { path: layout.work(), mode: 0o755 },
        MountOp::Mkdir { path: layout.root(), mode: 0o755 },
    ];
    let (upper, root) = (layout.upper(), layout.root());
    let mut staged_made = BTreeSet::new();
    // The generated account files go straight into the upper layer: no bind, no mount point.
    make_mountpoint(&mut staged, &mut staged_made, &upper, Path::new("/etc"), NodeKind::Dir);
    let (passwd, group) = if accounts.image_user {
        (image.passwd.clone().unwrap_or_default(), image.group.clone().unwrap_or_default())
    } else {
        (
            passwd_with_caller(
                image.passwd.as_deref(),
                &accounts.user,
                accounts.uid,
                accounts.gid,
                &accounts.home,
            ),
            group_with_caller(image.group.as_deref(), &accounts.group, accounts.gid),
        )
    };
    staged.push(MountOp::WriteFile {
        path: layout.in_upper(Path::new("/etc/passwd")),
        contents: passwd,
        mode: 0o644,
    });
    staged.push(MountOp::WriteFile {
        path: layout.in_upper(Path::new("/etc/group")),
        contents: group,
        mode: 0o644,
    });
    staged_made.extend([layout.in_upper(Path::new("/etc/passwd")), layout.in_upper(Path::new("/etc/group"))]);

    let mut mounts = Vec::new();
    let mut made = BTreeSet::new();
    for (i, spec) in specs.iter().enumerate() {
        // The deepest earlier mount containing this destination decides how its mount point is
        // made: in the upper layer (overlay root), in our own tmpfs, or not at all (host bind).
        let parent = specs[..i]
            .iter()
            .filter(|p| spec.dest.starts_with(&p.dest))
            .max_by_key(|p| p.dest.components().count());
        match parent.map(|p| &p.what) {
            None => make_mountpoint(&mut staged, &mut staged_made, &upper, &spec.dest, spec.mountpoint),
            Some(What::Tmpfs { .. }) => {
                make_mountpoint(&mut mounts, &mut made, &root, &spec.dest, spec.mountpoint)
            }
            Some(_) => {}
        }
        mounts.push(mount_op(layout, spec));
        if spec.dest == Path::new("/dev/pts") {
            mounts.push(MountOp::Symlink {
                target: "pts/ptmx".into(),
                link: layout.in_root(Path::new("/dev/ptmx")),
            });
        }
    }
    for (target, link) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ] {
        mounts.push(MountOp::Symlink {
            target: target.into(),
            link: layout.in_root(&Path::new("/dev").join(link)),
        });
    }
    staged.push(MountOp::Overlay {
        lower: image.rootfs.clone(),
        upper: layout.upper(),
        work: layout.work(),
        target: layout.root(),
        userxattr: userns,
    });
    staged.extend(mounts);
    // Read-only remounts come last: anything created below a mount must exist before it freezes.
    if !req.writable_tmpfs {
        staged.push(MountOp::ReadOnly { target: layout.root(), recursive: false });
    }
    for spec in specs.iter().filter(|s| s.read_only) {
        let recursive = matches!(spec.what, What::Bind { recursive: true, .. });
        staged.push(MountOp::ReadOnly { target: layout.in_root(&spec.dest), recursive });
    }
    staged.push(MountOp::PivotRoot { new_root: layout.root() });
    staged
}

/// CDI `create-symlinks` links go into the upper layer before the overlay is mounted, like the
/// account files: the shared rootfs is never written.
fn stage_symlinks(ops: &mut Vec<MountOp>, layout: &Layout, links: &[(PathBuf, PathBuf)]) {
    let Some(at) = ops.iter().position(|op| matches!(op, MountOp::Overlay { .. })) else { return };
    let mut staged = Vec::new();
    let mut made = BTreeSet::new();
    for (target, link) in links.iter().filter(|(_, l)| l.is_absolute()) {
        if let Some(parent) = link.parent().filter(|p| *p != Path::new("/")) {
            make_mountpoint(&mut staged, &mut made, &layout.upper(), parent, NodeKind::Dir);
        }
        staged.push(MountOp::Symlink { target: target.clone(), link: layout.in_upper(link) });
    }
    ops.splice(at..at, staged);
}

/// The image's WorkingDir, missing from the image, is made as Podman makes it at start: in the
/// upper layer before the overlay is mounted (the shared rootfs is never written) or, below a
/// tmpfs of ours, in that tmpfs once it is mounted. Below a bind it is left alone: that is a
/// host directory, and gpurun never changes the host (the chdir then fails, naming the path).
fn make_working_dir(ops: &mut Vec<MountOp>, layout: &Layout, specs: &[Spec], dir: &Path) {
    let covering =
        specs.iter().filter(|s| dir.starts_with(&s.dest)).max_by_key(|s| s.dest.components().count());
    let mut made = BTreeSet::new();
    let mut new_ops = Vec::new();
    let at = match covering.map(|s| &s.what) {
        None => {
            make_mountpoint(&mut new_ops, &mut made, &layout.upper(), dir, NodeKind::Dir);
            ops.iter().position(|op| matches!(op, MountOp::Overlay { .. }))
        }
        Some(What::Tmpfs { .. }) => {
            make_mountpoint(&mut new_ops, &mut made, &layout.root(), dir, NodeKind::Dir);
            ops.iter().position(|op| matches!(op, MountOp::ReadOnly { .. } | MountOp::PivotRoot { .. }))
        }
        Some(_) => None,
    };
    if let Some(at) = at {
        ops.splice(at..at, new_ops);
    }
}

fn mount_op(layout: &Layout, spec: &Spec) -> MountOp {
    let target = layout.in_root(&spec.dest);
    match &spec.what {
        What::Bind { source, recursive } => {
            MountOp::Bind { source: source.clone(), target, recursive: *recursive }
        }
        What::Tmpfs { mode } => MountOp::Tmpfs { target, mode: *mode },
        What::Proc => MountOp::Proc { target },
        What::Devpts => MountOp::Devpts { target },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::FileBind;
    use crate::request::BindSpec;

    fn build(req: &RunRequest, host: &HostFacts, image: &ImageInfo) -> Result<LaunchPlan, PlanError> {
        super::build(req, host, image, &GpuEdits::default())
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
            env: vec![
                ("PATH".into(), "/host/bin".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("FOO".into(), "host".into()),
                ("BAR".into(), "host".into()),
                ("TERM".into(), "xterm".into()),
                ("https_proxy".into(), "http://proxy:3128".into()),
                ("GPURUN_ENV_BAR".into(), "prefixed".into()),
                ("GPURUN_CACHE_DIR".into(), "/c".into()),
                ("LD_LIBRARY_PATH".into(), "/host/lib".into()),
            ],
            has_etc_hosts: true,
            has_resolv_conf: true,
            has_dev_shm: true,
            has_infiniband: false,
            terminal: None,
            pmix_server_tmpdir: None,
            proc_read_only: vec!["/proc/sys".into(), "/proc/sysrq-trigger".into()],
            subids: None,
            staging: "/staging".into(),
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
        let config =
            RunConfig { entrypoint: vec!["/ep".into()], cmd: vec!["c".into()], ..RunConfig::default() };
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
                BindSpec {
                    source: "/data".into(),
                    dest: "/mnt/a".into(),
                    read_only: false,
                    kind: NodeKind::Dir,
                },
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
        let last_mount = ops
            .iter()
            .rposition(|op| target_of(op).is_some() || matches!(op, MountOp::Symlink { .. }))
            .unwrap();
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
            ("SINGULARITYENV_X".into(), "singularity".into()),
            ("APPTAINERENV_X".into(), "apptainer".into()),
            ("APPTAINERENV_Y".into(), "y".into()),
            ("AWS_SECRET".into(), "s".into()),
            ("TOKEN".into(), "t".into()),
        ]);
        let req = RunRequest { no_env: vec!["TOKEN".into(), "AWS_*".into()], ..RunRequest::default() };
        let plan = build(&req, &h, &image()).unwrap();
        assert_eq!(
            env_of(&plan, "X").as_deref(),
            Some("apptainer"),
            "APPTAINERENV_ wins over SINGULARITYENV_"
        );
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
            plan.mounts
                .iter()
                .position(|op| matches!(op, MountOp::Mkdir { path: p, .. } if p == Path::new(path)))
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
        let contained =
            build(&RunRequest { contain: true, ..RunRequest::default() }, &host(), &image()).unwrap();
        assert_eq!(contained.cwd, Path::new("/app"), "image WorkingDir when cwd is not bound");
        assert!(contained.mounts.iter().any(
            |op| matches!(op, MountOp::Tmpfs { target, mode: 0o1777 } if target == Path::new("/staging/newroot/tmp"))
        ));
        assert!(!contained.mounts.iter().any(
            |op| matches!(op, MountOp::Bind { target, .. } if target.starts_with("/staging/newroot/home"))
        ));
        assert!(
            contained.mounts.iter().any(|op| matches!(op, MountOp::Tmpfs { target, mode: 0o700 }
                if target == Path::new("/staging/newroot/home/alice"))),
            "--contain gives an empty home"
        );
        let mut bare = image();
        bare.config.working_dir = None;
        let plan = build(&RunRequest { contain: true, ..RunRequest::default() }, &host(), &bare).unwrap();
        assert_eq!(plan.cwd, Path::new("/"));
        let pwd = build(&RunRequest { pwd: Some("/x".into()), ..RunRequest::default() }, &host(), &image())
            .unwrap();
        assert_eq!(pwd.cwd, Path::new("/x"));
        // The caller's directory inside the OS trees is never bound over the image's own.
        for (dir, bound) in
            [("/usr/bin", false), ("/var/lib/x", false), ("/etc", false), ("/var/tmp/job", true)]
        {
            let h = HostFacts { cwd: Some(dir.into()), ..host() };
            let plan = build(&RunRequest::default(), &h, &image()).unwrap();
            let target = Path::new("/staging/newroot").join(&dir[1..]);
            let has =
                plan.mounts.iter().any(|op| matches!(op, MountOp::Bind { target: t, .. } if *t == target));
            assert_eq!(has, bound, "cwd {dir}");
            assert_eq!(plan.cwd, if bound { Path::new(dir) } else { Path::new("/app") }, "cwd {dir}");
        }
        let writable =
            build(&RunRequest { writable_tmpfs: true, ..RunRequest::default() }, &host(), &image()).unwrap();
        assert!(!writable.mounts.iter().any(
            |op| matches!(op, MountOp::ReadOnly { target, .. } if target == Path::new("/staging/newroot"))
        ));
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
                MountOp::WriteFile { path, contents, .. } if path.ends_with("passwd") => {
                    Some(contents.clone())
                }
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
        };
        let req = RunRequest {
            env_vars: vec![("LD_LIBRARY_PATH".into(), "/opt/lib".into())],
            ..RunRequest::default()
        };
        let plan = super::build(&req, &host(), &image(), &gpu).unwrap();
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
            !ops.iter()
                .any(|op| matches!(op, MountOp::ReadOnly { target, .. } if target == Path::new(render)))
        );
        let link = index(
            ops,
            |op| matches!(op, MountOp::Symlink { link, .. } if link == Path::new("/staging/upper/usr/lib/libcuda.so")),
        );
        assert!(link < pos("/staging/newroot"));
        assert_eq!(env_of(&plan, "PATH").as_deref(), Some("/opt/bin:/usr/bin:/.gpurun/bin"));
        assert_eq!(
            env_of(&plan, "LD_LIBRARY_PATH").as_deref(),
            Some("/opt/lib:/.gpurun/lib"),
            "--env extended"
        );
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
        let rest =
            |p: &LaunchPlan| p.mounts.iter().filter(|op| !touches_proc(op)).cloned().collect::<Vec<_>>();
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
            !plan
                .mounts
                .iter()
                .any(|op| target_of(op).is_some_and(|t| t.starts_with("/staging/newroot/var")))
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
        let passwd =
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nodd:x:12a:1::/:/bin/sh\n";
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
        sub.subids = Some(crate::request::SubIds {
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
}
