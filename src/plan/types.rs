//! The plan's types and its error: plain data, which the sandbox applies and `--dry-run` prints.
//! A leaf: it imports nothing of the planner's.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::host::NodeKind;
use crate::image::RunConfig;
use crate::join::JoinChoice;
use crate::request::PidNsChoice;

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
    /// Whether the run shares its container with others of its job on this node
    /// (`sandbox::join` applies it; the mounts are applied by the first of them only).
    pub join: JoinChoice,
    /// Where the container is assembled before the final pivot.
    pub layout: Layout,
    /// How the root is made: overlay or bind assembly.
    pub root: RootKind,
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
    /// Make the staging tmpfs unbindable once the root is made: the cache often lies below a
    /// directory the container binds recursively (`~/.cache` below `$HOME`), and a copy of the
    /// staging tree there would let the workload write into its own root.
    Unbindable {
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
    /// `--writable-tmpfs` without overlayfs: `program` (fuse-overlayfs) serves the same layers
    /// from a daemon the init starts; the init then takes a mount namespace of its own, so
    /// that the pivot leaves the daemon's root where it was (`sandbox::mounts`).
    FuseOverlay {
        program: PathBuf,
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
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
    /// Bind assembly (no overlayfs): a tmpfs at `target` holding read-only binds of the image's
    /// top-level directories and files and copies of its symlinks, with `mount_points` made
    /// (opening the image directories that lack them) and every directory of `writable` made
    /// gpurun's own (`sandbox::assemble`).
    AssembleRoot {
        image: PathBuf,
        target: PathBuf,
        mount_points: Vec<MountPointSpec>,
        writable: Vec<PathBuf>,
    },
    /// Bind assembly: every image directory opened on the way made read-only again.
    FreezeAssembly,
}

/// A node bind assembly makes in the container (a container path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountPointSpec {
    pub path: PathBuf,
    pub kind: NodeKind,
    pub mode: u32,
}

/// How the container root is made, resolved from [`crate::cli::RootMode`] for this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// overlayfs: the image as lower layer, a tmpfs upper layer for mount points and files.
    Overlay,
    /// A tmpfs of read-only binds of the image (`MountOp::AssembleRoot`).
    Bind,
    /// `--writable-tmpfs` where the kernel refuses overlayfs: the overlay's layers served by
    /// fuse-overlayfs (`MountOp::FuseOverlay`).
    FuseOverlay,
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
    #[error("exec needs a COMMAND")]
    ExecNeedsCommand,
    #[error("the image's User {spec:?}: {why}")]
    BadUser { spec: String, why: String },
    #[error("the image's User {spec:?} is uid {uid} gid {gid}, which the user namespace does not map")]
    UserNotMapped { spec: String, uid: u32, gid: u32 },
    #[error(
        "--writable-tmpfs needs fuse-overlayfs here, and it is not on PATH: this run cannot use the kernel's \
         overlayfs ({why})"
    )]
    WritableTmpfsNeedsFuseOverlayfs { why: &'static str },
}

impl PlanError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::NoCommand => Some("name a command after IMAGE, e.g. `gpurun IMAGE /bin/sh`".into()),
            PlanError::ExecNeedsCommand => {
                Some("name one (`gpurun exec IMAGE /bin/sh`), or run the image's runscript with `gpurun run IMAGE`".into())
            }
            PlanError::BadUser { .. } => {
                Some("the image's /etc/passwd and /etc/group must name it; run without --fakeroot to run as yourself".into())
            }
            PlanError::UserNotMapped { .. } => Some(
                "--fakeroot maps only root unless /etc/subuid and /etc/subgid give you a range (and newuidmap/\
                 newgidmap are installed); ask for one, or run without --fakeroot to run as yourself"
                    .into(),
            ),
            PlanError::WritableTmpfsNeedsFuseOverlayfs { .. } => Some(
                "install fuse-overlayfs (Debian/Ubuntu: apt install fuse-overlayfs; RHEL/Rocky/Alma: dnf \
                 install fuse-overlayfs) or put it on PATH; or run without --writable-tmpfs and bind a \
                 writable host directory with -B DIR:/path"
                    .into(),
            ),
        }
    }
}

/// Joins a container path below a staging directory (`/newroot`, `/upper`).
fn under(base: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::from(base);
    out.extend(path.components().filter(|c| matches!(c, Component::Normal(_))));
    out
}
