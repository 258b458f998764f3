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
use rustix::io::Errno;

use super::gfx;
use crate::inroot::Root;

/// Directories of code-object and kernel-database files, below a library directory.
const LIBRARY_SUBDIRS: &[&str] = &["rocblas/library", "hipblaslt/library", "hipsparselt/library"];
/// MIOpen's kernel databases (`gfx1030_36.kdb`), below a ROCm prefix or `/usr`.
const MIOPEN_DB: &str = "share/miopen/db";
/// Bounds on one scan, whatever the image holds: `/opt/rocm*` prefixes and the image's own
/// library directories considered, directories listed, entries read in all, ELF files opened,
/// and bytes of section headers and of one bundle's start read. A directory reached twice (a
/// symlinked `/opt/rocm`) is listed once.
const MAX_PREFIXES: usize = 8;
const MAX_EXTRA_DIRS: usize = 16;
const MAX_DIRS: usize = 256;
const MAX_ENTRIES: usize = 50_000;
const MAX_ELF_FILES: usize = 4_096;
const MAX_SECTION_HEADERS: u64 = 4_096;
const BUNDLE_HEAD: u64 = 64 << 10;
/// A compressed bundle's start is read further: zstd emits nothing of a block until it has the
/// whole block, up to 128 KiB compressed.
const COMPRESSED_HEAD: u64 = 512 << 10;
const MAX_BUNDLE_ENTRIES: u64 = 1_024;
/// The memo's name in a cache entry, and its format version (raised whenever the scan's rules
/// change, so an older memo is scanned again).
pub const MEMO_NAME: &str = "device-code.json";
const MEMO_VERSION: u32 = 2;

#[derive(serde::Serialize, serde::Deserialize)]
struct Memo {
    version: u32,
    targets: BTreeSet<String>,
}

/// The image's targets, from `memo_dir`'s memo when it has one, else scanned and remembered there
/// (a cache entry the caller cannot write, such as a shared one, is scanned every time).
/// `image_lib_dirs` are the image's own `LD_LIBRARY_PATH` entries (from its configuration, not
/// the run's environment, so the answer belongs to the image). A scan cut short by an error of
/// this machine (too many open files) is used but not remembered.
pub fn memoized(root: &Root, image_lib_dirs: &[String], memo_dir: Option<&Path>) -> BTreeSet<String> {
    let memo = memo_dir.map(|d| d.join(MEMO_NAME));
    if let Some(found) = memo.as_deref().and_then(read_memo) {
        return found;
    }
    let (targets, complete) = scan(root, image_lib_dirs);
    if let Some(path) = &memo
        && complete
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

/// Scans the image: every `/opt/rocm*` prefix first (so the budgets go to ROCm), then the default
/// library directories and `image_lib_dirs`. Returns the targets and whether the scan was
/// complete (no error of this machine's, no budget exhausted).
pub fn scan(root: &Root, image_lib_dirs: &[String]) -> (BTreeSet<String>, bool) {
    let mut scan = Scan {
        root,
        targets: BTreeSet::new(),
        seen: BTreeSet::new(),
        dirs: MAX_DIRS,
        entries: MAX_ENTRIES,
        elf_files: MAX_ELF_FILES,
        complete: true,
    };
    let rocm: Vec<String> = scan
        .list("/opt")
        .into_iter()
        .filter(|(name, _)| name.starts_with("rocm"))
        .take(MAX_PREFIXES)
        .map(|(name, _)| format!("/opt/{name}"))
        .collect();
    let mut lib_dirs: Vec<String> = Vec::new();
    for p in &rocm {
        lib_dirs.extend([format!("{p}/lib"), format!("{p}/lib64")]);
    }
    lib_dirs.extend(super::image::DEFAULT_DIRS.iter().map(|d| d.to_string()));
    lib_dirs.extend(image_lib_dirs.iter().take(MAX_EXTRA_DIRS).cloned());
    for dir in &lib_dirs {
        scan.library_dir(dir);
    }
    for p in rocm.iter().map(String::as_str).chain(["/usr"]) {
        scan.names_in(&format!("{p}/{MIOPEN_DB}"));
    }
    (scan.targets, scan.complete)
}

struct Scan<'a> {
    root: &'a Root,
    targets: BTreeSet<String>,
    /// (device, inode) of every directory listed.
    seen: BTreeSet<(u64, u64)>,
    /// What is left of the budgets.
    dirs: usize,
    entries: usize,
    elf_files: usize,
    complete: bool,
}

impl Scan<'_> {
    /// The entries of a directory of the image (names and types as the directory says); empty
    /// when it is missing, was listed already, or a budget is spent.
    fn list(&mut self, dir: &str) -> Vec<(String, FileType)> {
        if self.dirs == 0 || self.entries == 0 {
            self.complete = false;
            return Vec::new();
        }
        let fd = match self.root.try_open_dir(dir) {
            Ok(fd) => fd,
            // What the image decides: the directory is not there, or not one.
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::ACCESS | Errno::XDEV) => {
                return Vec::new();
            }
            Err(e) => {
                tracing::debug!(dir, error = %e, "device-code scan incomplete");
                self.complete = false;
                return Vec::new();
            }
        };
        let Ok(st) = rustix::fs::fstat(&fd) else { return Vec::new() };
        if !self.seen.insert((st.st_dev, st.st_ino)) {
            return Vec::new();
        }
        self.dirs -= 1;
        let Ok(iter) = rustix::fs::Dir::read_from(&fd) else {
            self.complete = false;
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in iter {
            let Ok(e) = entry else {
                self.complete = false;
                break;
            };
            if self.entries == 0 {
                self.complete = false;
                break;
            }
            self.entries -= 1;
            let Ok(name) = e.file_name().to_str() else { continue };
            if name != "." && name != ".." {
                out.push((name.to_string(), e.file_type()));
            }
        }
        out
    }

    /// A library directory: its shared libraries' bundles, and the code-object directories below.
    fn library_dir(&mut self, dir: &str) {
        for (name, kind) in self.list(dir) {
            let lib = name.starts_with("lib") && name.contains(".so");
            if lib && matches!(kind, FileType::RegularFile | FileType::Unknown) {
                if self.elf_files == 0 {
                    self.complete = false;
                    break;
                }
                self.elf_files -= 1;
                self.bundle_of(&format!("{dir}/{name}"));
            }
        }
        for sub in LIBRARY_SUBDIRS {
            self.names_in(&format!("{dir}/{sub}"));
        }
        // Debian's rocBLAS keeps its library under a version directory (rocblas/5.3.3/library).
        for (name, kind) in self.list(&format!("{dir}/rocblas")) {
            if kind == FileType::Directory && name != "library" {
                self.names_in(&format!("{dir}/rocblas/{name}/library"));
            }
        }
    }

    /// The targets named by the files of a directory.
    fn names_in(&mut self, dir: &str) {
        for (name, _) in self.list(dir) {
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
            let magic = read_at(file, size, offset, len.min(4))?;
            let head = if magic == COMPRESSED_MAGIC { COMPRESSED_HEAD } else { BUNDLE_HEAD };
            return read_at(file, size, offset, len.min(head)).map(Some);
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
        let (found, complete) = scan(&root, &[]);
        assert!(complete);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["gfx1030", "gfx1100", "gfx90a", "gfx942"]);
        // Memoized: a second call reads the memo, not the tree.
        let memo_dir = dir.join("entry");
        std::fs::create_dir(&memo_dir).unwrap();
        assert_eq!(memoized(&root, &[], Some(&memo_dir)).len(), 4);
        std::fs::remove_dir_all(dir.join("opt")).unwrap();
        assert_eq!(memoized(&root, &[], Some(&memo_dir)).len(), 4);
        assert_eq!(memoized(&root, &[], None).len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Symlinks that multiply directories (prefixes, version directories, LD_LIBRARY_PATH
    /// entries all reaching one directory) cost one listing each, and the budgets end the rest.
    #[test]
    fn a_tree_built_to_multiply_work_is_bounded() {
        let dir = std::env::temp_dir().join(format!("gpurun-devcode-mult-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let lib = dir.join("opt/rocm-6.2.0/lib");
        let shared = dir.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        for i in 0..300 {
            std::fs::write(shared.join(format!("Kernels.so-{i:03}-gfx1100.hsaco")), "").unwrap();
        }
        std::fs::create_dir_all(lib.join("rocblas")).unwrap();
        for i in 0..300 {
            std::fs::create_dir_all(lib.join(format!("rocblas/v{i}"))).unwrap();
            std::os::unix::fs::symlink("/shared", lib.join(format!("rocblas/v{i}/library"))).unwrap();
            std::os::unix::fs::symlink("/opt/rocm-6.2.0", dir.join(format!("opt/rocm{i}"))).unwrap();
        }
        let root = Root::open(&dir).unwrap();
        let extra: Vec<String> = (0..1000).map(|i| format!("/opt/rocm{}/lib", i % 300)).collect();
        let started = std::time::Instant::now();
        let (found, _) = scan(&root, &extra);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["gfx1100"]);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
