//! In-root resolution without `openat2` (Linux < 5.6: RHEL 8's 4.18, Ubuntu 20.04's 5.4): a walk
//! from the root descriptor one component at a time, each opened `O_PATH | O_NOFOLLOW` relative
//! to the directory before it, with the semantics of `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`:
//!
//! * `..` never leaves the root and never goes where the walk did not come from: the walk keeps
//!   the names and the identities (device, inode) of the directories it went through; `..` is
//!   the kernel's `..` only when that is the directory recorded one level up (one open, however
//!   deep), else the recorded names are opened again from the root (each `O_NOFOLLOW |
//!   O_DIRECTORY`; one that is no longer a directory starts the walk over). At the root it stays
//!   there. A directory renamed meanwhile cannot lead `..` out (the attack `openat2` answers with
//!   `EAGAIN`), and a deep path holds two descriptors, not one per level;
//! * a symlink's target is read (`readlinkat` on the link itself) and walked from the root when
//!   absolute, from the link's directory otherwise; a magic link's text (`pipe:[1]`,
//!   `/proc/..`) is only text, walked inside the root like any other;
//! * at most [`MAX_SYMLINKS`] symlinks per resolution (`ELOOP`), like the kernel;
//! * the last component is followed only without `O_NOFOLLOW`, as `openat2` does; it is opened
//!   with the caller's flags relative to its directory, `O_NOFOLLOW` added, and must be the inode
//!   the walk found, else the walk starts over (a bounded number of times, then `EAGAIN`).
//!
//! `O_CREAT` is not supported (no caller creates through a resolution; creation happens relative
//! to a resolved directory).

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;

/// The kernel's limit on symlinks followed in one lookup (`MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;
/// Walks started over after the last component changed under the walk.
const MAX_RETRIES: usize = 16;

/// Where `..` and absolute symlinks stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// At the root, as if it were `/` (`RESOLVE_IN_ROOT`).
    InRoot,
    /// Leaving the root is an error, `EXDEV` (`RESOLVE_BENEATH`).
    Beneath,
}

/// Opens `path` below `root` with `flags`, as `openat2` with `scope` would.
pub fn resolve(root: BorrowedFd<'_>, path: &[u8], flags: OFlags, scope: Scope) -> Result<OwnedFd, Errno> {
    if flags.contains(OFlags::CREATE) {
        return Err(Errno::INVAL);
    }
    for _ in 0..MAX_RETRIES {
        match walk(root, path, flags, scope) {
            Err(Errno::AGAIN) => continue,
            other => return other,
        }
    }
    Err(Errno::AGAIN)
}

/// The components of `path`; a trailing `/` becomes a final `.`, so that what precedes it must
/// be a directory, as the kernel requires.
fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    let mut out: VecDeque<Vec<u8>> =
        path.split(|&b| b == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect();
    if path.len() > 1 && path.ends_with(b"/") {
        out.push_back(b".".to_vec());
    }
    out
}

fn open_path(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

fn walk(root: BorrowedFd<'_>, path: &[u8], flags: OFlags, scope: Scope) -> Result<OwnedFd, Errno> {
    let mut queue = components(path);
    if scope == Scope::Beneath && path.starts_with(b"/") {
        return Err(Errno::XDEV);
    }
    if path.len() >= PATH_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    let mut cur = open_path(root, b".")?;
    // The names of the directories from the root down to `cur`, and the identity (device,
    // inode) of each directory on the way, the root's first.
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut ids: Vec<(u64, u64)> = vec![id(&cur)?];
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        match name.as_slice() {
            b"." => continue,
            b".." => {
                if names.pop().is_none() {
                    if scope == Scope::Beneath {
                        return Err(Errno::XDEV);
                    }
                    continue;
                }
                ids.pop();
                cur = parent(root, &cur, &names, ids.last().copied())?;
                continue;
            }
            _ => {}
        }
        let last = queue.is_empty();
        let node = open_path(cur.as_fd(), &name)?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&node)?.st_mode);
        if kind == FileType::Symlink && !(last && flags.contains(OFlags::NOFOLLOW)) {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::LOOP);
            }
            let target = rustix::fs::readlinkat(&node, "", Vec::new())?.into_bytes();
            if target.is_empty() {
                return Err(Errno::NOENT);
            }
            if target.starts_with(b"/") {
                if scope == Scope::Beneath {
                    return Err(Errno::XDEV);
                }
                cur = open_path(root, b".")?;
                names.clear();
                ids.truncate(1);
            }
            for c in components(&target).into_iter().rev() {
                queue.push_front(c);
            }
            continue;
        }
        if last {
            return open_last(cur.as_fd(), &name, node, kind, flags);
        }
        if kind != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        ids.push(id(&node)?);
        cur = node;
        names.push(name);
    }
    // The path ended at a directory (empty, `.`, `..`, or a trailing `/`).
    reopen_dir(cur, flags)
}

/// The kernel's limit on a path's length, with its NUL (`PATH_MAX`): longer is `ENAMETOOLONG`.
const PATH_MAX: usize = 4096;

fn id(fd: &OwnedFd) -> Result<(u64, u64), Errno> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// The parent of `cur`: its `..` when that is the directory the walk came through (one open,
/// whatever the depth), else the names from the root again (a directory moved meanwhile).
fn parent(
    root: BorrowedFd<'_>,
    cur: &OwnedFd,
    names: &[Vec<u8>],
    expected: Option<(u64, u64)>,
) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if let Ok(up) = rustix::fs::openat(cur, "..", flags, Mode::empty())
        && Some(id(&up)?) == expected
    {
        return Ok(up);
    }
    reopen_from_root(root, names)
}

/// The directory `names` (plain names, each found a directory by this walk) below the root,
/// opened again one name at a time without following anything: `EAGAIN` when one has been
/// replaced by something else since.
fn reopen_from_root(root: BorrowedFd<'_>, names: &[Vec<u8>]) -> Result<OwnedFd, Errno> {
    let mut cur = open_path(root, b".")?;
    for name in names {
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC;
        cur = match rustix::fs::openat(&cur, name.as_slice(), flags, Mode::empty()) {
            Err(Errno::NOTDIR | Errno::LOOP | Errno::NOENT) => return Err(Errno::AGAIN),
            other => other?,
        };
    }
    Ok(cur)
}

/// The final component, found as `node` (of `kind`) in `dir`, opened with the caller's flags.
fn open_last(
    dir: BorrowedFd<'_>,
    name: &[u8],
    node: OwnedFd,
    kind: FileType,
    flags: OFlags,
) -> Result<OwnedFd, Errno> {
    if flags.contains(OFlags::DIRECTORY) && kind != FileType::Directory {
        // A symlink reaches here only with O_NOFOLLOW, where the kernel also says ENOTDIR.
        return Err(Errno::NOTDIR);
    }
    if flags.contains(OFlags::PATH) {
        return Ok(node);
    }
    if kind == FileType::Symlink {
        // O_NOFOLLOW on a symlink without O_PATH.
        return Err(Errno::LOOP);
    }
    let opened =
        match rustix::fs::openat(dir, name, flags | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
            // Swapped for a symlink since the walk saw it: walk again.
            Err(Errno::LOOP) => return Err(Errno::AGAIN),
            other => other?,
        };
    same_inode(&node, &opened)?;
    Ok(opened)
}

/// Opens the directory the walk ended at with the caller's flags.
fn reopen_dir(dir: OwnedFd, flags: OFlags) -> Result<OwnedFd, Errno> {
    if flags.contains(OFlags::PATH) {
        return Ok(dir);
    }
    let opened = rustix::fs::openat(&dir, ".", flags | OFlags::CLOEXEC, Mode::empty())?;
    same_inode(&dir, &opened)?;
    Ok(opened)
}

/// `EAGAIN` (start over) unless both descriptors are the same inode.
fn same_inode(a: &OwnedFd, b: &OwnedFd) -> Result<(), Errno> {
    let (x, y) = (rustix::fs::fstat(a)?, rustix::fs::fstat(b)?);
    if (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino) { Ok(()) } else { Err(Errno::AGAIN) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::time::Duration;

    /// The same question to openat2 and to the walk: same answer (the file's inode, or errno).
    fn both(
        root: &Path,
        path: &str,
        flags: OFlags,
        scope: Scope,
    ) -> (Result<u64, Errno>, Result<u64, Errno>) {
        let fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let how = match scope {
            Scope::InRoot => rustix::fs::ResolveFlags::IN_ROOT,
            Scope::Beneath => rustix::fs::ResolveFlags::BENEATH,
        } | rustix::fs::ResolveFlags::NO_MAGICLINKS;
        let ino = |r: Result<OwnedFd, Errno>| r.and_then(|f| rustix::fs::fstat(&f).map(|s| s.st_ino));
        let rel = if path.is_empty() { "." } else { path };
        let kernel = ino(rustix::fs::openat2(&fd, rel, flags | OFlags::CLOEXEC, Mode::empty(), how));
        (kernel, ino(resolve(fd.as_fd(), path.as_bytes(), flags, scope)))
    }

    #[test]
    fn agrees_with_openat2() {
        let dir = std::env::temp_dir().join(format!("gpurun-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let r = dir.join("root");
        std::fs::create_dir_all(r.join("a/b/c")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::fs::write(dir.join("outside/secret"), "host").unwrap();
        std::fs::write(r.join("a/b/file"), "x").unwrap();
        std::fs::write(r.join("secret"), "in root").unwrap();
        let links = [
            ("a/up", "../../.."),
            ("a/abs", "/a/b"),
            ("a/escape", "../../outside/secret"),
            ("a/abs-escape", "/../../outside/secret"),
            ("a/loop1", "loop2"),
            ("a/loop2", "loop1"),
            ("a/dangling", "nowhere"),
            ("a/to-file", "b/file"),
            ("a/proc", "/proc/self/root/etc/passwd"),
            ("a/empty-ish", "./"),
            ("a/b/c/deep", "../../../../../../secret"),
        ];
        for (link, target) in links {
            symlink(target, r.join(link)).unwrap();
        }
        let paths = [
            "",
            ".",
            "/",
            "..",
            "../..",
            "a",
            "a/",
            "a/b/file",
            "a/b/file/",
            "a/b/file/..",
            "a/up",
            "a/up/secret",
            "a/abs",
            "a/abs/file",
            "a/escape",
            "a/abs-escape",
            "a/loop1",
            "a/dangling",
            "a/to-file",
            "a/to-file/",
            "a/proc",
            "a/empty-ish",
            "a/b/c/deep",
            "a/b/c/../../b/./file",
            "/a/../../a/b",
            "nope/x",
            "a/b/file/x",
        ];
        let flag_sets = [
            OFlags::PATH,
            OFlags::PATH | OFlags::NOFOLLOW,
            OFlags::PATH | OFlags::DIRECTORY,
            OFlags::RDONLY,
            OFlags::RDONLY | OFlags::NOFOLLOW,
            OFlags::RDONLY | OFlags::DIRECTORY,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        ];
        let mut differ = Vec::new();
        for scope in [Scope::InRoot, Scope::Beneath] {
            for path in paths {
                for flags in flag_sets {
                    let (kernel, walk) = both(&r, path, flags, scope);
                    if kernel != walk {
                        differ
                            .push(format!("{scope:?} {path:?} {flags:?}: openat2 {kernel:?}, walk {walk:?}"));
                    }
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(differ.is_empty(), "{}", differ.join("\n"));
    }

    /// A path 1,500 directories deep resolves, and `..` from its bottom too (the corpus's X7
    /// case checks the same under a 1,024 open-file limit).
    #[test]
    fn deep_paths_hold_few_descriptors() {
        let dir = std::env::temp_dir().join(format!("gpurun-walk-deep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let depth = 1500;
        let rel: Vec<&str> = std::iter::repeat_n("d", depth).collect();
        let deep = rel.join("/");
        let root = rustix::fs::open(
            std::fs::create_dir_all(&dir).map(|_| dir.clone()).unwrap(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        // Made level by level relative to the last (a path this long exceeds PATH_MAX).
        let mut cur = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&cur, "d", 0o755.into()).unwrap();
            cur = rustix::fs::openat(&cur, "d", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        assert!(resolve(root.as_fd(), deep.as_bytes(), OFlags::PATH, Scope::InRoot).is_ok());
        let up = format!("{deep}/../../d");
        assert!(
            resolve(root.as_fd(), up.as_bytes(), OFlags::PATH | OFlags::DIRECTORY, Scope::InRoot).is_ok()
        );
        drop(cur);
        std::process::Command::new("rm").arg("-rf").arg(&dir).status().unwrap();
    }

    /// `..` costs one open however deep the walk is: links full of `..` on a deep tree (each
    /// would otherwise reopen every level from the root) end in ELOOP in milliseconds.
    #[test]
    fn dotdot_is_cheap_on_deep_trees() {
        let dir = std::env::temp_dir().join(format!("gpurun-walk-dotdot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let root = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let mut cur = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..2000 {
            rustix::fs::mkdirat(&cur, "d", 0o755.into()).unwrap();
            cur = rustix::fs::openat(&cur, "d", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        }
        let up_and_down = format!("{}{}u", "../".repeat(800), "d/".repeat(800));
        rustix::fs::symlinkat(up_and_down.as_str(), &cur, "u").unwrap();
        rustix::fs::symlinkat("d/".repeat(2000).trim_end_matches('/'), &root, "top").unwrap();
        let started = std::time::Instant::now();
        let got = resolve(root.as_fd(), b"top/u/x", OFlags::PATH, Scope::InRoot);
        assert_eq!(got.err(), Some(Errno::LOOP));
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        let long = "a/".repeat(2100);
        assert_eq!(
            resolve(root.as_fd(), long.as_bytes(), OFlags::PATH, Scope::InRoot).err(),
            Some(Errno::NAMETOOLONG)
        );
        drop(cur);
        std::process::Command::new("rm").arg("-rf").arg(&dir).status().unwrap();
    }

    #[test]
    fn creation_is_refused_and_loops_end() {
        let fd = rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(
            resolve(fd.as_fd(), b"x", OFlags::CREATE | OFlags::WRONLY, Scope::InRoot).err(),
            Some(Errno::INVAL)
        );
        let dir = std::env::temp_dir().join(format!("gpurun-walk-loop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A chain of 41 links: one more than the kernel follows.
        for i in 0..41 {
            symlink(format!("l{}", i + 1), dir.join(format!("l{i}"))).unwrap();
        }
        std::fs::write(dir.join("l41"), "").unwrap();
        let root = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        assert_eq!(resolve(root.as_fd(), b"l0", OFlags::PATH, Scope::InRoot).err(), Some(Errno::LOOP));
        assert!(resolve(root.as_fd(), b"l1", OFlags::PATH, Scope::InRoot).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
