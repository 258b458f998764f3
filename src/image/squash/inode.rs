//! Inodes and directories, and the walk over them in directory order that yields tar-like
//! entries for the Applier. The walk holds one directory listing per level (not the tree), and
//! refuses the ways a hostile table can make a tree that is not one: a directory entered twice
//! (a loop, or a directory hard link), names that are not single components, or a listing that
//! is not sorted (duplicates).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Cursor, Image, Meta, SquashError, le16, le32, le64};
use crate::image::apply::{Limits, MAX_COMPONENT, MAX_DEPTH};
use crate::image::tar::{Entry, Kind, SparseSegment};

const NO_FRAGMENT: u32 = u32::MAX;
const NO_XATTR: u32 = u32::MAX;
/// Linux's limits on a symlink target and on one extended attribute value.
const MAX_LINK: usize = 4095;
const MAX_XATTR_VALUE: usize = 65536;
const MAX_XATTRS: u32 = 1024;
/// Names and values of one inode's xattrs together, at most (Linux's XATTR_LIST_MAX and
/// XATTR_SIZE_MAX together): walked entries carry them until written.
const MAX_XATTR_BYTES: usize = 128 << 10;
/// Linux's XATTR_NAME_MAX.
const MAX_XATTR_NAME: usize = 255;
/// A stored (uncompressed) data block or fragment has this bit in its size word.
pub const STORED: u32 = 1 << 24;

/// How a regular file's data is stored: full blocks from `start`, then maybe a fragment tail.
#[derive(Debug, Clone)]
pub struct FilePlan {
    pub size: u64,
    /// Image offset of the first block; each block follows the one before.
    pub start: u64,
    /// Size word per block (stored size, [`STORED`] when not compressed); 0 is a hole.
    pub words: Vec<u32>,
    /// (fragment index, offset in it, length).
    pub tail: Option<(u32, u32, u32)>,
}

/// One entry of the walk: what to create, and for regular files where the data is.
pub struct Item {
    pub entry: Entry,
    pub file: Option<FilePlan>,
}

/// A file inode's fixed part; its block list is read only for the first of its names.
struct FileHead {
    start: u64,
    size: u64,
    fragment: u32,
    offset: u32,
    /// Where the block list starts.
    words: Cursor,
}

enum Node {
    Dir { listing: Cursor, len: u32 },
    File(FileHead),
    Symlink(Vec<u8>),
    Device(Kind),
    Fifo,
    Socket,
}

struct Inode {
    node: Node,
    mode: u16,
    uid: u32,
    gid: u32,
    mtime: u32,
    nlink: u32,
    xattr: u32,
}

/// Extended attributes as (full name, value).
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

struct Frame {
    path: Vec<u8>,
    names: Vec<(Vec<u8>, u64)>,
    next: usize,
}

/// The directory-order walk.
pub struct Walk {
    img: Arc<Image>,
    meta: Meta,
    stack: Vec<Frame>,
    /// Listings entered, by (metadata block, offset).
    entered: HashSet<(u64, usize)>,
    /// First path of each multiply linked non-directory inode, by inode reference.
    links: HashMap<u64, Vec<u8>>,
    limits: Limits,
    entries: u64,
    data: u64,
    /// Names read from listings, and their bytes, over the whole walk: listings are read whole
    /// before their entries count, and hostile listings may share their bytes.
    listed: u64,
    listed_bytes: usize,
    /// Bytes of the paths kept in `links`.
    links_bytes: usize,
}

impl Walk {
    pub fn new(img: Arc<Image>, limits: Limits) -> Result<Walk, SquashError> {
        let mut walk = Walk {
            img,
            meta: Meta::default(),
            stack: Vec::new(),
            entered: HashSet::new(),
            links: HashMap::new(),
            limits,
            entries: 0,
            data: 0,
            listed: 0,
            listed_bytes: 0,
            links_bytes: 0,
        };
        let root_ref = walk.img.sb.root_inode;
        let root = walk.inode(root_ref)?;
        let Node::Dir { listing, len } = root.node else {
            return Err(walk.img.bad("the root inode is not a directory"));
        };
        walk.enter(Vec::new(), listing, len)?;
        Ok(walk)
    }

    /// The next entry, parents before children; `None` when the tree is done.
    pub fn next_item(&mut self) -> Result<Option<Item>, SquashError> {
        loop {
            let Some(frame) = self.stack.last_mut() else { return Ok(None) };
            let Some((name, iref)) = frame.names.get(frame.next).cloned() else {
                self.stack.pop();
                continue;
            };
            frame.next += 1;
            let mut path = frame.path.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            return self.item(path, iref).map(Some);
        }
    }

    fn item(&mut self, path: Vec<u8>, iref: u64) -> Result<Item, SquashError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(self.img.bad(format!(
                "more than {} entries (raise GPURUN_MAX_ENTRIES if the image is genuine)",
                self.limits.max_entries
            )));
        }
        let ino = self.inode(iref)?;
        let mut entry = Entry {
            path,
            link: Vec::new(),
            kind: Kind::Regular,
            mode: u32::from(ino.mode & 0o7777),
            uid: u64::from(ino.uid),
            gid: u64::from(ino.gid),
            mtime: i64::from(ino.mtime),
            mtime_nsec: 0,
            size: 0,
            xattrs: Vec::new(),
            sparse: None,
            dev_major: 0,
            dev_minor: 0,
        };
        // Hard links: for what the Applier creates (a device or socket is skipped, so a second
        // name cannot link to it); checked before a file's block list is read.
        if matches!(ino.node, Node::File(_) | Node::Symlink(_) | Node::Fifo) && ino.nlink > 1 {
            if let Some(first) = self.links.get(&iref) {
                entry.kind = Kind::HardLink;
                entry.link = first.clone();
                return Ok(Item { entry, file: None });
            }
            self.links_bytes += entry.path.len();
            if self.links_bytes > super::MAX_METADATA {
                return Err(self.img.bad(format!(
                    "the first names of hard-linked files exceed {} bytes",
                    super::MAX_METADATA
                )));
            }
            self.links.insert(iref, entry.path.clone());
        }
        // Xattrs are written like data and count against the same limit.
        entry.xattrs = self.xattrs(ino.xattr)?;
        let xattr_bytes: usize = entry.xattrs.iter().map(|(n, v)| n.len() + v.len()).sum();
        self.charge(xattr_bytes as u64)?;
        let file = match ino.node {
            Node::Dir { listing, len } => {
                entry.kind = Kind::Directory;
                self.enter(entry.path.clone(), listing, len)?;
                None
            }
            Node::File(head) => {
                let plan = self.file_plan(head)?;
                self.charge(plan.size)?;
                entry.size = plan.size;
                entry.sparse = sparse_map(&plan, self.img.sb.block_size);
                Some(plan)
            }
            Node::Symlink(target) => {
                entry.kind = Kind::Symlink;
                entry.link = target;
                None
            }
            Node::Device(kind) => {
                entry.kind = kind;
                None
            }
            Node::Fifo => {
                entry.kind = Kind::Fifo;
                None
            }
            Node::Socket => {
                entry.kind = Kind::Other(b's');
                None
            }
        };
        Ok(Item { entry, file })
    }

    /// Counts `bytes` of file data or xattrs against the image's limits.
    fn charge(&mut self, bytes: u64) -> Result<(), SquashError> {
        self.data = self.data.saturating_add(bytes);
        let cap = self.limits.max_layer_bytes.min(self.limits.max_image_bytes);
        if self.data > cap {
            return Err(self.img.bad(format!(
                "more than {cap} bytes of file data and xattrs (GPURUN_MAX_LAYER_BYTES, GPURUN_MAX_IMAGE_BYTES)"
            )));
        }
        Ok(())
    }

    /// Reads a directory's listing and pushes it; each listing is entered once, whichever
    /// inode or entry leads to it (an entry naming an ancestor, or two directory inodes sharing
    /// a listing, would make the tree a graph).
    fn enter(&mut self, path: Vec<u8>, listing: Cursor, len: u32) -> Result<(), SquashError> {
        // (Empty listings hold nothing to loop through, and empty directories may share one.)
        if len > 3 && !self.entered.insert((listing.block, listing.offset)) {
            return Err(self
                .img
                .bad(format!("directory {:?} is reached twice: the directory table loops", show(&path))));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(self.img.bad(format!("{:?}: directories nest deeper than {MAX_DEPTH}", show(&path))));
        }
        let names = self.listing(&path, listing, len)?;
        self.stack.push(Frame { path, names, next: 0 });
        Ok(())
    }

    /// A directory's entries as (name, inode reference), checked: single components, sorted,
    /// unique.
    fn listing(
        &mut self,
        path: &[u8],
        mut cur: Cursor,
        len: u32,
    ) -> Result<Vec<(Vec<u8>, u64)>, SquashError> {
        // The size counts the "." and ".." the listing does not store.
        let mut left = len.saturating_sub(3) as usize;
        let mut out: Vec<(Vec<u8>, u64)> = Vec::new();
        let bad = |img: &Image, why: String| img.bad(format!("directory {:?}: {why}", show(path)));
        while left > 0 {
            let head = self.meta_read(&mut cur, 12, "directory header")?;
            left = left.checked_sub(12).ok_or_else(|| bad(&self.img, "listing overruns its size".into()))?;
            let (count, start) = (le32(&head, 0) as usize + 1, u64::from(le32(&head, 4)));
            if count > 256 {
                return Err(bad(&self.img, format!("a header claims {count} entries (at most 256)")));
            }
            for _ in 0..count {
                let raw = self.meta_read(&mut cur, 8, "directory entry")?;
                let name_len = usize::from(le16(&raw, 6)) + 1;
                let name = self.meta_read(&mut cur, name_len, "directory entry name")?;
                left = left
                    .checked_sub(8 + name_len)
                    .ok_or_else(|| bad(&self.img, "listing overruns its size".into()))?;
                check_name(&name).map_err(|why| bad(&self.img, format!("entry {:?}: {why}", show(&name))))?;
                self.listed += 1;
                self.listed_bytes += name.len();
                if self.listed > self.limits.max_entries || self.listed_bytes > super::MAX_METADATA {
                    return Err(bad(
                        &self.img,
                        format!(
                            "listings name more than {} entries or {} bytes (raise GPURUN_MAX_ENTRIES if the image is genuine)",
                            self.limits.max_entries,
                            super::MAX_METADATA
                        ),
                    ));
                }
                if out.last().is_some_and(|(prev, _)| prev.as_slice() >= name.as_slice()) {
                    return Err(bad(
                        &self.img,
                        format!("entry {:?} is out of order or repeated", show(&name)),
                    ));
                }
                out.push((name, (start << 16) | u64::from(le16(&raw, 0))));
            }
        }
        Ok(out)
    }

    fn meta_read(&mut self, cur: &mut Cursor, len: usize, what: &str) -> Result<Vec<u8>, SquashError> {
        self.meta.read(&self.img, cur, len, what)
    }

    /// The inode at reference `iref` (metadata block offset << 16 | offset in the block).
    fn inode(&mut self, iref: u64) -> Result<Inode, SquashError> {
        let img = self.img.clone();
        let mut cur = Cursor { block: img.sb.inode_table + (iref >> 16), offset: (iref & 0xffff) as usize };
        if cur.block >= img.sb.dir_table {
            return Err(img.bad(format!("inode reference {iref:#x} points outside the inode table")));
        }
        let h = self.meta_read(&mut cur, 16, "inode")?;
        let (kind, mode) = (le16(&h, 0), le16(&h, 2));
        let (uid, gid, mtime) = (img.id(le16(&h, 4))?, img.id(le16(&h, 6))?, le32(&h, 8));
        let ext = kind >= 8;
        let mut xattr = NO_XATTR;
        let (node, nlink) = match kind {
            1 => {
                let b = self.meta_read(&mut cur, 16, "directory inode")?;
                let listing = Cursor {
                    block: img.sb.dir_table + u64::from(le32(&b, 0)),
                    offset: usize::from(le16(&b, 10)),
                };
                (Node::Dir { listing, len: u32::from(le16(&b, 8)) }, le32(&b, 4))
            }
            8 => {
                let b = self.meta_read(&mut cur, 24, "directory inode")?;
                xattr = le32(&b, 20);
                let listing = Cursor {
                    block: img.sb.dir_table + u64::from(le32(&b, 8)),
                    offset: usize::from(le16(&b, 18)),
                };
                (Node::Dir { listing, len: le32(&b, 4) }, le32(&b, 0))
            }
            2 | 9 => {
                let (start, size, frag, offset, nlink) = if kind == 2 {
                    let b = self.meta_read(&mut cur, 16, "file inode")?;
                    (u64::from(le32(&b, 0)), u64::from(le32(&b, 12)), le32(&b, 4), le32(&b, 8), 1)
                } else {
                    let b = self.meta_read(&mut cur, 40, "file inode")?;
                    xattr = le32(&b, 36);
                    (le64(&b, 0), le64(&b, 8), le32(&b, 28), le32(&b, 32), le32(&b, 24))
                };
                (Node::File(FileHead { start, size, fragment: frag, offset, words: cur }), nlink)
            }
            3 | 10 => {
                let b = self.meta_read(&mut cur, 8, "symlink inode")?;
                let len = le32(&b, 4) as usize;
                if len == 0 || len > MAX_LINK {
                    return Err(img.bad(format!("a symlink target of {len} bytes")));
                }
                let target = self.meta_read(&mut cur, len, "symlink target")?;
                if target.contains(&0) {
                    return Err(img.bad("a symlink target contains a NUL byte"));
                }
                if ext {
                    xattr = le32(&self.meta_read(&mut cur, 4, "symlink inode")?, 0);
                }
                (Node::Symlink(target), le32(&b, 0))
            }
            4 | 5 | 11 | 12 => {
                let b = self.meta_read(&mut cur, if ext { 12 } else { 8 }, "device inode")?;
                if ext {
                    xattr = le32(&b, 8);
                }
                (Node::Device(if kind % 7 == 4 { Kind::Block } else { Kind::Char }), le32(&b, 0))
            }
            6 | 7 | 13 | 14 => {
                let b = self.meta_read(&mut cur, if ext { 8 } else { 4 }, "ipc inode")?;
                if ext {
                    xattr = le32(&b, 4);
                }
                (if kind % 7 == 6 { Node::Fifo } else { Node::Socket }, le32(&b, 0))
            }
            k => return Err(img.bad(format!("inode {iref:#x} has unknown type {k}"))),
        };
        Ok(Inode { node, mode, uid, gid, mtime, nlink, xattr })
    }

    /// A file's block list, checked to lie inside the image, and its fragment tail.
    fn file_plan(&mut self, head: FileHead) -> Result<FilePlan, SquashError> {
        let FileHead { start, size, fragment: frag, offset, words: mut cur } = head;
        let img = self.img.clone();
        let bs = u64::from(img.sb.block_size);
        let has_tail = frag != NO_FRAGMENT && !size.is_multiple_of(bs);
        let count = if has_tail { size / bs } else { size.div_ceil(bs) };
        if size > self.limits.max_layer_bytes {
            return Err(img.bad(format!("a file claims {size} bytes (GPURUN_MAX_LAYER_BYTES)")));
        }
        let mut words = Vec::new();
        let mut at = start;
        for _ in 0..count {
            let word = le32(&self.meta_read(&mut cur, 4, "block list")?, 0);
            let len = u64::from(word & !STORED);
            if len > bs || word & !(STORED | 0x00ff_ffff) != 0 {
                return Err(img.bad(format!("a data block of {len} bytes (block size {bs})")));
            }
            if at.checked_add(len).is_none_or(|end| end > img.sb.bytes_used) {
                return Err(img.bad(format!("a data block at {at} is past the end of the image")));
            }
            words.push(word);
            at += len;
        }
        let tail = if has_tail {
            let len = (size % bs) as u32;
            let (_, fsize) = *img.fragments.get(frag as usize).ok_or_else(|| {
                img.bad(format!(
                    "fragment {frag} is not in the fragment table ({} entries)",
                    img.fragments.len()
                ))
            })?;
            if u64::from(offset) + u64::from(len) > bs || u64::from(fsize & !STORED) > bs {
                return Err(
                    img.bad(format!("fragment {frag}: a tail at {offset}+{len} does not fit a block"))
                );
            }
            Some((frag, offset, len))
        } else {
            None
        };
        Ok(FilePlan { size, start, words, tail })
    }

    /// An inode's extended attributes, as full names ("user.x") and values.
    fn xattrs(&mut self, index: u32) -> Result<Xattrs, SquashError> {
        if index == NO_XATTR {
            return Ok(Vec::new());
        }
        let img = self.img.clone();
        let Some((start, ids)) = &img.xattrs else {
            return Err(img.bad("an inode has xattrs but the image has no xattr table"));
        };
        let &(xref, count) = ids
            .get(index as usize)
            .ok_or_else(|| img.bad(format!("xattr id {index} is not in the table")))?;
        if count > MAX_XATTRS {
            return Err(img.bad(format!("an inode claims {count} xattrs")));
        }
        let mut cur = Cursor { block: start.saturating_add(xref >> 16), offset: (xref & 0xffff) as usize };
        let mut out = Vec::new();
        let mut total = 0usize;
        for _ in 0..count {
            let h = self.meta_read(&mut cur, 4, "xattr")?;
            let (kind, name_len) = (le16(&h, 0), usize::from(le16(&h, 2)));
            if name_len > MAX_XATTR_NAME {
                return Err(img.bad(format!("an xattr name of {name_len} bytes")));
            }
            let prefix: &[u8] = match kind & 0xff {
                0 => b"user.",
                1 => b"trusted.",
                2 => b"security.",
                k => return Err(img.bad(format!("xattr prefix type {k}"))),
            };
            let mut name = prefix.to_vec();
            name.extend_from_slice(&self.meta_read(&mut cur, name_len, "xattr name")?);
            let value = if kind & 0x100 != 0 {
                let len = le32(&self.meta_read(&mut cur, 4, "xattr")?, 0);
                if len != 8 {
                    return Err(img.bad("an out-of-line xattr reference is not 8 bytes"));
                }
                let vref = le64(&self.meta_read(&mut cur, 8, "xattr reference")?, 0);
                let mut vcur =
                    Cursor { block: start.saturating_add(vref >> 16), offset: (vref & 0xffff) as usize };
                self.xattr_value(&mut vcur)?
            } else {
                self.xattr_value(&mut cur)?
            };
            total += name.len() + value.len();
            if total > MAX_XATTR_BYTES {
                return Err(img.bad(format!("an inode's xattrs exceed {MAX_XATTR_BYTES} bytes")));
            }
            out.push((name, value));
        }
        Ok(out)
    }

    fn xattr_value(&mut self, cur: &mut Cursor) -> Result<Vec<u8>, SquashError> {
        let len = le32(&self.meta_read(cur, 4, "xattr value")?, 0) as usize;
        if len > MAX_XATTR_VALUE {
            return Err(self.img.bad(format!("an xattr value of {len} bytes")));
        }
        self.meta_read(cur, len, "xattr value")
    }
}

/// A file with holes (blocks of size 0) as an old-GNU sparse map over its stored data, so that
/// the Applier leaves the holes as holes; `None` when it has none.
fn sparse_map(plan: &FilePlan, block_size: u32) -> Option<(u64, Vec<SparseSegment>)> {
    if !plan.words.iter().any(|&w| w & !STORED == 0) {
        return None;
    }
    let bs = u64::from(block_size);
    let mut segs: Vec<SparseSegment> = Vec::new();
    for (i, &w) in plan.words.iter().enumerate() {
        if w & !STORED == 0 {
            continue;
        }
        let offset = i as u64 * bs;
        let len = bs.min(plan.size - offset);
        match segs.last_mut() {
            Some(s) if s.offset + s.len == offset => s.len += len,
            _ => segs.push(SparseSegment { offset, len }),
        }
    }
    if let Some((_, _, len)) = plan.tail {
        let offset = plan.words.len() as u64 * bs;
        match segs.last_mut() {
            Some(s) if s.offset + s.len == offset => s.len += u64::from(len),
            _ => segs.push(SparseSegment { offset, len: u64::from(len) }),
        }
    }
    Some((plan.size, segs))
}

/// A directory entry name must be one path component.
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    match name {
        b"" => Err("empty name"),
        b"." | b".." => Err("names a directory link ('.' or '..')"),
        n if n.contains(&b'/') => Err("contains '/'"),
        n if n.contains(&0) => Err("contains a NUL byte"),
        n if n.len() > MAX_COMPONENT => Err("longer than a path component may be"),
        _ => Ok(()),
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
