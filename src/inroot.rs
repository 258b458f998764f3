//! The one way gpurun reads what an image contains. An image root (an unpacked cache entry, a
//! directory IMAGE, an OCI layout) is untrusted: its files may be FIFOs that block an open or a
//! read forever, device nodes whose open has effects, symlinks to the host's files or into
//! `/proc/self`, or sparse files of many GiB. Every read of image content goes through [`Root`]:
//!
//! * paths resolve inside the root (`RESOLVE_IN_ROOT`: `..` and absolute symlinks stop at the
//!   root) and never through a magic link (`RESOLVE_NO_MAGICLINKS`);
//! * a node is first opened `O_PATH` and checked: only a regular file (or, for listing, a
//!   directory) is opened for reading, so no FIFO or device is ever opened for I/O; the reopen is
//!   `O_NONBLOCK | O_NOCTTY` and must find the same inode;
//! * a file larger than the caller's cap is refused by its size, before any byte is read.
//!
//! It never writes and never follows a path outside the root; the unpacker's own in-root writes
//! live in `image/apply`.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

mod walk;

/// An image root directory, held open so every lookup starts from the same directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// Why a file of the image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path} in the image {root}: {source}")]
    Open { root: PathBuf, path: String, source: io::Error },
    #[error("{path} in the image {root} is {kind}, not a regular file")]
    NotRegular { root: PathBuf, path: String, kind: &'static str },
    #[error("{path} in the image {root} is {size} bytes, more than the {cap} gpurun reads")]
    TooLarge { root: PathBuf, path: String, size: u64, cap: u64 },
    #[error("{path} in the image {root} changed while it was opened")]
    Changed { root: PathBuf, path: String },
    #[error("read {path} in the image {root}: {source}")]
    Read { root: PathBuf, path: String, source: io::Error },
}

impl ReadError {
    /// True when the file is simply not there (a missing file is often no error for callers).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Open { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A name for a node type, for messages.
pub fn kind_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of unknown type",
    }
}

impl Root {
    /// Opens the image root `path` (a directory).
    pub fn open(path: &Path) -> io::Result<Root> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty())?;
        Ok(Root { fd, path: path.to_owned() })
    }

    /// Resolves `path` (absolute or relative to the root) to an `O_PATH` descriptor of the node
    /// itself: a symlink at the end is followed inside the root, like every one before it.
    fn node(&self, path: &str) -> Result<OwnedFd, Errno> {
        resolve(self.fd.as_fd(), path.as_bytes(), OFlags::PATH | OFlags::CLOEXEC)
    }

    /// The type of the node at `path`, or `None` when there is none (or it cannot be resolved).
    pub fn file_type(&self, path: &str) -> Option<FileType> {
        self.lookup(path).ok()
    }

    /// The type of the node at `path`, or why it could not be resolved (`NOENT` when it is
    /// simply not there; `LOOP`, `NOTDIR`, `ACCESS` when something on the way stands in it).
    pub fn lookup(&self, path: &str) -> Result<FileType, Errno> {
        let fd = self.node(path)?;
        rustix::fs::fstat(&fd).map(|st| FileType::from_raw_mode(st.st_mode))
    }

    /// Opens the directory at `path` for listing; `None` when it is missing or not a directory.
    pub fn open_dir(&self, path: &str) -> Option<OwnedFd> {
        self.try_open_dir(path).ok()
    }

    /// [`Root::open_dir`] with the reason it could not be opened.
    pub fn try_open_dir(&self, path: &str) -> Result<OwnedFd, Errno> {
        resolve(self.fd.as_fd(), path.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC)
    }

    /// Opens the regular file at `path` for reading, with its size; anything else (a FIFO, a
    /// device, a directory) is refused without being opened for reading.
    pub fn open_regular(&self, path: &str) -> Result<(std::fs::File, u64), ReadError> {
        let err_path = || path.to_string();
        let root = || self.path.clone();
        let open_err = |e: Errno| ReadError::Open { root: root(), path: err_path(), source: e.into() };
        let node = self.node(path).map_err(open_err)?;
        let st = rustix::fs::fstat(&node).map_err(open_err)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::RegularFile {
            return Err(ReadError::NotRegular { root: root(), path: err_path(), kind: kind_name(kind) });
        }
        // Reopened by path for reading: an O_PATH descriptor cannot be read. O_NONBLOCK and the
        // inode check keep a node swapped in meanwhile from blocking or being read instead.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = resolve(self.fd.as_fd(), path.as_bytes(), flags).map_err(open_err)?;
        let again = rustix::fs::fstat(&fd).map_err(open_err)?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            return Err(ReadError::Changed { root: root(), path: err_path() });
        }
        Ok((std::fs::File::from(fd), st.st_size as u64))
    }

    /// Reads the whole regular file at `path`, refusing one larger than `cap` bytes.
    pub fn read(&self, path: &str, cap: u64) -> Result<Vec<u8>, ReadError> {
        let err_path = || path.to_string();
        let root = || self.path.clone();
        let (file, size) = self.open_regular(path)?;
        if size > cap {
            return Err(ReadError::TooLarge { root: root(), path: err_path(), size, cap });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(cap + 1).read_to_end(&mut bytes).map_err(|source| ReadError::Read {
            root: root(),
            path: err_path(),
            source,
        })?;
        if bytes.len() as u64 > cap {
            return Err(ReadError::TooLarge {
                root: root(),
                path: err_path(),
                size: bytes.len() as u64,
                cap,
            });
        }
        Ok(bytes)
    }
}

/// The one in-root resolution, for the unpacker's writes as for every read: `path` (absolute or
/// relative; empty is the root) is opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`,
/// so `..` and absolute symlinks stop at the root. Retried on `EAGAIN`, which the kernel returns
/// when a concurrent rename could have let `..` escape. Where the kernel has no `openat2` (before
/// 5.6) the same resolution is done by [`walk`], one component at a time.
pub fn resolve(root: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    resolve_scoped(root, path, flags, walk::Scope::InRoot)
}

/// [`resolve`] with `RESOLVE_BENEATH`: a path that would leave `dir` (`..` above it, an absolute
/// path or symlink) fails with `EXDEV` instead of stopping at it.
pub fn resolve_beneath(dir: BorrowedFd<'_>, path: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    resolve_scoped(dir, path, flags, walk::Scope::Beneath)
}

fn resolve_scoped(
    root: BorrowedFd<'_>,
    path: &[u8],
    flags: OFlags,
    scope: walk::Scope,
) -> Result<OwnedFd, Errno> {
    if !openat2_available(root) {
        return walk::resolve(root, path, flags, scope);
    }
    let mut rel = path;
    while scope == walk::Scope::InRoot
        && let [b'/', rest @ ..] = rel
    {
        rel = rest;
    }
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    let how = ResolveFlags::NO_MAGICLINKS
        | match scope {
            walk::Scope::InRoot => ResolveFlags::IN_ROOT,
            walk::Scope::Beneath => ResolveFlags::BENEATH,
        };
    let flags = flags | OFlags::CLOEXEC;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(root, rel, flags, Mode::empty(), how) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// Whether this kernel (and any seccomp filter around gpurun) lets `openat2` run (for `gpurun
/// doctor`).
pub fn openat2_supported() -> bool {
    rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .is_ok_and(|root| openat2_available(root.as_fd()))
}

/// Whether this kernel (and any seccomp filter around gpurun) lets `openat2` run, asked once per
/// process: `ENOSYS` before Linux 5.6, `EPERM` under container runtimes' older default filters.
fn openat2_available(any_dir: BorrowedFd<'_>) -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let probe = rustix::fs::openat2(
            any_dir,
            ".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        );
        let available = !matches!(probe, Err(Errno::NOSYS | Errno::PERM));
        if !available {
            tracing::debug!("openat2 unavailable: resolving paths in userspace");
        }
        available
    })
}
