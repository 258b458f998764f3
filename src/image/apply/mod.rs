//! Applies layer tar streams to a staging root filesystem, as OCI `layer.md` defines: entries
//! replace what is at their path (unlink, then create; never write through an existing inode or
//! symlink), directories merge, whiteouts hide lower layers only. Policy for hostile input: `..`
//! is refused, links resolve inside the root, devices are skipped, setuid/setgid are stripped,
//! only small `user.*` xattrs are kept, and entry counts and sizes are capped.
//!
//! Directories are created owner-only (0700) and get their final modes and mtimes in one pass
//! after the last layer, deepest first. That is what lets a later layer write into a directory
//! an earlier layer made read-only without a user namespace (umoci needs its `unpriv` emulation
//! for this), and it keeps other users out of a half-written tree.

mod paths;
mod warnings;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::host::ProcessEnv;
use crate::image::tar::{Entry, Kind, TarError, TarSource, TarStream};

/// Entries and their data, in order: a layer's tar stream, or a SquashFS image walked in
/// directory order (`image::squash`). Everything written into a staging root goes through the
/// [`Applier`], whatever the format, so the in-root rules and limits are one set.
pub trait EntryStream {
    /// The next entry; `None` at the end.
    fn next_entry(&mut self) -> Result<Option<Entry>, ApplyError>;
    /// The current entry's next data bytes (empty at its end).
    fn data(&mut self) -> Result<&[u8], ApplyError>;
    /// Marks `n` bytes of [`EntryStream::data`] as read.
    fn consume(&mut self, n: usize);
}

impl<R: TarSource> EntryStream for TarStream<R> {
    fn next_entry(&mut self) -> Result<Option<Entry>, ApplyError> {
        Ok(TarStream::next_entry(self)?)
    }
    fn data(&mut self) -> Result<&[u8], ApplyError> {
        Ok(TarStream::data(self)?)
    }
    fn consume(&mut self, n: usize) {
        TarStream::consume(self, n);
    }
}

pub use paths::{MAX_COMPONENT, MAX_DEPTH};
pub use warnings::Warnings;

/// Caps on what one image may make us write.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Uncompressed bytes per layer stream (tar headers and data).
    pub max_layer_bytes: u64,
    /// Uncompressed bytes of all layers together: up to 1024 layers may name one small blob
    /// that inflates to the per-layer cap, which is CPU time without a byte written.
    pub max_image_bytes: u64,
    /// Entries across all layers.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_layer_bytes: 256 << 30, max_image_bytes: 512 << 30, max_entries: 1_000_000 }
    }
}

impl Limits {
    /// Defaults, overridden by `GPURUN_MAX_LAYER_BYTES`, `GPURUN_MAX_IMAGE_BYTES` and
    /// `GPURUN_MAX_ENTRIES`.
    pub fn from_env(env: &ProcessEnv) -> Limits {
        let get = |name: &str| env.get(name).and_then(|v| v.parse::<u64>().ok());
        let d = Limits::default();
        Limits {
            max_layer_bytes: get("GPURUN_MAX_LAYER_BYTES").unwrap_or(d.max_layer_bytes),
            max_image_bytes: get("GPURUN_MAX_IMAGE_BYTES").unwrap_or(d.max_image_bytes),
            max_entries: get("GPURUN_MAX_ENTRIES").unwrap_or(d.max_entries),
        }
    }
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("entry {entry:?}: {why}")]
    Entry { entry: String, why: String },
    #[error(transparent)]
    Tar(#[from] TarError),
    #[error("no space left on the cache filesystem")]
    DiskFull,
    #[error("{0}")]
    Limit(String),
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
    #[error("{what}")]
    Io { what: String, source: std::io::Error },
}

fn entry_err(entry: &[u8], why: impl Into<String>) -> ApplyError {
    ApplyError::Entry { entry: String::from_utf8_lossy(entry).into_owned(), why: why.into() }
}

fn errno_err(entry: &[u8], what: &str, e: Errno) -> ApplyError {
    if e == Errno::NOSPC || e == Errno::DQUOT {
        return ApplyError::DiskFull;
    }
    let why = match e {
        Errno::LOOP => format!("{what}: too many levels of symbolic links"),
        Errno::NOTDIR => format!("{what}: a parent is not a directory"),
        Errno::NOENT => format!("{what}: a parent is missing or a dangling symlink"),
        e => format!("{what}: {}", std::io::Error::from(e)),
    };
    entry_err(entry, why)
}

/// Final metadata of a directory, applied after the last layer.
#[derive(Debug, Clone, Copy)]
struct DirMeta {
    mode: u32,
    mtime: Timespec,
}

/// Applies layers, in order, to one staging root.
pub struct Applier {
    root: OwnedFd,
    limits: Limits,
    entries: u64,
    /// Directory metadata by inode (paths change when symlinked parents are replaced).
    dirs: HashMap<u64, DirMeta>,
    /// Entries made by the current layer, as (parent directory inode, name): whiteouts and
    /// opaque directories spare them. Names, not inodes: a hardlink this layer makes to a lower
    /// file must not spare the lower name, and a FIFO is an entry like any other.
    upper: HashSet<(u64, Vec<u8>)>,
    /// Directories (by inode) already made opaque in the current layer: a repeated
    /// `.wh..wh..opq` has nothing left to remove and must not cost another walk.
    opaqued: HashSet<u64>,
    /// The last resolved parent directory and its inode, reused by its siblings.
    parent_cache: Option<(Vec<u8>, OwnedFd, u64)>,
    pub warnings: Warnings,
    /// Bytes of file data written so far.
    pub bytes_written: u64,
    /// OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) are layer bookkeeping; a single file system
    /// (a SquashFS image) has none, and such names in it are ordinary files.
    whiteouts: bool,
}

impl Applier {
    /// `root` is an empty directory opened with O_PATH|O_DIRECTORY.
    pub fn new(root: OwnedFd, limits: Limits) -> Applier {
        Applier {
            root,
            limits,
            entries: 0,
            dirs: HashMap::new(),
            upper: HashSet::new(),
            opaqued: HashSet::new(),
            parent_cache: None,
            warnings: Warnings::default(),
            bytes_written: 0,
            whiteouts: true,
        }
    }

    /// An Applier for one file system, not layers: `.wh.` names are written as they are.
    pub fn without_whiteouts(mut self) -> Applier {
        self.whiteouts = false;
        self
    }

    /// Applies one layer; the stream is left just after its end-of-archive marker.
    pub fn apply_layer<S: EntryStream>(&mut self, tar: &mut S) -> Result<(), ApplyError> {
        self.upper.clear();
        self.opaqued.clear();
        self.parent_cache = None;
        while let Some(entry) = tar.next_entry()? {
            if let Some(sig) = crate::interrupt::pending() {
                return Err(ApplyError::Interrupted(sig));
            }
            self.entries += 1;
            if self.entries > self.limits.max_entries {
                return Err(ApplyError::Limit(format!(
                    "the image has more than {} entries (raise GPURUN_MAX_ENTRIES if it is genuine)",
                    self.limits.max_entries
                )));
            }
            self.apply_entry(&entry, tar)?;
        }
        Ok(())
    }

    fn apply_entry<S: EntryStream>(&mut self, e: &Entry, tar: &mut S) -> Result<(), ApplyError> {
        let parts = paths::components(&e.path).map_err(|why| entry_err(&e.path, why.to_string()))?;
        let Some((leaf, parent)) = parts.split_last() else {
            return match e.kind {
                Kind::Directory => Ok(()), // OCI leaves the root's own metadata unspecified.
                _ => Err(entry_err(&e.path, "refusing to change the type of the root directory")),
            };
        };
        if self.whiteouts
            && let Some(done) = self.layer_bookkeeping(&e.path, leaf, parent, &parts)
        {
            return done;
        }
        match e.kind {
            Kind::Regular | Kind::GnuSparse => self.regular(e, parent, leaf, tar),
            Kind::Directory => self.directory(e, parent, leaf),
            Kind::Symlink => self.symlink(e, parent, leaf),
            Kind::HardLink => self.hardlink(e, parent, leaf),
            Kind::Fifo => self.fifo(e, parent, leaf),
            Kind::Char | Kind::Block => {
                self.warnings.device(&e.path);
                Ok(())
            }
            Kind::Other(flag) => {
                self.warnings.other_type(&e.path, flag);
                Ok(())
            }
            Kind::LongName | Kind::LongLink | Kind::Pax | Kind::PaxGlobal => Ok(()),
        }
    }

    /// Whiteouts and AUFS metadata: `Some` (the entry's whole result) when the entry is layer
    /// bookkeeping rather than content.
    fn layer_bookkeeping(
        &mut self,
        path: &[u8],
        leaf: &[u8],
        parent: &[&[u8]],
        parts: &[&[u8]],
    ) -> Option<Result<(), ApplyError>> {
        if parts.iter().any(|p| p.starts_with(b".wh..wh.")) {
            if leaf == b".wh..wh..opq" && !parent.iter().any(|p| p.starts_with(b".wh.")) {
                return Some(self.opaque(path, parent));
            }
            self.warnings.aufs_meta += 1; // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs): not content.
            return Some(Ok(()));
        }
        if parent.iter().any(|p| p.starts_with(b".wh.")) {
            return Some(Err(entry_err(path, "a whiteout name is used as a directory")));
        }
        let target = leaf.strip_prefix(b".wh.")?;
        Some(self.whiteout(path, parent, target))
    }

    /// The directory that will hold an entry, created (0700) if missing, resolved in-root.
    fn parent_dir(&mut self, entry: &[u8], parent: &[&[u8]]) -> Result<BorrowedFd<'_>, ApplyError> {
        let key = paths::join(parent);
        let cached = self.parent_cache.as_ref().is_some_and(|(k, _, _)| *k == key);
        if !cached {
            let mut made = Vec::new();
            let fd = paths::mkdir_all_in_root(self.root.as_fd(), parent, |d| made.push(d))
                .map_err(|e| errno_err(entry, "resolving its parent directory", e))?;
            // A directory made implicitly belongs to this layer and gets 0755 at the end:
            // drop stale metadata of a reused inode.
            for made in made {
                self.dirs.remove(&made.ino);
                self.upper.insert((made.parent_ino, made.name));
            }
            let ino = rustix::fs::fstat(&fd).map_err(|e| errno_err(entry, "stat of its parent", e))?.st_ino;
            self.parent_cache = Some((key, fd, ino));
        }
        Ok(self.parent_cache.as_ref().map(|(_, fd, _)| fd.as_fd()).expect("cached above"))
    }

    /// Records `leaf` in `parent` as this layer's entry (the parent is usually still cached).
    fn mark_upper(&mut self, entry: &[u8], parent: &[&[u8]], leaf: &[u8]) -> Result<(), ApplyError> {
        self.parent_dir(entry, parent)?;
        if let Some((_, _, ino)) = &self.parent_cache {
            self.upper.insert((*ino, leaf.to_vec()));
        }
        Ok(())
    }

    /// Removes whatever is at `leaf` (a subtree if it is a directory). Removing anything but a
    /// plain file may change how later paths resolve, so the parent cache is dropped.
    fn clear_leaf(&mut self, entry: &[u8], parent: &[&[u8]], leaf: &[u8]) -> Result<(), ApplyError> {
        let dir = self.parent_dir(entry, parent)?;
        let kind = match rustix::fs::statat(dir, leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => FileType::from_raw_mode(st.st_mode),
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(errno_err(entry, "inspecting the existing path", e)),
        };
        crate::fsutil::remove_at(dir, leaf).map_err(|e| errno_err(entry, "removing the existing path", e))?;
        if kind != FileType::RegularFile {
            self.parent_cache = None;
        }
        Ok(())
    }

    /// Runs `create` in the parent directory; if the leaf exists, clears it and tries again.
    fn create_replacing<T>(
        &mut self,
        e: &Entry,
        parent: &[&[u8]],
        leaf: &[u8],
        what: &str,
        create: impl Fn(BorrowedFd<'_>) -> Result<T, Errno>,
    ) -> Result<T, ApplyError> {
        let dir = self.parent_dir(&e.path, parent)?;
        match create(dir) {
            Err(Errno::EXIST) => {}
            other => return other.map_err(|err| errno_err(&e.path, what, err)),
        }
        self.clear_leaf(&e.path, parent, leaf)?;
        let dir = self.parent_dir(&e.path, parent)?;
        create(dir).map_err(|err| errno_err(&e.path, what, err))
    }

    fn regular<S: EntryStream>(
        &mut self,
        e: &Entry,
        parent: &[&[u8]],
        leaf: &[u8],
        tar: &mut S,
    ) -> Result<(), ApplyError> {
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self.create_replacing(e, parent, leaf, "creating file", |dir| {
            rustix::fs::openat(dir, leaf, flags, Mode::from_raw_mode(0o600))
        })?;
        let file = File::from(fd);
        match &e.sparse {
            Some((real, segments)) => self.write_sparse(e, &file, *real, segments, tar)?,
            None => self.write_data(e, &file, tar)?,
        }
        self.finish_node(e, file.as_fd(), strip_mode(e.mode, false))?;
        self.mark_upper(&e.path, parent, leaf)?;
        Ok(())
    }

    fn write_data<S: EntryStream>(
        &mut self,
        e: &Entry,
        mut file: &File,
        tar: &mut S,
    ) -> Result<(), ApplyError> {
        loop {
            let chunk = tar.data()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let n = chunk.len();
            file.write_all(chunk).map_err(|err| io_entry_err(&e.path, "writing file data", err))?;
            tar.consume(n);
            self.bytes_written += n as u64;
        }
    }

    /// Old-GNU sparse: data segments written at their offsets, holes left as holes.
    fn write_sparse<S: EntryStream>(
        &mut self,
        e: &Entry,
        file: &File,
        real: u64,
        segments: &[crate::image::tar::SparseSegment],
        tar: &mut S,
    ) -> Result<(), ApplyError> {
        if real > self.limits.max_layer_bytes {
            return Err(ApplyError::Limit(format!(
                "sparse file {:?} claims {real} bytes (the per-layer limit is {}; GPURUN_MAX_LAYER_BYTES)",
                String::from_utf8_lossy(&e.path),
                self.limits.max_layer_bytes
            )));
        }
        for seg in segments {
            if seg.offset.checked_add(seg.len).is_none_or(|end| end > real) {
                return Err(entry_err(&e.path, "sparse map has a segment beyond the file's size"));
            }
            let mut offset = seg.offset;
            let mut left = seg.len;
            while left > 0 {
                let chunk = tar.data()?;
                if chunk.is_empty() {
                    return Err(entry_err(&e.path, "sparse map is larger than the stored data"));
                }
                let n = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                file.write_all_at(&chunk[..n], offset)
                    .map_err(|err| io_entry_err(&e.path, "writing sparse data", err))?;
                tar.consume(n);
                offset += n as u64;
                left -= n as u64;
            }
        }
        rustix::fs::ftruncate(file, real).map_err(|err| errno_err(&e.path, "sizing sparse file", err))?;
        Ok(())
    }

    /// Mode, xattrs and mtime on a freshly created node; records it as this layer's.
    fn finish_node(&mut self, e: &Entry, fd: BorrowedFd<'_>, mode: u32) -> Result<(), ApplyError> {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
            .map_err(|err| errno_err(&e.path, "setting mode", err))?;
        self.set_xattrs(e, fd);
        let _ = rustix::fs::futimens(fd, &times(e));
        Ok(())
    }

    fn set_xattrs(&mut self, e: &Entry, fd: BorrowedFd<'_>) {
        for (name, value) in &e.xattrs {
            if !self.warnings.xattr_allowed(name, value.len()) {
                continue;
            }
            let flags = rustix::fs::XattrFlags::empty();
            if let Err(err) = rustix::fs::fsetxattr(fd, name.as_slice(), value, flags) {
                self.warnings.xattr_failed(name, err);
            }
        }
    }

    fn directory(&mut self, e: &Entry, parent: &[&[u8]], leaf: &[u8]) -> Result<(), ApplyError> {
        let dir = self.parent_dir(&e.path, parent)?;
        let existing = rustix::fs::statat(dir, leaf, AtFlags::SYMLINK_NOFOLLOW).ok();
        let is_dir = existing.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if !is_dir {
            self.create_replacing(e, parent, leaf, "creating directory", |d| {
                rustix::fs::mkdirat(d, leaf, Mode::from_raw_mode(0o700))
            })?;
        }
        let dir = self.parent_dir(&e.path, parent)?;
        let fd = rustix::fs::openat(
            dir,
            leaf,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| errno_err(&e.path, "opening directory", err))?;
        self.set_xattrs(e, fd.as_fd());
        let st = rustix::fs::fstat(&fd).map_err(|err| errno_err(&e.path, "stat", err))?;
        self.dirs
            .insert(st.st_ino, DirMeta { mode: strip_mode(e.mode, true), mtime: times(e).last_modification });
        self.mark_upper(&e.path, parent, leaf)?;
        Ok(())
    }

    fn symlink(&mut self, e: &Entry, parent: &[&[u8]], leaf: &[u8]) -> Result<(), ApplyError> {
        if e.link.is_empty() {
            return Err(entry_err(&e.path, "symlink with an empty target"));
        }
        let target = e.link.as_slice();
        self.create_replacing(e, parent, leaf, "creating symlink", |dir| {
            rustix::fs::symlinkat(target, dir, leaf)
        })?;
        let dir = self.parent_dir(&e.path, parent)?;
        let _ = rustix::fs::utimensat(dir, leaf, &times(e), AtFlags::SYMLINK_NOFOLLOW);
        self.mark_upper(&e.path, parent, leaf)?;
        self.parent_cache = None; // a new symlink may now stand in a cached path
        Ok(())
    }

    fn fifo(&mut self, e: &Entry, parent: &[&[u8]], leaf: &[u8]) -> Result<(), ApplyError> {
        let mode = Mode::from_raw_mode(strip_mode(e.mode, false));
        self.create_replacing(e, parent, leaf, "creating fifo", |dir| {
            rustix::fs::mknodat(dir, leaf, FileType::Fifo, mode, 0)
        })?;
        let dir = self.parent_dir(&e.path, parent)?;
        let _ = rustix::fs::utimensat(dir, leaf, &times(e), AtFlags::SYMLINK_NOFOLLOW);
        self.mark_upper(&e.path, parent, leaf)?;
        Ok(())
    }

    fn hardlink(&mut self, e: &Entry, parent: &[&[u8]], leaf: &[u8]) -> Result<(), ApplyError> {
        // Absolute targets are root-relative (kaniko writes them); `..` is refused.
        let tparts = paths::components(&e.link)
            .map_err(|why| entry_err(&e.path, format!("hardlink target: {why}")))?;
        let Some((tleaf, tparent)) = tparts.split_last() else {
            return Err(entry_err(&e.path, "hardlink to the root directory"));
        };
        let tdir = paths::open_dir_in_root(self.root.as_fd(), &paths::join(tparent))
            .map_err(|err| errno_err(&e.path, "resolving the hardlink target's directory", err))?;
        let tstat = match rustix::fs::statat(&tdir, *tleaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                return Err(entry_err(
                    &e.path,
                    format!(
                        "hardlink target {:?} not found (it must come earlier)",
                        String::from_utf8_lossy(&e.link)
                    ),
                ));
            }
            Err(err) => return Err(errno_err(&e.path, "inspecting the hardlink target", err)),
        };
        if FileType::from_raw_mode(tstat.st_mode) == FileType::Directory {
            return Err(entry_err(&e.path, "hardlink to a directory"));
        }
        let dir = self.parent_dir(&e.path, parent)?;
        let same_dir = rustix::fs::fstat(dir).ok().map(|s| (s.st_dev, s.st_ino))
            == rustix::fs::fstat(&tdir).ok().map(|s| (s.st_dev, s.st_ino));
        if same_dir && *tleaf == leaf {
            return Err(entry_err(&e.path, "hardlink to itself"));
        }
        self.create_replacing(e, parent, leaf, "creating hardlink", |d| {
            rustix::fs::linkat(&tdir, *tleaf, d, leaf, AtFlags::empty())
        })?;
        self.mark_upper(&e.path, parent, leaf)?;
        Ok(())
    }

    /// `.wh.NAME`: removes NAME from lower layers (never following it if it is a symlink).
    fn whiteout(&mut self, entry: &[u8], parent: &[&[u8]], target: &[u8]) -> Result<(), ApplyError> {
        if target.is_empty() || target == b"." || target == b".." || target.contains(&b'/') {
            return Err(entry_err(entry, "invalid whiteout (names no file)"));
        }
        let dir = match paths::open_dir_in_root(self.root.as_fd(), &paths::join(parent)) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
            Err(err) => return Err(errno_err(entry, "resolving the whiteout's directory", err)),
        };
        match rustix::fs::statat(&dir, target, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(Errno::NOENT) => return Ok(()),
            Err(err) => return Err(errno_err(entry, "inspecting the whiteout target", err)),
        }
        let dir_ino = rustix::fs::fstat(&dir).map_err(|err| errno_err(entry, "stat", err))?.st_ino;
        if self.upper.contains(&(dir_ino, target.to_vec())) {
            return Ok(()); // Whiteouts apply to lower layers only.
        }
        crate::fsutil::remove_at(dir.as_fd(), target)
            .map_err(|err| errno_err(entry, "removing the whited-out path", err))?;
        self.parent_cache = None;
        Ok(())
    }

    /// `.wh..wh..opq`: hides every lower-layer child of the directory, whenever it appears.
    fn opaque(&mut self, entry: &[u8], dir_parts: &[&[u8]]) -> Result<(), ApplyError> {
        let path = paths::join(dir_parts);
        // Followed in-root like any parent: `etcl -> /etc` then `etcl/.wh..wh..opq` empties the
        // image's /etc, never the host's.
        let dir = match paths::open_in_root(self.root.as_fd(), &path, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(err) => return Err(errno_err(entry, "opening the opaque directory", err)),
        };
        let ino = rustix::fs::fstat(&dir).map_err(|err| errno_err(entry, "stat", err))?.st_ino;
        if !self.opaqued.insert(ino) {
            return Ok(());
        }
        self.prune_lower(entry, dir.as_fd(), 0)?;
        self.parent_cache = None;
        Ok(())
    }

    /// Removes children not made by this layer; descends into this layer's directories, which
    /// may have merged over lower ones.
    fn prune_lower(&mut self, entry: &[u8], dir: BorrowedFd<'_>, depth: usize) -> Result<(), ApplyError> {
        let names = crate::fsutil::read_names(dir)
            .map_err(|err| errno_err(entry, "listing the opaque directory", err))?;
        let dir_ino = rustix::fs::fstat(dir).map_err(|err| errno_err(entry, "stat", err))?.st_ino;
        for name in names {
            let st = rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|err| errno_err(entry, "stat in the opaque directory", err))?;
            if !self.upper.contains(&(dir_ino, name.clone())) {
                crate::fsutil::remove_at(dir, &name)
                    .map_err(|err| errno_err(entry, "removing a lower-layer path", err))?;
            } else if FileType::from_raw_mode(st.st_mode) == FileType::Directory && depth < MAX_DEPTH {
                let sub = rustix::fs::openat(
                    dir,
                    name.as_slice(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|err| errno_err(entry, "opening a directory in the opaque directory", err))?;
                self.prune_lower(entry, sub.as_fd(), depth + 1)?;
            }
        }
        Ok(())
    }

    /// After the last layer: every directory gets its final mode and mtime, deepest first
    /// (a 0555 parent must not stop the chmod of its children; mtimes change as children land).
    pub fn finish(self) -> Result<Warnings, ApplyError> {
        let root = rustix::fs::openat(
            &self.root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno_err(b".", "opening the root", e))?;
        self.finish_dir(root.as_fd(), 0)?;
        rustix::fs::fchmod(&root, Mode::from_raw_mode(0o755))
            .map_err(|e| errno_err(b".", "setting mode", e))?;
        Ok(self.warnings)
    }

    fn finish_dir(&self, dir: BorrowedFd<'_>, depth: usize) -> Result<(), ApplyError> {
        let mut reader = rustix::fs::Dir::read_from(dir).map_err(|e| errno_err(b".", "listing", e))?;
        let mut subdirs = Vec::new();
        while let Some(ent) = reader.read() {
            let ent = ent.map_err(|e| errno_err(b".", "listing", e))?;
            let name = ent.file_name().to_bytes();
            if ent.file_type() == FileType::Directory && name != b"." && name != b".." {
                subdirs.push(name.to_vec());
            }
        }
        for name in subdirs {
            let sub = rustix::fs::openat(
                dir,
                name.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| errno_err(&name, "opening directory", e))?;
            if depth < MAX_DEPTH {
                self.finish_dir(sub.as_fd(), depth + 1)?;
            }
            let st = rustix::fs::fstat(&sub).map_err(|e| errno_err(&name, "stat", e))?;
            let meta = self.dirs.get(&st.st_ino);
            let mode = meta.map_or(0o755, |m| m.mode);
            rustix::fs::fchmod(&sub, Mode::from_raw_mode(mode))
                .map_err(|e| errno_err(&name, "setting mode", e))?;
            if let Some(m) = meta {
                let ts = Timestamps { last_access: m.mtime, last_modification: m.mtime };
                let _ = rustix::fs::futimens(&sub, &ts);
            }
        }
        Ok(())
    }
}

fn io_entry_err(entry: &[u8], what: &str, err: std::io::Error) -> ApplyError {
    match Errno::from_io_error(&err) {
        Some(e) => errno_err(entry, what, e),
        None => entry_err(entry, format!("{what}: {err}")),
    }
}

/// setuid and setgid never survive (the cache is the user's; a setuid file there is a trap for
/// anyone who copies it out as root). Sticky stays on directories (`/tmp` is 1777).
fn strip_mode(mode: u32, is_dir: bool) -> u32 {
    if is_dir { mode & 0o1777 } else { mode & 0o777 }
}

fn times(e: &Entry) -> Timestamps {
    let t = Timespec { tv_sec: e.mtime, tv_nsec: i64::from(e.mtime_nsec) };
    Timestamps { last_access: t, last_modification: t }
}
