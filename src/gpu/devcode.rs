//! Which gfx targets an image carries GPU code for, read from the image itself: the names of the
//! code-object and Tensile/kernel-database files of rocBLAS, hipBLASLt and MIOpen
//! (`TensileLibrary_..._gfx1100.co`, `gfx90a6e.kdb`), and the offload bundles that HIP libraries
//! carry in their `.hip_fatbin` section (`hipv4-amdgcn-amd-amdhsa--gfx1030`, also when the bundle
//! is compressed, `CCOB`). Every read goes through the in-root reader and is bounded: a hostile
//! image can make the answer wrong, never make gpurun read a host file, hang or allocate much.
//!
//! The answer is memoized in the image's cache entry ([`memoized`]): an image is immutable, so a
//! warm `--rocm` start reads one small file instead of scanning.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::FileType;

use super::gfx;
use crate::inroot::Root;

/// Directories of code-object and kernel-database files, below a library directory.
const LIBRARY_SUBDIRS: &[&str] = &["rocblas/library", "hipblaslt/library", "hipsparselt/library"];
/// MIOpen's kernel databases (`gfx1030_36.kdb`), below a ROCm prefix or `/usr`.
const MIOPEN_DB: &str = "share/miopen/db";
/// Bounds on one scan: directory entries looked at per directory, ELF files opened, bytes of
/// section headers and of one bundle's start read.
const MAX_ENTRIES: usize = 20_000;
const MAX_ELF_FILES: usize = 4_096;
const MAX_SECTION_HEADERS: u64 = 4_096;
const BUNDLE_HEAD: u64 = 64 << 10;
const MAX_BUNDLE_ENTRIES: u64 = 1_024;
/// The memo's name in a cache entry, and its format version.
pub const MEMO_NAME: &str = "device-code.json";
const MEMO_VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Memo {
    version: u32,
    targets: BTreeSet<String>,
}

/// The image's targets, from `memo_dir`'s memo when it has one, else scanned and remembered there
/// (a cache entry the caller cannot write, such as a shared one, is scanned every time).
pub fn memoized(root: &Root, extra_lib_dirs: &[String], memo_dir: Option<&Path>) -> BTreeSet<String> {
    let memo = memo_dir.map(|d| d.join(MEMO_NAME));
    if let Some(found) = memo.as_deref().and_then(read_memo) {
        return found;
    }
    let targets = scan(root, extra_lib_dirs);
    if let Some(path) = &memo
        && let Err(e) = write_memo(path, &targets)
    {
        tracing::debug!(path = %path.display(), error = %e, "device-code memo not written");
    }
    targets
}

fn read_memo(path: &Path) -> Option<BTreeSet<String>> {
    let bytes = std::fs::read(path).ok()?;
    let memo: Memo = serde_json::from_slice(&bytes).ok()?;
    (memo.version == MEMO_VERSION).then_some(memo.targets)
}

/// Written to a temporary name and renamed, so concurrent first starts never read half a memo.
fn write_memo(path: &Path, targets: &BTreeSet<String>) -> std::io::Result<()> {
    let memo = Memo { version: MEMO_VERSION, targets: targets.clone() };
    let tmp = path.with_extension(format!("tmp.{}", crate::fsutil::unique_suffix()));
    std::fs::write(&tmp, serde_json::to_vec(&memo)?)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Scans the image: the default library directories, `extra_lib_dirs` (its `LD_LIBRARY_PATH`)
/// and every `/opt/rocm*` prefix.
pub fn scan(root: &Root, extra_lib_dirs: &[String]) -> BTreeSet<String> {
    let mut prefixes = vec!["/usr".to_string()];
    prefixes.extend(rocm_prefixes(root));
    let mut lib_dirs: Vec<String> = super::image::DEFAULT_DIRS.iter().map(|d| d.to_string()).collect();
    lib_dirs.extend(extra_lib_dirs.iter().cloned());
    for p in prefixes.iter().skip(1) {
        lib_dirs.extend([format!("{p}/lib"), format!("{p}/lib64")]);
    }
    lib_dirs.dedup();
    let mut scan = Scan { root, targets: BTreeSet::new(), elf_budget: MAX_ELF_FILES };
    for dir in &lib_dirs {
        scan.library_dir(dir);
    }
    for p in &prefixes {
        scan.names_in(&format!("{p}/{MIOPEN_DB}"));
    }
    scan.targets
}

/// `/opt/rocm` and the versioned `/opt/rocm-6.2.0` prefixes ROCm installs.
fn rocm_prefixes(root: &Root) -> Vec<String> {
    list(root, "/opt")
        .into_iter()
        .filter(|(name, kind)| name.starts_with("rocm") && *kind != FileType::RegularFile)
        .map(|(name, _)| format!("/opt/{name}"))
        .collect()
}

/// The entries of a directory of the image (names and types as the directory says; at most
/// [`MAX_ENTRIES`]); empty when it is missing.
fn list(root: &Root, dir: &str) -> Vec<(String, FileType)> {
    let Some(fd) = root.open_dir(dir) else { return Vec::new() };
    let Ok(iter) = rustix::fs::Dir::read_from(&fd) else { return Vec::new() };
    iter.flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| {
            let name = e.file_name().to_str().ok()?.to_string();
            (name != "." && name != "..").then_some((name, e.file_type()))
        })
        .collect()
}

struct Scan<'a> {
    root: &'a Root,
    targets: BTreeSet<String>,
    elf_budget: usize,
}

impl Scan<'_> {
    /// A library directory: its shared libraries' bundles, and the code-object directories below.
    fn library_dir(&mut self, dir: &str) {
        for (name, kind) in list(self.root, dir) {
            let lib = name.starts_with("lib") && name.contains(".so");
            if lib && matches!(kind, FileType::RegularFile | FileType::Unknown) && self.elf_budget > 0 {
                self.elf_budget -= 1;
                self.bundle_of(&format!("{dir}/{name}"));
            }
        }
        for sub in LIBRARY_SUBDIRS {
            self.names_in(&format!("{dir}/{sub}"));
        }
        // Debian's rocBLAS keeps its library under a version directory (rocblas/5.3.3/library).
        for (name, kind) in list(self.root, &format!("{dir}/rocblas")) {
            if kind == FileType::Directory && name != "library" {
                self.names_in(&format!("{dir}/rocblas/{name}/library"));
            }
        }
    }

    /// The targets named by the files of a directory.
    fn names_in(&mut self, dir: &str) {
        for (name, _) in list(self.root, dir) {
            self.targets.extend(gfx::targets_in(&name));
        }
    }

    fn bundle_of(&mut self, path: &str) {
        let Ok((file, size)) = self.root.open_regular(path) else { return };
        match hip_fatbin_head(&file, size) {
            Ok(Some(head)) => self.targets.extend(bundle_targets(&head)),
            Ok(None) => {}
            Err(e) => tracing::debug!(path, error = %e, "no offload bundle read"),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn read_at(file: &File, size: u64, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let end = offset.checked_add(len).filter(|e| *e <= size);
    let Some(_) = end else { return Err(std::io::Error::other("range past the end of the file")) };
    let mut buf = vec![0; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// The first [`BUNDLE_HEAD`] bytes of a 64-bit little-endian ELF file's `.hip_fatbin` section,
/// or `None` when it has none (or is no such ELF file).
fn hip_fatbin_head(file: &File, size: u64) -> std::io::Result<Option<Vec<u8>>> {
    if size < 64 {
        return Ok(None);
    }
    let eh = read_at(file, size, 0, 64)?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Ok(None);
    }
    let bad = || std::io::Error::other("malformed ELF header");
    let shoff = u64_at(&eh, 0x28).ok_or_else(bad)?;
    let (entsize, count, strndx) = (
        u16_at(&eh, 0x3a).ok_or_else(bad)?,
        u16_at(&eh, 0x3c).ok_or_else(bad)?,
        u16_at(&eh, 0x3e).ok_or_else(bad)?,
    );
    if entsize != 64 || count == 0 || u64::from(count) > MAX_SECTION_HEADERS || strndx >= count {
        return Ok(None);
    }
    let headers = read_at(file, size, shoff, u64::from(count) * 64)?;
    let section = |i: usize| -> Option<(u32, u64, u64)> {
        let h = &headers[i * 64..i * 64 + 64];
        Some((u32_at(h, 0)?, u64_at(h, 24)?, u64_at(h, 32)?))
    };
    let (_, str_off, str_size) = section(usize::from(strndx)).ok_or_else(bad)?;
    let names = read_at(file, size, str_off, str_size.min(1 << 20))?;
    for i in 0..usize::from(count) {
        let Some((name, offset, len)) = section(i) else { continue };
        let name = names.get(name as usize..).unwrap_or_default();
        if name.starts_with(b".hip_fatbin\0") {
            return read_at(file, size, offset, len.min(BUNDLE_HEAD)).map(Some);
        }
    }
    Ok(None)
}

const BUNDLE_MAGIC: &[u8] = b"__CLANG_OFFLOAD_BUNDLE__";
const COMPRESSED_MAGIC: &[u8] = b"CCOB";

/// The AMD GPU targets of the offload bundle at the start of `head`, compressed or not.
pub fn bundle_targets(head: &[u8]) -> Vec<String> {
    if head.starts_with(COMPRESSED_MAGIC) {
        return decompress_head(head).map(|b| bundle_targets_plain(&b)).unwrap_or_default();
    }
    bundle_targets_plain(head)
}

/// An uncompressed bundle: the magic, a u64 entry count, and per entry a u64 offset, u64 size,
/// u64 id length and the id (`hipv4-amdgcn-amd-amdhsa--gfx90a:xnack-`).
fn bundle_targets_plain(b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if !b.starts_with(BUNDLE_MAGIC) {
        return out;
    }
    let mut at = BUNDLE_MAGIC.len();
    let Some(count) = u64_at(b, at) else { return out };
    at += 8;
    for _ in 0..count.min(MAX_BUNDLE_ENTRIES) {
        let Some(len) = u64_at(b, at + 16) else { break };
        at += 24;
        let Some(id) = usize::try_from(len).ok().and_then(|l| b.get(at..at.checked_add(l)?)) else { break };
        at += id.len();
        let id = String::from_utf8_lossy(id);
        if id.contains("amdgcn") {
            out.extend(gfx::targets_in(&id));
        }
    }
    out
}

/// The start of a compressed bundle's payload (clang's `CompressedOffloadBundle`: "CCOB", u16
/// version, u16 method (0 zlib, 1 zstd), then version 1: u32 size; 2: u32 file size, u32 size;
/// 3: u64 file size, u64 size; then a u64 hash and the compressed bytes). Only the first
/// [`BUNDLE_HEAD`] bytes are decompressed: the entry table is at the start.
fn decompress_head(b: &[u8]) -> Option<Vec<u8>> {
    let (version, method) = (u16_at(b, 4)?, u16_at(b, 6)?);
    let data_at = match version {
        1 => 8 + 4 + 8,
        2 => 8 + 4 + 4 + 8,
        3 => 8 + 8 + 8 + 8,
        _ => return None,
    };
    let data = b.get(data_at..)?;
    let mut out = Vec::new();
    let limit = BUNDLE_HEAD;
    // A truncated stream ends in an error after the bytes it could give; those are enough.
    let _ = match method {
        0 => flate2::read::ZlibDecoder::new(data).take(limit).read_to_end(&mut out),
        1 => zstd::stream::read::Decoder::new(data).ok()?.take(limit).read_to_end(&mut out),
        _ => return None,
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An uncompressed bundle as clang-offload-bundler writes it.
    fn bundle(ids: &[&str]) -> Vec<u8> {
        let mut b = BUNDLE_MAGIC.to_vec();
        b.extend((ids.len() as u64).to_le_bytes());
        for (i, id) in ids.iter().enumerate() {
            b.extend((4096 * i as u64).to_le_bytes());
            b.extend(100u64.to_le_bytes());
            b.extend((id.len() as u64).to_le_bytes());
            b.extend(id.as_bytes());
        }
        b
    }

    #[test]
    fn plain_bundles() {
        let b = bundle(&[
            "host-x86_64-unknown-linux",
            "hipv4-amdgcn-amd-amdhsa--gfx1030",
            "hipv4-amdgcn-amd-amdhsa--gfx90a:xnack-",
            "hip-amdgcn-amd-amdhsa-gfx906",
        ]);
        assert_eq!(bundle_targets(&b), ["gfx1030", "gfx90a", "gfx906"]);
        // Truncated, absurd counts and lengths end the walk without panicking.
        assert_eq!(bundle_targets(&b[..b.len() - 3]), ["gfx1030", "gfx90a"]);
        let mut absurd = BUNDLE_MAGIC.to_vec();
        absurd.extend(u64::MAX.to_le_bytes());
        absurd.extend([0u8; 16]);
        absurd.extend(u64::MAX.to_le_bytes());
        assert!(bundle_targets(&absurd).is_empty());
        assert!(bundle_targets(b"not a bundle").is_empty());
    }

    #[test]
    fn compressed_bundles() {
        let plain = bundle(&["host-x86_64-unknown-linux", "hipv4-amdgcn-amd-amdhsa--gfx1100"]);
        let zstd = zstd::encode_all(&plain[..], 3).unwrap();
        let mut v3 = COMPRESSED_MAGIC.to_vec();
        v3.extend(3u16.to_le_bytes());
        v3.extend(1u16.to_le_bytes());
        v3.extend(((32 + zstd.len()) as u64).to_le_bytes());
        v3.extend((plain.len() as u64).to_le_bytes());
        v3.extend(0u64.to_le_bytes());
        v3.extend(&zstd);
        assert_eq!(bundle_targets(&v3), ["gfx1100"]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut z, &plain).unwrap();
        let zlib = z.finish().unwrap();
        let mut v2 = COMPRESSED_MAGIC.to_vec();
        v2.extend(2u16.to_le_bytes());
        v2.extend(0u16.to_le_bytes());
        v2.extend(((24 + zlib.len()) as u32).to_le_bytes());
        v2.extend((plain.len() as u32).to_le_bytes());
        v2.extend(0u64.to_le_bytes());
        v2.extend(&zlib);
        assert_eq!(bundle_targets(&v2), ["gfx1100"]);
        // Garbage after a valid header, an unknown method or version: nothing, no panic.
        let mut junk = v3[..32].to_vec();
        junk.extend([0xff; 64]);
        assert!(bundle_targets(&junk).is_empty());
        let mut unknown = v3.clone();
        unknown[6] = 9;
        assert!(bundle_targets(&unknown).is_empty());
        unknown[4] = 7;
        assert!(bundle_targets(&unknown).is_empty());
    }

    #[test]
    fn a_tree_with_code_objects_and_databases() {
        let dir = std::env::temp_dir().join(format!("gpurun-devcode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lib = dir.join("opt/rocm-6.2.0/lib");
        for sub in ["rocblas/library", "hipblaslt/library"] {
            std::fs::create_dir_all(lib.join(sub)).unwrap();
        }
        std::fs::write(lib.join("rocblas/library/TensileLibrary_lazy_gfx1100.dat"), "").unwrap();
        std::fs::write(lib.join("hipblaslt/library/Kernels.so-000-gfx942.hsaco"), "").unwrap();
        let db = dir.join("opt/rocm-6.2.0/share/miopen/db");
        std::fs::create_dir_all(&db).unwrap();
        std::fs::write(db.join("gfx90a6e.kdb"), "").unwrap();
        // A "library" that is a FIFO is skipped, not read.
        rustix::fs::mknodat(rustix::fs::CWD, lib.join("libfifo.so"), FileType::Fifo, 0o644.into(), 0)
            .unwrap();
        let debian = dir.join("usr/lib/x86_64-linux-gnu/rocblas/5.3.3/library");
        std::fs::create_dir_all(&debian).unwrap();
        std::fs::write(debian.join("Kernels.so-000-gfx1030.hsaco"), "").unwrap();
        let root = Root::open(&dir).unwrap();
        let found: Vec<String> = scan(&root, &[]).into_iter().collect();
        assert_eq!(found, ["gfx1030", "gfx1100", "gfx90a", "gfx942"]);
        // Memoized: a second call reads the memo, not the tree.
        let memo_dir = dir.join("entry");
        std::fs::create_dir(&memo_dir).unwrap();
        assert_eq!(memoized(&root, &[], Some(&memo_dir)).len(), 4);
        std::fs::remove_dir_all(dir.join("opt")).unwrap();
        assert_eq!(memoized(&root, &[], Some(&memo_dir)).len(), 4);
        assert_eq!(memoized(&root, &[], None).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
