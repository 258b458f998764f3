//! Starts the workload from the PID-namespace init the way `posix_spawn` does: `clone(2)` with
//! `CLONE_VM | CLONE_VFORK`, so no page table is copied and nothing is copied on write, and the
//! init sleeps until the child has called `execve` (or died). Everything the child needs is
//! prepared beforehand in a [`Spawn`]; the child only makes system calls on that data and writes
//! the failing step and errno back into it, and the init turns that into a message. The child
//! must not allocate, lock, print or unwind: it runs on the init's memory.
//!
//! In the host PID namespace the same preparation runs in gpurun itself, which then execs in
//! place ([`Spawn::in_place`], [`Spawn::exec_in_place`]): one code path drops capabilities, sets
//! `no_new_privs` and reports 125/126/127 for both modes.

use std::ffi::{CString, c_char, c_int, c_void};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use crate::host::DEFAULT_PATH;
use crate::plan::{LaunchPlan, SwitchUser};

/// Where the child stopped, written by the child, read by the init once the clone returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Started,
    ParentDeath,
    Chdir,
    NoNewPrivs,
    DropBounding,
    SetGroups,
    SetGid,
    SetUid,
    DropCapabilities,
    /// Every candidate failed; `denied` names the first that existed but could not run.
    Exec,
}

/// The workload's launch data, owned by the init; see the module documentation.
pub struct Spawn {
    /// Owners of the strings the pointer arrays point into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*const c_char>,
    candidates: Vec<CString>,
    cwd: CString,
    terminal: Option<RawFd>,
    /// Start a job of its own: new process group, the terminal (if any), no blocked signals.
    /// Off in place, where gpurun already is the job its launcher or shell started.
    job_control: bool,
    /// Die with the init (`PR_SET_PDEATHSIG`), whose pid this is: an init without a PID
    /// namespace of its own takes nothing with it when it goes, and the workload's root goes
    /// with it.
    parent_death: Option<libc::pid_t>,
    no_new_privs: bool,
    drop_capabilities: bool,
    switch_user: Option<SwitchUser>,
    // Written by the child.
    step: Step,
    errno: c_int,
    denied: Option<(usize, c_int)>,
}

fn c_string(s: &str) -> CString {
    // A NUL inside an argument or variable cannot be passed to execve; it ends the string there.
    CString::new(s.split('\0').next().unwrap_or("")).unwrap_or_default()
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

impl Spawn {
    /// Prepares argv, the environment and the PATH candidates (execvp semantics with the
    /// container's PATH).
    pub fn new(plan: &LaunchPlan, terminal: Option<RawFd>) -> Spawn {
        let argv: Vec<CString> = plan.argv.iter().map(|a| c_string(a)).collect();
        let env: Vec<CString> = plan.env.iter().map(|e| c_string(e)).collect();
        let name = &plan.argv[0];
        let candidates = if name.contains('/') {
            vec![c_string(name)]
        } else {
            path_var(&plan.env)
                .split(':')
                .map(|dir| c_string(&format!("{}/{name}", if dir.is_empty() { "." } else { dir })))
                .collect()
        };
        Spawn {
            argv_ptrs: null_terminated(&argv),
            env_ptrs: null_terminated(&env),
            _argv: argv,
            _env: env,
            candidates,
            cwd: CString::new(plan.cwd.as_os_str().as_encoded_bytes()).unwrap_or_default(),
            terminal,
            job_control: true,
            // SAFETY: getpid has no preconditions.
            parent_death: (!plan.namespaces.contains(&crate::plan::Namespace::Pid))
                .then(|| unsafe { libc::getpid() }),
            no_new_privs: plan.no_new_privs,
            drop_capabilities: !plan.keep_capabilities,
            switch_user: plan.switch_user.clone(),
            step: Step::Started,
            errno: 0,
            denied: None,
        }
    }

    /// For [`Spawn::exec_in_place`]: the process group, terminal and signal mask stay as gpurun
    /// got them, as a plain `exec` would leave them.
    pub fn in_place(plan: &LaunchPlan) -> Spawn {
        Spawn { job_control: false, parent_death: None, ..Spawn::new(plan, None) }
    }

    /// Prepares the calling process and execs the workload in it. Returns only on failure, with
    /// the exit code; [`Spawn::failure`] says why.
    pub fn exec_in_place(&mut self) -> c_int {
        prepare_and_exec(self)
    }

    /// Starts the child; returns its pid once it has exec'd or exited (then [`Spawn::failure`]
    /// says why), or the clone error.
    pub fn start(&mut self) -> std::io::Result<libc::pid_t> {
        const STACK: usize = 64 * 1024;
        let mut stack = vec![0u8; STACK];
        // SAFETY: the pointer is one past the end of `stack`, which outlives the clone call: with
        // CLONE_VFORK the caller is suspended until the child no longer uses the stack.
        let top = unsafe { stack.as_mut_ptr().add(STACK) };
        let top = (top as usize & !15) as *mut c_void;
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        // SAFETY: `child` only makes system calls on `self`, which stays valid and is not touched
        // by this thread until clone returns (CLONE_VFORK); see the module documentation.
        let pid = unsafe { libc::clone(child, top, flags, self as *mut Spawn as *mut c_void) };
        drop(stack);
        if pid < 0 { Err(std::io::Error::last_os_error()) } else { Ok(pid) }
    }

    /// `None` when the child reached `execve` successfully; else its exit code and message.
    pub fn failure(&self, plan: &LaunchPlan) -> Option<(i32, String, Option<String>)> {
        let err = std::io::Error::from_raw_os_error(self.errno);
        let simple = |what: String| Some((125, format!("{what}: {err}"), None));
        match self.step {
            Step::Started => None,
            Step::Chdir => Some((
                125,
                format!("change to the working directory {} in the container: {err}", plan.cwd.display()),
                Some("pass --pwd DIR with a directory that exists in the image or in a bind".into()),
            )),
            Step::NoNewPrivs => simple("set no_new_privs".into()),
            Step::ParentDeath => simple("set the parent-death signal".into()),
            Step::DropBounding | Step::DropCapabilities => simple("drop capabilities".into()),
            Step::SetGroups | Step::SetGid | Step::SetUid => {
                let who = self.switch_user.as_ref().map(|u| (u.uid, u.gid)).unwrap_or_default();
                simple(format!("switch to uid {} gid {} (the image's User)", who.0, who.1))
            }
            Step::Exec => Some(exec_failure(plan, &self.candidates, self.denied)),
        }
    }
}

/// Writes a workload start failure that is not gpurun's own (126, 127) to stderr, as gpurun's
/// messages look; gpurun's own failures (125) travel to the parent instead.
pub fn print_failure(message: &str, hint: Option<&str>) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "gpurun: {message}");
    if let Some(h) = hint {
        let _ = writeln!(err, "gpurun: hint: {h}");
    }
}

fn path_var(env: &[String]) -> &str {
    env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH)
}

/// 126 when a candidate exists but cannot be executed, 127 when none exists.
fn exec_failure(
    plan: &LaunchPlan,
    candidates: &[CString],
    denied: Option<(usize, c_int)>,
) -> (i32, String, Option<String>) {
    let name = &plan.argv[0];
    if let Some((index, errno)) = denied {
        let path = candidates[index].to_string_lossy();
        let err = nix::errno::Errno::from_raw(errno);
        return (126, format!("{name}: cannot execute {path}: {}", err.desc()), None);
    }
    let in_container: PathBuf = if name.starts_with('/') { name.into() } else { plan.cwd.join(name) };
    // A file that exists but gave ENOENT: its #! interpreter or ELF loader is what is missing.
    let found_on_path =
        candidates.iter().map(|c| PathBuf::from(c.to_string_lossy().into_owned())).find(|p| p.is_file());
    let message = if name.contains('/') && Path::new(&in_container).exists() {
        format!("{name}: cannot execute: its interpreter or loader is missing in the container")
    } else if name.contains('/') {
        format!("{name}: no such file in the container")
    } else if let Some(path) = found_on_path {
        format!(
            "{name}: cannot execute {}: its interpreter or loader is missing in the container",
            path.display()
        )
    } else {
        format!("{name}: command not found in the container (PATH={})", path_var(&plan.env))
    };
    // Everything after IMAGE is the command: `gpurun IMG --nv cmd` runs "--nv".
    let hint = name.starts_with('-').then(|| {
        "everything after IMAGE is the command line; gpurun's own options go before IMAGE: gpurun [OPTIONS] IMAGE [COMMAND...]"
            .to_string()
    });
    (127, message, hint)
}

/// The child. Only system calls from here to `execve`/`_exit`.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Spawn` passed to clone; the parent is suspended until we exec or
    // exit, so this is the only live reference.
    let spawn = unsafe { &mut *(arg as *mut Spawn) };
    let code = prepare_and_exec(spawn);
    // SAFETY: _exit never returns and runs no atexit handlers (they belong to the parent).
    unsafe { libc::_exit(code) }
}

fn errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn fail(spawn: &mut Spawn, step: Step) -> c_int {
    spawn.step = step;
    spawn.errno = errno();
    125
}

fn prepare_and_exec(spawn: &mut Spawn) -> c_int {
    // SAFETY: plain system calls on integers and on NUL-terminated strings and pointer arrays
    // prepared in `Spawn::new`, all alive for the duration.
    unsafe {
        if spawn.job_control {
            // Own process group (the job the terminal sees), and the terminal when in foreground;
            // SIGTTOU is still blocked here, as tcsetpgrp from a background group requires.
            libc::setpgid(0, 0);
            if let Some(fd) = spawn.terminal {
                libc::tcsetpgrp(fd, libc::getpid());
            }
            let mut empty = std::mem::zeroed::<libc::sigset_t>();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        }
        // Rust's runtime ignores SIGPIPE in gpurun, and an ignored signal stays ignored across
        // execve (signal(7)): without this, `yes | head -1` in the container makes `yes` fail
        // with EPIPE instead of dying quietly of SIGPIPE. Other dispositions are the caller's.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::chdir(spawn.cwd.as_ptr()) != 0 {
            return fail(spawn, Step::Chdir);
        }
        if spawn.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return fail(spawn, Step::NoNewPrivs);
        }
        // The bounding set needs CAP_SETPCAP, which a switch to a non-root uid takes away.
        if spawn.drop_capabilities && drop_bounding_set() != 0 {
            return fail(spawn, Step::DropBounding);
        }
        if let Some(user) = &spawn.switch_user {
            if let Some(groups) = &user.groups
                && libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
            {
                return fail(spawn, Step::SetGroups);
            }
            // Raw system calls: glibc's wrappers would try to synchronise threads this process
            // shares memory with, which it must not do from here.
            if libc::syscall(libc::SYS_setresgid, user.gid, user.gid, user.gid) != 0 {
                return fail(spawn, Step::SetGid);
            }
            if libc::syscall(libc::SYS_setresuid, user.uid, user.uid, user.uid) != 0 {
                return fail(spawn, Step::SetUid);
            }
        }
        if spawn.drop_capabilities && crate::sys::caps::clear() != 0 {
            return fail(spawn, Step::DropCapabilities);
        }
        // Last before the exec: a change of uid or gid clears the parent-death signal. Then the
        // init must still be there (it may have been killed before the prctl took effect).
        if let Some(init) = spawn.parent_death {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return fail(spawn, Step::ParentDeath);
            }
            if libc::getppid() != init {
                libc::_exit(137);
            }
        }
        for (index, path) in spawn.candidates.iter().enumerate() {
            libc::execve(path.as_ptr(), spawn.argv_ptrs.as_ptr(), spawn.env_ptrs.as_ptr());
            let e = errno();
            if e != libc::ENOENT && e != libc::ENOTDIR && spawn.denied.is_none() {
                spawn.denied = Some((index, e));
            }
        }
        spawn.step = Step::Exec;
        if spawn.denied.is_some() { 126 } else { 127 }
    }
}

/// Empties the bounding and ambient sets, so not even a root workload (real root, or a setuid
/// file) regains a capability across execve (capabilities(7)). Returns 0 or -1 with errno set.
fn drop_bounding_set() -> c_int {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            if errno() == libc::EINVAL {
                break; // past CAP_LAST_CAP
            }
            return -1;
        }
    }
    // SAFETY: prctl with integer arguments only; EINVAL on kernels before 4.3 is harmless.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    0
}
