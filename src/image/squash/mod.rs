//! SquashFS 4.0 images (`mksquashfs`, enroot, Charliecloud, and the system partition of an
//! Apptainer SIF), read in place and extracted through the same [`Applier`] as layers.
//!
//! Everything in the image is untrusted: the superblock's table offsets, every metadata and data
//! block pointer, directory names, symlink targets and the directory graph itself. So reads are
//! checked against the image's extent, every block decodes into a buffer of its known maximum
//! size, decoded metadata is capped ([`MAX_METADATA`]), directories may be entered once (a table
//! that loops is refused), names are single path components, and what is written goes through
//! the Applier's in-root rules and limits.
//!
//! Why not the `backhand` crate: it builds the whole tree in memory before extracting, decodes
//! file data on one thread behind a lock, and leaves hostile-input bounds (metadata expansion,
//! directory loops) to its callers; what gpurun needs from it (a walk in directory order that
//! feeds a parallel block pipeline) is most of a reader anyway.

pub mod codec;
mod inode;
mod stream;

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use codec::Codec;
pub use stream::{Extraction, extract, hash_region};

/// The id of the SquashFS file system at `region` of `file`: the SHA-256 of its bytes.
pub fn image_id(file: &File, path: &Path, region: (u64, u64)) -> Result<String, SquashError> {
    let never = std::sync::atomic::AtomicBool::new(false);
    Ok(hash_region(file, path, region, &never, &|_| {})?.hex)
}

use crate::image::apply::ApplyError;

/// Metadata (inode, directory, fragment, id and xattr tables) decoded in all, at most: a
/// metadata block may decode to 8 KiB from 3 bytes, so a small hostile image could otherwise
/// ask for gigabytes of work. 256 MiB covers several million files.
pub const MAX_METADATA: usize = 256 << 20;
const META_BLOCK: usize = 8192;
const MAGIC: &[u8; 4] = b"hsqs";
const NO_TABLE: u64 = u64::MAX;
const FLAG_NO_XATTRS: u16 = 0x0200;
const FLAG_COMPRESSOR_OPTIONS: u16 = 0x0400;

/// Why a SquashFS image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SquashError {
    #[error("{path}: not a SquashFS image (no 'hsqs' magic at offset {offset})")]
    NotSquashfs { path: PathBuf, offset: u64 },
    #[error("{path}: {why}")]
    Bad { path: PathBuf, why: String },
    #[error("{path}: reading at offset {offset}")]
    Io { path: PathBuf, offset: u64, source: std::io::Error },
    #[error("{path}: {source}")]
    Apply { path: PathBuf, source: ApplyError },
}

/// The superblock fields gpurun uses (little-endian, 96 bytes at the image's start).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Superblock {
    pub inode_count: u32,
    pub mod_time: u32,
    pub block_size: u32,
    pub fragment_count: u32,
    pub compression: Codec,
    pub flags: u16,
    pub id_count: u16,
    pub version: (u16, u16),
    #[serde(skip)]
    root_inode: u64,
    pub bytes_used: u64,
    #[serde(skip)]
    id_table: u64,
    #[serde(skip)]
    xattr_table: u64,
    #[serde(skip)]
    inode_table: u64,
    #[serde(skip)]
    dir_table: u64,
    #[serde(skip)]
    fragment_table: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Superblock {
    fn parse(b: &[u8; 96]) -> Result<Superblock, String> {
        let compression = Codec::from_id(le16(b, 20))?;
        let sb = Superblock {
            inode_count: le32(b, 4),
            mod_time: le32(b, 8),
            block_size: le32(b, 12),
            fragment_count: le32(b, 16),
            compression,
            flags: le16(b, 24),
            id_count: le16(b, 26),
            version: (le16(b, 28), le16(b, 30)),
            root_inode: le64(b, 32),
            bytes_used: le64(b, 40),
            id_table: le64(b, 48),
            xattr_table: le64(b, 56),
            inode_table: le64(b, 64),
            dir_table: le64(b, 72),
            fragment_table: le64(b, 80),
        };
        if sb.version != (4, 0) {
            return Err(format!("SquashFS version {}.{} (gpurun reads 4.0)", sb.version.0, sb.version.1));
        }
        let log = le16(b, 22);
        if !(12..=20).contains(&log) || sb.block_size != 1 << log {
            return Err(format!("bad block size {} (log {log})", sb.block_size));
        }
        for (name, at) in [("inode", sb.inode_table), ("directory", sb.dir_table), ("id", sb.id_table)] {
            if at < 96 || at >= sb.bytes_used {
                return Err(format!("the {name} table offset {at} is outside the image"));
            }
        }
        if sb.inode_table >= sb.dir_table {
            return Err("the inode table does not come before the directory table".into());
        }
        Ok(sb)
    }
}

/// The xattr table's start and its id entries (reference, count).
type XattrIds = (u64, Vec<(u64, u32)>);

/// An opened SquashFS image: the file, where in it the image lies, and its tables.
pub struct Image {
    file: File,
    path: PathBuf,
    /// Offset of the SquashFS in the file (a SIF partition's offset; 0 for a plain image).
    base: u64,
    pub sb: Superblock,
    ids: Vec<u32>,
    fragments: Vec<(u64, u32)>,
    /// The xattr table, when the image has xattrs.
    xattrs: Option<XattrIds>,
}

impl Image {
    /// Opens the SquashFS at `base` in `file`, which must hold it within `len` bytes.
    pub fn open(file: File, path: &Path, base: u64, len: u64) -> Result<Arc<Image>, SquashError> {
        if len < 96 {
            return Err(SquashError::Bad {
                path: path.to_owned(),
                why: format!("not a SquashFS image: {len} bytes, too short for a superblock"),
            });
        }
        let mut raw = [0u8; 96];
        file.read_exact_at(&mut raw, base).map_err(|e| SquashError::Io {
            path: path.to_owned(),
            offset: base,
            source: e,
        })?;
        if &raw[..4] != MAGIC {
            return Err(SquashError::NotSquashfs { path: path.to_owned(), offset: base });
        }
        let bad = |why: String| SquashError::Bad { path: path.to_owned(), why };
        let sb = Superblock::parse(&raw).map_err(bad)?;
        if sb.bytes_used > len {
            return Err(bad(format!(
                "the superblock says {} bytes, but only {len} are there (truncated?)",
                sb.bytes_used
            )));
        }
        let mut img = Image {
            file,
            path: path.to_owned(),
            base,
            sb,
            ids: Vec::new(),
            fragments: Vec::new(),
            xattrs: None,
        };
        let mut meta = Meta::default();
        img.ids = img.load_ids(&mut meta)?;
        img.fragments = img.load_fragments(&mut meta)?;
        img.xattrs = img.load_xattr_ids(&mut meta)?;
        Ok(Arc::new(img))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn bad(&self, why: impl Into<String>) -> SquashError {
        SquashError::Bad { path: self.path.clone(), why: why.into() }
    }

    /// `len` bytes at image offset `at`, refused when they are not all inside the image.
    fn read(&self, at: u64, len: usize, what: &str) -> Result<Vec<u8>, SquashError> {
        let mut buf = vec![0u8; len];
        self.read_into(at, &mut buf, what)?;
        Ok(buf)
    }

    fn read_into(&self, at: u64, buf: &mut [u8], what: &str) -> Result<(), SquashError> {
        if at.checked_add(buf.len() as u64).is_none_or(|end| end > self.sb.bytes_used) {
            return Err(
                self.bad(format!("{what} at offset {at} ({} bytes) is past the end of the image", buf.len()))
            );
        }
        self.file.read_exact_at(buf, self.base + at).map_err(|e| SquashError::Io {
            path: self.path.clone(),
            offset: self.base + at,
            source: e,
        })
    }

    /// A table of `count` fixed-size entries stored in metadata blocks, found through the array
    /// of block pointers at `index`.
    fn load_table(
        &self,
        meta: &mut Meta,
        index: u64,
        count: usize,
        size: usize,
        what: &str,
    ) -> Result<Vec<u8>, SquashError> {
        let bytes = count.checked_mul(size).filter(|&b| b <= MAX_METADATA).ok_or_else(|| {
            self.bad(format!("the {what} table claims {count} entries, more than gpurun reads"))
        })?;
        let blocks = bytes.div_ceil(META_BLOCK);
        let ptrs = self.read(index, blocks * 8, what)?;
        let mut out = Vec::with_capacity(bytes);
        for i in 0..blocks {
            let want = (bytes - out.len()).min(META_BLOCK);
            let mut cur = Cursor { block: le64(&ptrs, i * 8), offset: 0 };
            out.extend_from_slice(&meta.read(self, &mut cur, want, what)?);
        }
        Ok(out)
    }

    fn load_ids(&self, meta: &mut Meta) -> Result<Vec<u32>, SquashError> {
        let n = usize::from(self.sb.id_count);
        let raw = self.load_table(meta, self.sb.id_table, n, 4, "id")?;
        Ok((0..n).map(|i| le32(&raw, i * 4)).collect())
    }

    fn load_fragments(&self, meta: &mut Meta) -> Result<Vec<(u64, u32)>, SquashError> {
        let n = self.sb.fragment_count as usize;
        if n == 0 || self.sb.fragment_table == NO_TABLE {
            return Ok(Vec::new());
        }
        let raw = self.load_table(meta, self.sb.fragment_table, n, 16, "fragment")?;
        Ok((0..n).map(|i| (le64(&raw, i * 16), le32(&raw, i * 16 + 8))).collect())
    }

    fn load_xattr_ids(&self, meta: &mut Meta) -> Result<Option<XattrIds>, SquashError> {
        if self.sb.xattr_table == NO_TABLE || self.sb.flags & FLAG_NO_XATTRS != 0 {
            return Ok(None);
        }
        let head = self.read(self.sb.xattr_table, 16, "xattr id table")?;
        let (start, count) = (le64(&head, 0), le32(&head, 8) as usize);
        let raw = self.load_table(meta, self.sb.xattr_table.saturating_add(16), count, 16, "xattr id")?;
        Ok(Some((start, (0..count).map(|i| (le64(&raw, i * 16), le32(&raw, i * 16 + 8))).collect())))
    }

    fn id(&self, index: u16) -> Result<u32, SquashError> {
        self.ids
            .get(usize::from(index))
            .copied()
            .ok_or_else(|| self.bad(format!("uid/gid index {index} is not in the id table")))
    }

    /// Whether the superblock says compressor options follow it (they do not change decoding).
    pub fn has_compressor_options(&self) -> bool {
        self.sb.flags & FLAG_COMPRESSOR_OPTIONS != 0
    }
}

/// A position in a metadata table: the block's image offset and an offset in its decoded bytes.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    block: u64,
    offset: usize,
}

/// Decoded metadata blocks by image offset, with the offset of the block after each. At most
/// [`META_CACHE`] blocks are kept (the walk reads tables mostly in order); every decode counts
/// against [`MAX_METADATA`], which bounds the work a hostile image can ask for.
#[derive(Default)]
struct Meta {
    blocks: HashMap<u64, (Arc<Vec<u8>>, u64)>,
    order: std::collections::VecDeque<u64>,
    decoded: usize,
    decoder: Option<codec::Decoder>,
}

/// Decoded metadata blocks kept (16 MiB).
const META_CACHE: usize = 2048;

impl Meta {
    fn block(&mut self, img: &Image, at: u64, what: &str) -> Result<(Arc<Vec<u8>>, u64), SquashError> {
        if let Some((b, next)) = self.blocks.get(&at) {
            return Ok((b.clone(), *next));
        }
        let head = img.read(at, 2, what)?;
        let word = le16(&head, 0);
        let (size, stored) = (usize::from(word & 0x7fff), word & 0x8000 != 0);
        if size == 0 || size > META_BLOCK {
            return Err(img.bad(format!("{what}: metadata block at {at} has size {size}")));
        }
        let raw = img.read(at + 2, size, what)?;
        let data = if stored {
            raw
        } else {
            let mut out = Vec::new();
            let dec = self.decoder.get_or_insert_with(|| codec::Decoder::new(img.sb.compression));
            dec.decode(&raw, &mut out, META_BLOCK)
                .map_err(|e| img.bad(format!("{what}: metadata block at {at}: {e}")))?;
            out
        };
        self.decoded += data.len().max(1);
        if self.decoded > MAX_METADATA {
            return Err(img.bad(format!("more than {MAX_METADATA} bytes of metadata: refusing the image")));
        }
        let next = at + 2 + size as u64;
        let data = Arc::new(data);
        if self.order.len() == META_CACHE
            && let Some(old) = self.order.pop_front()
        {
            self.blocks.remove(&old);
        }
        self.order.push_back(at);
        self.blocks.insert(at, (data.clone(), next));
        Ok((data, next))
    }

    /// `len` bytes from `cur`, across block boundaries; `cur` moves past them.
    fn read(
        &mut self,
        img: &Image,
        cur: &mut Cursor,
        len: usize,
        what: &str,
    ) -> Result<Vec<u8>, SquashError> {
        let mut out = Vec::with_capacity(len.min(META_BLOCK));
        while out.len() < len {
            let (block, next) = self.block(img, cur.block, what)?;
            if cur.offset > block.len() {
                return Err(img.bad(format!("{what}: offset {} is past its metadata block", cur.offset)));
            }
            let take = (len - out.len()).min(block.len() - cur.offset);
            out.extend_from_slice(&block[cur.offset..cur.offset + take]);
            cur.offset += take;
            if cur.offset == block.len() {
                // Only a table's last block is short: data that goes on past a short block is
                // forged (as unsquashfs also says), and would let a cycle of tiny blocks defeat
                // the cache at the cost of one decode per byte.
                if out.len() < len && block.len() < META_BLOCK {
                    return Err(img.bad(format!(
                        "{what}: metadata block at {} is {} bytes, and the data goes on past it",
                        cur.block,
                        block.len()
                    )));
                }
                *cur = Cursor { block: next, offset: 0 };
            }
        }
        Ok(out)
    }
}
