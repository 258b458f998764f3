//! Parallel layer downloads into a content-addressed blob store (`CACHE/blobs/ALG/HEX`), read by
//! the unpack while they download. Layers must be applied in order, but need not arrive in
//! order: up to N workers download the image's layers at once (first layers first), each into a
//! temporary file of the store, hashed on the way and renamed to its digest's name only when its
//! size and digest match. The unpack reads layer k from the store, following the file as it
//! grows when its download is still running, so the first layer is applied while the others
//! download. A blob already in the store (another image shares the layer) is not downloaded
//! again. The decode pipeline checks every blob's digest once more as it reads it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::RegistrySource;
use crate::image::digest::{Digest, Hasher};
use crate::image::select::{LayerRef, Resolved};
use crate::image::source::{Blob, ImageSource};
use crate::image::{ImageError, Selection};
use crate::ui::{Progress, Ui};

/// Where a layer's download stands.
#[derive(Debug, Clone)]
enum State {
    Queued,
    /// Bytes so far in `tmp`.
    Running {
        tmp: PathBuf,
        written: u64,
    },
    Done(PathBuf),
    Failed(String),
}

/// The downloads of one image's layers, shared by the workers and the unpack.
pub struct Prefetch<'s> {
    source: &'s RegistrySource,
    ui: Ui,
    dir: PathBuf,
    layers: Vec<LayerRef>,
    next: AtomicUsize,
    states: Mutex<HashMap<String, State>>,
    changed: Condvar,
    cancel: AtomicBool,
}

/// The store's file for `digest`.
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(digest.algorithm.name()).join(&digest.hex)
}

impl<'s> Prefetch<'s> {
    /// Prepares the downloads of `resolved`'s layers into the store at `dir`.
    pub fn new(
        source: &'s RegistrySource,
        resolved: &Resolved,
        dir: &Path,
        ui: Ui,
    ) -> Result<Prefetch<'s>, ImageError> {
        let io_err =
            |e: io::Error| ImageError::Archive { path: dir.to_owned(), why: format!("blob store: {e}") };
        std::fs::create_dir_all(dir.join("tmp")).map_err(io_err)?;
        let mut states = HashMap::new();
        for layer in &resolved.layers {
            let Some(d) = &layer.digest else { continue };
            std::fs::create_dir_all(dir.join(d.algorithm.name())).map_err(io_err)?;
            let path = blob_path(dir, d);
            let state = if path.is_file() { State::Done(path) } else { State::Queued };
            states.insert(d.to_string(), state);
        }
        Ok(Prefetch {
            source,
            ui,
            dir: dir.to_owned(),
            layers: resolved.layers.clone(),
            next: AtomicUsize::new(0),
            states: Mutex::new(states),
            changed: Condvar::new(),
            cancel: AtomicBool::new(false),
        })
    }

    /// Runs one download worker until no layer is left (or the unpack gave up).
    pub fn work(&self) {
        loop {
            if self.stopped() {
                return;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(layer) = self.layers.get(i) else { return };
            let Some(digest) = layer.digest.clone() else { continue };
            let key = digest.to_string();
            {
                let mut states = self.states.lock().expect("not poisoned");
                if !matches!(states.get(&key), Some(State::Queued)) {
                    continue; // in the store already, or a second descriptor of the same blob
                }
                // Another pull may have stored it since.
                let stored = blob_path(&self.dir, &digest);
                if stored.is_file() {
                    states.insert(key.clone(), State::Done(stored));
                    self.changed.notify_all();
                    continue;
                }
                states.insert(key.clone(), State::Running { tmp: self.tmp_name(&digest, i), written: 0 });
            }
            let end = match self.download(i, layer, &digest, &key) {
                Ok(path) => State::Done(path),
                Err(e) => State::Failed(e.to_string()),
            };
            self.states.lock().expect("not poisoned").insert(key, end);
            self.changed.notify_all();
        }
    }

    /// A name no other download uses, on this machine or another sharing the cache.
    fn tmp_name(&self, digest: &Digest, i: usize) -> PathBuf {
        self.dir.join("tmp").join(format!("{}.{}.{i}", digest.hex, crate::fsutil::unique_suffix()))
    }

    /// Removes `layer`'s blob from the store (it failed its check when read).
    pub fn forget(&self, layer: &LayerRef) {
        if let Some(d) = &layer.digest {
            let _ = std::fs::remove_file(blob_path(&self.dir, d));
        }
    }

    /// The unpack gave up, or gpurun was asked to stop (Ctrl-C, SIGTERM, SIGHUP).
    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || crate::interrupt::pending().is_some()
    }

    /// Stops the workers at their next chunk (the unpack failed or finished).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.changed.notify_all();
    }

    fn download(
        &self,
        i: usize,
        layer: &LayerRef,
        digest: &Digest,
        key: &str,
    ) -> Result<PathBuf, ImageError> {
        let tmp = match self.states.lock().expect("not poisoned").get(key) {
            Some(State::Running { tmp, .. }) => tmp.clone(),
            _ => unreachable!("set to Running by work()"),
        };
        let label =
            format!("layer {}/{} {}", i + 1, self.layers.len(), &digest.hex[..12.min(digest.hex.len())]);
        let bar = self.ui.download(label, layer.size);
        let result = self.fill(layer, digest, key, &tmp, &bar);
        bar.finish();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Downloads into `tmp`, publishing progress, then checks and renames it into the store.
    fn fill(
        &self,
        layer: &LayerRef,
        digest: &Digest,
        key: &str,
        tmp: &Path,
        bar: &Progress,
    ) -> Result<PathBuf, ImageError> {
        let io_err = |e: io::Error| ImageError::Read { name: key.to_string(), source: e };
        let mut out = File::options().write(true).create_new(true).open(tmp).map_err(io_err)?;
        let mut blob = self.source.open_layer(layer)?;
        let mut hasher = Hasher::new(digest.algorithm);
        let mut buf = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            if self.stopped() {
                return Err(ImageError::Read {
                    name: key.to_string(),
                    source: io::Error::other("cancelled"),
                });
            }
            // Whole chunks: a network read returns a TLS record (16 KiB), and waking the unpack
            // for each one costs more than the bytes.
            let n = fill(&mut blob, &mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > layer.size {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err)?;
            bar.inc(n as u64);
            if let Some(State::Running { written: w, .. }) =
                self.states.lock().expect("not poisoned").get_mut(key)
            {
                *w = written;
            }
            self.changed.notify_all();
        }
        if written != layer.size {
            return Err(ImageError::SizeMismatch {
                name: key.to_string(),
                expected: layer.size,
                actual: written,
            });
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                what: key.to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        out.sync_all().map_err(io_err)?;
        let path = blob_path(&self.dir, digest);
        std::fs::rename(tmp, &path).map_err(io_err)?;
        Ok(path)
    }

    /// Waits until `key` has more than `pos` bytes, is complete, or failed.
    fn wait(&self, key: &str, pos: u64) -> State {
        let mut states = self.states.lock().expect("not poisoned");
        loop {
            let state = states.get(key).cloned().unwrap_or(State::Queued);
            match &state {
                State::Running { written, .. } if *written > pos => return state,
                State::Done(_) | State::Failed(_) => return state,
                _ if self.stopped() => return State::Failed("cancelled".into()),
                _ => {}
            }
            // A timeout only so that a missed wakeup cannot stall the unpack.
            states = self.changed.wait_timeout(states, Duration::from_millis(200)).expect("not poisoned").0;
        }
    }
}

impl ImageSource for Prefetch<'_> {
    fn resolve(&self, sel: &Selection) -> Result<Resolved, ImageError> {
        self.source.resolve(sel)
    }

    fn open_layer(&self, layer: &LayerRef) -> Result<Blob<'_>, ImageError> {
        match &layer.digest {
            Some(d) => Ok(Box::new(Follow { fetch: self, key: d.to_string(), file: None, pos: 0 })),
            None => self.source.open_layer(layer),
        }
    }
}

/// A blob read from the store while its download may still be running: it reads what the
/// download has written and waits for more until the download completes (or fails).
struct Follow<'f, 's> {
    fetch: &'f Prefetch<'s>,
    key: String,
    file: Option<File>,
    pos: u64,
}

impl Read for Follow<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(f) = &mut self.file {
                let n = f.read(buf)?;
                if n > 0 {
                    self.pos += n as u64;
                    return Ok(n);
                }
            }
            let state = self.fetch.wait(&self.key, self.pos);
            let path = match state {
                State::Done(path) => {
                    if self.file.is_none() {
                        self.file = Some(File::open(&path)?);
                        continue;
                    }
                    // At the end of a complete file: the blob's end.
                    let n = self.file.as_mut().expect("open").read(buf)?;
                    self.pos += n as u64;
                    return Ok(n);
                }
                State::Failed(why) => return Err(io::Error::other(why)),
                State::Running { tmp, .. } => tmp,
                State::Queued => continue,
            };
            if self.file.is_none() {
                // The temporary file, open before its rename: the descriptor stays valid. Renamed
                // in between: the next wait says where it is now.
                match File::open(&path) {
                    Ok(f) => self.file = Some(f),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                io::Seek::seek(self.file.as_mut().expect("open"), io::SeekFrom::Start(self.pos))?;
            }
        }
    }
}

/// Reads until `buf` is full or the blob ends; returns the bytes read.
fn fill(from: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match from.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
