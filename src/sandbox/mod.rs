//! Applies a [`LaunchPlan`]: user namespace and id maps, then mount and PID namespaces, the mount
//! operations, and the workload under a small init. This module owns every process gpurun
//! creates for a run and must leave none behind: the PID-namespace init dies with gpurun
//! (`PR_SET_PDEATHSIG`), and the kernel kills the whole namespace with it. It does not decide
//! anything the plan has not decided.
//!
//! Processes, all cloned from gpurun without exec until the workload itself, and all sharing
//! gpurun's memory until then (no page tables are copied on the way to the workload):
//!
//! ```text
//! gpurun (host PID ns)          forwards signals, relays job-control stops, returns the status
//!  └─ init (PID 1)              clone(CLONE_VM) on its own stack: applies the mounts, forwards
//!     │                         signals, reaps orphans
//!     └─ workload (PID 2)       clone(CLONE_VM|CLONE_VFORK): own process group, terminal
//!                               foreground, caps dropped, execve
//! ```
//!
//! In the host PID namespace (a plan without [`Namespace::Pid`]) there is no process at all:
//! gpurun applies the mounts itself and execs the workload in place ([`inplace`]). The exception
//! is a root served by a FUSE daemon ([`RootKind::FuseOverlay`]), which needs a process to outlive
//! the workload's exec and take the daemon with it: there the same init runs without `CLONE_NEWPID`
//! (an ordinary child, the workload's parent, and the daemon's), and the workload and the daemon
//! die with it (`PR_SET_PDEATHSIG`).

mod assemble;
mod idmap;
mod inplace;
mod join;
pub mod mounts;
mod process;
mod spawn;

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;

use crate::plan::{LaunchPlan, Namespace, RootKind};
use crate::sys::Linux;

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
    /// Entering the namespaces of the run this one joins, or opening its own to share them.
    #[error("share the container with the other ranks")]
    Join {
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
            SandboxError::Unshare { .. } | SandboxError::UnshareMount { .. } => {
                Some(crate::host::userns_hint())
            }
            SandboxError::Mount { hint, .. } | SandboxError::Container { hint, .. } => hint.clone(),
            SandboxError::Process { .. } => None,
            SandboxError::Join { .. } => {
                Some("run the ranks with --no-join to give each a container of its own".into())
            }
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
/// Precondition: the calling process is single-threaded (the init runs Rust code on our memory).
/// Without a PID namespace in the plan gpurun becomes the workload: this returns only when it
/// could not be started. A run that was to share its container (by `--join` or by its launcher's
/// variables) but gets one of its own passes the reason to `warn`.
pub fn launch(
    plan: &LaunchPlan,
    join_secret: Option<&[u8; 32]>,
    warn: &mut dyn FnMut(&str),
) -> Result<i32, SandboxError> {
    wait_single_threaded();
    if !plan.namespaces.contains(&Namespace::Pid) && plan.root != RootKind::FuseOverlay {
        let role = join::rendezvous(plan, join_secret);
        if let join::Role::Alone(Some(why)) = &role {
            warn(why);
        }
        return inplace::exec(plan, role);
    }
    if let Some(ns) = &plan.user_namespace {
        idmap::enter(&mut Linux, ns)?;
    }
    let terminal = process::Terminal::foreground();
    // Blocked before the clone so that no signal slips through before the loops wait for them.
    let old_mask = process::block_signals();
    let (alive_r, alive_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    process::watch_status(&status_r)
        .map_err(|source| SandboxError::Process { step: "watch the init's status pipe", source })?;
    tracing::debug!(?terminal, argv = ?plan.argv, "starting the container init");
    let init = InitArgs {
        plan,
        alive: alive_r.as_raw_fd(),
        report: report_w.as_raw_fd(),
        status: status_w.as_raw_fd(),
        ours: [alive_w.as_raw_fd(), report_r.as_raw_fd(), status_r.as_raw_fd()],
        terminal,
    };
    let started = start_init(&init);
    // Our copies of the init's ends (it closes its copies of ours: it has its own descriptor
    // table, no CLONE_FILES).
    drop((alive_r, report_w, status_w));
    let status = started.and_then(|(child, stack)| match process::relay(child, terminal, &status_r) {
        Ok(process::Relayed::Exited(code)) => Ok(code),
        other => {
            // The init may still run on that stack (it reported and is tearing down the
            // namespaces, or waiting failed): never unmap it then; it goes with our exit.
            std::mem::forget(stack);
            other.map(|r| match r {
                process::Relayed::Reported(code) | process::Relayed::Exited(code) => code,
            })
        }
    });
    if let Some(t) = terminal {
        t.take_back();
    }
    process::unwatch_status(status_r);
    process::restore_signals(&old_mask);
    drop(alive_w);
    let mut report = Vec::new();
    let _ = std::fs::File::from(report_r).read_to_end(&mut report);
    // Nothing to parse after a good start: serde_json's error for empty input finds its line
    // with memchr, whose first use probes the CPU (`cpuid`, which traps to the hypervisor on a
    // virtual machine: about 0.1 ms of every start on the VM of `bench/start.sh`).
    if report.is_empty() {
        return status;
    }
    if let Ok(failure) = serde_json::from_slice::<ChildFailure>(&report) {
        return Err(SandboxError::Container { message: failure.message, hint: failure.hint });
    }
    status
}

/// What the init needs, passed by address to the clone: plain data and raw descriptor numbers,
/// because the init shares gpurun's memory but has its own copy of the descriptor table.
struct InitArgs<'a> {
    plan: &'a LaunchPlan,
    alive: RawFd,
    report: RawFd,
    /// Where the init writes the workload's status (4 bytes) before it exits.
    status: RawFd,
    /// gpurun's ends of the pipes, which the init must close: the alive pipe reports gpurun's
    /// death only when no write end is left, and the others end only when gpurun's reader is
    /// alone.
    ours: [RawFd; 3],
    terminal: Option<process::Terminal>,
}

/// Where the init runs: its own stack in memory it shares with gpurun. Unmapped on drop, which
/// happens only after the init has been reaped.
struct InitStack {
    base: *mut libc::c_void,
    len: usize,
}

impl Drop for InitStack {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` describe a mapping made by `start_init` that nothing uses any more
        // (its only user, the init, has exited and been reaped by `relay`).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The threads of the preparation (layer downloads, a credential helper's reader, the HTTP
/// client's name lookups) have done their work by now, but one may not have finished exiting,
/// and `unshare(CLONE_NEWUSER)` refuses a process with more than one thread (EINVAL). Waits,
/// briefly and bounded, until this is the only thread; if one is really stuck the unshare then
/// fails and says so.
fn wait_single_threaded() {
    // procfs gives a task directory two links more than the process has threads: one stat,
    // where /proc/self/stat would format some fifty fields.
    let threads = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/task").ok().map(|m| m.nlink().saturating_sub(2))
    };
    for _ in 0..2000 {
        if threads().is_none_or(|n| n <= 1) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    tracing::debug!(threads = ?threads(), "still more than one thread before the sandbox");
}

/// Starts the PID-namespace init with `clone(CLONE_VM)` on a stack of its own. A `fork` would
/// copy gpurun's page tables and then take a copy-on-write fault for every page either side
/// touches, and its exit would tear that copy down again: together about half a millisecond of a
/// warm start. Sharing the memory is safe because gpurun only waits for signals until the init
/// has reported the workload's status (`relay` allocates nothing and touches nothing the init
/// uses), so at any moment only one of the two runs Rust code on the shared heap; by the time the
/// init writes the status it has dropped everything it allocated, and afterwards it touches only
/// its own stack on the way to `_exit`. Its allocations that outlive it stay in gpurun's heap.
fn start_init(args: &InitArgs) -> Result<(nix::unistd::Pid, InitStack), SandboxError> {
    const STACK: usize = 1 << 20;
    // SAFETY: an anonymous private mapping; the result is checked before use.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        let source = io::Error::last_os_error();
        return Err(SandboxError::Process { step: "map the container init's stack", source });
    }
    let stack = InitStack { base, len: STACK };
    // SAFETY: the top of the mapping above, 16-byte aligned as the ABI requires.
    let top = unsafe { base.cast::<u8>().add(STACK) }.cast::<libc::c_void>();
    let arg = args as *const InitArgs as *mut libc::c_void;
    // The init gets new mount and PID namespaces of its own (it becomes PID 1, pid_namespaces(7));
    // gpurun stays in the host's, so that when the workload is done gpurun can return while the
    // init tears them down. Network, UTS and IPC namespaces stay the host's so MPI, hostnames and
    // shared memory just work.
    let pid_ns = if args.plan.namespaces.contains(&Namespace::Pid) { libc::CLONE_NEWPID } else { 0 };
    let flags = libc::CLONE_VM | libc::CLONE_NEWNS | pid_ns | libc::SIGCHLD;
    // SAFETY: `init_entry` receives `args`, which outlives the child's use of it: `launch`
    // keeps it alive until the init has reported its status (its last use of `args`) or has been
    // reaped. See the function documentation for why sharing the address space is sound.
    let pid = unsafe { libc::clone(init_entry, top, flags, arg) };
    if pid < 0 {
        return Err(SandboxError::Unshare { source: io::Error::last_os_error() });
    }
    Ok((nix::unistd::Pid::from_raw(pid), stack))
}

extern "C" fn init_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `InitArgs` passed by `start_init`, alive until we write the status
    // (the last use of `args` below).
    let args = unsafe { &*(arg as *const InitArgs) };
    // SAFETY: these descriptors are open in our copy of the descriptor table and owned by
    // nobody else in it: gpurun's copies live in its own table.
    let (alive, report) = unsafe { (OwnedFd::from_raw_fd(args.alive), OwnedFd::from_raw_fd(args.report)) };
    let status = args.status;
    for fd in args.ours {
        // SAFETY: closes our copy of a descriptor gpurun keeps open in its own table.
        unsafe { libc::close(fd) };
    }
    let code = process::init(args.plan, alive, report, args.terminal);
    // From here on gpurun may return and reuse its memory (`args` included): only locals.
    // SAFETY: writes 4 bytes from a local to a descriptor of ours; a failure leaves gpurun
    // waiting for our exit status instead.
    unsafe { libc::write(status, code.to_ne_bytes().as_ptr().cast(), 4) };
    // SAFETY: leaves without running atexit handlers or flushing stdio buffers, which belong
    // to gpurun (whose memory this is).
    unsafe { libc::_exit(code) }
}
