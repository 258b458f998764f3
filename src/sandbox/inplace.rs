//! The host PID namespace (`--pid-ns host`, and `auto` for MPI ranks): no PID namespace and no
//! init. gpurun enters the user and mount namespaces, applies the plan's mounts itself and then
//! becomes the workload with `execve`, as `ch-run` and `enroot start` without `--pid` do. Nothing
//! stands in between: signals from mpirun, srun or a terminal reach the workload directly, its
//! exit status is gpurun's, and a shell's job control sees the job it started. Ranks of one job
//! see each other's real PIDs, which Open MPI's shared-memory transport relies on.
//!
//! Runs of one job that share a container ([`super::join`]) differ only here: the first makes
//! the namespaces and mounts as above and starts the server that hands them out, the others
//! enter them with `setns` and skip the mounts.
//!
//! This module owns that sequence only. It forks nothing (except `newuidmap`/`newgidmap` under
//! `--fakeroot` with subordinate ids, reaped before the exec) and leaves the caller's process
//! group, terminal and signal mask as they were. Processes the workload leaves behind are not
//! killed with it: there is no namespace to tear down (under Slurm, the step's process tracking
//! does that, as for any job).

use crate::plan::LaunchPlan;
use crate::sys::{Linux, Sys};

use super::join::{Namespaces, Role};
use super::spawn::Spawn;
use super::{SandboxError, idmap, mounts};

/// Sets up the container in gpurun's own process, or enters the one the first run of its group
/// made ([`Role::Joiner`]), and execs the workload. Returns only when it could not be started:
/// 126 or 127 (after printing why) or the setup error.
///
/// Precondition: single-threaded (`unshare(CLONE_NEWUSER | CLONE_NEWNS)` and `setns` into a
/// user namespace refuse otherwise).
pub fn exec(plan: &LaunchPlan, role: Role) -> Result<i32, SandboxError> {
    let mut sys = Linux;
    match role {
        Role::Joiner(joined) => joined.enter().map_err(|source| SandboxError::Join { source })?,
        Role::Leader(leader) => {
            if let Some(namespaces) = make(&mut sys, plan, true)? {
                leader.serve(namespaces);
            }
        }
        Role::Alone(_) => {
            make(&mut sys, plan, false)?;
        }
    }
    tracing::debug!(argv = ?plan.argv, "exec in place (host PID namespace)");
    let mut spawn = Spawn::in_place(plan);
    let code = spawn.exec_in_place();
    match spawn.failure(plan) {
        Some((125, message, hint)) => Err(SandboxError::Container { message, hint }),
        Some((code, message, hint)) => {
            super::spawn::print_failure(&message, hint.as_deref());
            Ok(code)
        }
        None => Err(SandboxError::Container {
            message: format!("exec {}: returned with status {code}", plan.argv[0]),
            hint: None,
        }),
    }
}

/// Makes the user and mount namespaces and applies the plan's mounts; for a leader, returns the
/// descriptors of both, opened while the host's `/proc` is still the one in view.
fn make(sys: &mut Linux, plan: &LaunchPlan, leader: bool) -> Result<Option<Namespaces>, SandboxError> {
    if let Some(ns) = &plan.user_namespace {
        idmap::enter(sys, ns)?;
    }
    // No CLONE_NEWPID: the host's PID namespace stays ours (pid_namespaces(7)), and the plan's
    // /proc is a bind of the host's, which a new procfs could not be here.
    sys.unshare(libc::CLONE_NEWNS).map_err(|source| SandboxError::UnshareMount { source })?;
    let mut namespaces = leader
        .then(|| Namespaces::open_own(plan.user_namespace.is_some()))
        .transpose()
        .map_err(|source| SandboxError::Join { source })?;
    mounts::apply(sys, &plan.mounts, &plan.layout)?;
    if let Some(ns) = &mut namespaces {
        ns.open_root().map_err(|source| SandboxError::Join { source })?;
    }
    Ok(namespaces)
}
