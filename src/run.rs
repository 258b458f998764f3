//! The run stage's entry point: gathers the host's facts, validates the request, reads what the
//! planner needs from the image (in-root, never following a symlink out of it), builds the plan
//! and either prints it (`--dry-run`) or hands it to the sandbox. It owns the mapping from
//! outcomes to gpurun's exit status, except 125 for its own errors, which `main` applies.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::cli::RunArgs;
use crate::gpu::{self, GpuEdits, GpuError, HostPaths};
use crate::host::{HostFacts, NodeKind, ProcessEnv};
use crate::inroot::Root;
use crate::plan::{self, ImageInfo, Layout, PlanError};
use crate::prepare::Prepared;
use crate::request::{RequestError, RunRequest};
use crate::sandbox::{self, SandboxError};
use crate::ui::Ui;

/// Why gpurun could not run the workload (gpurun exits 125 for all of these).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("open the image root filesystem {}", path.display())]
    Rootfs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind {} onto {}: {}", src.display(), dest.display(), if *src_is_dir {
        "a directory onto what is a file in the image"
    } else {
        "a file onto what is a directory in the image"
    })]
    BindKind { src: PathBuf, dest: PathBuf, src_is_dir: bool },
    #[error("print the launch plan")]
    PrintPlan(#[source] io::Error),
    #[error("keep the image's cache lock open for the workload")]
    Lease(#[source] io::Error),
}

impl RunError {
    /// How to fix it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            RunError::Request(e) => e.hint(),
            RunError::Plan(e) => e.hint(),
            RunError::Sandbox(e) => e.hint(),
            RunError::Gpu(e) => e.hint(),
            RunError::Rootfs { .. } => {
                Some("IMAGE must be an image archive or a root filesystem directory".into())
            }
            RunError::BindKind { .. } => {
                Some("bind onto a destination of the same kind, or one the image does not have".into())
            }
            RunError::PrintPlan(_) | RunError::Lease(_) => None,
        }
    }
}

/// Checks the command line against the host before anything else happens: malformed `--env`,
/// unreadable `--env-file`, missing bind sources and conflicting flags fail here, before the
/// image is opened or unpacked and before anything forks. Returns the request and the host
/// facts it was checked against, both needed by [`execute`].
pub fn validate(args: &RunArgs, env: &ProcessEnv) -> Result<(RunRequest, HostFacts), RunError> {
    let mut host = HostFacts::gather(args.fakeroot, env);
    let request = RunRequest::from_args(args, &host)?;
    if request.pid_ns.mode == crate::request::PidNamespace::Host {
        host.probe_proc_read_only();
    }
    if request.writable_tmpfs {
        host.probe_fuse_overlayfs();
    }
    Ok((request, host))
}

/// Runs `request` in `prepared` and returns the status gpurun should exit with: the workload's
/// own; 128+N if it was killed by signal N; 127 (with a message naming the command) when the
/// command is not in the image; 126 when it cannot be executed. `--dry-run` prints the launch
/// plan as JSON and returns 0. `prepared` (and its cache lease) is held until the workload has
/// exited. The container is assembled on `staging`, an empty directory of gpurun's own (the
/// cache's `mnt`; see `plan::Layout`). `join_secret` is the cache's ([`crate::cache::Cache::join_secret`])
/// when the run is to share its container.
///
/// Must be called while gpurun is single-threaded: the sandbox's children run on its memory and allocate.
pub fn execute(
    request: &RunRequest,
    host: &HostFacts,
    staging: &Path,
    join_secret: Option<[u8; 32]>,
    prepared: Prepared,
    ui: &Ui,
) -> Result<i32, RunError> {
    let (image, root) = image_info(&prepared)?;
    check_bind_kinds(request, host, &image, &root)?;
    let gpu = gpu_edits(request, host, &image, &root, prepared.memo_dir.as_deref())?;
    for warning in &gpu.warnings {
        ui.warn(warning);
    }
    for notice in &gpu.notices {
        ui.notice(notice);
    }
    let plan = plan::build(request, host, &image, &gpu, Layout { base: staging.to_owned() })?;
    tracing::debug!(mounts = plan.mounts.len(), cwd = %plan.cwd.display(), "launch plan ready");
    if request.dry_run {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &plan).map_err(|e| RunError::PrintPlan(e.into()))?;
        writeln!(out).map_err(RunError::PrintPlan)?;
        return Ok(0);
    }
    if !plan.namespaces.contains(&plan::Namespace::Pid) {
        keep_lease_across_exec(&prepared)?;
    }
    if request.join.explicit && plan.join.key.is_none() {
        ui.warn(&format!("--join: this run gets a container of its own: {}", plan.join.reason));
    }
    let code = sandbox::launch(&plan, join_secret.as_ref(), &mut |why| ui.warn(why))?;
    drop(prepared);
    Ok(code)
}

/// In the host PID namespace gpurun execs the workload in place, so nothing of gpurun's stays
/// to hold the cache lease. The shared flock belongs to the open file description and lasts
/// while any descriptor to it is open (flock(2)): clearing `FD_CLOEXEC` hands it to the workload
/// and whatever it forks, and `gpurun rm` and `prune` leave the rootfs alone until the last of
/// them exits. The price is one extra open descriptor in the workload.
fn keep_lease_across_exec(prepared: &Prepared) -> Result<(), RunError> {
    let Some(lease) = &prepared.lease else { return Ok(()) };
    rustix::io::fcntl_setfd(lease, rustix::io::FdFlags::empty()).map_err(|e| RunError::Lease(e.into()))
}

/// Discovers the host's GPUs and what the image lacks, for `--rocm`, `--nv` and `--device`.
/// The vendors' selection variables are read from the workload's environment as the one merge
/// makes it ([`plan::before_gpu`]), Slurm's allocation from the host's.
fn gpu_edits(
    request: &RunRequest,
    host: &HostFacts,
    image: &ImageInfo,
    root: &Root,
    memo_dir: Option<&Path>,
) -> Result<GpuEdits, RunError> {
    if request.gpu.is_empty() {
        return Ok(GpuEdits::default());
    }
    let env = plan::before_gpu(request, host, &image.config);
    let lib_dirs: Vec<String> = env
        .get("LD_LIBRARY_PATH")
        .filter(|_| image.config.env.iter().any(|e| e.starts_with("LD_LIBRARY_PATH=")))
        .map(|v| v.split(':').filter(|d| d.starts_with('/')).map(str::to_string).collect())
        .unwrap_or_default();
    let view = gpu::image::RootfsView::read(&image.rootfs, &lib_dirs);
    let host_paths = HostPaths::default();
    let ctx = gpu::edits::Context {
        host: &host_paths,
        host_env: &host.env,
        env: &env,
        image: &view,
        lists: gpu::edits::ListExtensions::from_env(&host.env).or(&request.gpu.lists),
        image_targets: &|| gpu::devcode::memoized(root, &image_lib_dirs(image), memo_dir),
    };
    let shared = plan::join(request, host)?.key.is_some();
    let mut edits = gpu::prepare(&gpu::GpuRequest { shared, ..request.gpu.clone() }, &ctx)?;
    edits.warnings.extend(view.warnings.iter().cloned());
    Ok(edits)
}

/// The absolute directories of the image's own `LD_LIBRARY_PATH` (its configuration's, not this
/// run's): what the device-code scan, whose answer is remembered with the image, may read.
fn image_lib_dirs(image: &ImageInfo) -> Vec<String> {
    let value = image.config.env.iter().rev().find_map(|e| e.strip_prefix("LD_LIBRARY_PATH="));
    value
        .map(|v| v.split(':').filter(|d| d.starts_with('/')).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The image settings plus its `/etc/passwd` and `/etc/group`, read with `RESOLVE_IN_ROOT` so an
/// absolute symlink in the image cannot make gpurun read a host file.
/// Returns the image's root too, opened once for every in-root read of this start.
fn image_info(prepared: &Prepared) -> Result<(ImageInfo, Root), RunError> {
    // Absolute without resolving symlinks (a directory image was canonicalized when it was
    // found; a cache entry's path is under the absolute cache root): realpath costs a readlink
    // per component on every start.
    let rootfs = std::path::absolute(&prepared.rootfs)
        .map_err(|source| RunError::Rootfs { path: prepared.rootfs.clone(), source })?;
    let root = Root::open(&rootfs).map_err(|source| RunError::Rootfs { path: rootfs.clone(), source })?;
    // Only a WorkingDir that is simply absent is made; one that a symlink loop or a file stands
    // in the way of fails at the chdir, naming it, as before.
    let workdir_missing = prepared
        .config
        .working_dir
        .as_deref()
        .is_some_and(|w| w.starts_with('/') && root.lookup(w) == Err(rustix::io::Errno::NOENT));
    let info = ImageInfo {
        passwd: account_file(&root, "/etc/passwd"),
        group: account_file(&root, "/etc/group"),
        rootfs,
        config: prepared.config.clone(),
        workdir_missing,
    };
    Ok((info, root))
}

/// A bind of a directory onto what the image has as a file (or the reverse) would silently
/// replace the image's node (`-B dir:/bin/sh` made /bin/sh a directory); Docker refuses both.
/// Only destinations the image decides are checked ([`plan::binds_onto_image`]); one the image
/// does not have is made by the sandbox.
fn check_bind_kinds(
    request: &RunRequest,
    host: &HostFacts,
    image: &ImageInfo,
    root: &Root,
) -> Result<(), RunError> {
    for b in plan::binds_onto_image(request, host, image)? {
        let Some(kind) = root.file_type(&b.dest.to_string_lossy()) else { continue };
        let is_dir = kind == rustix::fs::FileType::Directory;
        let src_is_dir = b.kind == NodeKind::Dir;
        if src_is_dir != is_dir {
            return Err(RunError::BindKind { src: b.source.clone(), dest: b.dest.clone(), src_is_dir });
        }
    }
    Ok(())
}

/// The most of an image's `/etc/passwd` or `/etc/group` gpurun reads (a real one is a few KiB).
pub const ACCOUNT_FILE_CAP: u64 = 1 << 20;

/// Reads a small account file of the image. The image is untrusted (CVE-2024-9676: a
/// `/etc/passwd` symlinked to `/dev/zero`, or a FIFO, made Podman hang or exhaust memory): it is
/// read through the in-root reader, and one that is not a regular file of at most
/// [`ACCOUNT_FILE_CAP`] bytes, or not UTF-8, counts as absent.
fn account_file(root: &Root, path: &str) -> Option<String> {
    match root.read(path, ACCOUNT_FILE_CAP) {
        Ok(bytes) => String::from_utf8(bytes).ok(),
        Err(e) => {
            if !e.is_not_found() {
                tracing::debug!(error = %e, "ignoring the image's account file");
            }
            None
        }
    }
}
