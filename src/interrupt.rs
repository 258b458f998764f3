//! Ctrl-C, SIGTERM and SIGHUP during an unpack. Without this, gpurun dies at once and the staging
//! tree (gigabytes for a large image) stays in the cache until the next unpack of that image or
//! `gpurun prune`. While a [`Catch`] is alive those signals only set a flag; the applier checks
//! it between entries and fails, the staging tree is removed as on any error, and then gpurun
//! dies of the signal ([`die_of`]) so the caller sees the status it expects. SIGKILL cannot be
//! caught; that case stays as before (debris removed by the next unpack).

use std::sync::atomic::{AtomicI32, Ordering};

const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The signal that arrived while caught, 0 if none.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn note(sig: libc::c_int) {
    // Async-signal-safe: one atomic store.
    PENDING.store(sig, Ordering::Relaxed);
}

/// While alive, [`SIGNALS`] set [`pending`] instead of killing the process; dropping it
/// restores the previous dispositions.
pub struct Catch {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

/// Starts catching [`SIGNALS`].
pub fn catch() -> Catch {
    let mut old = Vec::new();
    for sig in SIGNALS {
        // SAFETY: sigaction with a zeroed struct filled in here; `note` only stores an atomic.
        // SA_RESTART keeps blocking reads and writes of the unpack from failing with EINTR.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = note as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, &action, &mut previous) == 0 {
                old.push((sig, previous));
            }
        }
    }
    Catch { old }
}

impl Drop for Catch {
    fn drop(&mut self) {
        for (sig, previous) in &self.old {
            // SAFETY: restores a disposition sigaction returned for this signal.
            unsafe { libc::sigaction(*sig, previous, std::ptr::null_mut()) };
        }
    }
}

/// The signal caught since [`catch`], if any.
pub fn pending() -> Option<i32> {
    match PENDING.load(Ordering::Relaxed) {
        0 => None,
        sig => Some(sig),
    }
}

/// Dies of `sig` with its default action, so that shells and schedulers see death by signal;
/// exits 128+`sig` should the signal not be fatal after all.
pub fn die_of(sig: i32) -> ! {
    // SAFETY: plain signal calls on a valid signal number; SIG_DFL is always a valid handler.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
    }
    std::process::exit(128 + sig)
}
