//! A FUSE daemon for the container root (`fuse-overlayfs` for `--writable-tmpfs` where the kernel
//! refuses overlayfs in a user namespace). No daemon may outlive its run, whatever ends it, the
//! init's SIGKILL included: the daemon runs below a *keeper*, a process the init clones as PID 1
//! of a PID namespace of its own that dies with the init (`PR_SET_PDEATHSIG`, which it keeps
//! because it never execs), and the kernel kills a PID namespace's processes with its PID 1.
//! (A parent-death signal set on the daemon itself does not survive its exec on every kernel:
//! Debian 11's drops it for the ambient capability below.) The daemon mounts with mount(2)
//! itself, which it may do as the namespace's owner: a non-root uid loses every capability across
//! execve, so `CAP_SYS_ADMIN` is passed on as an ambient capability (setuid `fusermount3` is no
//! use there: a user namespace ignores setuid).

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// How long the daemon may take to mount (it opens the layers and the device, nothing more).
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether the caller may open `/dev/fuse` for reading and writing, as a FUSE daemon must.
pub fn device_usable() -> nix::Result<()> {
    nix::unistd::access("/dev/fuse", nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK)
}

/// Starts `program -f -o OPTIONS target` under a keeper and returns once its mount covers
/// `target`.
pub fn mount_with_daemon(program: &Path, options: &str, target: &Path) -> io::Result<()> {
    device_usable()
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("/dev/fuse: {}", e.desc())))?;
    // Readiness is read from the mount table, never through the mount: a daemon that mounted
    // and then does not answer must not hang the init.
    let target = std::fs::canonicalize(target)?;
    let mounted = || -> io::Result<usize> {
        Ok(super::linux::mount_points()?.iter().filter(|p| **p == target).count())
    };
    let before = mounted()?;
    // Its messages go to a file in memory: shown in the error when it fails to mount, kept
    // from the workload's stderr otherwise (it chatters about options it ignores).
    let log = memory_file()?;
    let (alive_r, alive_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let ours = alive_w.as_raw_fd();
    let keeper_log = log.try_clone()?;
    let keeper_target = target.clone();
    let keeper = Box::new(move || {
        // A panic must not unwind out of the clone's entry point; as PID 1 an abort would not
        // even end the process (PID 1 ignores signals it has no handler for).
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            keeper(program, options, &keeper_target, &alive_r, ours, &keeper_log)
        }))
        .unwrap_or(1)
    });
    let mut stack = vec![0u8; 256 * 1024];
    let flags = nix::sched::CloneFlags::CLONE_NEWPID;
    // SAFETY: without CLONE_VM the keeper runs on its own copy of this memory (the stack buffer
    // included), as after fork; it spawns and waits, well within 256 KiB of stack.
    let keeper =
        unsafe { nix::sched::clone(keeper, &mut stack, flags, Some(libc::SIGCHLD)) }.map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("start a keeper for {}: {e}", program.display()),
            )
        })?;
    // The keeper watches this end: it stays open for as long as the caller lives.
    std::mem::forget(alive_w);
    wait_for_mount(keeper, program, || Ok(mounted()? > before)).map_err(|e| match tail(&log) {
        Some(said) => io::Error::new(e.kind(), format!("{e}; it said: {said}")),
        None => e,
    })
}

/// PID 1 of the daemon's PID namespace: dies with the caller (and the daemon with it), runs the
/// daemon out of the job's process group (the init relays a terminal stop to that group with
/// `kill(0, SIGTSTP)`, and a stopped daemon would hang the root), and exits with its status.
fn keeper(
    program: &Path,
    options: &str,
    target: &Path,
    alive: &OwnedFd,
    callers_end: RawFd,
    log: &std::fs::File,
) -> isize {
    // SAFETY: closes our copy of the caller's end (the caller keeps its own), then prctl and
    // setpgid with integer arguments.
    unsafe {
        libc::close(callers_end);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        libc::setpgid(0, 0);
    }
    super::null_stdio();
    super::close_all_but(&[alive.as_raw_fd(), log.as_raw_fd()]);
    // The caller may have died before the prctl: then its end of the pipe is closed.
    let mut poll = [nix::poll::PollFd::new(alive.as_fd(), nix::poll::PollFlags::POLLIN)];
    if nix::poll::poll(&mut poll, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        return 1;
    }
    let Ok(stderr) = log.try_clone() else { return 1 };
    let mut command = Command::new(program);
    command
        .args(["-f", "-o", options])
        .arg(target)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: the closure runs between fork and exec and makes only raw system calls.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || super::caps::raise_ambient(super::caps::SYS_ADMIN) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    match command.spawn() {
        Ok(mut daemon) => daemon.wait().ok().and_then(|s| s.code()).unwrap_or(1) as isize,
        Err(e) => {
            let _ = writeln!(&mut &*log, "cannot start it: {e}");
            127
        }
    }
}

fn memory_file() -> io::Result<std::fs::File> {
    let name = c"gpurun-fuse-log";
    // SAFETY: memfd_create with a NUL-terminated name and flags; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The last lines the daemon wrote (at most 1 KiB), on one line.
fn tail(log: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let len = log.metadata().ok()?.len();
    let start = len.saturating_sub(1024);
    let mut buf = vec![0; (len - start) as usize];
    log.read_exact_at(&mut buf, start).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let text: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    (!text.is_empty()).then(|| text.join(" | "))
}

/// Polls until `mounted` says so, the keeper exits (the daemon did), or the time is up; on every
/// failure the keeper is killed, which takes the daemon with it, and reaped.
fn wait_for_mount(keeper: Pid, program: &Path, mounted: impl Fn() -> io::Result<bool>) -> io::Result<()> {
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    let mut pause = Duration::from_micros(200);
    let failed = |err: io::Error| {
        stop(keeper);
        Err(err)
    };
    loop {
        match waitpid(keeper, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Err(io::Error::other(format!(
                    "{} exited with status {code} before mounting",
                    program.display()
                )));
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return Err(io::Error::other(format!(
                    "{} was killed by {sig} before mounting",
                    program.display()
                )));
            }
            Ok(_) => {}
            Err(e) => return failed(e.into()),
        }
        match mounted() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => return failed(e),
        }
        if Instant::now() > deadline {
            return failed(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not mount within {} s", program.display(), MOUNT_TIMEOUT.as_secs()),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

/// Kills the keeper (the kernel then kills the daemon, its namespace's only other process) and
/// reaps it, waiting a second at most: a daemon stuck in the kernel must not hang the init too.
fn stop(keeper: Pid) {
    let _ = nix::sys::signal::kill(keeper, nix::sys::signal::Signal::SIGKILL);
    for _ in 0..100 {
        if !matches!(waitpid(keeper, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
