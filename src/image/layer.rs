//! Decoding one layer blob, pipelined over three threads that the scheduler spreads over the
//! cores: a producer reads the blob, hashes it (size and digest) and decompresses it; a hasher
//! computes the DiffID of the uncompressed stream; the consumer (the calling thread) parses tar
//! and writes files. Chunks are shared between hasher and consumer and recycled, travel through
//! bounded channels, so memory stays flat whatever the image size.
//!
//! Nothing is trusted until both digests match: a mismatch fails the unpack, and the caller
//! discards the staging directory. When the blob digest is wrong that is the error reported,
//! even if decoding failed first, because it is the real cause. For an uncompressed blob the
//! blob bytes are the DiffID's bytes, so they are hashed once.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::image::tar::{TarSource, TarStream};

use super::apply::{Applier, ApplyError};
use super::digest::{Digest, Hasher};
use super::select::{Compression, LayerRef};
use super::source::Blob;

const CHUNK: usize = 1 << 20;
const IN_FLIGHT: usize = 6;

type Chunk = Arc<Vec<u8>>;

/// What went wrong with one layer (the caller adds which layer).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("blob is {actual} bytes, its descriptor says {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    Digest { expected: Digest, actual: Digest },
    #[error("DiffID mismatch: the config says {expected}, the uncompressed layer is {actual}")]
    DiffId { expected: Digest, actual: Digest },
    /// The blob is intact (its digest matched) but its tar is not the one the DiffID names: what
    /// skopeo 1.9's zstd:chunked writer produces (it drops the tar's end padding and keeps the
    /// original DiffID).
    #[error(
        "DiffID mismatch in a zstd:chunked layer: the config says {expected}, the uncompressed layer is {actual} \
         (skopeo 1.9's zstd:chunked writer rewrites the tar but keeps the original DiffID)"
    )]
    ChunkedDiffId { expected: Digest, actual: Digest },
    #[error("decompressing")]
    Decode(#[source] io::Error),
    #[error("reading the blob")]
    Read(#[source] io::Error),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

fn panicked(which: &str) -> LayerError {
    LayerError::Read(io::Error::other(format!("the {which} thread panicked")))
}

/// What the producer learned about the raw blob.
struct Produced {
    count: u64,
    /// The raw blob's digest, unless the blob was the uncompressed stream itself.
    raw_digest: Option<Digest>,
}

/// Channels from the producer to the other two stages.
struct Outlets {
    tar: SyncSender<io::Result<Chunk>>,
    hash: SyncSender<Chunk>,
    recycle: Receiver<Chunk>,
    tar_alive: bool,
}

/// Decodes and applies `layer`, read from `blob`. `on_bytes` sees raw bytes as they are read.
pub fn apply(
    layer: &LayerRef,
    blob: Blob<'_>,
    applier: &mut Applier,
    max_bytes: u64,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<u64, LayerError> {
    let (tar_tx, tar_rx) = sync_channel::<io::Result<Chunk>>(IN_FLIGHT);
    let (hash_tx, hash_rx) = sync_channel::<Chunk>(IN_FLIGHT * 2);
    let (recycle_tx, recycle_rx) = sync_channel::<Chunk>(IN_FLIGHT * 3);
    let algorithm = layer.diff_id.algorithm;
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut h = Hasher::new(algorithm);
            for chunk in hash_rx {
                h.update(&chunk);
            }
            h.finish()
        });
        let out = Outlets { tar: tar_tx, hash: hash_tx, recycle: recycle_rx, tar_alive: true };
        let producer = s.spawn(move || produce(layer, blob, out, on_bytes));
        let consumed = consume(tar_rx, recycle_tx, applier, max_bytes);
        let (produced, decoded) = producer.join().map_err(|_| panicked("decoder"))?;
        let diff_id = hasher.join().map_err(|_| panicked("hash"))?;
        if let Err(e @ LayerError::Read(_)) = decoded {
            return Err(e);
        }
        verify_blob(layer, &produced, &diff_id)?;
        decoded?;
        let size = consumed?;
        if diff_id != layer.diff_id {
            let (expected, actual) = (layer.diff_id.clone(), diff_id);
            return Err(if layer.zstd_chunked {
                LayerError::ChunkedDiffId { expected, actual }
            } else {
                LayerError::DiffId { expected, actual }
            });
        }
        Ok(size)
    })
}

/// Applies the tar stream; returns its uncompressed size.
fn consume(
    rx: Receiver<io::Result<Chunk>>,
    recycle: SyncSender<Chunk>,
    applier: &mut Applier,
    max_bytes: u64,
) -> Result<u64, LayerError> {
    let reader = ChannelReader { rx, recycle, cur: Arc::new(Vec::new()), pos: 0, total: 0, max_bytes };
    let mut tar = TarStream::new(reader);
    applier.apply_layer(&mut tar)?;
    // Bytes after the end-of-archive marker (GNU tar's blocking padding) are part of the DiffID.
    let mut rest = tar.into_inner();
    loop {
        let n = rest.fill_buf().map_err(LayerError::Decode)?.len();
        if n == 0 {
            return Ok(rest.total);
        }
        rest.consume(n);
    }
}

/// The consumer's view of the channel: a `BufRead` over received chunks that counts every
/// byte as it arrives (the per-layer size cap stops decompression bombs here).
struct ChannelReader {
    rx: Receiver<io::Result<Chunk>>,
    recycle: SyncSender<Chunk>,
    cur: Chunk,
    pos: usize,
    total: u64,
    max_bytes: u64,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.cur.len() {
            let next = match self.rx.recv() {
                Ok(chunk) => chunk?,
                Err(_) => return Ok(&[]), // producer finished
            };
            let old = std::mem::replace(&mut self.cur, next);
            let _ = self.recycle.try_send(old);
            self.pos = 0;
            self.total += self.cur.len() as u64;
            if self.total > self.max_bytes {
                return Err(io::Error::other(format!(
                    "the layer expands to more than {} bytes (a decompression bomb? raise GPURUN_MAX_LAYER_BYTES, or GPURUN_MAX_IMAGE_BYTES for all layers together, if it is genuine)",
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

impl TarSource for ChannelReader {}

/// Hashes and counts raw blob bytes as the decoder pulls them.
struct RawReader<'a> {
    inner: BufReader<Blob<'a>>,
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
    blob: Blob<'a>,
    mut out: Outlets,
    on_bytes: &'a (dyn Fn(u64) + Sync),
) -> (Produced, Result<(), LayerError>) {
    let mut raw = RawReader {
        inner: BufReader::with_capacity(CHUNK, blob),
        hasher: layer.digest.as_ref().map(|d| Hasher::new(d.algorithm)),
        count: 0,
        on_bytes,
    };
    let kind = sniff(&mut raw).and_then(|found| check_kind(layer.compression, found));
    let blob_is_stream = matches!(kind, Ok(Compression::None))
        && layer.digest.as_ref().is_some_and(|d| d.algorithm == layer.diff_id.algorithm);
    if blob_is_stream {
        raw.hasher = None; // the DiffID hasher sees exactly the blob's bytes
    }
    let decoded = kind.and_then(|k| decode(k, &mut raw, &mut out));
    // Finish hashing the raw blob even when decoding stopped early: a wrong digest is the
    // real explanation for most decode errors.
    let drained = drain(&mut raw);
    if let Err(e) = &decoded {
        let _ = out.tar.send(Err(io::Error::other(e.to_string())));
    }
    let produced = Produced { count: raw.count, raw_digest: raw.hasher.take().map(Hasher::finish) };
    (produced, decoded.and(drained))
}

fn drain(raw: &mut RawReader<'_>) -> Result<(), LayerError> {
    loop {
        let n = raw.fill_buf().map_err(LayerError::Read)?.len();
        if n == 0 {
            return Ok(());
        }
        raw.consume(n);
    }
}

/// Size and digest of the raw blob (OCI); `diff_id` stands in when the blob was the stream.
fn verify_blob(layer: &LayerRef, produced: &Produced, diff_id: &Digest) -> Result<(), LayerError> {
    let Some(expected) = &layer.digest else { return Ok(()) };
    if produced.count != layer.size {
        return Err(LayerError::Size { expected: layer.size, actual: produced.count });
    }
    let actual = produced.raw_digest.clone().unwrap_or_else(|| diff_id.clone());
    if &actual != expected {
        return Err(LayerError::Digest { expected: expected.clone(), actual });
    }
    Ok(())
}

/// The data's magic bytes decide how it is decoded. A media type that disagrees is tolerated
/// because real tools write them (skopeo 1.9 labels uncompressed layers `+gzip` when it copies a
/// docker-archive to an OCI layout), and it is harmless: the blob digest and the DiffID are
/// verified whatever the decoder.
fn check_kind(declared: Compression, found: Compression) -> Result<Compression, LayerError> {
    if declared != Compression::Sniff && declared != found {
        tracing::debug!(
            declared = name(declared),
            found = name(found),
            "layer media type disagrees with its data"
        );
    }
    Ok(found)
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

/// Largest zstd window accepted, as a power of two.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// Decodes into chunks sent to the consumer and the hasher.
fn decode(kind: Compression, raw: &mut RawReader<'_>, out: &mut Outlets) -> Result<(), LayerError> {
    match kind {
        Compression::Gzip => decode_gzip(raw, out),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(raw).map_err(LayerError::Decode)?;
            // The window is memory the decoder must hold; a frame header may ask for 2 GiB
            // (`zstd --long=31`) in a blob of a few kilobytes. 2^27 (128 MiB) is zstd's own
            // default limit and covers `--long` and `--ultra -22`.
            dec.window_log_max(ZSTD_WINDOW_LOG_MAX).map_err(LayerError::Decode)?;
            pump(&mut dec, out, false).map(|_| ()).map_err(|e| match e {
                LayerError::Decode(err) if err.to_string().contains("too much memory") => {
                    LayerError::Decode(io::Error::other(format!(
                        "{err}: the zstd window is larger than 2^{ZSTD_WINDOW_LOG_MAX} bytes \
                         (recompress the layer with a window of at most 128 MiB, e.g. without --long=31)"
                    )))
                }
                other => other,
            })
        }
        // An uncompressed stream keeps feeding the hasher after a tar error, so the blob
        // digest (which is the DiffID) can still be checked and reported.
        Compression::None | Compression::Sniff => pump(raw, out, true).map(|_| ()),
    }
}

/// gzip members one after another (pigz, eStargz). Trailing zero bytes after the last member
/// are accepted, as GNU gzip does; anything else after it is an error.
fn decode_gzip(raw: &mut RawReader<'_>, out: &mut Outlets) -> Result<(), LayerError> {
    loop {
        let mut member = flate2::bufread::GzDecoder::new(&mut *raw);
        if !pump(&mut member, out, false)? {
            return Ok(());
        }
        let head = raw.fill_buf().map_err(LayerError::Read)?;
        if head.is_empty() {
            return Ok(());
        }
        if head.iter().all(|&b| b == 0) {
            return skip_zeros(raw);
        }
        if !head.starts_with(&[0x1f, 0x8b]) {
            return Err(LayerError::Decode(io::Error::other("data after the last gzip member is not gzip")));
        }
    }
}

fn skip_zeros(raw: &mut RawReader<'_>) -> Result<(), LayerError> {
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

/// A chunk buffer: a recycled one when the other stages are done with it.
fn take_buffer(recycle: &Receiver<Chunk>) -> Vec<u8> {
    while let Ok(chunk) = recycle.try_recv() {
        if let Ok(buf) = Arc::try_unwrap(chunk) {
            return buf;
        }
    }
    Vec::with_capacity(CHUNK)
}

/// Copies a decoder's output into chunks. `Ok(false)` once the consumer has hung up, unless
/// `hash_to_end`, in which case the hasher is fed to the end regardless.
fn pump(src: &mut dyn Read, out: &mut Outlets, hash_to_end: bool) -> Result<bool, LayerError> {
    loop {
        let mut buf = take_buffer(&out.recycle);
        // Only a new buffer is zero-filled here; a recycled one already has its length.
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
        let chunk = Arc::new(buf);
        if out.hash.send(Arc::clone(&chunk)).is_err() {
            return Ok(false);
        }
        if out.tar_alive && out.tar.send(Ok(chunk)).is_err() {
            out.tar_alive = false;
        }
        if !out.tar_alive && !hash_to_end {
            return Ok(false);
        }
    }
}
