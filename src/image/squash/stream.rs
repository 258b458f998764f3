//! Extraction: the directory-order walk feeds the [`Applier`] on this thread while worker
//! threads decode data blocks ahead of it, and another thread hashes the image's bytes in order
//! (the image id). Decoded blocks not yet written are bounded ([`MAX_INFLIGHT`] blocks), so
//! memory stays flat whatever the image's size.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use super::codec::Decoder;
use super::inode::{FilePlan, Item, STORED, Walk};
use super::{Image, SquashError};
use crate::image::apply::{Applier, ApplyError, EntryStream, Limits, Warnings};
use crate::image::digest::{Algorithm, Digest, Hasher};
use crate::image::tar::Entry;

/// Decoded blocks waiting to be written, at most (32 MiB at the largest block size).
const MAX_INFLIGHT: usize = 32;
/// Walked entries waiting to be written, at most.
const MAX_PENDING: usize = 512;
/// Decoded fragment blocks kept: files that share one come one after another.
const FRAGMENT_CACHE: usize = 8;

/// Block buffers written out and ready for reuse: a fresh 128 KiB allocation per block would
/// be an mmap, page faults and zeroing each time.
type Pool = Mutex<Vec<Vec<u8>>>;

fn recycle(pool: &Pool, chunk: Chunk) {
    if let Ok(buf) = Arc::try_unwrap(chunk.buf)
        && let Ok(mut p) = pool.lock()
        && p.len() < MAX_INFLIGHT
    {
        p.push(buf);
    }
}

/// What an extraction made.
#[derive(Debug)]
pub struct Extraction {
    pub bytes_written: u64,
    pub warnings: Warnings,
    /// SHA-256 of the hashed region (the SquashFS file, or the SIF partition).
    pub digest: Digest,
}

/// Extracts `img` into the empty directory `root` (opened O_PATH) and hashes `region` (offset,
/// length in the file) on the way. `progress` is told of compressed bytes hashed.
pub fn extract(
    img: Arc<Image>,
    region: (u64, u64),
    root: OwnedFd,
    limits: Limits,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Extraction, SquashError> {
    let path = img.path.clone();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let hasher = s.spawn(|| hash_region(&img.file, &img.path, region, &stop, progress));
        let result = apply_all(&img, root, limits);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let digest = hasher.join().map_err(|_| SquashError::Bad {
            path: path.clone(),
            why: "the hashing thread panicked".into(),
        })?;
        let (bytes_written, warnings) = result?;
        Ok(Extraction { bytes_written, warnings, digest: digest? })
    })
}

fn apply_all(img: &Arc<Image>, root: OwnedFd, limits: Limits) -> Result<(u64, Warnings), SquashError> {
    let at = |source: ApplyError| match source {
        ApplyError::Entry { .. }
        | ApplyError::Limit(_)
        | ApplyError::DiskFull
        | ApplyError::Interrupted(_)
        | ApplyError::Io { .. }
        | ApplyError::Tar(_) => SquashError::Apply { path: img.path.clone(), source },
    };
    let mut applier = Applier::new(root, limits).without_whiteouts();
    let mut stream = Stream::new(img.clone(), limits)?;
    let applied = applier.apply_layer(&mut stream);
    if let Some(e) = stream.failure.take() {
        return Err(e); // the reader's own error says more than the Applier's view of it
    }
    applied.map_err(at)?;
    let written = applier.bytes_written;
    let warnings = applier.finish().map_err(at)?;
    Ok((written, warnings))
}

/// SHA-256 of `len` bytes at `offset` in `file` (a SquashFS file system's id), read in order;
/// stops early, with a meaningless digest, once `stop` is set. `progress` hears of each read.
pub fn hash_region(
    file: &std::fs::File,
    path: &std::path::Path,
    (offset, len): (u64, u64),
    stop: &AtomicBool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Digest, SquashError> {
    use std::os::unix::fs::FileExt;
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len && !stop.load(Ordering::Relaxed) {
        let want = buf.len().min((len - done) as usize);
        file.read_exact_at(&mut buf[..want], offset + done).map_err(|e| SquashError::Io {
            path: path.to_owned(),
            offset: offset + done,
            source: e,
        })?;
        h.update(&buf[..want]);
        done += want as u64;
        progress(want as u64);
    }
    Ok(h.finish())
}

/// A decoded run of file data: part of a block (fragment tails share theirs).
struct Chunk {
    buf: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

type Reply = Result<Chunk, String>;

enum Work {
    Block { at: u64, word: u32, expect: usize },
    Tail { fragment: u32, offset: u32, len: u32 },
}

struct Job {
    work: Work,
    reply: SyncSender<Reply>,
}

/// A walked entry and its data, submitted to the workers block by block.
struct Pending {
    entry: Entry,
    plan: Option<FilePlan>,
    next_block: usize,
    /// Image offset of block `next_block`.
    next_at: u64,
    tail_sent: bool,
    chunks: VecDeque<Receiver<Reply>>,
}

impl Pending {
    fn unsubmitted(&self) -> bool {
        self.plan
            .as_ref()
            .is_some_and(|p| self.next_block < p.words.len() || (p.tail.is_some() && !self.tail_sent))
    }
}

struct Stream {
    img: Arc<Image>,
    walk: Walk,
    walked_all: bool,
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    pending: VecDeque<Pending>,
    /// Index in `pending` of the first entry with blocks not yet submitted.
    submit: usize,
    inflight: usize,
    current: Option<Chunk>,
    pool: Arc<Pool>,
    started: bool,
    /// The reader's error, kept whole (the Applier sees only its text).
    failure: Option<SquashError>,
}

impl Stream {
    fn new(img: Arc<Image>, limits: Limits) -> Result<Stream, SquashError> {
        let walk = Walk::new(img.clone(), limits)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let fragments = Arc::new(Mutex::new(VecDeque::new()));
        let pool = Arc::new(Mutex::new(Vec::new()));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        let workers = (0..n)
            .map(|_| {
                let (img, rx, fragments, pool) = (img.clone(), rx.clone(), fragments.clone(), pool.clone());
                std::thread::spawn(move || worker(&img, &rx, &fragments, &pool))
            })
            .collect();
        Ok(Stream {
            img,
            walk,
            walked_all: false,
            jobs: Some(tx),
            workers,
            pending: VecDeque::new(),
            submit: 0,
            inflight: 0,
            current: None,
            pool,
            started: false,
            failure: None,
        })
    }

    fn fail(&mut self, e: SquashError) -> ApplyError {
        let why = e.to_string();
        self.failure = Some(e);
        ApplyError::Io { what: why, source: std::io::Error::other("reading the SquashFS image") }
    }

    /// Submits blocks ahead of the writer, walking further as entries are written.
    fn fill(&mut self) -> Result<(), SquashError> {
        while self.inflight < MAX_INFLIGHT {
            if let Some(p) = self.pending.get_mut(self.submit) {
                if !p.unsubmitted() {
                    self.submit += 1;
                    continue;
                }
                let plan = p.plan.as_ref().expect("unsubmitted implies a plan");
                let work = if p.next_block < plan.words.len() {
                    let (at, word) = (p.next_at, plan.words[p.next_block]);
                    let bs = u64::from(self.img.sb.block_size);
                    let expect = bs.min(plan.size - p.next_block as u64 * bs) as usize;
                    p.next_block += 1;
                    p.next_at += u64::from(word & !STORED); // in the image: checked by the walk
                    if word & !STORED == 0 {
                        continue; // a hole: nothing stored, nothing written
                    }
                    Work::Block { at, word, expect }
                } else {
                    let (fragment, offset, len) = plan.tail.expect("unsubmitted tail");
                    p.tail_sent = true;
                    Work::Tail { fragment, offset, len }
                };
                let (reply, rx) = mpsc::sync_channel(1);
                p.chunks.push_back(rx);
                self.inflight += 1;
                if let Some(jobs) = &self.jobs {
                    let _ = jobs.send(Job { work, reply });
                }
                continue;
            }
            if self.walked_all || self.pending.len() >= MAX_PENDING {
                break;
            }
            match self.walk.next_item()? {
                None => self.walked_all = true,
                Some(Item { entry, file }) => self.pending.push_back(Pending {
                    entry,
                    next_at: file.as_ref().map_or(0, |p| p.start),
                    plan: file,
                    next_block: 0,
                    tail_sent: false,
                    chunks: VecDeque::new(),
                }),
            }
        }
        Ok(())
    }
}

impl EntryStream for Stream {
    fn next_entry(&mut self) -> Result<Option<Entry>, ApplyError> {
        if self.started {
            // Whatever of the last entry's data was not read is dropped, once decoded: a job
            // still queued counts as in flight until its reply, or the queue could grow
            // without bound behind entries the Applier skips.
            if let Some(done) = self.pending.pop_front() {
                for rx in done.chunks {
                    if let Ok(Ok(chunk)) = rx.recv() {
                        recycle(&self.pool, chunk);
                    }
                    self.inflight -= 1;
                }
                self.submit = self.submit.saturating_sub(1);
            }
        }
        self.started = true;
        if let Some(c) = self.current.take() {
            recycle(&self.pool, c);
        }
        if let Err(e) = self.fill() {
            return Err(self.fail(e));
        }
        Ok(self.pending.front().map(|p| p.entry.clone()))
    }

    fn data(&mut self) -> Result<&[u8], ApplyError> {
        if self.current.as_ref().is_none_or(|c| c.start == c.end) {
            if self.pending.front().is_some_and(|p| p.chunks.is_empty() && p.unsubmitted())
                && let Err(e) = self.fill()
            {
                return Err(self.fail(e));
            }
            if let Some(c) = self.current.take() {
                recycle(&self.pool, c);
            }
            let Some(rx) = self.pending.front_mut().and_then(|p| p.chunks.pop_front()) else {
                return Ok(&[]);
            };
            self.inflight -= 1;
            let reply = rx.recv().unwrap_or_else(|_| Err("a decoding thread stopped".into()));
            match reply {
                Ok(chunk) => self.current = Some(chunk),
                Err(why) => {
                    let path = String::from_utf8_lossy(&self.pending[0].entry.path).into_owned();
                    let e = self.img.bad(format!("{path}: {why}"));
                    return Err(self.fail(e));
                }
            }
            if let Err(e) = self.fill() {
                return Err(self.fail(e));
            }
        }
        let c = self.current.as_ref().expect("set above");
        Ok(&c.buf[c.start..c.end])
    }

    fn consume(&mut self, n: usize) {
        if let Some(c) = &mut self.current {
            c.start = (c.start + n).min(c.end);
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.jobs = None; // workers finish what is queued, then stop
        self.pending.clear();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A fragment block, decoded once: the first worker to need it decodes it, and others that need
/// it meanwhile (the tails of neighbouring files are submitted together) wait for that instead
/// of decoding it again, which a third of the fragment reads of a Debian image did.
type Fragment = Arc<OnceLock<Result<Arc<Vec<u8>>, String>>>;
type Fragments = Mutex<VecDeque<(u32, Fragment)>>;

fn worker(img: &Image, jobs: &Mutex<Receiver<Job>>, fragments: &Fragments, pool: &Pool) {
    let mut decoder = Decoder::new(img.sb.compression);
    let mut raw = Vec::new();
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        let reply = match job.work {
            Work::Block { at, word, expect } => {
                let out = pool.lock().ok().and_then(|mut p| p.pop()).unwrap_or_default();
                read_block(img, &mut decoder, &mut raw, out, at, word, expect).map(|buf| Chunk {
                    start: 0,
                    end: buf.len(),
                    buf: Arc::new(buf),
                })
            }
            Work::Tail { fragment, offset, len } => {
                tail(img, &mut decoder, &mut raw, fragments, fragment, offset, len)
            }
        };
        let _ = job.reply.send(reply);
    }
}

/// One data block, decoded to exactly `expect` bytes.
fn read_block(
    img: &Image,
    dec: &mut Decoder,
    raw: &mut Vec<u8>,
    mut out: Vec<u8>,
    at: u64,
    word: u32,
    expect: usize,
) -> Result<Vec<u8>, String> {
    let len = (word & !STORED) as usize;
    raw.resize(len, 0);
    img.read_into(at, raw, "data block").map_err(|e| e.to_string())?;
    if word & STORED != 0 {
        out.clear();
        out.extend_from_slice(raw);
    } else {
        dec.decode(raw, &mut out, expect).map_err(|e| format!("data block at {at}: {e}"))?;
    }
    if out.len() != expect {
        return Err(format!("data block at {at} holds {} bytes, the file needs {expect}", out.len()));
    }
    Ok(out)
}

fn tail(
    img: &Image,
    dec: &mut Decoder,
    raw: &mut Vec<u8>,
    cache: &Fragments,
    fragment: u32,
    offset: u32,
    len: u32,
) -> Reply {
    let cell = fragment_cell(cache, fragment);
    let buf = cell.get_or_init(|| decode_fragment(img, dec, raw, fragment)).clone()?;
    let (start, end) = (offset as usize, offset as usize + len as usize);
    if end > buf.len() {
        return Err(format!(
            "fragment {fragment} holds {} bytes; a file's tail needs {start}..{end}",
            buf.len()
        ));
    }
    Ok(Chunk { buf, start, end })
}

/// The cache's cell for `fragment`, made (and the oldest dropped) when it has none.
fn fragment_cell(cache: &Fragments, fragment: u32) -> Fragment {
    let Ok(mut c) = cache.lock() else { return Fragment::default() };
    if let Some((_, cell)) = c.iter().find(|(i, _)| *i == fragment) {
        return cell.clone();
    }
    if c.len() == FRAGMENT_CACHE {
        c.pop_front();
    }
    let cell = Fragment::default();
    c.push_back((fragment, cell.clone()));
    cell
}

fn decode_fragment(
    img: &Image,
    dec: &mut Decoder,
    raw: &mut Vec<u8>,
    fragment: u32,
) -> Result<Arc<Vec<u8>>, String> {
    let (at, word) = img.fragments[fragment as usize];
    let len = (word & !STORED) as usize;
    raw.resize(len, 0);
    img.read_into(at, raw, "fragment block").map_err(|e| e.to_string())?;
    if word & STORED != 0 {
        return Ok(Arc::new(raw.clone()));
    }
    let mut out = Vec::new();
    dec.decode(raw, &mut out, img.sb.block_size as usize).map_err(|e| format!("fragment {fragment}: {e}"))?;
    Ok(Arc::new(out))
}
