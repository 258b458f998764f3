//! Which mounts the container gets (specs), and the ordered operations that make them.
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

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::gpu::GpuEdits;
use crate::host::{HostFacts, NodeKind, PROC_READ_ONLY};
use crate::image::RunConfig;
use crate::request::{PidNamespace, RunRequest};

use super::accounts::{Accounts, group_with_caller, passwd_with_caller};
use super::identity::Identity;
use super::{ImageInfo, Layout, MountOp, MountPointSpec, RootKind};

/// Directories whose host copy is never bound as the working directory (they are the image's).
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/opt", "/proc", "/root", "/run",
    "/sbin", "/srv", "/sys", "/usr", "/var",
];

/// A mount before ordering: what goes where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Spec {
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
/// `shared`: the container is shared by the ranks of a job (`super::join`).
pub(super) fn specs(
    req: &RunRequest,
    host: &HostFacts,
    who: &Identity,
    gpu: &GpuEdits,
    shared: bool,
) -> Vec<Spec> {
    let mut specs = system_specs(host, shared);
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

/// `/proc`, read-only `/sys`, and a minimal `/dev` (the enroot `ENROOT_RESTRICT_DEV` set);
/// `shared`: the container is shared by the ranks of a job (`crate::join`).
fn system_specs(host: &HostFacts, shared: bool) -> Vec<Spec> {
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
    // here, where LXC and Docker put a container's terminal too. A container its job's ranks
    // share has no one terminal (each rank has its own under mpirun), so no console.
    if let Some(tty) = host.terminal.as_ref().filter(|_| !shared) {
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
pub(super) fn working_dir(req: &RunRequest, host: &HostFacts, config: &RunConfig, specs: &[Spec]) -> PathBuf {
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

/// What [`ops`] needs besides the specs.
pub(super) struct Inputs<'a> {
    pub req: &'a RunRequest,
    pub image: &'a ImageInfo,
    pub layout: &'a Layout,
    pub accounts: &'a Accounts,
    /// The overlay is mounted with `userxattr` (in a user namespace, where the kernel knows it).
    pub userxattr: bool,
    /// Overlay or bind assembly.
    pub root: RootKind,
    /// fuse-overlayfs, for [`RootKind::FuseOverlay`].
    pub fuse_overlayfs: Option<&'a Path>,
    /// CDI `create-symlinks` links, (target, link).
    pub symlinks: &'a [(PathBuf, PathBuf)],
    /// The image's WorkingDir, to be made (see [`Ops::working_dir`]).
    pub make_dir: Option<&'a Path>,
}

/// The ordered mount operations (see the module documentation for the design).
pub(super) fn ops(specs: &[Spec], inputs: &Inputs) -> Vec<MountOp> {
    let mut ops = Ops::new(inputs.layout);
    ops.account_files(inputs.image, inputs.accounts);
    ops.mounts(specs);
    ops.symlinks(inputs.symlinks);
    if let Some(dir) = inputs.make_dir {
        ops.working_dir(specs, dir);
    }
    ops.finish(specs, inputs)
}

/// The operations in their two phases: `staged` runs before the overlay is mounted (on the
/// staging tmpfs and the overlay's upper directory), `mounts` after it (below the new root).
struct Ops<'a> {
    layout: &'a Layout,
    staged: Vec<MountOp>,
    staged_made: BTreeSet<PathBuf>,
    mounts: Vec<MountOp>,
    made: BTreeSet<PathBuf>,
}

impl<'a> Ops<'a> {
    fn new(layout: &'a Layout) -> Ops<'a> {
        let staged = vec![
            MountOp::MakePrivate { target: "/".into() },
            MountOp::Staging { target: layout.base.clone() },
            MountOp::Mkdir { path: layout.upper(), mode: 0o755 },
            MountOp::Mkdir { path: layout.work(), mode: 0o755 },
            MountOp::Mkdir { path: layout.root(), mode: 0o755 },
        ];
        Ops { layout, staged, staged_made: BTreeSet::new(), mounts: Vec::new(), made: BTreeSet::new() }
    }

    /// A mount point (and its missing ancestors) in the upper layer.
    fn in_upper(&mut self, path: &Path, kind: NodeKind) {
        make_mountpoint(&mut self.staged, &mut self.staged_made, &self.layout.upper(), path, kind);
    }

    /// A mount point below the new root, in a tmpfs of ours mounted earlier.
    fn in_tmpfs(&mut self, path: &Path, kind: NodeKind) {
        make_mountpoint(&mut self.mounts, &mut self.made, &self.layout.root(), path, kind);
    }

    /// The generated account files go straight into the upper layer: no bind, no mount point.
    fn account_files(&mut self, image: &ImageInfo, accounts: &Accounts) {
        self.in_upper(Path::new("/etc"), NodeKind::Dir);
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
        for (name, contents) in [("/etc/passwd", passwd), ("/etc/group", group)] {
            let path = self.layout.in_upper(Path::new(name));
            self.staged_made.insert(path.clone());
            self.staged.push(MountOp::WriteFile { path, contents, mode: 0o644 });
        }
    }

    fn mounts(&mut self, specs: &[Spec]) {
        for (i, spec) in specs.iter().enumerate() {
            // The deepest earlier mount containing this destination decides how its mount point
            // is made: in the upper layer (overlay root), in our own tmpfs, or not at all (a host
            // bind: the directory is the host's, and gpurun never changes the host).
            match covering(&specs[..i], &spec.dest).map(|p| &p.what) {
                None => self.in_upper(&spec.dest, spec.mountpoint),
                Some(What::Tmpfs { .. }) => self.in_tmpfs(&spec.dest, spec.mountpoint),
                Some(_) => {}
            }
            self.mounts.push(mount_op(self.layout, spec));
            if spec.dest == Path::new("/dev/pts") {
                let link = self.layout.in_root(Path::new("/dev/ptmx"));
                self.mounts.push(MountOp::Symlink { target: "pts/ptmx".into(), link });
            }
        }
        for (target, link) in [
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
        ] {
            let link = self.layout.in_root(&Path::new("/dev").join(link));
            self.mounts.push(MountOp::Symlink { target: target.into(), link });
        }
    }

    /// CDI `create-symlinks` links go into the upper layer, like the account files: the shared
    /// rootfs is never written.
    fn symlinks(&mut self, links: &[(PathBuf, PathBuf)]) {
        for (target, link) in links.iter().filter(|(_, l)| l.is_absolute()) {
            if let Some(parent) = link.parent().filter(|p| *p != Path::new("/")) {
                self.in_upper(parent, NodeKind::Dir);
            }
            self.staged.push(MountOp::Symlink { target: target.clone(), link: self.layout.in_upper(link) });
        }
    }

    /// The image's WorkingDir, missing from the image, is made as Podman makes it at start: in
    /// the upper layer (the shared rootfs is never written) or, below a tmpfs of ours, in that
    /// tmpfs once it is mounted. Below a bind it is left alone: that is a host directory, and
    /// gpurun never changes the host (the chdir then fails, naming the path).
    fn working_dir(&mut self, specs: &[Spec], dir: &Path) {
        match covering(specs, dir).map(|s| &s.what) {
            None => self.in_upper(dir, NodeKind::Dir),
            Some(What::Tmpfs { .. }) => self.in_tmpfs(dir, NodeKind::Dir),
            Some(_) => {}
        }
    }

    /// Staged operations, the overlay, the mounts, then the read-only remounts (last: anything
    /// created below a mount must exist before it freezes) and the pivot.
    fn finish(mut self, specs: &[Spec], inputs: &Inputs) -> Vec<MountOp> {
        let layout = self.layout;
        match inputs.root {
            RootKind::Overlay => self.staged.push(MountOp::Overlay {
                lower: inputs.image.rootfs.clone(),
                upper: layout.upper(),
                work: layout.work(),
                target: layout.root(),
                userxattr: inputs.userxattr,
            }),
            RootKind::FuseOverlay => self.staged.push(MountOp::FuseOverlay {
                program: inputs.fuse_overlayfs.map(Path::to_path_buf).unwrap_or_default(),
                lower: inputs.image.rootfs.clone(),
                upper: layout.upper(),
                work: layout.work(),
                target: layout.root(),
            }),
            RootKind::Bind => {
                self.staged = bind_assembly(std::mem::take(&mut self.staged), &inputs.image.rootfs, layout);
            }
        }
        self.staged.push(MountOp::Unbindable { target: layout.base.clone() });
        self.staged.append(&mut self.mounts);
        if !inputs.req.writable_tmpfs {
            self.staged.push(MountOp::ReadOnly { target: layout.root(), recursive: false });
        }
        for spec in specs.iter().filter(|s| s.read_only) {
            let recursive = matches!(spec.what, What::Bind { recursive: true, .. });
            self.staged.push(MountOp::ReadOnly { target: layout.in_root(&spec.dest), recursive });
        }
        self.staged.push(MountOp::PivotRoot { new_root: layout.root() });
        self.staged
    }
}

/// The staged operations for bind assembly instead of an overlay: what the overlay path makes in
/// its upper layer becomes the mount points of one [`MountOp::AssembleRoot`] right after the root
/// directory is made (the sandbox opens image directories as needed); generated files are written
/// to the staging tmpfs and bound read-only onto their place after it; symlinks go into
/// directories the assembly made gpurun's own.
fn bind_assembly(staged: Vec<MountOp>, image: &Path, layout: &Layout) -> Vec<MountOp> {
    let upper = layout.upper();
    let files = layout.base.join("files");
    let container = |p: &Path| p.strip_prefix(&upper).ok().map(|r| Path::new("/").join(r));
    let (mut before, mut after) = (Vec::new(), vec![MountOp::Mkdir { path: files.clone(), mode: 0o755 }]);
    let (mut mount_points, mut writable) = (Vec::new(), Vec::new());
    for op in staged {
        match op {
            MountOp::Mkdir { path, .. } if path == upper || path == layout.work() => {}
            MountOp::Mkdir { ref path, mode } | MountOp::CreateFile { ref path, mode }
                if container(path).is_some() =>
            {
                let kind = if matches!(op, MountOp::Mkdir { .. }) { NodeKind::Dir } else { NodeKind::File };
                mount_points.push(MountPointSpec { path: container(path).unwrap_or_default(), kind, mode });
            }
            MountOp::WriteFile { ref path, ref contents, mode } if container(path).is_some() => {
                let at = container(path).unwrap_or_default();
                let file = files.join(format!("{}", after.len()));
                let target = layout.in_root(&at);
                mount_points.push(MountPointSpec { path: at, kind: NodeKind::File, mode: 0o644 });
                after.push(MountOp::WriteFile { path: file.clone(), contents: contents.clone(), mode });
                after.push(MountOp::Bind { source: file, target: target.clone(), recursive: false });
                after.push(MountOp::ReadOnly { target, recursive: false });
            }
            MountOp::Symlink { ref target, ref link } if container(link).is_some() => {
                let at = container(link).unwrap_or_default();
                writable.push(at.parent().unwrap_or(Path::new("/")).to_path_buf());
                after.push(MountOp::Symlink { target: target.clone(), link: layout.in_root(&at) });
            }
            other => before.push(other),
        }
    }
    before.push(MountOp::AssembleRoot {
        image: image.to_path_buf(),
        target: layout.root(),
        mount_points,
        writable,
    });
    before.append(&mut after);
    // Nothing writes into the opened directories after this (later mounts bring their own
    // tmpfs), and freezing by path before the user's mounts cannot reach one of theirs.
    before.push(MountOp::FreezeAssembly);
    before
}

/// Whether a mount of `specs` other than one at `path` itself contains `path`.
pub(super) fn covered(specs: &[Spec], path: &Path) -> bool {
    specs.iter().any(|s| path.starts_with(&s.dest) && s.dest != path)
}

/// The deepest of `specs` whose destination contains `path` (itself included).
fn covering<'s>(specs: &'s [Spec], path: &Path) -> Option<&'s Spec> {
    specs.iter().filter(|s| path.starts_with(&s.dest)).max_by_key(|s| s.dest.components().count())
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
