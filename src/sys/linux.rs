//! The real [`Sys`]: thin wrappers over the syscalls, returning `io::Error` with the OS errno so
//! the sandbox can name the step and the object around it.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use super::{MountFlags, Propagation, Sys};

/// The kernel, for real.
#[derive(Debug, Default)]
pub struct Linux;

/// `struct mount_attr` from `<linux/mount.h>` (not every libc target exports it).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

fn ms_flags(flags: MountFlags) -> MsFlags {
    let mut ms = MsFlags::empty();
    ms.set(MsFlags::MS_BIND, flags.bind);
    ms.set(MsFlags::MS_REC, flags.recursive);
    ms.set(MsFlags::MS_NOSUID, flags.nosuid);
    ms.set(MsFlags::MS_NODEV, flags.nodev);
    ms.set(MsFlags::MS_NOEXEC, flags.noexec);
    ms
}

impl Sys for Linux {
    fn unshare(&mut self, flags: libc::c_int) -> io::Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::from_bits_retain(flags)).map_err(io::Error::from)
    }

    fn write_proc(&mut self, path: &Path, contents: &str) -> io::Result<()> {
        // One write(2) call: the id-map files reject a map split over several writes.
        let mut file = OpenOptions::new().write(true).open(path)?;
        file.write_all(contents.as_bytes())
    }

    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: Option<&str>,
        flags: MountFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(Some(source), target, fstype, ms_flags(flags), data).map_err(io::Error::from)
    }

    fn set_propagation(&mut self, target: &Path, propagation: Propagation) -> io::Result<()> {
        let flags = match propagation {
            Propagation::RecursivePrivate => MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        };
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(io::Error::from)
    }

    fn make_read_only(&mut self, target: &Path, recursive: bool) -> io::Result<()> {
        // mount_setattr only adds MOUNT_ATTR_RDONLY. A MS_REMOUNT|MS_BIND|MS_RDONLY remount would
        // have to repeat every locked flag (nosuid, nodev, ...) inherited from the host or fail
        // with EPERM inside a user namespace, and it cannot recurse.
        let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
        let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: `path` is a valid NUL-terminated string and `attr` a valid mount_attr whose size
        // we pass; the kernel only reads both for the duration of the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                path.as_ptr(),
                flags as libc::c_uint,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    }

    fn pivot_root(&mut self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        nix::unistd::pivot_root(new_root, put_old).map_err(io::Error::from)
    }

    fn detach(&mut self, target: &Path) -> io::Result<()> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(io::Error::from)
    }

    fn chdir(&mut self, path: &Path) -> io::Result<()> {
        std::env::set_current_dir(path)
    }

    fn mkdir(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            other => other,
        }
    }

    fn create_file(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        OpenOptions::new().write(true).create(true).truncate(false).mode(mode).open(path).map(drop)
    }

    fn write_file(&mut self, path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
        file.write_all(contents)
    }

    fn symlink(&mut self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
}
