//! Filesystem helpers shared by the unpacker and the cache: removing trees that contain
//! read-only (0555, 0000) directories, without ever following a symlink out of the tree.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Deepest tree removed; unpacked trees are bounded far below this by the unpacker.
const MAX_REMOVE_DEPTH: usize = 4096;

/// Removes `name` in `parent`: a file or symlink is unlinked (never followed), a directory is
/// emptied first (made owner-writable as needed) and then removed.
pub fn remove_at(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    remove_at_depth(parent, name, 0)
}

fn remove_at_depth(parent: BorrowedFd<'_>, name: &[u8], depth: usize) -> Result<(), Errno> {
    let stat = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return rustix::fs::unlinkat(parent, name, AtFlags::empty());
    }
    if depth > MAX_REMOVE_DEPTH {
        return Err(Errno::LOOP);
    }
    if stat.st_mode & 0o700 != 0o700 {
        // Images contain 0555 and 0000 directories; we own them, so we may open them up.
        rustix::fs::chmodat(parent, name, Mode::from_raw_mode(0o700), AtFlags::empty())?;
    }
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    empty_dir(dir.as_fd(), depth)?;
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

/// Removes everything inside the open directory `dir`.
pub fn empty_dir(dir: BorrowedFd<'_>, depth: usize) -> Result<(), Errno> {
    loop {
        // Re-read after each batch: removing entries while iterating one stream is not
        // guaranteed to visit everything.
        let names = read_names(dir)?;
        if names.is_empty() {
            return Ok(());
        }
        for name in names {
            remove_at_depth(dir, &name, depth + 1)?;
        }
    }
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
}
