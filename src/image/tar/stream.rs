//! Drives `header` over a byte source: yields entries, exposes each entry's data as borrowed
//! slices of the source's buffer (no copy), and skips what the caller does not read.

use std::io::{self, BufRead};

use super::TarError;
use super::header::{self, BLOCK, Entry, Kind, MAX_META_RECORD, Pending};

/// Most old-GNU sparse segments accepted for one file (each costs a seek and a write).
const MAX_SPARSE_SEGMENTS: usize = 1 << 16;

/// A buffered byte source that can skip forward cheaply where it knows how (files seek).
pub trait TarSource: BufRead {
    fn skip_bytes(&mut self, mut n: u64) -> io::Result<()> {
        while n > 0 {
            let avail = self.fill_buf()?.len();
            if avail == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let step = avail.min(usize::try_from(n).unwrap_or(usize::MAX));
            self.consume(step);
            n -= step as u64;
        }
        Ok(())
    }
}

impl TarSource for io::BufReader<std::fs::File> {
    fn skip_bytes(&mut self, n: u64) -> io::Result<()> {
        let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.seek_relative(n)
    }
}

impl TarSource for &[u8] {}

/// Streaming tar reader.
pub struct TarStream<R> {
    inner: R,
    remaining: u64,
    pad: u64,
    position: u64,
    ended: bool,
}

fn io_err(e: io::Error, inside: &'static str) -> TarError {
    if e.kind() == io::ErrorKind::UnexpectedEof { TarError::Truncated(inside) } else { TarError::Io(e) }
}

impl<R: TarSource> TarStream<R> {
    pub fn new(inner: R) -> Self {
        TarStream { inner, remaining: 0, pad: 0, position: 0, ended: false }
    }

    /// Offset in the source of the next unread byte (the current entry's data after `next_entry`).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next real entry, with long names and PAX records applied; `None` at end of archive.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError> {
        if self.ended {
            return Ok(None);
        }
        self.skip(self.remaining + self.pad, "entry data")?;
        self.remaining = 0;
        self.pad = 0;
        let mut pending = Pending::default();
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block, pending.is_empty())? {
                self.ended = true;
                return Ok(None);
            }
            let Some(mut raw) = header::parse_block(&block)? else {
                if !pending.is_empty() {
                    return Err(TarError::Invalid("end of archive after a metadata header".into()));
                }
                self.ended = true;
                return Ok(None);
            };
            if raw.kind.is_meta() {
                let data = self.read_meta(raw.size)?;
                pending.absorb(raw.kind, &data)?;
                continue;
            }
            if raw.sparse_extended {
                self.read_sparse_extensions(&mut raw)?;
            }
            let mut entry = pending.apply(raw)?;
            if header_only(entry.kind) {
                // As Go's archive/tar: these types carry no data whatever `size` says.
                entry.size = 0;
            }
            self.remaining = entry.size;
            self.pad = header::padded(entry.size) - entry.size;
            return Ok(Some(entry));
        }
    }

    /// Up to the rest of the current entry's data, borrowed from the source's buffer.
    /// Empty when the entry's data is exhausted. Call `consume` with what was used.
    pub fn data(&mut self) -> Result<&[u8], TarError> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let remaining = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        let buf = self.inner.fill_buf().map_err(|e| io_err(e, "file data"))?;
        if buf.is_empty() {
            return Err(TarError::Truncated("file data"));
        }
        let n = buf.len().min(remaining);
        Ok(&buf[..n])
    }

    pub fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        self.remaining -= n as u64;
        self.position += n as u64;
    }

    /// Bytes of the current entry's data not yet consumed.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Gives the source back (after end of archive, to drain trailing bytes).
    pub fn into_inner(self) -> R {
        self.inner
    }

    fn skip(&mut self, n: u64, inside: &'static str) -> Result<(), TarError> {
        if n > 0 {
            self.inner.skip_bytes(n).map_err(|e| io_err(e, inside))?;
            self.position += n;
        }
        Ok(())
    }

    /// Reads one block. `Ok(false)` on a clean end of input at a block boundary, which we
    /// accept as end of archive when no metadata header is pending.
    fn read_block(&mut self, block: &mut [u8; BLOCK], eof_ok: bool) -> Result<bool, TarError> {
        let mut filled = 0;
        while filled < BLOCK {
            let buf = self.inner.fill_buf().map_err(TarError::Io)?;
            if buf.is_empty() {
                if filled == 0 && eof_ok {
                    return Ok(false);
                }
                return Err(TarError::Truncated("a header"));
            }
            let n = buf.len().min(BLOCK - filled);
            block[filled..filled + n].copy_from_slice(&buf[..n]);
            self.inner.consume(n);
            filled += n;
        }
        self.position += BLOCK as u64;
        Ok(true)
    }

    fn read_meta(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_META_RECORD {
            return Err(TarError::TooLarge { size, limit: MAX_META_RECORD });
        }
        let mut data = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < data.len() {
            let buf = self.inner.fill_buf().map_err(TarError::Io)?;
            if buf.is_empty() {
                return Err(TarError::Truncated("a metadata record"));
            }
            let n = buf.len().min(data.len() - filled);
            data[filled..filled + n].copy_from_slice(&buf[..n]);
            self.inner.consume(n);
            filled += n;
        }
        self.position += size;
        self.skip(header::padded(size) - size, "a metadata record")?;
        Ok(data)
    }

    fn read_sparse_extensions(&mut self, raw: &mut header::RawHeader) -> Result<(), TarError> {
        let (_, segments) = raw.entry.sparse.as_mut().expect("sparse header has a map");
        loop {
            let mut block = [0u8; BLOCK];
            if !self.read_block(&mut block, false)? {
                return Err(TarError::Truncated("a sparse map"));
            }
            segments.extend(header::parse_sparse_map(&block[..504], 21)?);
            if segments.len() > MAX_SPARSE_SEGMENTS {
                return Err(TarError::Unsupported(format!(
                    "sparse file with more than {MAX_SPARSE_SEGMENTS} segments"
                )));
            }
            if block[504] == 0 {
                return Ok(());
            }
        }
    }
}

fn header_only(kind: Kind) -> bool {
    matches!(kind, Kind::HardLink | Kind::Symlink | Kind::Char | Kind::Block | Kind::Directory | Kind::Fifo)
}
