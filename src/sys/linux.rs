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
        source: &std::ffi::OsStr,
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
            Propagation::Unbindable => MsFlags::MS_UNBINDABLE,
        };
        nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(io::Error::from)
    }

    fn make_read_only(&mut self, target: &Path, recursive: bool) -> io::Result<()> {
        match mount_setattr_rdonly(target, recursive) {
            // Before Linux 5.12 (or under a seccomp filter that answers EPERM for system calls it
            // does not know): a bind remount per mount, repeating each one's locked flags.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
                remount_read_only(target, recursive)
            }
            other => other,
        }
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

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        if meta.file_type().is_symlink() {
            return std::fs::remove_file(path);
        }
        // UMOUNT_NOFOLLOW: a node swapped for a symlink meanwhile never names another mount;
        // EINVAL: not a mount point, which is fine.
        match nix::mount::umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(e.into()),
        }
        if meta.is_dir() { std::fs::remove_dir(path) } else { std::fs::remove_file(path) }
    }

    fn fuse_mount(&mut self, program: &Path, options: &str, target: &Path) -> io::Result<()> {
        super::fuse::mount_with_daemon(program, options, target)
    }
}

/// Whether the kernel has `mount_setattr` (Linux 5.12): asked with an attribute size of 0, which
/// it rejects (EINVAL) before looking at anything else when it has the call; ENOSYS when not,
/// EPERM under a seccomp filter that blocks it. Changes nothing.
pub fn mount_setattr_supported() -> bool {
    // SAFETY: size 0 makes the kernel return EINVAL before it dereferences the null path or
    // attribute pointer.
    let rc = unsafe {
        libc::syscall(libc::SYS_mount_setattr, -1, std::ptr::null::<libc::c_char>(), 0, 0usize, 0usize)
    };
    rc == 0 || !matches!(io::Error::last_os_error().raw_os_error(), Some(libc::ENOSYS | libc::EPERM))
}

/// `mount_setattr(MOUNT_ATTR_RDONLY)` (Linux 5.12): only adds read-only, whatever other flags the
/// mount has, and recurses with `AT_RECURSIVE`.
fn mount_setattr_rdonly(target: &Path, recursive: bool) -> io::Result<()> {
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

/// The older way: `MS_REMOUNT | MS_BIND | MS_RDONLY` on `target` and, when `recursive`, on every
/// mount below it (from `/proc/self/mountinfo`). Inside a user namespace the kernel refuses
/// (EPERM) a remount that would clear a flag it locked on a mount inherited from the host
/// (nosuid, nodev, noexec and the atime mode), so each mount's own flags, read with statvfs,
/// are passed again.
fn remount_read_only(target: &Path, recursive: bool) -> io::Result<()> {
    let mut targets = vec![target.to_path_buf()];
    if recursive {
        targets.extend(mounts_below(target)?);
    }
    for t in targets {
        let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | kept_flags(&t)?;
        nix::mount::mount(None::<&str>, &t, None::<&str>, flags, None::<&str>).map_err(io::Error::from)?;
    }
    Ok(())
}

/// The flags of the mount at `path` a bind remount must repeat.
fn kept_flags(path: &Path) -> io::Result<MsFlags> {
    use nix::sys::statvfs::FsFlags;
    let st = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?.flags();
    let mut ms = MsFlags::empty();
    // nosymfollow (5.10) is no locked flag, but a remount without it would clear it.
    if st.bits() & ST_NOSYMFOLLOW != 0 {
        ms |= MsFlags::from_bits_retain(MS_NOSYMFOLLOW);
    }
    for (fs, m) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        ms.set(m, st.contains(fs));
    }
    // Neither noatime nor relatime is strictatime, which a remount must then ask for by name
    // (the kernel's default is relatime).
    if !st.intersects(FsFlags::ST_NOATIME | FsFlags::ST_RELATIME) {
        ms |= MsFlags::MS_STRICTATIME;
    }
    Ok(ms)
}

/// `<linux/mount.h>` and `<sys/statvfs.h>` values for nosymfollow (Linux 5.10), which not every
/// libc exports.
const MS_NOSYMFOLLOW: libc::c_ulong = 256;
const ST_NOSYMFOLLOW: libc::c_ulong = 0x2000;

/// The mount points strictly below `dir`, from `/proc/self/mountinfo` (its fifth field, with the
/// kernel's octal escapes of space, tab, newline and backslash undone). `dir` is made canonical
/// first: mountinfo names mount points by their canonical paths.
fn mounts_below(dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let dir = std::fs::canonicalize(dir)?;
    Ok(mount_points()?.into_iter().filter(|p| *p != dir && p.starts_with(&dir)).collect())
}

/// Every mount point of this mount namespace, once per mount (a path mounted over twice is
/// listed twice), from `/proc/self/mountinfo`: it reads the kernel's table and never a mounted
/// filesystem, so it cannot wait on a FUSE daemon.
pub(super) fn mount_points() -> io::Result<Vec<std::path::PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let text = std::fs::read("/proc/self/mountinfo")?;
    Ok(text
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_mountinfo(field))))
        .collect())
}

fn unescape_mountinfo(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(super::unescape_mountinfo(br"/a\040b\011c\134d"), b"/a b\tc\\d");
        assert_eq!(super::unescape_mountinfo(br"/plain\0"), b"/plain\\0");
    }
}
