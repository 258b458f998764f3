//! The pure planner: a validated [`RunRequest`], the host's facts and the image's settings become
//! a [`LaunchPlan`]: id maps, namespaces, an ordered list of mount operations, environment,
//! working directory and argv. No I/O happens here (the caller passes in everything it read), so
//! every ordering rule is a unit test away, and `gpurun --dry-run` prints exactly what will run.
//!
//! | File | Owns |
//! |---|---|
//! | `types.rs` | the plan's types ([`LaunchPlan`], [`MountOp`], [`Layout`]) and [`PlanError`]: a leaf |
//! | `identity.rs` | who the workload is: user namespace maps, the image `User` under `--fakeroot` |
//! | `env.rs` | the one environment merge, with its precedence table |
//! | `mounts.rs` | which mounts the container gets and the ordered operations that make them |
//! | `accounts.rs` | the generated `/etc/passwd` and `/etc/group` |
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

mod accounts;
mod env;
mod identity;
mod mounts;
mod types;

use std::path::Path;

use crate::cli::RootMode;
use crate::gpu::GpuEdits;
use crate::host::{HostFacts, UsernsOverlay};
use crate::image::RunConfig;
use crate::join::JoinChoice;
use crate::request::{BindSpec, PidNamespace, RunRequest};

use accounts::Accounts;

pub use accounts::{group_with_caller, passwd_with_caller};
pub use env::{CLEANENV_KEEP, CONTAINER_VAR, ENV_PREFIX, HOST_ONLY_VARS, SET_PREFIXES, before_gpu};
pub use identity::{parse_id, resolve_user};
pub use types::*;

/// Builds the launch plan. Pure: the same inputs always give the same plan.
pub fn build(
    req: &RunRequest,
    host: &HostFacts,
    image: &ImageInfo,
    gpu: &GpuEdits,
    layout: Layout,
) -> Result<LaunchPlan, PlanError> {
    let argv = argv(req, &image.config)?;
    let user_namespace = identity::user_namespace(req, host);
    let who = identity::identity(req, host, image, user_namespace.as_ref())?;
    let argv = env::apptainer_argv(argv, req, host, &image.config, &who.home, &gpu.env);
    let root = root_kind(req, host, user_namespace.is_some())?;
    let join = join_for(req, root);
    let specs = mounts::specs(req, host, &who, gpu, join.key.is_some());
    let cwd = mounts::working_dir(req, host, &image.config, &specs);
    let make_dir =
        image.workdir_missing && image.config.working_dir.as_deref().is_some_and(|w| cwd == Path::new(w));
    let mounts = mounts::ops(
        &specs,
        &mounts::Inputs {
            req,
            image,
            layout: &layout,
            accounts: &Accounts::new(host, &who),
            userxattr: user_namespace.is_some() && host.overlay_in_userns == UsernsOverlay::UserXattr,
            root,
            fuse_overlayfs: host.fuse_overlayfs.as_deref(),
            symlinks: &gpu.symlinks,
            make_dir: make_dir.then_some(cwd.as_path()),
        },
    );
    // setgroups is denied in a namespace whose maps gpurun wrote itself (see sandbox::idmap).
    let may_setgroups = user_namespace.as_ref().is_none_or(|ns| ns.writer != MapWriter::Direct);
    let switch_user = who.switch.then(|| SwitchUser {
        uid: who.uid,
        gid: who.gid,
        groups: may_setgroups.then(|| vec![who.gid]),
    });
    Ok(LaunchPlan {
        rootfs: image.rootfs.clone(),
        namespaces: namespaces(req, user_namespace.is_some()),
        user_namespace,
        pid_ns: req.pid_ns.clone(),
        join,
        layout,
        root,
        mounts,
        argv,
        env: env::merge(req, host, &image.config, &who.home, &gpu.env),
        cwd,
        uid: who.uid,
        gid: who.gid,
        // A non-root image user runs without capabilities, as in Docker and Podman.
        keep_capabilities: req.fakeroot && who.uid == 0,
        no_new_privs: true,
        switch_user,
    })
}

/// Whether the run shares its container: the one decision the GPU edits ([`crate::gpu`]'s
/// `shared`), the mounts (no console) and the sandbox follow. As the request says, except that
/// a root served by a FUSE daemon dies with the init of the run that made it (`sys::fuse`), so
/// no other run may enter it: each such run keeps a container of its own.
pub fn join(req: &RunRequest, host: &HostFacts) -> Result<JoinChoice, PlanError> {
    let userns = identity::user_namespace(req, host).is_some();
    Ok(join_for(req, root_kind(req, host, userns)?))
}

fn join_for(req: &RunRequest, root: RootKind) -> JoinChoice {
    match (&req.join.key, root) {
        (Some(_), RootKind::FuseOverlay) => JoinChoice {
            key: None,
            reason: "a fuse-overlayfs root (--writable-tmpfs without the kernel's overlayfs) is not shared"
                .into(),
            ..req.join.clone()
        },
        _ => req.join.clone(),
    }
}

/// The root an overlay where the kernel allows one (as real root always; in a user namespace
/// from Linux 5.11), else bind assembly; `--root-mode` decides when given. `--writable-tmpfs`
/// needs an overlay: without the kernel's, fuse-overlayfs's (as Apptainer does).
fn root_kind(req: &RunRequest, host: &HostFacts, userns: bool) -> Result<RootKind, PlanError> {
    let (kind, why) = match req.root_mode {
        RootMode::Overlay => (RootKind::Overlay, ""),
        RootMode::Bind => (RootKind::Bind, "--root-mode bind"),
        RootMode::Auto if userns && host.overlay_in_userns == UsernsOverlay::No => {
            (RootKind::Bind, "this kernel refuses overlayfs in a user namespace (before Linux 5.11)")
        }
        RootMode::Auto => (RootKind::Overlay, ""),
    };
    if kind == RootKind::Bind && req.writable_tmpfs {
        return match host.fuse_overlayfs {
            Some(_) => Ok(RootKind::FuseOverlay),
            None => Err(PlanError::WritableTmpfsNeedsFuseOverlayfs { why }),
        };
    }
    Ok(kind)
}

/// Network, UTS and IPC stay the host's; the PID namespace is private unless asked otherwise.
fn namespaces(req: &RunRequest, userns: bool) -> Vec<Namespace> {
    let mut namespaces = vec![Namespace::Mount, Namespace::Pid];
    if userns {
        namespaces.insert(0, Namespace::User);
    }
    if req.pid_ns.mode == PidNamespace::Host {
        namespaces.retain(|ns| *ns != Namespace::Pid);
    }
    namespaces
}

/// The user binds whose destination the image itself decides: no other mount of the plan
/// covers it (as `/dev`, `/proc`, `/sys`, `/tmp`, a bound home or working directory or another
/// bind do). The run stage checks that each one's kind matches the image's node there.
pub fn binds_onto_image<'r>(
    req: &'r RunRequest,
    host: &HostFacts,
    image: &ImageInfo,
) -> Result<Vec<&'r BindSpec>, PlanError> {
    let user_namespace = identity::user_namespace(req, host);
    let who = identity::identity(req, host, image, user_namespace.as_ref())?;
    let shared = join_for(req, root_kind(req, host, user_namespace.is_some())?).key.is_some();
    let specs = mounts::specs(req, host, &who, &GpuEdits::default(), shared);
    Ok(req.binds.iter().filter(|b| !mounts::covered(&specs, &b.dest)).collect())
}

/// OCI conversion rules: COMMAND replaces ENTRYPOINT and CMD; `--run` keeps the ENTRYPOINT and
/// replaces only CMD; no COMMAND runs ENTRYPOINT + CMD.
pub fn argv(req: &RunRequest, config: &RunConfig) -> Result<Vec<String>, PlanError> {
    // `apptainer exec IMAGE` without a command is an error there; the runscript is `run`'s.
    if config.apptainer.is_some() && req.exec_verb && req.command.is_empty() {
        return Err(PlanError::ExecNeedsCommand);
    }
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

#[cfg(test)]
mod tests;
