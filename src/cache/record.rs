//! The small JSON files beside cached images: what an image is (`image.json`) and which archive
//! it came from (`sources/*.json`, the warm-path memo).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image::source::FileIdentity;
use crate::image::{LayerInfo, RunConfig};

/// `images/<id>/image.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: String,
    pub source: PathBuf,
    pub reference: Option<String>,
    pub platform: String,
    pub format: String,
    pub config: RunConfig,
    pub layers: Vec<LayerInfo>,
    /// Bytes of file data written into the rootfs.
    pub size: u64,
    /// Unix time of the unpack.
    pub created: u64,
}

impl ImageRecord {
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let data = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fs::write(path, data)
    }

    pub fn read(path: &Path) -> io::Result<ImageRecord> {
        let data = fs::read(path)?;
        serde_json::from_slice(&data).map_err(io::Error::other)
    }
}

/// `sources/<hash>.json`: an archive path + selection, its identity, and the image id it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceMemo {
    pub path: PathBuf,
    pub reference: Option<String>,
    pub platform: Option<String>,
    pub identity: FileIdentity,
    pub id: String,
}

impl SourceMemo {
    /// The memo file for a path and selection.
    pub fn file_name(path: &Path, reference: Option<&str>, platform: Option<&str>) -> String {
        use crate::image::digest::{small_sha256, to_hex};
        let hash = small_sha256(&[
            path.as_os_str().as_encoded_bytes(),
            &[0],
            reference.unwrap_or("").as_bytes(),
            &[0],
            platform.unwrap_or("").as_bytes(),
        ]);
        format!("{}.json", &to_hex(&hash)[..32])
    }

    pub fn read(path: &Path) -> io::Result<SourceMemo> {
        let data = fs::read(path)?;
        serde_json::from_slice(&data).map_err(io::Error::other)
    }

    /// Written to a temporary name and renamed, so readers never see half a memo.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).map_err(io::Error::other)?)?;
        drop(f);
        fs::rename(&tmp, path)
    }
}

/// `refs/<hash>.json`: a registry reference + platform, the manifest digest it named when it was
/// pulled, and the image id that became: the warm path of `docker://` images (no network).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagMemo {
    pub reference: String,
    pub platform: Option<String>,
    pub digest: String,
    pub id: String,
}

impl TagMemo {
    pub fn file_name(reference: &str, platform: Option<&str>) -> String {
        SourceMemo::file_name(Path::new(reference), None, platform)
    }

    pub fn read(path: &Path) -> io::Result<TagMemo> {
        serde_json::from_slice(&fs::read(path)?).map_err(io::Error::other)
    }

    pub fn write(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        fs::rename(&tmp, path)
    }
}
