//! Reads glibc's `/etc/ld.so.cache` directly, the way the dynamic loader does, instead of running
//! `ldconfig -p` (whose output format is not an interface and which is missing or replaced on
//! NixOS and in nested containers: apptainer/apptainer#1894, apptainer/singularity#5002).
//! Parsing ([`parse_ld_so_cache`]) is pure; the caller reads the bytes. This module does not
//! decide which libraries a GPU needs.
//!
//! Format (glibc `sysdeps/generic/dl-cache.h`): either the new format alone, starting with
//! `glibc-ld.so.cache1.1`, or (glibc < 2.32 default) the old `ld.so-1.7.0` table followed by the
//! new one at the next 8-byte boundary. In the new format every string offset counts from the
//! start of the new header.

/// The new-format magic and version, 20 bytes together.
const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
/// magic+version (20), nlibs, len_strings, flags+pad (4), extension_offset, unused[3].
const NEW_HEADER_LEN: usize = 48;
/// flags (i32), key, value (u32), osversion (u32), hwcap (u64).
const NEW_ENTRY_LEN: usize = 24;
/// magic (11) padded to 12, nlibs.
const OLD_HEADER_LEN: usize = 16;
const OLD_ENTRY_LEN: usize = 12;

/// One library known to the loader: its soname and where it lives on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub soname: String,
    pub path: String,
    /// `FLAG_*` bits: the low byte is the ELF/libc type, the next the architecture (e.g.
    /// 0x0303 = libc6 x86-64).
    pub flags: i32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LdCacheError {
    #[error("not an ld.so.cache file (unknown magic)")]
    BadMagic,
    #[error("truncated ld.so.cache: {0}")]
    Truncated(&'static str),
}

impl LdCacheError {
    pub fn hint(&self) -> Option<String> {
        Some("regenerate the cache on the host with `sudo ldconfig`".into())
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    bytes.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// A NUL-terminated string at `at`.
fn c_str(bytes: &[u8], at: usize) -> Option<String> {
    let tail = bytes.get(at..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}

/// Parses a whole cache file. Entries keep the file's order, which is the loader's priority order
/// (ldconfig sorts them so the first match wins).
pub fn parse_ld_so_cache(bytes: &[u8]) -> Result<Vec<CacheEntry>, LdCacheError> {
    let start = if bytes.starts_with(NEW_MAGIC) {
        0
    } else if bytes.starts_with(OLD_MAGIC) {
        let nlibs = u32_at(bytes, 12).ok_or(LdCacheError::Truncated("old header"))? as usize;
        let old_end = OLD_HEADER_LEN + nlibs * OLD_ENTRY_LEN;
        let aligned = old_end.div_ceil(8) * 8;
        if !bytes.get(aligned..).is_some_and(|b| b.starts_with(NEW_MAGIC)) {
            // An old-format-only cache (glibc < 2.6): not worth supporting any more.
            return Err(LdCacheError::BadMagic);
        }
        aligned
    } else {
        return Err(LdCacheError::BadMagic);
    };
    let new = &bytes[start..];
    let nlibs = u32_at(new, 20).ok_or(LdCacheError::Truncated("header"))? as usize;
    if new.len() < NEW_HEADER_LEN + nlibs.saturating_mul(NEW_ENTRY_LEN) {
        return Err(LdCacheError::Truncated("entry table"));
    }
    let mut out = Vec::with_capacity(nlibs);
    for i in 0..nlibs {
        let at = NEW_HEADER_LEN + i * NEW_ENTRY_LEN;
        let flags = u32_at(new, at).ok_or(LdCacheError::Truncated("entry"))? as i32;
        let key = u32_at(new, at + 4).ok_or(LdCacheError::Truncated("entry"))? as usize;
        let value = u32_at(new, at + 8).ok_or(LdCacheError::Truncated("entry"))? as usize;
        let soname = c_str(new, key).ok_or(LdCacheError::Truncated("string table"))?;
        let path = c_str(new, value).ok_or(LdCacheError::Truncated("string table"))?;
        out.push(CacheEntry { soname, path, flags });
    }
    Ok(out)
}

/// The ld.so.cache architecture flags of the build target, so only libraries the launcher's own
/// loader would pick are used (the Apptainer rule: the ELF class and machine of the launcher).
pub fn native_arch_flags() -> Option<i32> {
    // glibc dl-cache.h: FLAG_ELF_LIBC6 0x0003 | FLAG_X8664_LIB64 0x0300, FLAG_AARCH64_LIB64 0x0a00,
    // FLAG_POWERPC_LIB64 0x0500, FLAG_RISCV_FLOAT_ABI_DOUBLE 0x1000 (lp64d).
    if cfg!(target_arch = "x86_64") {
        Some(0x0303)
    } else if cfg!(target_arch = "aarch64") {
        Some(0x0a03)
    } else if cfg!(target_arch = "powerpc64") {
        Some(0x0503)
    } else if cfg!(target_arch = "riscv64") {
        Some(0x1003)
    } else {
        None
    }
}

/// Builds a new-format cache image from `(soname, path, flags)` triples, for tests.
pub fn build_cache(entries: &[(&str, &str, i32)]) -> Vec<u8> {
    let mut strings = Vec::new();
    let strings_at = NEW_HEADER_LEN + entries.len() * NEW_ENTRY_LEN;
    let mut table = Vec::new();
    for (soname, path, flags) in entries {
        let key = strings_at + strings.len();
        strings.extend_from_slice(soname.as_bytes());
        strings.push(0);
        let value = strings_at + strings.len();
        strings.extend_from_slice(path.as_bytes());
        strings.push(0);
        table.extend_from_slice(&flags.to_ne_bytes());
        table.extend_from_slice(&(key as u32).to_ne_bytes());
        table.extend_from_slice(&(value as u32).to_ne_bytes());
        table.extend_from_slice(&0u32.to_ne_bytes());
        table.extend_from_slice(&0u64.to_ne_bytes());
    }
    let mut out = NEW_MAGIC.to_vec();
    out.extend_from_slice(&(entries.len() as u32).to_ne_bytes());
    out.extend_from_slice(&(strings.len() as u32).to_ne_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&table);
    out.extend_from_slice(&strings);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_new_format_in_order() {
        let bytes = build_cache(&[
            ("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1", 0x0303),
            ("libcuda.so.1", "/usr/lib/i386-linux-gnu/libcuda.so.1", 0x0003),
        ]);
        let entries = parse_ld_so_cache(&bytes).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].soname, "libcuda.so.1");
        assert_eq!(entries[0].path, "/usr/lib/x86_64-linux-gnu/libcuda.so.1");
        assert_eq!(entries[1].flags, 0x0003);
    }

    #[test]
    fn parses_old_plus_new_format() {
        let new = build_cache(&[("libz.so.1", "/lib/libz.so.1", 0x0303)]);
        let mut bytes = b"ld.so-1.7.0\0".to_vec();
        bytes.extend_from_slice(&1u32.to_ne_bytes());
        bytes.extend_from_slice(&[0u8; 12]);
        while !bytes.len().is_multiple_of(8) {
            bytes.push(0);
        }
        bytes.extend_from_slice(&new);
        let entries = parse_ld_so_cache(&bytes).unwrap();
        assert_eq!(entries[0].path, "/lib/libz.so.1");
    }

    #[test]
    fn rejects_garbage_and_truncation() {
        let table: &[(&[u8], LdCacheError)] = &[
            (b"", LdCacheError::BadMagic),
            (b"\x7fELF", LdCacheError::BadMagic),
            (b"glibc-ld.so.cache1.1", LdCacheError::Truncated("header")),
        ];
        for (bytes, err) in table {
            assert_eq!(parse_ld_so_cache(bytes).unwrap_err(), *err);
        }
        let mut full = build_cache(&[("a", "b", 0)]);
        full.truncate(NEW_HEADER_LEN + 4);
        assert_eq!(parse_ld_so_cache(&full).unwrap_err(), LdCacheError::Truncated("entry table"));
    }

    #[test]
    fn reads_this_hosts_cache() {
        let Ok(bytes) = std::fs::read("/etc/ld.so.cache") else { return };
        let entries = parse_ld_so_cache(&bytes).unwrap();
        assert!(entries.iter().any(|e| e.soname.starts_with("libc.so.")), "libc in the host cache");
    }
}
