//! Applies a [`LaunchPlan`]: user namespace and id maps, then mount and PID namespaces, the mount
//! operations, and the workload under a small init. This module owns every process gpurun
//! creates for a run and must leave none behind: the PID-namespace init dies with gpurun
//! (`PR_SET_PDEATHSIG`), and the kernel kills the whole namespace with it. It does not decide
//! anything the plan has not decided.
//!
//! Processes, all forked from gpurun without exec until the workload itself:
//!
//! ```text
//! gpurun (host PID ns)          forwards signals, relays job-control stops, returns the status
//!  └─ init (PID 1)              applies the mounts, forwards signals, reaps orphans
//!      └─ workload (PID 2)      own process group, terminal foreground, caps dropped, execve
//! ```
//!
//! In the host PID namespace (a plan without [`Namespace::Pid`]) there is no process at all:
//! gpurun applies the mounts itself and execs the workload in place ([`inplace`]).

mod idmap;
mod inplace;
pub mod mounts;
mod process;
mod spawn;

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::OFlag;

use crate::plan::{LaunchPlan, MapWriter, Namespace};
use crate::sys::{Linux, Sys};

pub use idmap::userns_hint;

/// Why the container could not be started. Workload failures are exit codes, not errors.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("create a user namespace")]
    UserNamespace {
        hint: String,
        #[source]
        source: io::Error,
    },
    #[error("write {contents:?} to {file}")]
    IdMap {
        file: String,
        contents: String,
        hint: String,
        #[source]
        source: io::Error,
    },
    #[error("install subordinate id maps with {} ({status})", helper.display())]
    IdMapHelper { helper: PathBuf, status: String },
    #[error("unshare the mount and PID namespaces")]
    Unshare {
        #[source]
        source: io::Error,
    },
    #[error("unshare the mount namespace")]
    UnshareMount {
        #[source]
        source: io::Error,
    },
    #[error("{step}")]
    Mount {
        step: String,
        hint: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("{step}")]
    Process {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// A failure inside the container's init or workload before exec, reported over a pipe.
    #[error("{message}")]
    Container { message: String, hint: Option<String> },
}

impl SandboxError {
    /// How to fix it.
    pub fn hint(&self) -> Option<String> {
        match self {
            SandboxError::UserNamespace { hint, .. } | SandboxError::IdMap { hint, .. } => Some(hint.clone()),
            SandboxError::IdMapHelper { .. } => Some(
                "check that /etc/subuid and /etc/subgid give you a range and that newuidmap/newgidmap are \
                 setuid root (package uidmap); without them --fakeroot maps only yourself to root"
                    .into(),
            ),
            SandboxError::Unshare { .. } | SandboxError::UnshareMount { .. } => Some(userns_hint()),
            SandboxError::Mount { hint, .. } | SandboxError::Container { hint, .. } => hint.clone(),
            SandboxError::Process { .. } => None,
        }
    }
}

/// Message and hint of a failure in the init or the workload, sent to gpurun over a pipe.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChildFailure {
    message: String,
    hint: Option<String>,
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Process { step: "create a pipe", source: e.into() })
}

/// Runs the plan and returns the exit status gpurun should exit with: the workload's, 128+N
/// when it died of signal N, 126/127 when it could not be executed.
///
/// Precondition: the calling process is single-threaded (the children allocate after fork).
/// Without a PID namespace in the plan gpurun becomes the workload: this returns only when it
/// could not be started.
pub fn launch(plan: &LaunchPlan) -> Result<i32, SandboxError> {
    if !plan.namespaces.contains(&Namespace::Pid) {
        return inplace::exec(plan);
    }
    let mut sys = Linux;
    match &plan.user_namespace {
        Some(ns) if ns.writer == MapWriter::Direct => idmap::enter_direct(&mut sys, ns)?,
        Some(ns) => idmap::enter_with_helpers(ns)?,
        None => {}
    }
    // CLONE_NEWPID applies to our next child, which becomes PID 1 (pid_namespaces(7)); network,
    // UTS and IPC namespaces stay the host's so MPI, hostnames and shared memory just work.
    sys.unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID).map_err(|source| SandboxError::Unshare { source })?;
    let terminal = process::Terminal::foreground();
    // Blocked before the fork so that no signal slips through before the loops wait for them.
    let old_mask = process::block_signals();
    let (alive_r, alive_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    tracing::debug!(?terminal, argv = ?plan.argv, "starting the container init");
    // SAFETY: gpurun is single-threaded here (precondition above), so the child may allocate.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| SandboxError::Process { step: "fork the container init", source: e.into() })?
    {
        nix::unistd::ForkResult::Child => {
            drop(alive_w);
            drop(report_r);
            let code = process::init(plan, alive_r, report_w, terminal);
            // SAFETY: leaves without running the parent's atexit handlers or flushing its stdio
            // buffers, which the parent owns.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(alive_r);
            drop(report_w);
            let status = process::relay(child, terminal);
            if let Some(t) = terminal {
                t.take_back();
            }
            process::restore_signals(&old_mask);
            drop(alive_w);
            let mut report = Vec::new();
            let _ = std::fs::File::from(report_r).read_to_end(&mut report);
            if let Ok(failure) = serde_json::from_slice::<ChildFailure>(&report) {
                return Err(SandboxError::Container { message: failure.message, hint: failure.hint });
            }
            status
        }
    }
}
