//! Filesystem helpers shared by the unpacker and the cache: removing trees that contain
//! read-only (0555, 0000) directories, without ever following a symlink out of the tree.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Removes `name` in `parent`: a file or symlink is unlinked (never followed), a directory is
/// emptied first (made owner-writable as needed) and then removed.
pub fn remove_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(parent, name, AtFlags::empty());
    }
    let dir = open_for_removal(parent, name, stat.st_mode)?;
    empty_tree(dir)?;
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

/// Opens the directory `name` (of mode `mode`, from the caller's stat) for listing and
/// removing, opening up its mode first if needed: images contain 0555 and 0000 directories,
/// and we own them.
fn open_for_removal(parent: BorrowedFd<'_>, name: &[u8], mode: u32) -> Result<OwnedFd, Errno> {
    if mode & 0o700 != 0o700 {
        rustix::fs::chmodat(parent, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat(parent, name, flags, Mode::empty())
}

/// Empties the directory `top`, depth first, holding two descriptors whatever the depth: it
/// goes down by name and back up through `..`. One descriptor per level ran out of descriptors
/// (EMFILE) on trees that symlinked parents make thousands of levels deep, which left debris
/// that no later removal could clear. `..` is the directory we came from: these trees are the
/// caller's private staging or cache directories, which nothing else renames meanwhile.
fn empty_tree(top: OwnedFd) -> Result<(), Errno> {
    let mut stack: Vec<Level> = Vec::new();
    let mut cur = top;
    let mut todo = remove_files(cur.as_fd())?;
    loop {
        if let Some((sub, mode)) = todo.pop() {
            let child = open_for_removal(cur.as_fd(), &sub, mode)?;
            stack.push(Level { id: identity(cur.as_fd())?, child: sub, todo: std::mem::take(&mut todo) });
            cur = child;
            todo = remove_files(cur.as_fd())?;
            continue;
        }
        // Listed children are gone; list again, since removing entries while reading one
        // directory stream is not guaranteed to have shown everything.
        todo = remove_files(cur.as_fd())?;
        if !todo.is_empty() {
            continue;
        }
        let Some(Level { id: parent, child: name, todo: rest }) = stack.pop() else { return Ok(()) };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let up = rustix::fs::openat(&cur, "..", flags, Mode::empty())?;
        // Had something moved the tree meanwhile, `..` would be another directory: stop
        // rather than empty it.
        if identity(up.as_fd())? != parent {
            return Err(Errno::STALE);
        }
        rustix::fs::unlinkat(&up, name.as_slice(), AtFlags::REMOVEDIR)?;
        cur = up;
        todo = rest;
    }
}

/// A directory above the one being emptied.
struct Level {
    /// (device, inode): `..` must lead back to it.
    id: (u64, u64),
    /// The name of the directory we went down into.
    child: Vec<u8>,
    /// Its other subdirectories, still to visit.
    todo: Vec<(Vec<u8>, u32)>,
}

fn identity(fd: BorrowedFd<'_>) -> Result<(u64, u64), Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Unlinks everything in `dir` that is not a directory; returns the subdirectories' names and
/// modes.
fn remove_files(dir: BorrowedFd<'_>) -> Result<Vec<(Vec<u8>, u32)>, Errno> {
    let mut subdirs = Vec::new();
    for name in read_names(dir)? {
        let st = rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            subdirs.push((name, st.st_mode));
        } else {
            rustix::fs::unlinkat(dir, name.as_slice(), AtFlags::empty())?;
        }
    }
    Ok(subdirs)
}

/// The names in `dir`, without `.` and `..`.
pub fn read_names(dir: BorrowedFd<'_>) -> Result<Vec<Vec<u8>>, Errno> {
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    let mut names = Vec::new();
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes a whole tree by path (cache entries, staging directories). Missing is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot remove a root path"));
    };
    let parent = rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    match remove_at(parent.as_fd(), name.as_encoded_bytes()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A name part no other process uses, on this machine or another sharing the directory (a cache
/// on a cluster file system): the host name, the process id and the time in nanoseconds. The
/// process id alone is not enough: ranks on identical nodes often have the same one.
pub fn unique_suffix() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    format!("{host}.{}.{nanos}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn removes_read_only_trees_without_following_links() {
        let base = std::env::temp_dir().join(format!("gpurun-fsutil-{}", std::process::id()));
        let outside = base.join("outside");
        let tree = base.join("tree");
        std::fs::create_dir_all(tree.join("ro/zero")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        std::fs::write(tree.join("ro/zero/f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("ro/link")).unwrap();
        std::fs::set_permissions(tree.join("ro/zero"), std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        remove_tree(&base).unwrap();
    }

    #[test]
    fn removes_trees_deeper_than_the_descriptor_limit() {
        // 3000 levels: more than the 1024 descriptors a process may have by default, and paths
        // far longer than PATH_MAX, so neither one fd per level nor paths would do.
        let base = std::env::temp_dir().join(format!("gpurun-fsutil-deep-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let mut dir = rustix::fs::open(&base, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for i in 0..3000 {
            rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o700)).unwrap();
            if i % 100 == 0 {
                let f = rustix::fs::openat(
                    &dir,
                    "f",
                    OFlags::CREATE | OFlags::WRONLY,
                    Mode::from_raw_mode(0o600),
                );
                drop(f.unwrap());
            }
            dir = rustix::fs::openat(&dir, "d", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        drop(dir);
        remove_tree(&base).unwrap();
        assert!(!base.exists());
    }
}
