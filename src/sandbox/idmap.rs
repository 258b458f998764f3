//! Enters a new user namespace and installs its id maps, either directly (one id, ours) or
//! through the setuid `newuidmap`/`newgidmap` helpers for `--fakeroot` with subordinate ranges.
//! Runs in gpurun's own process before the PID-namespace init is cloned (or, in the host PID
//! namespace, before gpurun execs the workload), so every later process is born inside it.

use std::path::{Path, PathBuf};

use crate::plan::{IdMap, MapWriter, UserNamespace};
use crate::sys::Sys;

use super::SandboxError;

fn map_text(map: &[IdMap]) -> String {
    map.iter().map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count)).collect()
}

/// Enters the user namespace with the plan's writer.
pub fn enter(sys: &mut dyn Sys, ns: &UserNamespace) -> Result<(), SandboxError> {
    match ns.writer {
        MapWriter::Direct => enter_direct(sys, ns),
        MapWriter::Helpers { .. } => enter_with_helpers(ns),
    }
}

/// `unshare(CLONE_NEWUSER)` and the maps, written by us (the `Direct` writer).
fn enter_direct(sys: &mut dyn Sys, ns: &UserNamespace) -> Result<(), SandboxError> {
    sys.unshare(libc::CLONE_NEWUSER)
        .map_err(|source| SandboxError::UserNamespace { hint: crate::host::userns_hint(), source })?;
    // An unprivileged process may write a gid_map only after denying setgroups (since Linux
    // 3.19, CVE-2014-8989). The supplementary groups it already has stay in effect: they show as
    // the overflow gid (nogroup) but still grant access, e.g. to render/video device nodes.
    write(sys, "/proc/self/setgroups", "deny")?;
    write(sys, "/proc/self/uid_map", &map_text(&ns.uid_map))?;
    write(sys, "/proc/self/gid_map", &map_text(&ns.gid_map))
}

fn write(sys: &mut dyn Sys, file: &str, contents: &str) -> Result<(), SandboxError> {
    sys.write_proc(Path::new(file), contents).map_err(|source| SandboxError::IdMap {
        file: file.into(),
        contents: contents.trim_end().replace('\n', "; "),
        hint: crate::host::userns_hint(),
        source,
    })
}

/// `--fakeroot` with subordinate ids: a helper forked *before* the unshare (so it stays in the
/// host namespace, where the setuid bit works) runs `newuidmap`/`newgidmap` on us once we have
/// unshared. Only this path forks and execs a helper; the default path stays syscall-only.
fn enter_with_helpers(ns: &UserNamespace) -> Result<(), SandboxError> {
    let MapWriter::Helpers { newuidmap, newgidmap } = &ns.writer else {
        return enter_direct(&mut crate::sys::Linux, ns);
    };
    let (go_r, go_w) =
        nix::unistd::pipe().map_err(|e| SandboxError::Process { step: "create a pipe", source: e.into() })?;
    let me = nix::unistd::getpid().as_raw();
    let uid_args = map_args(&ns.uid_map);
    let gid_args = map_args(&ns.gid_map);
    // SAFETY: gpurun is single-threaded here (see `launch`), so the child may allocate and spawn.
    match unsafe { nix::unistd::fork() }
        .map_err(|e| SandboxError::Process { step: "fork the id-map helper", source: e.into() })?
    {
        nix::unistd::ForkResult::Child => {
            drop(go_w);
            let mut byte = [0u8; 1];
            let ok = nix::unistd::read(&go_r, &mut byte) == Ok(1)
                && run_helper(newuidmap, me, &uid_args)
                && run_helper(newgidmap, me, &gid_args);
            // SAFETY: _exit skips the parent's atexit handlers and buffered stdio, which belong to
            // the parent; nothing else is pending in this short-lived child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_r);
            let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            let _ = nix::unistd::write(&go_w, if unshared.is_ok() { b"g" } else { b"" });
            drop(go_w);
            let status = nix::sys::wait::waitpid(child, None);
            unshared.map_err(|e| SandboxError::UserNamespace {
                hint: crate::host::userns_hint(),
                source: e.into(),
            })?;
            match status {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
                other => {
                    Err(SandboxError::IdMapHelper { helper: newuidmap.clone(), status: format!("{other:?}") })
                }
            }
        }
    }
}

fn map_args(map: &[IdMap]) -> Vec<String> {
    map.iter().flat_map(|m| [m.inside, m.outside, m.count]).map(|n| n.to_string()).collect()
}

fn run_helper(helper: &PathBuf, pid: i32, args: &[String]) -> bool {
    std::process::Command::new(helper).arg(pid.to_string()).args(args).status().is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, Recording};

    #[test]
    fn direct_maps_deny_setgroups_first() {
        let ns = UserNamespace {
            uid_map: vec![IdMap { inside: 1000, outside: 1000, count: 1 }],
            gid_map: vec![IdMap { inside: 100, outside: 100, count: 1 }],
            writer: MapWriter::Direct,
        };
        let mut sys = Recording::default();
        enter_direct(&mut sys, &ns).unwrap();
        assert_eq!(
            sys.calls,
            [
                Call::Unshare(libc::CLONE_NEWUSER),
                Call::WriteProc("/proc/self/setgroups".into(), "deny".into()),
                Call::WriteProc("/proc/self/uid_map".into(), "1000 1000 1\n".into()),
                Call::WriteProc("/proc/self/gid_map".into(), "100 100 1\n".into()),
            ]
        );
        let mut failing = Recording { fail_at: Some(0), ..Recording::default() };
        let err = enter_direct(&mut failing, &ns).unwrap_err();
        assert!(err.hint().is_some(), "{err}");
    }
}
