//! Images in OCI registries (`docker://REF`), read over the OCI distribution API: the tag's (or
//! digest's) manifest or index, the platform's manifest, its config, then each layer blob
//! streamed straight into the decode pipeline, which checks its size and digest while it reads.
//! Every document is size-capped and digest-checked before it is parsed (`select`), exactly as
//! for an archive; nothing is written but what the pipeline applies into the staging tree.

pub mod auth;
pub mod client;
pub mod export;
pub mod prefetch;
pub mod reference;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

pub use client::{Client, Options, RegistryError};
pub use reference::Reference;

use super::{Blob, ImageSource};
use crate::image::digest::{Algorithm, Digest};
use crate::image::select::{self, Blobs, DocKind, LayerRef, Platform, Resolved, TopDocument};
use crate::image::source::MAX_JSON;
use crate::image::{ImageError, Selection};

/// The most index, manifest and config bytes fetched for one image.
const MAX_METADATA: u64 = 64 << 20;

/// One image reference in one registry, reached through its mirrors first when the
/// configuration names any.
pub struct RegistrySource {
    reference: Reference,
    /// The mirrors' clients in order, then the registry's own.
    clients: Vec<Client>,
    /// The client the image's manifest came from: every later fetch uses it.
    client: Mutex<usize>,
    /// Documents fetched by digest in this run (the top one is read again by the walk).
    docs: Mutex<HashMap<String, Vec<u8>>>,
    /// The digest of the document the reference named, once fetched.
    top: Mutex<Option<String>>,
}

impl RegistrySource {
    pub fn open(reference: &Reference, opts: &Options) -> Result<RegistrySource, ImageError> {
        let mirrors = opts.mirrors.get(&reference.registry).into_iter().flatten();
        let endpoints = mirrors.map(|m| Reference { registry: m.clone(), ..reference.clone() });
        let clients = endpoints
            .chain([reference.clone()])
            .map(|r| Client::new(&r, opts))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| registry_error(reference, e))?;
        Ok(RegistrySource {
            reference: reference.clone(),
            clients,
            client: Mutex::new(0),
            docs: Mutex::new(HashMap::new()),
            top: Mutex::new(None),
        })
    }

    /// The tag's (or digest's) document, checked against the digest in the reference when there
    /// is one.
    pub fn top(&self) -> Result<TopDocument, ImageError> {
        let accept = select::ACCEPTED_MANIFEST_TYPES.join(", ");
        let (bytes, media_type) =
            self.first_answer(|c| c.manifest(&self.reference.manifest_ref(), &accept, MAX_JSON))?;
        let algorithm = self.reference.digest.as_ref().map_or(Algorithm::Sha256, |d| d.algorithm);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(expected) = &self.reference.digest
            && *expected != digest
        {
            return Err(ImageError::DigestMismatch {
                what: format!("manifest of {}", self.reference),
                expected: expected.clone(),
                actual: digest,
            });
        }
        let top = TopDocument { digest: digest.clone(), media_type, size: bytes.len() as u64 };
        self.docs.lock().expect("not poisoned").insert(digest.to_string(), bytes);
        *self.top.lock().expect("not poisoned") = Some(digest.to_string());
        Ok(top)
    }

    /// The digest of the reference's document, once [`RegistrySource::top`] has fetched it.
    pub fn top_digest(&self) -> Option<String> {
        self.top.lock().expect("not poisoned").clone()
    }

    /// The digest the registry names the tag by now, without fetching the document (a `HEAD`).
    pub fn current_digest(&self) -> Result<Option<String>, ImageError> {
        let accept = select::ACCEPTED_MANIFEST_TYPES.join(", ");
        self.first_answer(|c| c.manifest_digest(&self.reference.manifest_ref(), &accept))
    }

    /// Asks the mirrors in order, then the registry (containers/image's order; Apptainer uses
    /// only the first mirror), and keeps the client that answered for every later fetch.
    fn first_answer<T>(&self, ask: impl Fn(&Client) -> Result<T, RegistryError>) -> Result<T, ImageError> {
        let mut last = None;
        for (i, client) in self.clients.iter().enumerate() {
            match ask(client) {
                Ok(answer) => {
                    *self.client.lock().expect("not poisoned") = i;
                    return Ok(answer);
                }
                Err(e) if i + 1 < self.clients.len() => {
                    tracing::debug!(mirror = client.registry(), error = %e, "mirror failed; trying the next");
                    last = Some(e);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(registry_error(&self.reference, last.expect("the registry itself is always tried")))
    }

    fn client(&self) -> &Client {
        &self.clients[*self.client.lock().expect("not poisoned")]
    }
}

fn registry_error(reference: &Reference, e: RegistryError) -> ImageError {
    let hint = e.hint(&reference.registry);
    ImageError::Registry { reference: reference.to_string(), source: Box::new(e), hint }
}

impl ImageSource for RegistrySource {
    fn resolve(&self, sel: &Selection) -> Result<Resolved, ImageError> {
        let wanted = sel.platform.as_deref().map(Platform::parse).transpose()?;
        let top = self.top()?;
        select::resolve_top(self, &top, &self.reference.to_string(), wanted.as_ref())
    }

    fn open_layer(&self, layer: &LayerRef) -> Result<Blob<'_>, ImageError> {
        let digest = layer.digest.as_ref().map(ToString::to_string).unwrap_or_else(|| layer.member.clone());
        let inner = self.client().blob(&digest).map_err(|e| registry_error(&self.reference, e))?;
        Ok(Box::new(Resuming {
            client: self.client(),
            digest,
            size: layer.size,
            offset: 0,
            inner,
            resumes: 0,
            window: (std::time::Instant::now(), 0),
        }))
    }
}

impl Blobs for RegistrySource {
    fn read_doc(&self, digest: &Digest, kind: DocKind, limit: u64) -> Result<Vec<u8>, ImageError> {
        let held: u64 = {
            let docs = self.docs.lock().expect("not poisoned");
            if let Some(bytes) = docs.get(&digest.to_string()) {
                return Ok(bytes.clone());
            }
            docs.values().map(|d| d.len() as u64).sum()
        };
        // Indexes may nest and list thousands of entries, each up to 4 MiB: what one image's
        // metadata may add up to is bounded too (real images need kilobytes).
        if held > MAX_METADATA {
            return Err(ImageError::TooLarge {
                name: format!("the metadata of {}", self.reference),
                size: held,
                limit: MAX_METADATA,
            });
        }
        let d = digest.to_string();
        let bytes = match kind {
            DocKind::Manifest => {
                let accept = select::ACCEPTED_MANIFEST_TYPES.join(", ");
                self.client().manifest(&d, &accept, limit).map(|(b, _)| b)
            }
            DocKind::Blob => self.client().small_blob(&d, limit),
        }
        .map_err(|e| registry_error(&self.reference, e))?;
        self.docs.lock().expect("not poisoned").insert(d, bytes.clone());
        Ok(bytes)
    }

    fn has_blob(&self, _digest: &Digest) -> bool {
        true
    }
}

/// Most times one blob's download is resumed after its connection broke.
const MAX_RESUMES: u32 = 5;

/// A layer blob that survives broken connections: the bytes received so far stay counted (and
/// hashed by the pipeline), and the rest is asked for with `Range` from the last byte received,
/// as containers/image does; what came before the cut is never fetched again.
struct Resuming<'c> {
    client: &'c Client,
    digest: String,
    /// The descriptor's size: an early end of the body is a cut, not the blob's end.
    size: u64,
    offset: u64,
    inner: ureq::BodyReader<'static>,
    resumes: u32,
    /// When the current rate window started and the bytes received in it.
    window: (std::time::Instant, u64),
}

/// A download slower than this over a whole window counts as cut and is resumed: a registry
/// that drips bytes (each within the per-read timeout) must not hold gpurun indefinitely.
const MIN_RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);
const MIN_BYTES_PER_WINDOW: u64 = 64 << 10;

impl Resuming<'_> {
    fn resume(&mut self, cause: std::io::Error) -> std::io::Result<()> {
        if self.resumes >= MAX_RESUMES {
            return Err(cause);
        }
        self.resumes += 1;
        tracing::debug!(digest = %self.digest, offset = self.offset, error = %cause, "resuming the download");
        std::thread::sleep(std::time::Duration::from_millis(200 << self.resumes));
        let (mut inner, skip) = self
            .client
            .blob_from(&self.digest, self.offset)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        // A server that ignored the range sends the blob from its start again: drop what we have.
        std::io::copy(&mut std::io::Read::take(&mut inner, skip), &mut std::io::sink())?;
        self.inner = inner;
        Ok(())
    }
}

impl Read for Resuming<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Ok(0) if self.offset < self.size => {
                    let cut =
                        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the connection closed early");
                    self.resume(cut)?;
                }
                Ok(n) => {
                    self.offset += n as u64;
                    self.window.1 += n as u64;
                    if self.window.0.elapsed() >= MIN_RATE_WINDOW {
                        let slow = self.window.1 < MIN_BYTES_PER_WINDOW;
                        self.window = (std::time::Instant::now(), 0);
                        if slow {
                            let why =
                                format!("less than {MIN_BYTES_PER_WINDOW} bytes in {MIN_RATE_WINDOW:?}");
                            self.resume(std::io::Error::new(std::io::ErrorKind::TimedOut, why))?;
                        }
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => self.resume(e)?,
            }
        }
    }
}
