//! Image archives in, verified root filesystems out. This module owns reading `docker save`
//! archives, OCI archives and layouts (never extracting the outer archive), choosing one image,
//! verifying every blob, and applying layers into a cache staging directory. It must not run
//! anything from the image and must not touch any path outside the cache.

pub mod runconfig;

use std::path::{Path, PathBuf};

pub use runconfig::RunConfig;

/// Which image to take from an archive that holds several.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub reference: Option<String>,
    pub platform: Option<String>,
}

/// A root filesystem ready to run, with the image settings the run stage needs.
///
/// Keep it alive for as long as the container runs: for cached images it holds a shared lock on
/// the cache entry so that `gpurun prune` and `gpurun rm` leave the rootfs alone.
#[derive(Debug)]
pub struct Prepared {
    /// The read-only root filesystem directory.
    pub rootfs: PathBuf,
    /// ENTRYPOINT, CMD, Env, WorkingDir, User and friends; defaults for a plain directory.
    pub config: RunConfig,
    /// Content identity of the image (its config digest); `None` for a plain directory.
    pub id: Option<String>,
    /// Held for the life of the run; see the type's documentation.
    pub lease: Option<std::fs::File>,
}

impl Prepared {
    /// A plain root filesystem directory used in place, with an empty image configuration.
    pub fn from_directory(dir: &Path) -> Prepared {
        Prepared {
            rootfs: dir.to_path_buf(),
            config: RunConfig::default(),
            id: None,
            lease: None,
        }
    }
}
