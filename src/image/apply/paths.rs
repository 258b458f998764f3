//! Entry names and in-root resolution. Names are validated lexically (no `..`, bounded length
//! and depth); parents are resolved by `inroot::resolve` (`openat2(RESOLVE_IN_ROOT)`), so symlinks
//! in the image, absolute ones included (`var/run -> /run`), resolve inside the rootfs and
//! never on the host. The leaf is never followed: callers act on it with `*at` calls.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Longest single path component (NAME_MAX).
pub const MAX_COMPONENT: usize = 255;
/// Deepest path accepted; real images stay far below this.
pub const MAX_DEPTH: usize = 256;

/// Why an entry name is unacceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    DotDot,
    ComponentTooLong(usize),
    TooDeep(usize),
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::DotDot => write!(f, "path contains '..' (escapes the root)"),
            NameError::ComponentTooLong(n) => {
                write!(f, "a path component is {n} bytes long (at most {MAX_COMPONENT})")
            }
            NameError::TooDeep(n) => write!(f, "path is {n} directories deep (at most {MAX_DEPTH})"),
        }
    }
}

/// Splits an entry name into components: leading `/`, `.` and empty components dropped.
/// An empty result means the entry is the root itself.
pub fn components(name: &[u8]) -> Result<Vec<&[u8]>, NameError> {
    let mut out = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(NameError::DotDot),
            p if p.len() > MAX_COMPONENT => return Err(NameError::ComponentTooLong(p.len())),
            p => out.push(p),
        }
    }
    if out.len() > MAX_DEPTH {
        return Err(NameError::TooDeep(out.len()));
    }
    Ok(out)
}

/// Joins components back into a relative path.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'/')
}

/// Opens `path` (relative, already validated) as a directory, resolving every symlink on the
/// way inside `root`. The empty path is the root itself.
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
    crate::inroot::resolve(root, path, OFlags::PATH | OFlags::DIRECTORY)
}

/// Opens `path` with `flags`, every symlink (the last one too) resolved inside `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    crate::inroot::resolve(root, path, flags)
}

/// A directory `mkdir_all_in_root` made: its parent's inode, its name and its own inode.
pub struct Made {
    pub parent_ino: u64,
    pub name: Vec<u8>,
    pub ino: u64,
}

/// Creates the directory `parts` (and missing parents) inside `root`, returning it opened.
/// `created` hears of each directory this call made.
///
/// Only the deepest existing prefix is resolved in-root (found from the longest prefix down,
/// since usually only the last component or two are missing); what is below it was made here,
/// so it is walked with `mkdirat` and `O_NOFOLLOW` opens. Resolving every prefix from the root
/// instead cost O(depth^2) per entry.
pub fn mkdir_all_in_root(
    root: BorrowedFd<'_>,
    parts: &[&[u8]],
    mut created: impl FnMut(Made),
) -> Result<OwnedFd, Errno> {
    let mut existing = parts.len();
    let mut dir = loop {
        match open_dir_in_root(root, &join(&parts[..existing])) {
            Ok(fd) => break fd,
            Err(Errno::NOENT) if existing > 0 => existing -= 1,
            Err(e) => return Err(e),
        }
    };
    if existing == parts.len() {
        return Ok(dir);
    }
    let mut dir_ino = rustix::fs::fstat(&dir)?.st_ino;
    for part in &parts[existing..] {
        match rustix::fs::mkdirat(&dir, *part, Mode::from_raw_mode(0o700)) {
            Ok(()) => {}
            // A dangling symlink: ENOENT on open, EEXIST on mkdir.
            Err(Errno::EXIST) => return Err(Errno::NOENT),
            Err(e) => return Err(e),
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let sub = rustix::fs::openat(&dir, *part, flags, Mode::empty())?;
        let ino = rustix::fs::fstat(&sub)?.st_ino;
        created(Made { parent_ino: dir_ino, name: part.to_vec(), ino });
        (dir, dir_ino) = (sub, ino);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(components(b"./a//b/").unwrap(), vec![&b"a"[..], b"b"]);
        assert_eq!(components(b"/etc/passwd").unwrap(), vec![&b"etc"[..], b"passwd"]);
        assert!(components(b"./").unwrap().is_empty());
        assert_eq!(components(b"a/../b"), Err(NameError::DotDot));
        assert_eq!(components(b"../../../tmp/x"), Err(NameError::DotDot));
        let long = vec![b'x'; 256];
        assert_eq!(components(&long), Err(NameError::ComponentTooLong(256)));
        let deep = b"a/".repeat(MAX_DEPTH + 1);
        assert!(matches!(components(&deep), Err(NameError::TooDeep(_))));
    }
}
