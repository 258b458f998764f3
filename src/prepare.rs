//! The prepare stage: from a classified IMAGE to a root filesystem ready to run. A root
//! filesystem directory is used in place. Any other source takes the warm path when it can (its
//! identity unchanged and its rootfs published: no image data read), else the cold path:
//! resolve, lock, unpack into a cache staging tree, publish by rename. Concurrent starts of one
//! image serialize on the image's lock: the first unpacks, the others wait and find it published.
//!
//! This module joins `image` (sources, verification, unpacking) and `cache` (layout, locks,
//! publishing); neither of those imports the other's orchestration.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cache::{Cache, CacheError, ImageRecord, SourceMemo, TagMemo};
use crate::cli::PullPolicy;
use crate::image::apply::Limits;
use crate::image::layer::LayerError;
use crate::image::select::{self, Resolved};
use crate::image::source::registry::prefetch::Prefetch;
use crate::image::source::registry::{self, Reference, RegistrySource};
use crate::image::source::{FileIdentity, SquashSource};
use crate::image::squash::{self, Extraction};
use crate::image::unpack::{layer_infos, run_config};
use crate::image::{ImageArg, ImageError, ImageSource, RunConfig, Selection};
use crate::ui::Ui;

/// What the stage works with besides the image.
pub struct Stage<'a> {
    pub cache: &'a Cache,
    pub limits: Limits,
    /// How to reach registries.
    pub net: &'a registry::Options,
    /// When a registry image is fetched again (`--pull`).
    pub pull: PullPolicy,
    pub ui: &'a Ui,
}

/// Why an image could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl PrepareError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PrepareError::Image(e) => e.hint(),
            PrepareError::Cache(e) => e.hint(),
        }
    }
}

/// A root filesystem ready to run, with the image settings the run stage needs.
///
/// Keep it alive for as long as the container runs: for cached images it holds a shared lock on
/// the cache entry so that `gpurun prune` and `gpurun rm` leave the rootfs alone.
#[derive(Debug)]
pub struct Prepared {
    /// The read-only root filesystem directory.
    pub rootfs: PathBuf,
    /// ENTRYPOINT, CMD, Env, WorkingDir, User and friends; defaults for a plain directory.
    pub config: RunConfig,
    /// Content identity of the image (its config digest); `None` for a plain directory.
    pub id: Option<String>,
    /// Held for the life of the run; see the type's documentation.
    pub lease: Option<fs::File>,
    /// The cache entry's directory, where facts read from the immutable rootfs are memoized
    /// (`gpu::devcode`); `None` for a plain directory, which is read every time.
    pub memo_dir: Option<PathBuf>,
}

/// Returns a runnable rootfs for `image`, unpacking it into the cache if needed.
pub fn prepare(image: &ImageArg, sel: &Selection, st: &Stage) -> Result<Prepared, PrepareError> {
    let prepared = prepare_image(image, sel, st)?;
    if let Some(a) = &prepared.config.apptainer
        && a.shell.is_none()
        && !a.env_scripts.is_empty()
    {
        st.ui.warn(
            "the image has /.singularity.d/env scripts but no /bin/sh to source them: they are not run",
        );
    }
    Ok(prepared)
}

fn prepare_image(image: &ImageArg, sel: &Selection, st: &Stage) -> Result<Prepared, PrepareError> {
    match image {
        ImageArg::Rootfs(dir) => rootfs_dir(dir, st.ui),
        ImageArg::Local(_) => local(image, sel, st),
        ImageArg::Registry(r) => pulled(image, r, sel, st),
        ImageArg::Squash(path) => {
            if sel.reference.is_some() || sel.platform.is_some() {
                st.ui.warn("--ref and --platform choose inside an archive; a SIF or SquashFS image holds one, which runs");
            }
            squash(image, path, st)
        }
    }
}

/// A plain root filesystem directory used in place, with an empty image configuration.
fn rootfs_dir(image: &Path, ui: &Ui) -> Result<Prepared, PrepareError> {
    let dir = fs::canonicalize(image).map_err(|e| ImageError::Open { path: image.to_owned(), source: e })?;
    // `gpurun /etc cmd` would run in /etc as a root and fail with "command not found".
    if ["bin", "usr"].iter().all(|d| fs::symlink_metadata(dir.join(d)).is_err()) {
        ui.warn(&format!(
            "{} has neither bin/ nor usr/: it does not look like a root filesystem (IMAGE is an image archive, an OCI layout or a rootfs directory)",
            dir.display()
        ));
    }
    let mut config = RunConfig::default();
    // An Apptainer sandbox directory (`apptainer build --sandbox`) runs with its conventions.
    if let Ok(root) = crate::inroot::Root::open(&dir) {
        crate::image::apptainer::apply(&root, &mut config);
    }
    Ok(Prepared { rootfs: dir, config, id: None, lease: None, memo_dir: None })
}

/// A SIF or SquashFS file. Its warm path is the archives' (the memo of its identity). Cold, its
/// id is known only once its bytes are hashed, so the lock and the staging tree are keyed by the
/// memo's name until the extraction ends; the tree is then published under the id, unless
/// another path with the same bytes published it first.
fn squash(image: &ImageArg, path: &Path, st: &Stage) -> Result<Prepared, PrepareError> {
    let cache = st.cache;
    let (canon, identity) = image.identify()?;
    let memo_name = SourceMemo::file_name(&canon, None, None);
    let memo_path = cache.sources_dir().join(&memo_name);
    if let Some((p, _)) = warm(cache, &memo_path, &identity)? {
        return Ok(p);
    }
    let key = format!("squash-{}", memo_name.trim_end_matches(".json"));
    let _lock = cache.lock_unpack(&key)?;
    if let Some((p, _)) = warm(cache, &memo_path, &identity)? {
        return Ok(p); // another start extracted it while we waited
    }
    let source = SquashSource::open(path)?;
    if let Some(p) = already_cached(&source, &canon, &identity, &memo_path, st)? {
        return Ok(p);
    }
    let fs = source.image()?;
    cache.clean_staging(&key)?;
    let catch = crate::interrupt::catch();
    let staging = cache.stage(&key)?;
    let extracted = extract_squash(&source, fs, &staging.rootfs(), st);
    let (extraction, config) = match extracted {
        Ok(done) => done,
        Err(e) => {
            drop(staging);
            if let Some(sig) = crate::interrupt::pending() {
                drop(catch);
                crate::interrupt::die_of(sig);
            }
            return Err(e);
        }
    };
    let id = extraction.digest.hex.clone();
    // The id and the tree come from two reads of the file: both are this content only if the
    // file did not change meanwhile (a SIF rebuilt in place by someone else).
    if image.identify()?.1 != identity {
        drop(staging);
        let why = "changed while gpurun read it; run again once it is complete".to_string();
        return Err(ImageError::Archive { path: path.to_owned(), why }.into());
    }
    let record = squash_record(&source, &canon, &id, config, extraction.bytes_written);
    {
        let _publishing = cache.lock_unpack(&id)?;
        if cache.is_published(&id) {
            drop(staging); // the same bytes came in by another path first
        } else {
            cache.publish(staging, &id, &record)?;
            tracing::debug!(%id, "published");
        }
    }
    drop(catch);
    if let Some(sig) = crate::interrupt::pending() {
        crate::interrupt::die_of(sig);
    }
    let memo = SourceMemo { path: canon, reference: None, platform: None, identity, id: id.clone() };
    if let Err(e) = memo.write(&memo_path) {
        st.ui.warn(&format!("could not remember the image for fast restarts ({}): {e}", memo_path.display()));
    }
    cached(st, &id)
}

/// When a cached SIF or SquashFS image has this file system's size, the file may be a copy of
/// it (the same SIF at another path, or staged to each node's local disk): its bytes are hashed
/// first, and a published id is used without extracting anything. Otherwise `None`: the id is
/// hashed during the extraction.
fn already_cached(
    source: &SquashSource,
    canon: &Path,
    identity: &FileIdentity,
    memo_path: &Path,
    st: &Stage,
) -> Result<Option<Prepared>, PrepareError> {
    let size = source.region.1;
    let candidates = st.cache.list()?;
    let same_size = candidates.iter().any(|r| {
        matches!(r.format.as_str(), "sif" | "squashfs") && r.layers.first().is_some_and(|l| l.size == size)
    });
    if !same_size {
        return Ok(None);
    }
    let id = squash::image_id(&source.file, &source.path, source.region).map_err(ImageError::from)?;
    // The id must be a SquashFS image's (a partition's bytes could in theory be an OCI config).
    let record = ImageRecord::read(&st.cache.entry_dir(&id).join("image.json"));
    if !record.is_ok_and(|r| matches!(r.format.as_str(), "sif" | "squashfs")) {
        return Ok(None);
    }
    let memo = SourceMemo {
        path: canon.to_owned(),
        reference: None,
        platform: None,
        identity: identity.clone(),
        id: id.clone(),
    };
    if let Err(e) = memo.write(memo_path) {
        st.ui.warn(&format!("could not remember the image for fast restarts ({}): {e}", memo_path.display()));
    }
    cached(st, &id).map(Some)
}

/// Extracts the file system into `dest` and reads its Apptainer conventions.
fn extract_squash(
    source: &SquashSource,
    fs: std::sync::Arc<crate::image::squash::Image>,
    dest: &Path,
    st: &Stage,
) -> Result<(Extraction, RunConfig), PrepareError> {
    use rustix::fs::{Mode, OFlags};
    let open_err = |e: rustix::io::Errno| ImageError::Open { path: dest.to_owned(), source: e.into() };
    let need = fs.sb.bytes_used;
    if let Ok(v) = rustix::fs::statvfs(dest) {
        let have = v.f_bavail.saturating_mul(v.f_frsize);
        if need > have {
            return Err(ImageError::NoSpace { path: dest.to_owned(), need, have }.into());
        }
    }
    let root = rustix::fs::open(dest, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(open_err)?;
    let progress = st.ui.progress(source.region.1, 1);
    let extraction = squash::extract(fs, source.region, root, st.limits, &|n| progress.inc(n))
        .map_err(ImageError::from)?;
    progress.finish();
    for line in extraction.warnings.lines() {
        st.ui.warn(&line);
    }
    let mut config = RunConfig::default();
    let root =
        crate::inroot::Root::open(dest).map_err(|e| ImageError::Open { path: dest.to_owned(), source: e })?;
    crate::image::apptainer::apply(&root, &mut config);
    Ok((extraction, config))
}

fn squash_record(source: &SquashSource, canon: &Path, id: &str, config: RunConfig, size: u64) -> ImageRecord {
    let platform = match &source.sif {
        Some(sif) if sif.arch != "unknown" => format!("linux/{}", sif.arch),
        _ => select::Platform::host().to_string(),
    };
    let format = if source.sif.is_some() { "sif" } else { "squashfs" };
    ImageRecord {
        id: id.to_string(),
        source: canon.to_owned(),
        reference: None,
        platform,
        format: format.into(),
        config,
        layers: vec![crate::image::LayerInfo {
            digest: Some(format!("sha256:{id}")),
            diff_id: format!("sha256:{id}"),
            size: source.region.1,
            media_type: Some("squashfs".into()),
        }],
        size,
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    }
}

/// An archive or image directory, keyed for the warm path by its canonical path, the selection
/// and its file identity.
fn local(image: &ImageArg, sel: &Selection, st: &Stage) -> Result<Prepared, PrepareError> {
    let (cache, ui) = (st.cache, st.ui);
    let (canon, identity) = image.identify()?;
    let memo_path = cache.sources_dir().join(SourceMemo::file_name(
        &canon,
        sel.reference.as_deref(),
        sel.platform.as_deref(),
    ));
    if let Some((p, platform)) = warm(cache, &memo_path, &identity)? {
        tracing::debug!(id = %p.id.as_deref().unwrap_or(""), "warm start: archive unchanged, rootfs cached");
        if let Some(w) = select::Platform::foreign_warning(&platform) {
            ui.warn(&w);
        }
        return Ok(p);
    }
    let source = image.open(st.net)?;
    let resolved = source.resolve(sel)?;
    if let Some(w) = select::Platform::foreign_warning(&resolved.platform()) {
        ui.warn(&w);
    }
    let id = resolved.id.hex.clone();
    publish(cache, source.as_ref(), &resolved, &canon, st.limits, ui)?;
    let memo = SourceMemo {
        path: canon,
        reference: sel.reference.clone(),
        platform: sel.platform.clone(),
        identity,
        id: id.clone(),
    };
    if let Err(e) = memo.write(&memo_path) {
        ui.warn(&format!("could not remember the archive for fast restarts ({}): {e}", memo_path.display()));
    }
    let lease = cache.lock_shared(&id)?;
    Ok(Prepared {
        rootfs: cache.rootfs(&id),
        config: run_config(&resolved),
        memo_dir: Some(cache.entry_dir(&id)),
        id: Some(id),
        lease: Some(lease),
    })
}

/// A registry image. Its warm path is the tag memo: with `--pull missing` (the default) or
/// `never`, a reference pulled before starts without any network, so a thousand ranks of one job
/// send nothing to the registry; `newer` asks the registry for the tag's digest (a `HEAD`) and
/// pulls only when it changed; `always` fetches the manifest every time (the layers only when
/// the image is not cached).
fn pulled(image: &ImageArg, r: &Reference, sel: &Selection, st: &Stage) -> Result<Prepared, PrepareError> {
    let name = r.to_string();
    if let Some(other) = &sel.reference {
        let why = format!(
            "--ref {other} chooses an image inside an archive; for a registry, name the tag in the reference"
        );
        return Err(ImageError::BadReference { reference: name, why }.into());
    }
    // Without --platform the host's platform is part of the key: a cache shared by x86 login
    // nodes and aarch64 compute nodes keeps one image per architecture for the same tag.
    let platform = sel.platform.clone().unwrap_or_else(|| select::Platform::host().to_string());
    let memo_path = st.cache.refs_dir().join(TagMemo::file_name(&name, Some(&platform)));
    let memo = TagMemo::read(&memo_path).ok().filter(|m| m.reference == name && st.cache.is_published(&m.id));
    let source = match (st.pull, &memo) {
        (PullPolicy::Never | PullPolicy::Missing, Some(m)) => return cached(st, &m.id),
        (PullPolicy::Never, None) => return Err(ImageError::NotPulled { reference: name }.into()),
        (PullPolicy::Newer, Some(m)) => {
            let source = RegistrySource::open(r, st.net)?;
            match source.current_digest() {
                Ok(d) if d.as_deref() == Some(m.digest.as_str()) => {
                    tracing::debug!(reference = %name, "the tag still names the cached image");
                    return cached(st, &m.id);
                }
                Ok(_) => source,
                // As podman does: a registry out of reach is no reason not to run the image we have.
                Err(e) => {
                    st.ui.warn(&format!("{}; running the cached image", crate::error_chain(&e)));
                    return cached(st, &m.id);
                }
            }
        }
        _ => RegistrySource::open(r, st.net)?,
    };
    // (A foreign platform is warned about once, by `cached`, from the record.)
    let mut resolved = source.resolve(sel)?;
    let digest = source.top_digest().unwrap_or_default();
    // The record names the tag and the digest it had when pulled (`gpurun images`).
    if r.digest.is_none() {
        resolved.reference = Some(format!("{name}@{digest}"));
    }
    download_and_publish(&source, &resolved, Path::new(&image.display()), st)?;
    let id = resolved.id.hex.clone();
    let memo = TagMemo { reference: name, platform: sel.platform.clone(), digest, id: id.clone() };
    if let Err(e) = memo.write(&memo_path) {
        st.ui.warn(&format!(
            "could not remember {} for fast restarts ({}): {e}",
            memo.reference,
            memo_path.display()
        ));
    }
    let mut prepared = cached(st, &id)?;
    prepared.config = run_config(&resolved);
    Ok(prepared)
}

/// With the blob store, `downloads` workers fetch the layers into it while the unpack reads
/// them from there (`Prefetch`); without it, layers stream one by one from the registry.
fn download_and_publish(
    source: &RegistrySource,
    resolved: &Resolved,
    label: &Path,
    st: &Stage,
) -> Result<(), PrepareError> {
    let id = &resolved.id.hex;
    if !st.net.blob_store || st.cache.is_published(id) {
        return publish(st.cache, source, resolved, label, st.limits, st.ui);
    }
    // Downloads start only under the image's lock: of N ranks starting together on a cold
    // cache, one downloads and unpacks, the others wait and find it published.
    let _lock = st.cache.lock_unpack(id)?;
    if st.cache.is_published(id) {
        return Ok(());
    }
    // Held while the downloads run: `prune` leaves the store alone meanwhile.
    let _store = st.cache.lock_blobs(false)?;
    let fetch = Prefetch::new(source, resolved, &st.cache.blobs_dir(), *st.ui)?;
    let result = std::thread::scope(|s| {
        for _ in 0..st.net.downloads.max(1) {
            s.spawn(|| fetch.work());
        }
        let result = unpack_and_publish(st.cache, &fetch, resolved, label, st.limits, st.ui);
        fetch.cancel();
        result
    });
    if let Err(PrepareError::Image(ImageError::Layer {
        index,
        source: LayerError::Digest { .. } | LayerError::Size { .. },
        ..
    })) = &result
    {
        // A stored blob that no longer matches its digest would fail every later pull.
        fetch.forget(&resolved.layers[index - 1]);
    }
    result
}

/// A published image, leased for the run.
fn cached(st: &Stage, id: &str) -> Result<Prepared, PrepareError> {
    let lease = st.cache.lock_shared(id)?;
    // Read under the lock: `gpurun rm` may have removed it in between.
    let rec = ImageRecord::read(&st.cache.entry_dir(id).join("image.json")).map_err(|e| CacheError::Io {
        what: "read the image record in",
        path: st.cache.entry_dir(id),
        source: e,
    })?;
    if let Some(w) = select::Platform::foreign_warning(&rec.platform) {
        st.ui.warn(&w);
    }
    Ok(Prepared {
        rootfs: st.cache.rootfs(id),
        config: rec.config,
        id: Some(id.to_string()),
        lease: Some(lease),
        memo_dir: Some(st.cache.entry_dir(id)),
    })
}

/// Unpacks `resolved` into a staging tree and publishes it, unless it is published already
/// (checked again under the image's lock: another start may have published it meanwhile).
/// Ctrl-C, SIGTERM or SIGHUP during the unpack remove the staging tree, then gpurun dies of
/// that signal.
fn publish(
    cache: &Cache,
    source: &dyn ImageSource,
    resolved: &Resolved,
    canon: &Path,
    limits: Limits,
    ui: &Ui,
) -> Result<(), PrepareError> {
    let id = &resolved.id.hex;
    if cache.is_published(id) {
        return Ok(());
    }
    let _lock = cache.lock_unpack(id)?;
    if cache.is_published(id) {
        return Ok(());
    }
    unpack_and_publish(cache, source, resolved, canon, limits, ui)
}

/// [`publish`]'s work, under the image's unpack lock.
fn unpack_and_publish(
    cache: &Cache,
    source: &dyn ImageSource,
    resolved: &Resolved,
    canon: &Path,
    limits: Limits,
    ui: &Ui,
) -> Result<(), PrepareError> {
    let id = &resolved.id.hex;
    cache.clean_staging(id)?;
    let catch = crate::interrupt::catch();
    let staging = cache.stage(id)?;
    match crate::image::unpack_to(source, resolved, &staging.rootfs(), limits, ui) {
        Ok(size) => {
            cache.publish(staging, id, &record(canon, resolved, size))?;
            tracing::debug!(%id, size, "published");
        }
        Err(e) => {
            drop(staging); // removes the staging tree
            if let Some(sig) = crate::interrupt::pending() {
                drop(catch);
                crate::interrupt::die_of(sig);
            }
            return Err(e.into());
        }
    }
    drop(catch);
    // Complete and published: still stop as asked.
    if let Some(sig) = crate::interrupt::pending() {
        crate::interrupt::die_of(sig);
    }
    Ok(())
}

/// The warm path: the memo matches the archive and the rootfs is published. Returns the
/// image's recorded platform beside it.
fn warm(
    cache: &Cache,
    memo_path: &Path,
    identity: &FileIdentity,
) -> Result<Option<(Prepared, String)>, PrepareError> {
    let Ok(memo) = SourceMemo::read(memo_path) else { return Ok(None) };
    if memo.identity != *identity || !cache.is_published(&memo.id) {
        return Ok(None);
    }
    let lease = cache.lock_shared(&memo.id)?;
    // Re-read under the lock: `gpurun rm` may have removed it in between.
    let Ok(rec) = ImageRecord::read(&cache.entry_dir(&memo.id).join("image.json")) else { return Ok(None) };
    let prepared = Prepared {
        rootfs: cache.rootfs(&memo.id),
        config: rec.config,
        memo_dir: Some(cache.entry_dir(&memo.id)),
        id: Some(memo.id),
        lease: Some(lease),
    };
    Ok(Some((prepared, rec.platform)))
}

fn record(source: &Path, r: &Resolved, size: u64) -> ImageRecord {
    ImageRecord {
        id: r.id.hex.clone(),
        source: source.to_owned(),
        reference: r.reference.clone(),
        platform: r.platform(),
        format: serde_json::to_value(r.format)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        config: run_config(r),
        layers: layer_infos(r),
        size,
        created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    }
}
