//! The per-user rootfs cache. It owns the directory layout, locking and atomic publication; it
//! does not know archive formats (that is `image`).
//!
//! ```text
//! $CACHE/                    mode 0700
//!   images/<id>/rootfs/      a published root filesystem (never modified after publication)
//!   images/<id>/image.json   what it is and where it came from (ImageRecord)
//!   staging/<id>.<pid>/      an unpack in progress; renamed into images/ only when complete
//!   locks/<id>.unpack        flock: held exclusively by the one process unpacking <id>
//!   locks/<id>.lock          flock: shared while a container runs, exclusive to remove
//!   sources/<hash>.json      archive identity (dev, inode, size, mtime, ctime) -> id, for the warm path
//!   mnt/                     always empty: each run mounts its private staging tmpfs here
//! ```
//!
//! A rootfs is complete exactly when `images/<id>/` exists, because it appears by one
//! `rename(2)`. A killed unpack leaves only `staging/` debris, removed by the next unpack of the
//! same image (under its lock) or by `gpurun prune`. flock(2) works on NFS (Linux emulates it
//! with POSIX locks), and rename within one directory tree is atomic there too.
//!
//! Unpacking and using have separate locks. With one lock, a rank waiting to unpack (it saw the
//! image unpublished) could wait forever for ranks that already run on it and, inside
//! `MPI_Init`, wait for that rank. Nobody can use an image that is not published, so the unpack
//! lock never needs to exclude users; removal takes the use lock.

pub mod record;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::host::ProcessEnv;

pub use record::{ImageRecord, SourceMemo, TagMemo};

/// A cache failure, naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot find a cache directory: set GPURUN_CACHE_DIR, XDG_CACHE_HOME or HOME")]
    NoLocation,
    #[error("{what} {path}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("cache directory {0} belongs to another user")]
    NotOwned(PathBuf),
}

/// What to do when the cache's filesystem is full (cache and unpack errors alike).
impl CacheError {
    /// How to fix it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            CacheError::NoLocation => None,
            CacheError::NotOwned(_) => Some(
                "each user needs a cache of their own: set GPURUN_CACHE_DIR (or [cache] dir) to a directory you own, e.g. /scratch/$USER/gpurun"
                    .into(),
            ),
            CacheError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => Some(
                "the cache directory must be writable by you: set GPURUN_CACHE_DIR (or [cache] dir) to a directory you own"
                    .into(),
            ),
            CacheError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Some(crate::image::NO_SPACE_HINT.into())
            }
            CacheError::Io { .. } => None,
        }
    }

    fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CacheError + 'a {
        move |source| CacheError::Io { what, path: path.to_owned(), source }
    }
}

/// The cache root and its subdirectories.
#[derive(Debug, Clone)]
pub struct Cache {
    pub root: PathBuf,
}

/// `--cache-dir` (which configuration fills from `$GPURUN_CACHE_DIR`), else `$XDG_CACHE_HOME/gpurun`, else `~/.cache/gpurun`.
pub fn default_location(explicit: Option<&Path>, env: &ProcessEnv) -> Result<PathBuf, CacheError> {
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p.to_owned());
    }
    if let Some(x) = env.non_empty("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(x).join("gpurun"));
    }
    match env.non_empty("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".cache/gpurun")),
        None => Err(CacheError::NoLocation),
    }
}

impl Cache {
    /// Opens (creating, mode 0700) the cache at `root`.
    pub fn open(root: PathBuf) -> Result<Cache, CacheError> {
        // Absolute, because the sandbox mounts onto and from paths below it (lexically: no
        // symlink is resolved, so this costs no system call).
        let root = std::path::absolute(&root).unwrap_or(root);
        let cache = Cache { root };
        for dir in [
            cache.root.clone(),
            cache.images_dir(),
            cache.staging_dir(),
            cache.locks_dir(),
            cache.sources_dir(),
            cache.refs_dir(),
            cache.mount_dir(),
        ] {
            make_private_dir(&dir)?;
        }
        Ok(cache)
    }

    pub fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
    pub fn sources_dir(&self) -> PathBuf {
        self.root.join("sources")
    }
    /// Layer blobs downloaded from registries, by digest (`blobs/ALG/HEX`, `blobs/tmp/` for
    /// downloads in progress); made when first used.
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }
    /// Registry references pulled, each with the image id it named ([`TagMemo`]).
    pub fn refs_dir(&self) -> PathBuf {
        self.root.join("refs")
    }
    /// An always-empty directory on which each run mounts its private staging tmpfs, in its own
    /// mount namespace (so concurrent runs never see each other's); see `plan`.
    pub fn mount_dir(&self) -> PathBuf {
        self.root.join("mnt")
    }
    /// A secret of this cache's user, 32 random bytes in `join-secret` (mode 0600, made on first
    /// use), mixed into the name of the socket on which a job's ranks meet to share a container
    /// (`sandbox::join`): other users can read the job ids a key is made of, so without it they
    /// could take the name first. Ranks racing to make it all end up reading the first one
    /// linked into place.
    pub fn join_secret(&self) -> std::io::Result<[u8; 32]> {
        let path = self.root.join("join-secret");
        if let Some(secret) = read_secret(&path)? {
            return Ok(secret);
        }
        let random = |buf: &mut [u8]| {
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
                .map_err(|_| std::io::Error::other("no random bytes from the system"))
        };
        let mut fresh = [0u8; 32];
        random(&mut fresh)?;
        // A name of its own: ranks on other nodes share the cache on a network filesystem, and
        // their pids repeat.
        let mut tag = [0u8; 8];
        random(&mut tag)?;
        let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        let temp = self.root.join(format!("join-secret.{tag}.tmp"));
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
        let linked = std::io::Write::write_all(&mut file, &fresh)
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::hard_link(&temp, &path));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(fresh),
            // Another run linked its own first: that one is everybody's.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                read_secret(&path)?.ok_or_else(|| std::io::Error::other("join-secret vanished"))
            }
            Err(e) => Err(e),
        }
    }
    pub fn entry_dir(&self, id: &str) -> PathBuf {
        self.images_dir().join(id)
    }
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.entry_dir(id).join("rootfs")
    }

    /// A lock on the blob store: shared (`exclusive` false, waiting) while a pull downloads into
    /// it, exclusive (`true`, not waiting: `None` when busy) while `prune` sweeps it.
    pub fn lock_blobs(&self, exclusive: bool) -> Result<Option<File>, CacheError> {
        let dir = self.blobs_dir();
        make_private_dir(&dir)?;
        let path = dir.join(".lock");
        let file =
            File::options().create(true).truncate(false).write(true).open(&path).map_err(|source| {
                CacheError::Io { what: "open the blob store lock", path: path.clone(), source }
            })?;
        let op = if exclusive {
            rustix::fs::FlockOperation::NonBlockingLockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        match flock(&file, op) {
            Ok(()) => Ok(Some(file)),
            Err(e) if exclusive && e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(source) => Err(CacheError::Io { what: "lock the blob store", path, source }),
        }
    }

    /// True when the image `id` is published.
    pub fn is_published(&self, id: &str) -> bool {
        self.entry_dir(id).join("image.json").is_file()
    }

    /// Opens the use lock file of `id` (not yet locked).
    pub fn lock_file(&self, id: &str) -> Result<File, CacheError> {
        self.open_lock(&format!("{id}.lock"))
    }

    fn open_lock(&self, name: &str) -> Result<File, CacheError> {
        let path = self.locks_dir().join(name);
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(CacheError::io("opening lock", &path))
    }

    /// Blocks until `id` can be unpacked by us alone.
    pub fn lock_unpack(&self, id: &str) -> Result<File, CacheError> {
        let f = self.open_lock(&format!("{id}.unpack"))?;
        flock(&f, rustix::fs::FlockOperation::LockExclusive)
            .map_err(CacheError::io("locking", &self.locks_dir()))?;
        Ok(f)
    }

    /// A shared lock held while a container uses `id`; prune and rm skip locked entries.
    pub fn lock_shared(&self, id: &str) -> Result<File, CacheError> {
        let f = self.lock_file(id)?;
        flock(&f, rustix::fs::FlockOperation::LockShared)
            .map_err(CacheError::io("locking", &self.locks_dir()))?;
        Ok(f)
    }

    /// Tries to take the unpack lock of `id` without waiting; `None` while an unpack runs.
    pub fn try_lock_unpack(&self, id: &str) -> Result<Option<File>, CacheError> {
        self.try_lock(&format!("{id}.unpack"))
    }

    /// Tries to lock `id` for removal without waiting; `None` while a container uses it.
    pub fn try_lock_exclusive(&self, id: &str) -> Result<Option<File>, CacheError> {
        self.try_lock(&format!("{id}.lock"))
    }

    fn try_lock(&self, name: &str) -> Result<Option<File>, CacheError> {
        let f = self.open_lock(name)?;
        match flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(CacheError::Io { what: "locking", path: self.locks_dir(), source: e }),
        }
    }

    /// Removes staging debris of `id` left by killed unpacks. Call with the unpack lock held.
    pub fn clean_staging(&self, id: &str) -> Result<(), CacheError> {
        let dir = self.staging_dir();
        for entry in fs::read_dir(&dir).map_err(CacheError::io("listing", &dir))?.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // `<id>.removing` belongs to a removal, which holds the use lock, not ours.
            if name.split('.').next() == Some(id) && !name.contains(".removing") {
                crate::fsutil::remove_tree(&entry.path())
                    .map_err(CacheError::io("removing stale staging directory", &entry.path()))?;
            }
        }
        Ok(())
    }

    /// A fresh staging directory for `id`, removed on drop unless published.
    pub fn stage(&self, id: &str) -> Result<Staging, CacheError> {
        let path = self.staging_dir().join(format!("{id}.{}", std::process::id()));
        if path.exists() {
            crate::fsutil::remove_tree(&path).map_err(CacheError::io("removing", &path))?;
        }
        make_private_dir(&path)?;
        let rootfs = path.join("rootfs");
        fs::DirBuilder::new().mode(0o700).create(&rootfs).map_err(CacheError::io("creating", &rootfs))?;
        Ok(Staging { path, published: false })
    }

    /// Moves a complete staging directory into place with one rename.
    pub fn publish(&self, mut staging: Staging, id: &str, record: &ImageRecord) -> Result<(), CacheError> {
        let meta = staging.path.join("image.json");
        record.write(&meta).map_err(CacheError::io("writing", &meta))?;
        let dest = self.entry_dir(id);
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &staging.path,
            rustix::fs::CWD,
            &dest,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| CacheError::Io {
            what: "publishing into",
            path: dest.clone(),
            source: e.into(),
        })?;
        staging.published = true;
        Ok(())
    }

    /// Published images, sorted by id.
    pub fn list(&self) -> Result<Vec<ImageRecord>, CacheError> {
        let dir = self.images_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(CacheError::io("listing", &dir))?.flatten() {
            if let Ok(rec) = ImageRecord::read(&entry.path().join("image.json")) {
                out.push(rec);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Removes a published image (with the exclusive lock held by the caller).
    pub fn remove(&self, id: &str) -> Result<(), CacheError> {
        let entry = self.entry_dir(id);
        // Unpublish first (one rename), so a crash mid-removal never leaves a half rootfs
        // that looks published.
        // A name of its own: an earlier removal that failed midway may have left its own.
        let doomed = self.staging_dir().join(format!("{id}.removing.{}", std::process::id()));
        match fs::rename(&entry, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CacheError::Io { what: "unpublishing", path: entry, source: e }),
        }
        crate::fsutil::remove_tree(&doomed).map_err(CacheError::io("removing", &doomed))
    }
}

fn flock(f: &File, op: rustix::fs::FlockOperation) -> io::Result<()> {
    loop {
        match rustix::fs::flock(f, op) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

/// Creates `dir` mode 0700 if missing; refuses one owned by someone else.
fn make_private_dir(dir: &Path) -> Result<(), CacheError> {
    // Inspect first: on every start but the first the directory exists, and one lstat is all
    // the check needs (this runs five times on each warm start).
    let meta =
        match fs::symlink_metadata(dir) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
                    CacheError::Io { what: "creating cache directory", path: dir.to_owned(), source: e }
                })?;
                fs::symlink_metadata(dir).map_err(CacheError::io("inspecting", dir))?
            }
            Err(e) => return Err(CacheError::Io { what: "inspecting", path: dir.to_owned(), source: e }),
        };

    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(CacheError::NotOwned(dir.to_owned()));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(CacheError::io("restricting", dir))?;
    }
    Ok(())
}

/// A staging directory, removed on drop unless it was published.
pub struct Staging {
    pub path: PathBuf,
    published: bool,
}

impl Staging {
    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = crate::fsutil::remove_tree(&self.path);
        }
    }
}

/// The join secret at `path`: `None` when absent; an error when it is not a 32-byte regular file
/// of this user's that nobody else may read.
fn read_secret(path: &Path) -> std::io::Result<Option<[u8; 32]>> {
    let file = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file()
        || meta.len() != 32
        || meta.uid() != rustix::process::geteuid().as_raw()
        || meta.mode() & 0o077 != 0
    {
        return Err(std::io::Error::other(format!(
            "{} is not a 32-byte file of yours with mode 0600",
            path.display()
        )));
    }
    let mut secret = [0u8; 32];
    std::io::Read::read_exact(&mut &file, &mut secret)?;
    Ok(Some(secret))
}
