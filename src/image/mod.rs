//! Image archives in, verified root filesystems out. This module owns reading `docker save`
//! archives, OCI archives and layouts (never extracting the outer archive), choosing one image,
//! verifying every blob, and applying layers into a cache staging directory. It must not run
//! anything from the image and must not touch any path outside the cache.

pub mod apply;
pub mod apptainer;
pub mod digest;
pub mod layer;
pub mod runconfig;
pub mod select;
pub mod source;
pub mod squash;
pub mod tar;
pub mod unpack;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use runconfig::RunConfig;
pub use source::{ImageArg, ImageSource};
pub use unpack::{inspect, unpack_to};

/// What to do when the disk the cache is on fills up.
pub const NO_SPACE_HINT: &str =
    "free space there, or point GPURUN_CACHE_DIR at a larger filesystem (node-local scratch on clusters)";

/// Why an image could not be read, verified or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot open image {path}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: {why}")]
    Archive { path: PathBuf, why: String },
    #[error("{archive}: {name:?}: {why}")]
    Member { archive: PathBuf, name: String, why: String },
    #[error("{name} is {size} bytes, more than the {limit}-byte limit for metadata")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("reading {name}")]
    Read { name: String, source: std::io::Error },
    #[error("bad platform {0:?}: expected os/arch[/variant], e.g. linux/amd64")]
    BadPlatform(String),
    #[error("{0} is not an image: no index.json, oci-layout or manifest.json")]
    NotAnImage(PathBuf),
    #[error("{0} is a skopeo dir: layout, which gpurun does not read")]
    SkopeoDir(PathBuf),
    #[error("{name}: {why}")]
    Json { name: String, why: String },
    #[error("{what}: {why}")]
    Descriptor { what: String, why: String },
    #[error("{name}: size is {actual} bytes, its descriptor says {expected}")]
    SizeMismatch { name: String, expected: u64, actual: u64 },
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: digest::Digest, actual: digest::Digest },
    #[error("no image named {wanted:?} in the archive; it holds: {}", .choices.join(", "))]
    NoSuchRef { wanted: String, choices: Vec<String> },
    #[error("the archive holds several {what}: {}", .choices.join(", "))]
    Ambiguous { what: String, choices: Vec<String>, flag: &'static str },
    #[error("no image for platform {wanted}; available: {}", .choices.join(", "))]
    NoPlatform { wanted: String, choices: Vec<String> },
    #[error("the blobs for {0} are not in the archive (docker saved only the index entry)")]
    MissingPlatformBlobs(String),
    #[error("not a runnable container image: {0}")]
    NotRunnable(String),
    #[error("{reference}: {why}")]
    BadReference { reference: String, why: String },
    #[error("{reference}")]
    Registry { reference: String, source: Box<source::registry::RegistryError>, hint: Option<String> },
    #[error("{reference} is not in the cache and --pull never forbids pulling it")]
    NotPulled { reference: String },
    #[error("layer {index}/{count} ({digest}): {source}")]
    Layer { index: usize, count: usize, digest: String, source: layer::LayerError },
    #[error(transparent)]
    Sif(#[from] source::sif::SifError),
    #[error(transparent)]
    Squash(#[from] squash::SquashError),
    #[error("not enough space for the image in {path}: about {need} bytes needed, {have} free")]
    NoSpace { path: PathBuf, need: u64, have: u64 },
}

impl ImageError {
    /// How to fix it, where that is known.
    pub fn hint(&self) -> Option<String> {
        use layer::LayerError as L;
        let space = NO_SPACE_HINT;
        Some(match self {
            ImageError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "check the path; IMAGE is a `docker save` or OCI archive, an OCI layout, a SIF or SquashFS file, or a rootfs directory"
                    .into()
            }
            ImageError::Registry { hint, .. } => return hint.clone(),
            ImageError::BadReference { .. } => {
                "write docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST], e.g. docker://ubuntu:24.04".into()
            }
            ImageError::NotPulled { .. } => "pull it first (`gpurun pull REF`) or use --pull missing".into(),
            ImageError::SkopeoDir(p) => format!(
                "convert it to an OCI layout gpurun runs: skopeo copy dir:{} oci:{}.oci:latest",
                p.display(),
                p.display()
            ),
            ImageError::Ambiguous { flag, .. } => format!("choose one with {flag} NAME"),
            ImageError::NoSuchRef { .. } => "pass one of the listed names to --ref".into(),
            ImageError::NoPlatform { .. } => "choose one with --platform os/arch".into(),
            ImageError::MissingPlatformBlobs(p) => {
                format!("re-save the image for that platform: docker save --platform {p} ...")
            }
            ImageError::NoSpace { .. } => space.into(),
            ImageError::Layer { source: L::Apply(apply::ApplyError::DiskFull), .. } => space.into(),
            ImageError::Layer { source: L::ChunkedDiffId { .. }, .. } => {
                "copy the image again without zstd:chunked, e.g. `skopeo copy --dest-compress-format gzip SRC DEST` (or zstd)"
                    .into()
            }
            ImageError::Layer { source: L::DiffId { .. }, .. } => {
                "the archive is corrupt or was re-exported inconsistently; export the image again".into()
            }
            ImageError::Layer { source: L::Digest { .. } | L::Size { .. }, .. }
            | ImageError::DigestMismatch { .. }
            | ImageError::SizeMismatch { .. } => {
                "the data is corrupt or truncated: copy or export the archive again (from a registry: pull again; \
                 a mirror or proxy on the way may be serving bad data)"
                    .into()
            }
            ImageError::Archive { why, .. } if why.starts_with(source::TRUNCATED) => {
                "the archive is corrupt or truncated; copy or export it again".into()
            }
            ImageError::Archive { why, .. } if why.starts_with(source::NOT_TAR) => {
                "IMAGE is a `docker save` or OCI archive (a tar file), an OCI layout or a rootfs directory"
                    .into()
            }
            ImageError::Layer { source: L::Apply(apply::ApplyError::Limit(_)), .. } => {
                "limits: GPURUN_MAX_LAYER_BYTES (bytes per layer), GPURUN_MAX_ENTRIES (entries per image)"
                    .into()
            }
            _ => return None,
        })
    }
}

/// Which image to take from an archive that holds several.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub reference: Option<String>,
    pub platform: Option<String>,
}

/// One layer as recorded in the cache and shown by `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Blob digest (absent for docker-archive layers, which are identified by DiffID alone).
    pub digest: Option<String>,
    pub diff_id: String,
    pub size: u64,
    pub media_type: Option<String>,
}
