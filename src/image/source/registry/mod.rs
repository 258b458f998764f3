//! Images in OCI registries (`docker://REF`), read over the OCI distribution API: the tag's (or
//! digest's) manifest or index, the platform's manifest, its config, then each layer blob
//! streamed straight into the decode pipeline, which checks its size and digest while it reads.
//! Every document is size-capped and digest-checked before it is parsed (`select`), exactly as
//! for an archive; nothing is written but what the pipeline applies into the staging tree.

pub mod auth;
pub mod client;
pub mod reference;

use std::collections::HashMap;
use std::sync::Mutex;

pub use client::{Client, Options, RegistryError};
pub use reference::Reference;

use super::{Blob, ImageSource};
use crate::image::digest::{Algorithm, Digest};
use crate::image::select::{self, Blobs, DocKind, LayerRef, Platform, Resolved, TopDocument};
use crate::image::source::MAX_JSON;
use crate::image::{ImageError, Selection};

/// One image reference in one registry.
pub struct RegistrySource {
    reference: Reference,
    client: Client,
    /// Documents fetched by digest in this run (the top one is read again by the walk).
    docs: Mutex<HashMap<String, Vec<u8>>>,
    /// The digest of the document the reference named, once fetched.
    top: Mutex<Option<String>>,
}

impl RegistrySource {
    pub fn open(reference: &Reference, opts: &Options) -> Result<RegistrySource, ImageError> {
        let client = Client::new(reference, opts).map_err(|e| registry_error(reference, e))?;
        Ok(RegistrySource {
            reference: reference.clone(),
            client,
            docs: Mutex::new(HashMap::new()),
            top: Mutex::new(None),
        })
    }

    /// The tag's (or digest's) document, checked against the digest in the reference when there
    /// is one.
    pub fn top(&self) -> Result<TopDocument, ImageError> {
        let accept = select::ACCEPTED_MANIFEST_TYPES.join(", ");
        let (bytes, media_type) = self
            .client
            .manifest(&self.reference.manifest_ref(), &accept, MAX_JSON)
            .map_err(|e| registry_error(&self.reference, e))?;
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
        self.client
            .manifest_digest(&self.reference.manifest_ref(), &accept)
            .map_err(|e| registry_error(&self.reference, e))
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
        let reader = self.client.blob(&digest).map_err(|e| registry_error(&self.reference, e))?;
        Ok(Box::new(reader))
    }
}

impl Blobs for RegistrySource {
    fn read_doc(&self, digest: &Digest, kind: DocKind, limit: u64) -> Result<Vec<u8>, ImageError> {
        if let Some(bytes) = self.docs.lock().expect("not poisoned").get(&digest.to_string()) {
            return Ok(bytes.clone());
        }
        let d = digest.to_string();
        let bytes = match kind {
            DocKind::Manifest => {
                let accept = select::ACCEPTED_MANIFEST_TYPES.join(", ");
                self.client.manifest(&d, &accept, limit).map(|(b, _)| b)
            }
            DocKind::Blob => self.client.small_blob(&d, limit),
        }
        .map_err(|e| registry_error(&self.reference, e))?;
        self.docs.lock().expect("not poisoned").insert(d, bytes.clone());
        Ok(bytes)
    }

    fn has_blob(&self, _digest: &Digest) -> bool {
        true
    }
}
