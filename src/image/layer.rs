//! Decoding one layer blob, pipelined over two threads: a producer reads the blob, hashes it
//! (size and digest) and decompresses it; the consumer (the calling thread) hashes the
//! uncompressed stream for the DiffID, parses tar and writes files. Chunks travel through a
//! bounded channel and are recycled, so memory stays flat whatever the image size.
//!
//! Nothing is trusted until both digests match: a mismatch fails the unpack, and the caller
//! discards the staging directory. When the blob digest is wrong that is the error reported,
//! even if decoding failed first, because it is the real cause.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::tar::{TarSource, TarStream};

use super::apply::{Applier, ApplyError};
use super::digest::{Digest, Hasher};
use super::select::{Compression, LayerRef};
use super::source::MemberReader;

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 6;

/// What went wrong with one layer (the caller adds which layer).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("blob is {actual} bytes, its descriptor says {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: Digest, actual: Digest },
    #[error("DiffID mismatch: the config says {expected}, the uncompressed layer is {actual}")]
    DiffId { expected: Digest, actual: Digest },
    #[error("media type says {declared} but the data is {found}")]
    Compression { declared: &'static str, found: &'static str },
    #[error("decompressing")]
    Decode(#[source] io::Error),
    #[error("reading the blob")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Decodes and applies `layer`, read from `blob`. `on_bytes` sees raw bytes as they are read.
pub fn apply(
    layer: &LayerRef,
    blob: MemberReader<'_>,
    applier: &mut Applier,
    max_bytes: u64,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), LayerError> {
    let (tx, rx) = sync_channel::<io::Result<Vec<u8>>>(IN_FLIGHT);
    let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(IN_FLIGHT + 2);
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(layer, blob, tx, recycle_rx, on_bytes));
        let mut hasher = Hasher::new(layer.diff_id.algorithm);
        let consumed = consume(rx, recycle_tx, applier, &mut hasher, max_bytes);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(LayerError::Read(io::Error::other("decoder thread panicked"))));
        produced?;
        consumed?;
        let actual = hasher.finish();
        if actual != layer.diff_id {
            return Err(LayerError::DiffId { expected: layer.diff_id.clone(), actual });
        }
        Ok(())
    })
}

fn consume(
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    applier: &mut Applier,
    hasher: &mut Hasher,
    max_bytes: u64,
) -> Result<(), LayerError> {
    let reader = ChannelReader { rx, recycle, cur: Vec::new(), pos: 0, hasher, total: 0, max_bytes };
    let mut tar = TarStream::new(reader);
    applier.apply_layer(&mut tar)?;
    // Bytes after the end-of-archive marker (GNU tar's blocking padding) are part of the DiffID.
    let mut rest = tar.into_inner();
    loop {
        let n = rest.fill_buf().map_err(LayerError::Decode)?.len();
        if n == 0 {
            return Ok(());
        }
        rest.consume(n);
    }
}

/// The consumer's view of the channel: a `BufRead` over received chunks that hashes and
/// counts every byte as it arrives.
struct ChannelReader<'h> {
    rx: Receiver<io::Result<Vec<u8>>>,
    recycle: SyncSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    hasher: &'h mut Hasher,
    total: u64,
    max_bytes: u64,
}

impl Read for ChannelReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.cur.len() {
            let next = match self.rx.recv() {
                Ok(chunk) => chunk?,
                Err(_) => return Ok(&[]), // producer finished
            };
            let old = std::mem::replace(&mut self.cur, next);
            let _ = self.recycle.try_send(old);
            self.pos = 0;
            self.hasher.update(&self.cur);
            self.total += self.cur.len() as u64;
            if self.total > self.max_bytes {
                return Err(io::Error::other(format!(
                    "the layer expands to more than {} bytes (a decompression bomb? raise GPURUN_MAX_LAYER_BYTES if it is genuine)",
                    self.max_bytes
                )));
            }
        }
        Ok(&self.cur[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

impl TarSource for ChannelReader<'_> {}

/// Hashes and counts raw blob bytes as the decoder pulls them.
struct RawReader<'a> {
    inner: BufReader<MemberReader<'a>>,
    hasher: Option<Hasher>,
    count: u64,
    on_bytes: &'a (dyn Fn(u64) + Sync),
}

impl Read for RawReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for RawReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        if n > 0 {
            let buf = self.inner.buffer();
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            self.count += n as u64;
            (self.on_bytes)(n as u64);
        }
        self.inner.consume(n);
    }
}

fn produce<'a>(
    layer: &LayerRef,
    blob: MemberReader<'a>,
    tx: SyncSender<io::Result<Vec<u8>>>,
    recycle: Receiver<Vec<u8>>,
    on_bytes: &'a (dyn Fn(u64) + Sync),
) -> Result<(), LayerError> {
    let mut raw = RawReader {
        inner: BufReader::with_capacity(CHUNK, blob),
        hasher: layer.digest.as_ref().map(|d| Hasher::new(d.algorithm)),
        count: 0,
        on_bytes,
    };
    let decoded = decode(layer, &mut raw, &tx, &recycle);
    // Finish hashing the raw blob even when decoding stopped early: a wrong digest is the
    // real explanation for most decode errors.
    loop {
        let n = raw.fill_buf().map_err(LayerError::Read)?.len();
        if n == 0 {
            break;
        }
        raw.consume(n);
    }
    verify_blob(layer, raw.count, raw.hasher.take())?;
    match decoded {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = tx.send(Err(io::Error::other(e.to_string())));
            Err(e)
        }
    }
}

fn verify_blob(layer: &LayerRef, count: u64, hasher: Option<Hasher>) -> Result<(), LayerError> {
    let (Some(expected), Some(h)) = (&layer.digest, hasher) else { return Ok(()) };
    if count != layer.size {
        return Err(LayerError::Size { expected: layer.size, actual: count });
    }
    let actual = h.finish();
    if &actual != expected {
        return Err(LayerError::Digest { expected: expected.clone(), actual });
    }
    Ok(())
}

fn sniff(raw: &mut RawReader<'_>) -> Result<Compression, LayerError> {
    let head = raw.fill_buf().map_err(LayerError::Read)?;
    Ok(match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b0, 0x2a, 0x4d, 0x18, ..] if b0 & 0xf0 == 0x50 => Compression::Zstd, // skippable frame
        _ => Compression::None,
    })
}

fn name(c: Compression) -> &'static str {
    match c {
        Compression::None | Compression::Sniff => "uncompressed tar",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    }
}

/// Decodes into chunks sent to the consumer. Returns early (Ok) if the consumer hung up.
fn decode(
    layer: &LayerRef,
    raw: &mut RawReader<'_>,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    recycle: &Receiver<Vec<u8>>,
) -> Result<(), LayerError> {
    let found = sniff(raw)?;
    let kind = match layer.compression {
        Compression::Sniff => found,
        declared if declared == found => declared,
        declared => return Err(LayerError::Compression { declared: name(declared), found: name(found) }),
    };
    match kind {
        Compression::Gzip => decode_gzip(raw, tx, recycle),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(raw).map_err(LayerError::Decode)?;
            dec.window_log_max(31).map_err(LayerError::Decode)?;
            pump(&mut dec, tx, recycle).map(|_| ())
        }
        Compression::None | Compression::Sniff => pump(raw, tx, recycle).map(|_| ()),
    }
}

/// gzip members one after another (pigz, eStargz). Trailing zero bytes after the last member
/// are accepted, as GNU gzip does; anything else after it is an error.
fn decode_gzip(
    raw: &mut RawReader<'_>,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    recycle: &Receiver<Vec<u8>>,
) -> Result<(), LayerError> {
    loop {
        let mut member = flate2::bufread::GzDecoder::new(&mut *raw);
        if !pump(&mut member, tx, recycle)? {
            return Ok(());
        }
        let head = raw.fill_buf().map_err(LayerError::Read)?;
        if head.is_empty() {
            return Ok(());
        }
        if head.iter().all(|&b| b == 0) {
            let n = head.len();
            raw.consume(n);
            continue_if_zeros(raw)?;
            return Ok(());
        }
        if !head.starts_with(&[0x1f, 0x8b]) {
            return Err(LayerError::Decode(io::Error::other("data after the last gzip member is not gzip")));
        }
    }
}

fn continue_if_zeros(raw: &mut RawReader<'_>) -> Result<(), LayerError> {
    loop {
        let head = raw.fill_buf().map_err(LayerError::Read)?;
        if head.is_empty() {
            return Ok(());
        }
        if !head.iter().all(|&b| b == 0) {
            return Err(LayerError::Decode(io::Error::other("data after the last gzip member is not gzip")));
        }
        let n = head.len();
        raw.consume(n);
    }
}

/// Copies a decoder's output into chunks. `Ok(false)` when the consumer has hung up.
fn pump(
    src: &mut dyn Read,
    tx: &SyncSender<io::Result<Vec<u8>>>,
    recycle: &Receiver<Vec<u8>>,
) -> Result<bool, LayerError> {
    loop {
        let mut buf = recycle.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        while filled < CHUNK {
            match src.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LayerError::Decode(e)),
            }
        }
        if filled == 0 {
            return Ok(true);
        }
        buf.truncate(filled);
        if tx.send(Ok(buf)).is_err() {
            return Ok(false);
        }
    }
}
