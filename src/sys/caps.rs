//! capget(2)/capset(2) for the calling process, version 3 (64 capabilities in two words): the
//! sandbox empties the sets before the workload's exec, and raises one ambient capability for a
//! helper that must keep it across its exec as a non-root uid (`sys::fuse`). Raw system calls
//! only, so both run in children that share their parent's memory.

use std::ffi::c_int;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const VERSION_3: u32 = 0x2008_0522; // _LINUX_CAPABILITY_VERSION_3

/// `CAP_SYS_ADMIN` from `<linux/capability.h>`.
pub const SYS_ADMIN: u32 = 21;

/// Empties the effective, permitted and inheritable sets. Returns 0 or -1 with errno set.
pub fn clear() -> c_int {
    let header = CapHeader { version: VERSION_3, pid: 0 };
    let data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as capset(2) version 3 requires.
    unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) as c_int }
}

/// Adds `cap` (which must be permitted) to the inheritable and ambient sets, so that it survives
/// the next execve for a non-root uid (capabilities(7), "Ambient capability set"). Returns 0 or
/// -1 with errno set.
pub fn raise_ambient(cap: u32) -> c_int {
    let mut header = CapHeader { version: VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as capget(2) version 3 requires.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) } != 0 {
        return -1;
    }
    data[(cap / 32) as usize].inheritable |= 1 << (cap % 32);
    // SAFETY: as above, for capset.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } != 0 {
        return -1;
    }
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0) }
}
