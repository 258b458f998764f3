//! Where images come from, behind one interface. An IMAGE argument is classified once
//! ([`ImageArg::classify`], which every command uses); an image to unpack is opened as an
//! [`ImageSource`], which knows how its bytes arrive and how its image is found. What all
//! sources share (verifying every blob, limits, staging, publishing, the warm path) is not
//! theirs to do: the decode pipeline (`layer`) and the prepare stage (`crate::prepare`) do it.
//!
//! Adding a kind of source (a registry, a SIF file) is one module here and one [`ImageArg`] arm.
//! SquashFS images (plain or a SIF's partition) have no layers: [`SquashSource`] locates the
//! file system, and `image::squash` extracts it through the same Applier.

mod archive;
pub mod registry;
pub mod sif;

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use archive::{MAX_JSON, Member, MemberReader, NOT_TAR, Source, TRUNCATED, clean_member_name};

use super::select::{LayerRef, Resolved};
use super::{ImageError, Selection};

/// A layer blob being read, in whatever way its source delivers it.
pub type Blob<'a> = Box<dyn Read + Send + 'a>;

/// One kind of image source.
pub trait ImageSource {
    /// The image the selection names: its verified config and layer list (metadata only; no
    /// layer data is read).
    fn resolve(&self, sel: &Selection) -> Result<Resolved, ImageError>;

    /// One layer's blob, to be streamed through the decode pipeline, which checks its size and
    /// digest against `layer` while it reads.
    fn open_layer(&self, layer: &LayerRef) -> Result<Blob<'_>, ImageError>;
}

/// What an IMAGE argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageArg {
    /// A root filesystem directory: run in place, never unpacked.
    Rootfs(PathBuf),
    /// A `docker save` or OCI archive, or an image directory (OCI layout, extracted `docker
    /// save`): read in place and unpacked into the cache, keyed by its file identity.
    Local(PathBuf),
    /// `docker://REF`: an image in an OCI registry, keyed by its reference and manifest digest.
    Registry(registry::Reference),
    /// An Apptainer SIF file or a plain SquashFS image (`.sqsh`, `.squashfs`, `.sqfs`): extracted
    /// into the cache, keyed by its file identity, its id the SHA-256 of the file system's bytes.
    Squash(PathBuf),
}

impl ImageArg {
    pub fn classify(arg: &Path) -> Result<ImageArg, ImageError> {
        if let Some(text) = arg.to_str().filter(|t| t.starts_with(registry::reference::SCHEME)) {
            let reference = registry::Reference::parse(text)
                .map_err(|why| ImageError::BadReference { reference: text.to_string(), why })?;
            return Ok(ImageArg::Registry(reference));
        }
        Ok(match DirKind::of(arg) {
            Some(DirKind::Rootfs) => ImageArg::Rootfs(arg.to_owned()),
            None if SquashSource::sniff(arg) => ImageArg::Squash(arg.to_owned()),
            _ => ImageArg::Local(arg.to_owned()),
        })
    }

    /// The argument, for messages and records (`docker://` and the canonical reference for a
    /// registry image).
    pub fn display(&self) -> String {
        match self {
            ImageArg::Rootfs(p) | ImageArg::Local(p) | ImageArg::Squash(p) => p.display().to_string(),
            ImageArg::Registry(r) => format!("{}{r}", registry::reference::SCHEME),
        }
    }

    /// The path of a local image (a registry reference has none).
    pub fn path(&self) -> &Path {
        match self {
            ImageArg::Rootfs(p) | ImageArg::Local(p) | ImageArg::Squash(p) => p,
            ImageArg::Registry(_) => Path::new(""),
        }
    }

    /// Opens the source to read its image (a root filesystem directory has none).
    pub fn open(&self, net: &registry::Options) -> Result<Box<dyn ImageSource>, ImageError> {
        match self {
            ImageArg::Rootfs(p) => Err(ImageError::NotAnImage(p.clone())),
            // Has no layers to open: `squash::extract` reads it (`crate::prepare`).
            ImageArg::Squash(p) => Err(ImageError::NotAnImage(p.clone())),
            ImageArg::Local(p) => Ok(Box::new(Source::open(p)?)),
            ImageArg::Registry(r) => Ok(Box::new(registry::RegistrySource::open(r, net)?)),
        }
    }

    /// The canonical path and current identity of a local source (for an image directory: of
    /// the file that changes whenever its images do, [`DirKind::identity_file`]): the key of
    /// the warm path, which must not read the image.
    pub fn identify(&self) -> Result<(PathBuf, FileIdentity), ImageError> {
        let image = self.path();
        let open_err = |e| ImageError::Open { path: image.to_owned(), source: e };
        let canon = fs::canonicalize(image).map_err(open_err)?;
        let meta = fs::metadata(identity_probe(&canon)).map_err(open_err)?;
        Ok((canon, FileIdentity::of(&meta)))
    }
}

/// Where a SquashFS file system lies: a whole `.sqsh` file, or a SIF's system partition.
pub struct SquashSource {
    pub path: PathBuf,
    pub file: File,
    /// The SIF's header and descriptors, for a SIF file.
    pub sif: Option<sif::Sif>,
    /// (offset, length) of the file system in the file: what the image id hashes.
    pub region: (u64, u64),
}

impl SquashSource {
    /// Whether `path` is a regular file that starts like a SIF or a SquashFS image.
    pub fn sniff(path: &Path) -> bool {
        // Only a regular file is opened: opening a FIFO would wait for a writer.
        if !fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return false;
        }
        let mut head = [0u8; 64];
        let Ok(file) = File::open(path) else { return false };
        let Ok(n) = file.read_at(&mut head, 0) else { return false };
        sif::is_sif(&head[..n]) || head[..n].starts_with(b"hsqs")
    }

    pub fn open(path: &Path) -> Result<SquashSource, ImageError> {
        let file = File::open(path).map_err(|e| ImageError::Open { path: path.to_owned(), source: e })?;
        let len = file.metadata().map_err(|e| ImageError::Open { path: path.to_owned(), source: e })?.len();
        let mut head = [0u8; 64];
        let n =
            file.read_at(&mut head, 0).map_err(|e| ImageError::Open { path: path.to_owned(), source: e })?;
        if !sif::is_sif(&head[..n]) {
            return Ok(SquashSource { path: path.to_owned(), file, sif: None, region: (0, len) });
        }
        let sif = sif::Sif::read(&file, path)?;
        let region = sif.system_partition()?;
        Ok(SquashSource { path: path.to_owned(), file, sif: Some(sif), region })
    }

    /// The file system, opened (its superblock and tables read and checked).
    pub fn image(&self) -> Result<std::sync::Arc<crate::image::squash::Image>, ImageError> {
        let file =
            self.file.try_clone().map_err(|e| ImageError::Open { path: self.path.clone(), source: e })?;
        Ok(crate::image::squash::Image::open(file, &self.path, self.region.0, self.region.1)?)
    }
}

/// The file whose identity stands for the image at `path` (the archive itself, or a file of an
/// image directory).
pub fn identity_probe(path: &Path) -> PathBuf {
    match DirKind::of(path).and_then(DirKind::identity_file) {
        Some(name) => path.join(name),
        None => path.to_owned(),
    }
}

/// What identifies an archive file without reading it: if all of this is unchanged, the
/// content is too (the same test make and rsync rely on, plus the inode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    pub fn of(meta: &fs::Metadata) -> FileIdentity {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// What a directory given as IMAGE holds. Every command classifies directories with
/// [`DirKind::of`], so `inspect`, `unpack` and a run never disagree about one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirKind {
    /// An OCI image layout (`oci-layout`, `index.json`), e.g. from umoci or `skopeo copy oci:`.
    OciLayout,
    /// An extracted `docker save` archive (`manifest.json` listing the images).
    DockerSave,
    /// skopeo's `dir:` transport (`manifest.json` of one image, `version`, blobs named by hex
    /// digest): not read; `skopeo copy dir:D oci:L` converts it.
    SkopeoDir,
    /// Anything else: a root filesystem.
    Rootfs,
}

impl DirKind {
    /// The kind of the directory `path`; `None` when it is not a directory.
    pub fn of(path: &Path) -> Option<DirKind> {
        if !path.is_dir() {
            return None;
        }
        let has = |name: &str| std::fs::symlink_metadata(path.join(name)).is_ok();
        // An Apptainer sandbox is a root filesystem whatever else lies at its top.
        Some(if has(".singularity.d") {
            DirKind::Rootfs
        } else if has("oci-layout") || has("index.json") {
            DirKind::OciLayout
        } else if has("manifest.json") && has("version") {
            DirKind::SkopeoDir
        } else if has("manifest.json") {
            DirKind::DockerSave
        } else {
            DirKind::Rootfs
        })
    }

    /// The file whose identity stands for the directory's images in the warm-start memo: it is
    /// rewritten whenever the images change.
    pub fn identity_file(self) -> Option<&'static str> {
        match self {
            DirKind::OciLayout => Some("index.json"),
            DirKind::DockerSave | DirKind::SkopeoDir => Some("manifest.json"),
            DirKind::Rootfs => None,
        }
    }
}
