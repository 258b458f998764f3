//! The three processes of a run: gpurun's relay loop, the PID-namespace init, and the workload
//! up to its execve. Signals are handled synchronously (blocked, then `sigwaitinfo`), so there
//! are no signal handlers and no async-signal-safety puzzles.

use std::io::{self, Write};
use std::os::fd::{OwnedFd, RawFd};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::spawn::Spawn;
use super::{ChildFailure, SandboxError, chain, mounts};
use crate::plan::LaunchPlan;
use crate::sys::Linux;

/// Signals forwarded to the workload (the set Slurm, PBS and terminals use).
const FORWARDED: [libc::c_int; 6] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2];

/// gpurun -> init: "the job is in the foreground again: give the terminal to the workload and
/// continue it" and "continue it in the background". Real-time signals, so they queue and cannot
/// collide with anything a user sends.
fn sig_resume_foreground() -> libc::c_int {
    libc::SIGRTMIN() + 1
}
fn sig_resume_background() -> libc::c_int {
    libc::SIGRTMIN() + 2
}
/// `F_SETSIG` from asm-generic/fcntl.h (x86 and arm64 alike), which the libc crate lacks.
const F_SETSIG: libc::c_int = 10;

/// kernel -> gpurun: the status pipe has something to read (`F_SETSIG`, see [`watch_status`]).
fn sig_status() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

fn wait_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before any sigaddset reads it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        let extra = [libc::SIGCHLD, libc::SIGCONT, libc::SIGTSTP, libc::SIGTTOU, libc::SIGTTIN];
        for sig in FORWARDED.iter().chain(&extra).copied().chain([
            sig_resume_foreground(),
            sig_resume_background(),
            sig_status(),
        ]) {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Blocks every signal the loops wait for; returns the previous mask.
pub fn block_signals() -> libc::sigset_t {
    let set = wait_set();
    // SAFETY: both pointers refer to valid sigset_t values owned by this frame.
    unsafe {
        let mut old = std::mem::zeroed::<libc::sigset_t>();
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

pub fn restore_signals(mask: &libc::sigset_t) {
    // SAFETY: `mask` is a valid sigset_t obtained from sigprocmask.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    loop {
        // SAFETY: `set` is a valid, initialised sigset_t; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig > 0 {
            return sig;
        }
    }
}

/// The controlling terminal, when gpurun runs in the terminal's foreground process group.
#[derive(Debug, Clone, Copy)]
pub struct Terminal {
    fd: RawFd,
}

impl Terminal {
    /// The first of stdin, stdout, stderr that is our controlling terminal with us in the
    /// foreground; `None` for batch jobs and background jobs (which must not grab the terminal).
    pub fn foreground() -> Option<Terminal> {
        // SAFETY: getpgrp and tcgetpgrp only read process state; the fds are the standard ones.
        let (pgrp, fd) = unsafe { (libc::getpgrp(), (0..3).find(|fd| libc::isatty(*fd) == 1)?) };
        // SAFETY: as above.
        (unsafe { libc::tcgetpgrp(fd) } == pgrp).then_some(Terminal { fd })
    }

    fn is_ours(self) -> bool {
        // SAFETY: read-only queries of process and terminal state.
        unsafe { libc::tcgetpgrp(self.fd) == libc::getpgrp() }
    }

    /// Makes `pgrp` the foreground process group. SIGTTOU is blocked in every caller, which
    /// tcsetpgrp(3) requires when a background process does this.
    fn give(self, pgrp: libc::pid_t) {
        // SAFETY: tcsetpgrp takes plain integers; failure only means the terminal stays put.
        unsafe { libc::tcsetpgrp(self.fd, pgrp) };
    }

    /// Gives the terminal back to gpurun's own process group (the job the shell knows).
    pub fn take_back(self) {
        // SAFETY: getpgrp cannot fail.
        self.give(unsafe { libc::getpgrp() });
    }
}

/// Makes the kernel signal gpurun ([`sig_status`]) whenever the init's status pipe becomes
/// readable or its writer goes away, so that [`relay`] can keep waiting with `sigwaitinfo`. The
/// read end is non-blocking.
pub fn watch_status(read_end: &OwnedFd) -> io::Result<()> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(read_end);
    // SAFETY: fcntl on a descriptor we own, with integer arguments (fcntl(2): F_SETOWN, F_SETSIG,
    // O_ASYNC; pipes support asynchronous notification).
    unsafe {
        if libc::fcntl(fd, libc::F_SETOWN, libc::getpid()) != 0
            || libc::fcntl(fd, F_SETSIG, sig_status()) != 0
            || libc::fcntl(fd, libc::F_SETFL, libc::O_ASYNC | libc::O_NONBLOCK) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Stops the status notifications: closes the pipe (no new signal can be raised) and discards
/// one that is already pending, whose default action would kill gpurun once the mask is restored.
pub fn unwatch_status(read_end: OwnedFd) {
    drop(read_end);
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the set is initialised by sigemptyset before use; sigtimedwait with a zero timeout
    // only dequeues a pending signal of that set.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), sig_status());
        while libc::sigtimedwait(set.as_ptr(), std::ptr::null_mut(), &zero) > 0 {}
    }
}

/// The workload's status from the init's status pipe, once it is there.
fn read_status(status: &OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    let n = nix::unistd::read(status, &mut buf).ok()?;
    (n == buf.len()).then(|| i32::from_ne_bytes(buf))
}

/// How the wait for the container ended.
pub enum Relayed {
    /// The init reported the workload's status and is still tearing the namespaces down.
    Reported(i32),
    /// The init itself exited (and was reaped) with this status.
    Exited(i32),
}

/// gpurun's side: forward signals to the init, relay job-control stops, and return the
/// workload's status as soon as the init reports it: the init then still has to tear down the
/// container's mount and PID namespaces (unmounting everything, RCU grace periods, killing
/// orphans), which takes about half a millisecond that the caller need not wait for.
pub fn relay(init: Pid, terminal: Option<Terminal>, status: &OwnedFd) -> Result<Relayed, SandboxError> {
    let set = wait_set();
    loop {
        let sig = wait_signal(&set);
        if sig == sig_status() {
            if let Some(code) = read_status(status) {
                return Ok(Relayed::Reported(code));
            }
            continue;
        }
        match sig {
            libc::SIGCHLD => match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(Relayed::Exited(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Relayed::Exited(128 + sig as i32)),
                Ok(_) => {}
                Err(e) => {
                    return Err(SandboxError::Process {
                        step: "wait for the container init",
                        source: e.into(),
                    });
                }
            },
            // The init asks us to stop (the workload was stopped from the terminal): hand the
            // terminal back and stop, so the shell sees a stopped job, like sudo's suspend relay.
            libc::SIGTSTP | libc::SIGTTIN => {
                if let Some(t) = terminal {
                    t.take_back();
                }
                let _ = kill(Pid::this(), Signal::SIGSTOP);
            }
            libc::SIGCONT => {
                let fg = terminal.is_some_and(|t| t.is_ours());
                let sig = if fg { sig_resume_foreground() } else { sig_resume_background() };
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(init.as_raw(), sig) };
            }
            libc::SIGTTOU => {}
            sig => {
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(init.as_raw(), sig) };
            }
        }
    }
}

fn report(fd: &OwnedFd, message: String, hint: Option<String>) {
    if let Ok(json) = serde_json::to_vec(&ChildFailure { message, hint }) {
        let _ = std::fs::File::from(fd.try_clone().expect("dup report pipe")).write_all(&json);
    }
}

/// PID 1: apply the mounts, start the workload, forward signals, reap, exit with its status.
pub fn init(plan: &LaunchPlan, alive: OwnedFd, report_fd: OwnedFd, terminal: Option<Terminal>) -> i32 {
    // If gpurun is SIGKILLed (a scheduler's last word) the kernel kills us, and with PID 1 the
    // whole namespace. Checking the pipe closes the race with a parent that died before prctl.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    let mut poll = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&alive), nix::poll::PollFlags::POLLIN)];
    if nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        return 1;
    }
    if let Err(err) = mounts::apply(&mut Linux, &plan.mounts, &plan.layout) {
        report(&report_fd, chain(&err), err.hint());
        return 125;
    }
    let mut spawn = Spawn::new(plan, terminal.map(|t| t.fd));
    let workload = match spawn.start() {
        Ok(pid) => Pid::from_raw(pid),
        Err(e) => {
            report(&report_fd, format!("start the workload: {e}"), None);
            return 125;
        }
    };
    if let Some((code, message, hint)) = spawn.failure(plan) {
        if code == 125 {
            report(&report_fd, message, hint);
        } else {
            super::spawn::print_failure(&message, hint.as_deref());
        }
    }
    drop(report_fd);
    drop(alive);
    init_loop(workload, terminal)
}

fn init_loop(workload: Pid, terminal: Option<Terminal>) -> i32 {
    let set = wait_set();
    let to_group = |sig: libc::c_int| {
        // SAFETY: kill with plain integers; a negative pid addresses the workload's group.
        if unsafe { libc::kill(-workload.as_raw(), sig) } != 0 {
            // SAFETY: as above; the group may be gone while the leader lives.
            unsafe { libc::kill(workload.as_raw(), sig) };
        }
    };
    loop {
        let sig = wait_signal(&set);
        if sig == libc::SIGCHLD {
            if let Some(code) = reap(workload) {
                return code;
            }
        } else if sig == sig_resume_foreground() {
            if let Some(t) = terminal {
                t.give(workload.as_raw());
            }
            to_group(libc::SIGCONT);
        } else if sig == sig_resume_background() {
            to_group(libc::SIGCONT);
        } else if FORWARDED.contains(&sig) {
            to_group(sig);
        }
    }
}

/// Reaps every exited child (orphans included); `Some(status)` once the workload is done.
fn reap(workload: Pid) -> Option<i32> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == workload => return Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == workload => {
                return Some(128 + sig as i32);
            }
            Ok(WaitStatus::Stopped(pid, Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU))
                if pid == workload =>
            {
                // Ask gpurun (in our original process group, invisible from here) to stop.
                // SAFETY: kill with plain integers; 0 addresses our own process group.
                unsafe { libc::kill(0, libc::SIGTSTP) };
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
