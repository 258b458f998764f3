//! The narrow syscall seam between the sandbox and the kernel: every filesystem-namespace
//! operation the sandbox performs while applying a `LaunchPlan` goes through the [`Sys`] trait.
//! [`Linux`] is the real implementation; [`Recording`] is a test double that records one ordered,
//! typed list of [`Call`]s so tests can assert the order of operations without root. The caller
//! picks the implementation explicitly; nothing here switches on `cfg!(test)`.
//!
//! This module must stay policy-free: it does not decide what to mount, only how to ask.

pub mod caps;
mod fake;
pub mod fuse;
mod linux;

use std::io;
use std::path::Path;

pub use fake::{Call, Recording};
pub use linux::{Linux, mount_setattr_supported};

/// Mount flags the sandbox uses, as a small closed set so the fake can record them readably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MountFlags {
    pub bind: bool,
    pub recursive: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

/// Propagation change for an existing mount tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Propagation {
    /// `MS_REC | MS_PRIVATE`: nothing propagates in or out.
    RecursivePrivate,
    /// `MS_UNBINDABLE`: a recursive bind of a directory above it leaves it (and what is below it)
    /// out.
    Unbindable,
}

/// What the sandbox asks of the kernel. Paths are absolute in the caller's current mount view.
pub trait Sys {
    /// `unshare(2)` with raw `CLONE_*` flags.
    fn unshare(&mut self, flags: libc::c_int) -> io::Result<()>;
    /// Writes `contents` to an existing file such as `/proc/self/uid_map` (no create, no truncate).
    fn write_proc(&mut self, path: &Path, contents: &str) -> io::Result<()>;
    /// `mount(2)` of a filesystem or bind; `source` is a path for binds (any bytes), a name
    /// otherwise.
    fn mount(
        &mut self,
        source: &std::ffi::OsStr,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// Changes the propagation of the mount tree at `target`.
    fn set_propagation(&mut self, target: &Path, propagation: Propagation) -> io::Result<()>;
    /// Makes the mount at `target` (and, if `recursive`, every mount below it) read-only,
    /// without touching its other flags (`mount_setattr(2)`, Linux 5.12).
    fn make_read_only(&mut self, target: &Path, recursive: bool) -> io::Result<()>;
    /// `pivot_root(2)`.
    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    /// `umount2(target, MNT_DETACH)`.
    fn detach(&mut self, target: &Path) -> io::Result<()>;
    /// `chdir(2)`.
    fn chdir(&mut self, path: &Path) -> io::Result<()>;
    /// `mkdir(2)`; an existing directory is not an error.
    fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates an empty regular file (a bind target); an existing one is not an error.
    fn create_file(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    /// Creates `path` holding `contents`, replacing nothing (it must not exist).
    fn write_file(&mut self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()>;
    /// `symlink(2)`: a link at `link` pointing to `target`.
    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()>;
    /// Removes the node at `path` (a symlink, file or empty directory), detaching a mount on it
    /// first.
    fn remove(&mut self, path: &Path) -> io::Result<()>;
    /// Starts `program -f -o OPTIONS target`, a FUSE daemon that mounts itself on `target` and
    /// serves it until the caller exits, and returns once the mount is there.
    fn fuse_mount(&mut self, program: &Path, options: &str, target: &Path) -> io::Result<()>;
}

use std::os::fd::RawFd;

/// Closes every descriptor above stderr but `keep`, for a helper process that never execs (the
/// FUSE daemon's keeper, a shared container's join server): close-on-exec does not apply to it,
/// and it would otherwise hold the pipes of its parent (whose readers wait for their end) and
/// whatever its parent inherited.
pub fn close_all_but(keep: &[RawFd]) {
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit fills the struct it is given.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
            (3..limit.rlim_cur.clamp(1024, 1 << 20) as RawFd).collect()
        }
    };
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: closes a descriptor of this process's own table, which nothing here uses
        // (the directory listing's own descriptor is closed already and fails harmlessly).
        unsafe { libc::close(fd) };
    }
}

/// Points stdin, stdout and stderr at `/dev/null`, for a helper process that never execs (the
/// FUSE daemon's keeper, a shared container's join server): it must never hold the user's
/// terminal or the job's output pipes open. Raw system calls only.
pub fn null_stdio() {
    // SAFETY: open, dup2 and close on descriptors of this process's own table.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}
