//! Pure parsing of tar headers (ustar, GNU, PAX) into entries. No I/O: the drivers in
//! `stream.rs` and `index.rs` feed 512-byte blocks and metadata records in, and get `Entry`
//! values out. Every size that comes from the archive is bounded here, before any allocation.

use super::TarError;

pub const BLOCK: usize = 512;
/// Largest GNU long-name/long-link or PAX record accepted (Go's archive/tar uses the same cap).
pub const MAX_META_RECORD: u64 = 1 << 20;
/// Longest path or link target accepted, in bytes (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Largest entry size accepted: 2^63 - 1, as Go's archive/tar. Bigger values (a PAX `size` or a
/// base-256 field near 2^64) would overflow the padding arithmetic and desynchronise the stream,
/// letting an entry's data be read as headers.
pub const MAX_ENTRY_SIZE: u64 = i64::MAX as u64;

/// What kind of filesystem object an entry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Directory,
    Fifo,
    /// Old GNU sparse file ('S'): data segments plus a map.
    GnuSparse,
    /// GNU long name ('L') for the next entry.
    LongName,
    /// GNU long link target ('K') for the next entry.
    LongLink,
    /// PAX extended header ('x') for the next entry.
    Pax,
    /// PAX global header ('g'): read and ignored, as Go's archive/tar does.
    PaxGlobal,
    /// A type this unpacker does not create (sockets are not in tar; GNU volume labels, ...).
    Other(u8),
}

impl Kind {
    fn from_flag(flag: u8) -> Kind {
        match flag {
            b'0' | 0 | b'7' => Kind::Regular,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Directory,
            b'6' => Kind::Fifo,
            b'S' => Kind::GnuSparse,
            b'L' => Kind::LongName,
            b'K' => Kind::LongLink,
            b'x' => Kind::Pax,
            b'g' => Kind::PaxGlobal,
            other => Kind::Other(other),
        }
    }

    /// Headers whose data is metadata for the following entry.
    pub fn is_meta(self) -> bool {
        matches!(self, Kind::LongName | Kind::LongLink | Kind::Pax | Kind::PaxGlobal)
    }
}

/// One segment of an old-GNU sparse file: `len` bytes of data at `offset` in the real file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseSegment {
    pub offset: u64,
    pub len: u64,
}

/// A fully resolved archive entry: long names and PAX overrides already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Bytes of data that follow the header(s) in the archive.
    pub size: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For `Kind::GnuSparse`: the real (apparent) size and the segment map.
    pub sparse: Option<(u64, Vec<SparseSegment>)>,
    pub dev_major: u32,
    pub dev_minor: u32,
}

/// A header block as read, before metadata from earlier records is applied.
#[derive(Debug, Clone)]
pub struct RawHeader {
    pub kind: Kind,
    pub size: u64,
    pub entry: Entry,
    /// Old-GNU sparse: the map is continued in extension blocks after the header.
    pub sparse_extended: bool,
}

/// Metadata collected from L/K/x records, applied to the next real entry.
#[derive(Debug, Default)]
pub struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Vec<PaxRecord>,
    /// Metadata bytes absorbed for the coming entry: bounded by `MAX_META_RECORD` in all, so
    /// that a run of many metadata headers cannot pile up memory (each is capped on its own).
    bytes: u64,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_empty()
    }

    /// Takes the data of a metadata record (`kind.is_meta()`).
    pub fn absorb(&mut self, kind: Kind, data: &[u8]) -> Result<(), TarError> {
        self.bytes += data.len() as u64;
        if self.bytes > MAX_META_RECORD {
            return Err(TarError::Invalid(format!(
                "metadata headers before one entry hold {} bytes in all (at most {MAX_META_RECORD})",
                self.bytes
            )));
        }
        match kind {
            Kind::LongName => self.long_name = Some(trim_nul(data).to_vec()),
            Kind::LongLink => self.long_link = Some(trim_nul(data).to_vec()),
            Kind::Pax => self.pax.extend(parse_pax(data)?),
            _ => {}
        }
        Ok(())
    }

    /// Applies the collected metadata to `raw` and validates the result. Errors name the entry
    /// (by its ustar name when the PAX or long name is what is wrong).
    pub fn apply(&mut self, raw: RawHeader) -> Result<Entry, TarError> {
        let fallback =
            String::from_utf8_lossy(self.long_name.as_deref().unwrap_or(&raw.entry.path)).into_owned();
        self.apply_inner(raw).map_err(|e| TarError::AtEntry { entry: fallback, source: Box::new(e) })
    }

    fn apply_inner(&mut self, mut raw: RawHeader) -> Result<Entry, TarError> {
        let e = &mut raw.entry;
        if let Some(name) = self.long_name.take() {
            e.path = name;
        }
        if let Some(link) = self.long_link.take() {
            e.link = link;
        }
        for (key, value) in std::mem::take(&mut self.pax) {
            apply_pax(e, &key, value)?;
        }
        self.bytes = 0;
        if e.size > MAX_ENTRY_SIZE {
            return Err(TarError::Invalid(format!("size {} is larger than {MAX_ENTRY_SIZE}", e.size)));
        }
        check_bytes("path", &e.path)?;
        check_bytes("link target", &e.link)?;
        Ok(raw.entry)
    }
}

fn check_bytes(what: &'static str, value: &[u8]) -> Result<(), TarError> {
    if value.contains(&0) {
        return Err(TarError::Invalid(format!(
            "{what} {:?} contains a NUL byte",
            String::from_utf8_lossy(&value[..value.len().min(200)])
        )));
    }
    if value.len() > MAX_PATH {
        return Err(TarError::Invalid(format!("{what} is {} bytes long (at most {MAX_PATH})", value.len())));
    }
    Ok(())
}

fn apply_pax(e: &mut Entry, key: &[u8], value: Vec<u8>) -> Result<(), TarError> {
    match key {
        b"path" => e.path = value,
        b"linkpath" => e.link = value,
        b"size" => e.size = pax_u64(key, &value)?,
        b"uid" => e.uid = pax_u64(key, &value)?,
        b"gid" => e.gid = pax_u64(key, &value)?,
        b"mtime" => (e.mtime, e.mtime_nsec) = pax_time(&value)?,
        _ if key.starts_with(b"SCHILY.xattr.") => {
            e.xattrs.push((key[b"SCHILY.xattr.".len()..].to_vec(), value))
        }
        _ if key.starts_with(b"GNU.sparse.") => {
            return Err(TarError::Unsupported(
                "PAX sparse file (GNU.sparse.*): repack the layer without --sparse".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

fn pax_u64(key: &[u8], value: &[u8]) -> Result<u64, TarError> {
    std::str::from_utf8(value).ok().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| {
        TarError::Invalid(format!(
            "PAX {} is not a number: {:?}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(value)
        ))
    })
}

/// PAX times are decimal seconds with an optional fraction, possibly negative.
fn pax_time(value: &[u8]) -> Result<(i64, u32), TarError> {
    let text = std::str::from_utf8(value).map_err(|_| TarError::Invalid("PAX mtime".into()))?;
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = whole.parse().map_err(|_| TarError::Invalid(format!("PAX mtime {text:?}")))?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(TarError::Invalid(format!("PAX mtime {text:?}")));
    }
    let nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().unwrap_or(0) };
    Ok((secs, nsec))
}

/// One PAX record: key and value bytes.
pub type PaxRecord = (Vec<u8>, Vec<u8>);

/// Parses PAX records: `"%d %s=%s\n"`, where the decimal is the record's whole length.
pub fn parse_pax(mut data: &[u8]) -> Result<Vec<PaxRecord>, TarError> {
    let bad = |why: &str| TarError::Invalid(format!("malformed PAX header: {why}"));
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let space = data.iter().position(|&b| b == b' ').ok_or_else(|| bad("no length"))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad length"))?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad("record length does not match"));
        }
        let record = &data[space + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(|| bad("no '='"))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

fn trim_nul(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// Parses a time field, which GNU tar writes in two's-complement base-256 when negative
/// (before 1970). Out-of-range values saturate; they are only timestamps.
pub fn parse_time(field: &[u8]) -> Result<i64, TarError> {
    if field.first() == Some(&0xff) {
        let mut value: i64 = -1;
        for &b in &field[1..] {
            value = value.checked_mul(256).map_or(i64::MIN, |v| v | i64::from(b));
        }
        return Ok(value);
    }
    parse_number(field).map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Parses a numeric field: octal text (with spaces/NULs), or GNU base-256 when the top bit is set.
pub fn parse_number(field: &[u8]) -> Result<u64, TarError> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] == 0xff {
            return Err(TarError::Invalid("negative base-256 number".into()));
        }
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| TarError::Invalid("base-256 number overflows".into()))?;
        }
        return Ok(value);
    }
    let text = trim_nul(field);
    let text = text.iter().copied().skip_while(|&b| b == b' ').take_while(|&b| b != b' ');
    let mut value: u64 = 0;
    for b in text {
        if !(b'0'..=b'7').contains(&b) {
            return Err(TarError::Invalid(format!("bad octal digit {:?}", b as char)));
        }
        value = value
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| TarError::Invalid("octal number overflows".into()))?;
    }
    Ok(value)
}

fn checksum_ok(block: &[u8; BLOCK]) -> Result<bool, TarError> {
    let stored = parse_number(&block[148..156])?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    Ok(stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed))
}

/// Parses one header block. `Ok(None)` for an all-zero block (end of archive).
pub fn parse_block(block: &[u8; BLOCK]) -> Result<Option<RawHeader>, TarError> {
    if block.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if !checksum_ok(block)? {
        return Err(TarError::Invalid("header checksum mismatch (not a tar file, or corrupt)".into()));
    }
    let kind = Kind::from_flag(block[156]);
    let magic = &block[257..265];
    let is_ustar = &magic[..6] == b"ustar\0";
    let is_gnu = magic == b"ustar  \0";
    let mut path = trim_nul(&block[0..100]).to_vec();
    if is_ustar && block[345] != 0 {
        let mut full = trim_nul(&block[345..500]).to_vec();
        full.push(b'/');
        full.extend_from_slice(&path);
        path = full;
    }
    let size = parse_number(&block[124..136])?;
    let mtime = parse_time(&block[136..148])?;
    let mut entry = Entry {
        path,
        link: trim_nul(&block[157..257]).to_vec(),
        kind,
        mode: (parse_number(&block[100..108])? & 0o7777) as u32,
        uid: parse_number(&block[108..116])?,
        gid: parse_number(&block[116..124])?,
        mtime,
        mtime_nsec: 0,
        size,
        xattrs: Vec::new(),
        sparse: None,
        dev_major: 0,
        dev_minor: 0,
    };
    if is_ustar || is_gnu {
        entry.dev_major = parse_number(&block[329..337]).unwrap_or(0) as u32;
        entry.dev_minor = parse_number(&block[337..345]).unwrap_or(0) as u32;
    }
    let mut sparse_extended = false;
    if kind == Kind::GnuSparse {
        let segments = parse_sparse_map(&block[386..482], 4)?;
        let real = parse_number(&block[483..495])?;
        sparse_extended = block[482] != 0;
        entry.sparse = Some((real, segments));
    }
    Ok(Some(RawHeader { kind, size, entry, sparse_extended }))
}

/// Parses `count` (offset, numbytes) pairs of 12-byte octal fields; empty pairs end the map.
pub fn parse_sparse_map(area: &[u8], count: usize) -> Result<Vec<SparseSegment>, TarError> {
    let mut out = Vec::new();
    for i in 0..count {
        let pair = &area[i * 24..i * 24 + 24];
        if pair[0] == 0 {
            break;
        }
        let offset = parse_number(&pair[..12])?;
        let len = parse_number(&pair[12..])?;
        out.push(SparseSegment { offset, len });
    }
    Ok(out)
}

/// Pads `n` up to the next block boundary.
pub fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK as u64) * BLOCK as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, flag: u8, size: u64) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[100..107].copy_from_slice(b"0000644");
        b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        b[136..147].copy_from_slice(b"00000000001");
        b[156] = flag;
        b[257..263].copy_from_slice(b"ustar\0");
        b[263..265].copy_from_slice(b"00");
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
        b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        b
    }

    #[test]
    fn parses_ustar_regular_file() {
        let raw = parse_block(&block("etc/passwd", b'0', 42)).unwrap().unwrap();
        assert_eq!(raw.kind, Kind::Regular);
        assert_eq!(raw.entry.path, b"etc/passwd");
        assert_eq!(raw.size, 42);
        assert_eq!(raw.entry.mode, 0o644);
    }

    #[test]
    fn negative_base256_time() {
        let mut f = [0xffu8; 12];
        f[11] = 0xfe;
        assert_eq!(parse_time(&f).unwrap(), -2);
        assert_eq!(parse_time(b"00000000001\0").unwrap(), 1);
    }

    #[test]
    fn zero_block_is_end() {
        assert!(parse_block(&[0u8; BLOCK]).unwrap().is_none());
    }

    #[test]
    fn bad_checksum_is_refused() {
        let mut b = block("x", b'0', 0);
        b[0] = b'y';
        assert!(parse_block(&b).is_err());
    }

    #[test]
    fn numbers_octal_and_base256() {
        assert_eq!(parse_number(b"0000755 \0").unwrap(), 0o755);
        assert_eq!(parse_number(b"   17\0").unwrap(), 0o17);
        assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
        assert!(parse_number(b"9").is_err());
        assert!(parse_number(&[0xff; 12]).is_err());
    }

    #[test]
    fn pax_records_and_overrides() {
        let recs = parse_pax(b"30 path=a/very/long/name/here\n19 linkpath=target\n").unwrap();
        assert_eq!(recs[0], (b"path".to_vec(), b"a/very/long/name/here".to_vec()));
        let mut pending = Pending::default();
        pending.absorb(Kind::Pax, b"30 path=a/very/long/name/here\n11 size=99\n").unwrap();
        let raw = parse_block(&block("short", b'0', 8)).unwrap().unwrap();
        let e = pending.apply(raw).unwrap();
        assert_eq!(e.path, b"a/very/long/name/here");
        assert_eq!(e.size, 99, "PAX size must win over the ustar size (CVE-2026-33055)");
    }

    #[test]
    fn pax_rejects_bad_lengths_and_sparse() {
        assert!(parse_pax(b"99 path=x\n").is_err());
        assert!(parse_pax(b"abc path=x\n").is_err());
        let mut pending = Pending::default();
        pending.absorb(Kind::Pax, b"22 GNU.sparse.major=1\n").unwrap();
        let raw = parse_block(&block("x", b'0', 0)).unwrap().unwrap();
        assert!(
            matches!(pending.apply(raw), Err(TarError::AtEntry { source, .. }) if matches!(*source, TarError::Unsupported(_)))
        );
    }

    #[test]
    fn sizes_beyond_i64_are_refused() {
        // 2^64 - 1 would pad to 0 and make the stream read the entry's data as headers.
        let mut pending = Pending::default();
        pending.absorb(Kind::Pax, b"29 size=18446744073709551615\n").unwrap();
        let raw = parse_block(&block("x", b'0', 8)).unwrap().unwrap();
        assert!(pending.apply(raw).is_err());
        let mut pending = Pending::default();
        pending.absorb(Kind::Pax, b"28 size=9223372036854775807\n").unwrap();
        let raw = parse_block(&block("x", b'0', 8)).unwrap().unwrap();
        assert_eq!(pending.apply(raw).unwrap().size, MAX_ENTRY_SIZE);
    }

    #[test]
    fn metadata_headers_are_bounded_in_all() {
        let record = b"6 a=b\n".repeat(100_000);
        let mut pending = Pending::default();
        pending.absorb(Kind::Pax, &record).unwrap();
        assert!(pending.absorb(Kind::Pax, &record).is_err(), "two 600 KB PAX headers exceed 1 MiB");
        // The budget is per entry: applying resets it.
        let mut pending = Pending::default();
        for _ in 0..4 {
            pending.absorb(Kind::Pax, &record).unwrap();
            pending.apply(parse_block(&block("x", b'0', 0)).unwrap().unwrap()).unwrap();
        }
    }

    #[test]
    fn pax_path_with_nul_is_refused() {
        let mut pending = Pending::default();
        pending.absorb(Kind::Pax, b"12 path=a\0b\n").unwrap();
        let raw = parse_block(&block("x", b'0', 0)).unwrap().unwrap();
        assert!(pending.apply(raw).is_err());
    }

    #[test]
    fn pax_fractional_and_negative_mtime() {
        assert_eq!(pax_time(b"1700000000.123456789").unwrap(), (1_700_000_000, 123_456_789));
        assert_eq!(pax_time(b"-5").unwrap(), (-5, 0));
        assert_eq!(pax_time(b"1.5").unwrap(), (1, 500_000_000));
        assert!(pax_time(b"1.x").is_err());
    }

    #[test]
    fn long_name_applies_to_next_entry_only() {
        let mut pending = Pending::default();
        pending.absorb(Kind::LongName, b"0123456789/long\0").unwrap();
        let e = pending.apply(parse_block(&block("x", b'0', 0)).unwrap().unwrap()).unwrap();
        assert_eq!(e.path, b"0123456789/long");
        assert!(pending.is_empty());
        let e = pending.apply(parse_block(&block("y", b'0', 0)).unwrap().unwrap()).unwrap();
        assert_eq!(e.path, b"y");
    }
}
