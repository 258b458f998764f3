//! The small JSON files beside cached images: what an image is (`image.json`) and which archive
//! it came from (`sources/*.json`, the warm-path memo).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::image::RunConfig;

/// One layer as recorded in the cache and shown by `inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Blob digest (absent for docker-archive layers, which are identified by DiffID alone).
    pub digest: Option<String>,
    pub diff_id: String,
    pub size: u64,
    pub media_type: Option<String>,
}

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
        use crate::image::digest::{Algorithm, Hasher};
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(&[0]);
        h.update(reference.unwrap_or("").as_bytes());
        h.update(&[0]);
        h.update(platform.unwrap_or("").as_bytes());
        format!("{}.json", &h.finish().hex[..32])
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
