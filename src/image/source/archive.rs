//! Archives and image directories: an archive read in place (indexed once, members read by
//! offset, never extracted) or a layout directory (OCI layout, extracted `docker save`). Names from manifests are looked up only in this
//! index, never joined to a host path, which is what keeps `../../etc/passwd` in a manifest
//! from reading host files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::image::tar::{Kind, TarError, TarStream};

use super::super::ImageError;
use super::{Blob, DirKind, ImageSource};
use crate::image::Selection;
use crate::image::select::{self, LayerRef, Resolved};

/// Largest JSON document read (containers/image's cap, after CVE-2020-1702).
pub const MAX_JSON: u64 = 4 << 20;
/// Most members indexed in an outer archive.
const MAX_MEMBERS: usize = 1 << 20;

#[derive(Debug, Clone)]
pub enum Member {
    File {
        offset: u64,
        size: u64,
    },
    Symlink(Vec<u8>),
    /// Hardlinks, devices and the like: present, but never readable as image files.
    Unusable(&'static str),
}

/// An opened image source.
pub enum Source {
    Archive { path: PathBuf, file: File, members: HashMap<Vec<u8>, Member> },
    Layout { path: PathBuf, dir: File },
}

/// A regular file inside a source, ready to be read sequentially.
pub struct MemberReader<'a> {
    file: FileRef<'a>,
    offset: u64,
    remaining: u64,
}

/// Archive members share the archive's descriptor; layout files own theirs.
enum FileRef<'a> {
    Shared(&'a File),
    Owned(File),
}

impl FileRef<'_> {
    fn get(&self) -> &File {
        match self {
            FileRef::Shared(f) => f,
            FileRef::Owned(f) => f,
        }
    }
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.get().read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Cleans an archive member name: drops `./` and leading `/`, refuses `..` and empty names.
pub fn clean_member_name(name: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join(&b'/'))
}

impl ImageSource for Source {
    fn resolve(&self, sel: &Selection) -> Result<Resolved, ImageError> {
        select::resolve(self, sel)
    }

    fn open_layer(&self, layer: &LayerRef) -> Result<Blob<'_>, ImageError> {
        Ok(Box::new(self.open_member(&layer.member)?.0))
    }
}

impl Source {
    pub fn open(path: &Path) -> Result<Source, ImageError> {
        let err = |e| ImageError::Open { path: path.to_owned(), source: e };
        let meta = std::fs::metadata(path).map_err(err)?;
        if meta.is_dir() {
            if DirKind::of(path) == Some(DirKind::SkopeoDir) {
                return Err(ImageError::SkopeoDir(path.to_owned()));
            }
            let dir = File::open(path).map_err(err)?;
            return Ok(Source::Layout { path: path.to_owned(), dir });
        }
        let file = File::open(path).map_err(err)?;
        let members = index_archive(&file).map_err(|e| e.at(path))?;
        Ok(Source::Archive { path: path.to_owned(), file, members })
    }

    pub fn path(&self) -> &Path {
        match self {
            Source::Archive { path, .. } | Source::Layout { path, .. } => path,
        }
    }

    /// True if anything named `name` exists, readable or not.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Source::Archive { members, .. } => {
                clean_member_name(name.as_bytes()).is_some_and(|n| members.contains_key(&n))
            }
            Source::Layout { path, .. } => {
                clean_member_name(name.as_bytes()).is_some()
                    && std::fs::symlink_metadata(path.join(name)).is_ok()
            }
        }
    }

    /// True if a readable file `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.open_member(name).is_ok()
    }

    /// Opens `name` for reading, returning its reader and size.
    pub fn open_member(&self, name: &str) -> Result<(MemberReader<'_>, u64), ImageError> {
        match self {
            Source::Archive { file, members, path } => {
                let (offset, size) = resolve_member(members, name.as_bytes())
                    .map_err(|why| ImageError::Member { archive: path.clone(), name: name.into(), why })?;
                Ok((MemberReader { file: FileRef::Shared(file), offset, remaining: size }, size))
            }
            Source::Layout { .. } => {
                let file = self.open_in_layout(name)?;
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                Ok((MemberReader { file: FileRef::Owned(file), offset: 0, remaining: size }, size))
            }
        }
    }

    /// Reads a whole small file (JSON), refusing more than `limit` bytes.
    pub fn read_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let (reader, size) = self.open_member(name)?;
        if size > limit {
            return Err(ImageError::TooLarge { name: name.into(), size, limit });
        }
        let mut data = Vec::with_capacity(size as usize);
        reader
            .take(limit)
            .read_to_end(&mut data)
            .map_err(|e| ImageError::Read { name: name.into(), source: e })?;
        Ok(data)
    }

    /// Opens a regular file beneath the layout directory without following symlinks out of it.
    fn open_in_layout(&self, name: &str) -> Result<File, ImageError> {
        let Source::Layout { dir, path } = self else { unreachable!("layout only") };
        let clean = clean_member_name(name.as_bytes()).ok_or_else(|| ImageError::Member {
            archive: path.clone(),
            name: name.into(),
            why: "path is not a plain relative name".into(),
        })?;
        let clean = String::from_utf8_lossy(&clean).into_owned();
        // O_NONBLOCK: a FIFO planted in the layout must not block the open (it is refused
        // below as not a regular file); on regular files the flag changes nothing.
        let fd = crate::inroot::resolve_beneath(
            std::os::fd::AsFd::as_fd(dir),
            clean.as_bytes(),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY,
        )
        .map_err(|e| ImageError::Member {
            archive: path.clone(),
            name: name.into(),
            why: io::Error::from(e).to_string(),
        })?;
        let file = File::from(fd);
        let is_file = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        if !is_file {
            return Err(ImageError::Member {
                archive: path.clone(),
                name: name.into(),
                why: "not a regular file".into(),
            });
        }
        Ok(file)
    }
}

/// Index error before the archive path is known.
pub struct IndexError(String);

impl IndexError {
    fn at(self, path: &Path) -> ImageError {
        ImageError::Archive { path: path.to_owned(), why: self.0 }
    }
}

impl From<TarError> for IndexError {
    fn from(e: TarError) -> Self {
        IndexError(crate::error_chain(&e))
    }
}

fn index_archive(file: &File) -> Result<HashMap<Vec<u8>, Member>, IndexError> {
    sniff_outer(file)?;
    let len = file.metadata().map_err(|e| IndexError(e.to_string()))?.len();
    let reader = BufReader::with_capacity(64 << 10, file.try_clone().map_err(|e| IndexError(e.to_string()))?);
    let mut tar = TarStream::new(reader);
    let mut members = HashMap::new();
    let mut parsed_one = false;
    loop {
        let entry = match tar.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) if !parsed_one => {
                return Err(IndexError(format!("{NOT_TAR} ({})", crate::error_chain(&e))));
            }
            Err(e @ TarError::Truncated(_)) => {
                return Err(IndexError(format!("{TRUNCATED}: {}", crate::error_chain(&e))));
            }
            Err(e) => return Err(e.into()),
        };
        parsed_one = true;
        // Seeking past the end is not an error for a file, so a cut inside a member (or its
        // padding) would otherwise read as a clean end of archive.
        if tar.position().saturating_add(crate::image::tar::padded(entry.size)) > len {
            return Err(IndexError(format!(
                "{TRUNCATED}: member {:?} needs {} bytes from offset {}, the file has {len}",
                String::from_utf8_lossy(&entry.path),
                entry.size,
                tar.position()
            )));
        }
        let Some(name) = clean_member_name(&entry.path) else {
            if entry.path.split(|&b| b == b'/').any(|p| p == b"..") {
                return Err(IndexError(format!(
                    "member {:?} contains '..'",
                    String::from_utf8_lossy(&entry.path)
                )));
            }
            continue; // the archive root "./"
        };
        let member = match entry.kind {
            Kind::Regular => Member::File { offset: tar.position(), size: entry.size },
            Kind::Symlink => Member::Symlink(entry.link.clone()),
            Kind::Directory => continue,
            Kind::HardLink => Member::Unusable("a hardlink member"),
            _ => Member::Unusable("not a regular file"),
        };
        if members.insert(name.clone(), member).is_some() {
            return Err(IndexError(format!(
                "duplicate member {:?} (refusing to guess which copy is meant)",
                String::from_utf8_lossy(&name)
            )));
        }
        if members.len() > MAX_MEMBERS {
            return Err(IndexError(format!("more than {MAX_MEMBERS} members")));
        }
    }
    Ok(members)
}

/// How an archive that is not one, or is cut short, is described (`ImageError::hint` keys on it).
pub const NOT_TAR: &str = "not a tar archive";
pub const TRUNCATED: &str = "the archive is truncated";

/// A compressed outer archive cannot be read in place; say how to fix it.
fn sniff_outer(file: &File) -> Result<(), IndexError> {
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0).map_err(|e| IndexError(e.to_string()))?;
    let hint = match &magic[..n] {
        [0x1f, 0x8b, ..] => Some("gzip (decompress it first: gunzip -k FILE)"),
        [0x28, 0xb5, 0x2f, 0xfd] => Some("zstd (decompress it first: zstd -d FILE)"),
        _ => None,
    };
    match hint {
        Some(what) => Err(IndexError(format!("the archive itself is compressed with {what}"))),
        None => Ok(()),
    }
}

/// Finds a regular-file member, following at most one in-archive relative symlink (the legacy
/// `docker save` layout writes `<id>/layer.tar -> ../<other>/layer.tar`).
fn resolve_member(members: &HashMap<Vec<u8>, Member>, name: &[u8]) -> Result<(u64, u64), String> {
    let clean = clean_member_name(name).ok_or("path is not a plain relative name")?;
    match members.get(&clean) {
        Some(Member::File { offset, size }) => Ok((*offset, *size)),
        Some(Member::Symlink(target)) => {
            let joined = join_link(&clean, target).ok_or("symlink points outside the archive")?;
            match members.get(&joined) {
                Some(Member::File { offset, size }) => Ok((*offset, *size)),
                Some(_) => Err("symlink does not lead to a regular file in one hop".into()),
                None => Err("symlink target is not in the archive".into()),
            }
        }
        Some(Member::Unusable(what)) => Err(format!("is {what}")),
        None => Err("not found in the archive".into()),
    }
}

/// Resolves a relative symlink target against the link's directory, lexically.
fn join_link(link: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    if target.first() == Some(&b'/') {
        return None;
    }
    let mut parts: Vec<&[u8]> = link.split(|&b| b == b'/').collect();
    parts.pop();
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names() {
        assert_eq!(clean_member_name(b"./a//b/").unwrap(), b"a/b");
        assert_eq!(clean_member_name(b"/manifest.json").unwrap(), b"manifest.json");
        assert!(clean_member_name(b"a/../b").is_none());
        assert!(clean_member_name(b"./").is_none());
    }

    #[test]
    fn legacy_layer_symlinks() {
        assert_eq!(join_link(b"abc/layer.tar", b"../def/layer.tar").unwrap(), b"def/layer.tar");
        assert_eq!(join_link(b"abc/layer.tar", b"../123.tar").unwrap(), b"123.tar");
        assert!(join_link(b"abc/layer.tar", b"../../etc/passwd").is_none());
        assert!(join_link(b"abc/layer.tar", b"/etc/passwd").is_none());
    }

    #[test]
    fn one_hop_only() {
        let mut m = HashMap::new();
        m.insert(b"a".to_vec(), Member::Symlink(b"b".to_vec()));
        m.insert(b"b".to_vec(), Member::Symlink(b"c".to_vec()));
        m.insert(b"c".to_vec(), Member::File { offset: 512, size: 3 });
        assert_eq!(resolve_member(&m, b"b").unwrap(), (512, 3));
        assert!(resolve_member(&m, b"a").is_err());
    }
}
