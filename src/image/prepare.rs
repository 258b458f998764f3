//! From an IMAGE argument to a ready rootfs: the warm path (archive identity unchanged, rootfs
//! published: no layer data read), and the cold path (resolve, lock, unpack into staging,
//! publish by rename). Concurrent starts of one image serialize on the image's lock: the first
//! unpacks, the others wait and then find it published.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode, OFlags};

use crate::cache::{Cache, ImageRecord, SourceMemo, Staging, record::FileIdentity, record::LayerInfo};
use crate::ui::Ui;

use super::apply::{Applier, Limits};
use super::select::{self, Resolved};
use super::source::{DirKind, Source};
use super::{ImageError, Prepared, RunConfig, Selection, layer};

/// True for a directory that is a root filesystem rather than an image layout.
pub fn is_rootfs_dir(path: &Path) -> bool {
    DirKind::of(path) == Some(DirKind::Rootfs)
}

/// Returns a runnable rootfs for `image`, unpacking it into the cache if needed.
pub fn prepare(image: &Path, sel: &Selection, cache: &Cache, ui: &Ui) -> Result<Prepared, ImageError> {
    if is_rootfs_dir(image) {
        let dir =
            fs::canonicalize(image).map_err(|e| ImageError::Open { path: image.to_owned(), source: e })?;
        // `gpurun /etc cmd` would run in /etc as a root and fail with "command not found".
        if ["bin", "usr"].iter().all(|d| fs::symlink_metadata(dir.join(d)).is_err()) {
            ui.warn(&format!(
                "{} has neither bin/ nor usr/: it does not look like a root filesystem (IMAGE is an image archive, an OCI layout or a rootfs directory)",
                dir.display()
            ));
        }
        return Ok(Prepared::from_directory(&dir));
    }
    let (canon, identity) = identify(image)?;
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
    let source = Source::open(image)?;
    let resolved = select::resolve(&source, sel)?;
    if let Some(w) = select::Platform::foreign_warning(&resolved.platform()) {
        ui.warn(&w);
    }
    let id = resolved.id.hex.clone();
    if !cache.is_published(&id) {
        let _lock = cache.lock_unpack(&id)?;
        if !cache.is_published(&id) {
            cache.clean_staging(&id)?;
            let catch = crate::interrupt::catch();
            let staging = cache.stage(&id)?;
            match unpack_to(&source, &resolved, &staging, ui) {
                Ok(size) => {
                    cache.publish(staging, &id, &record(&canon, &resolved, size))?;
                    tracing::debug!(%id, size, "published");
                }
                Err(e) => {
                    drop(staging); // removes the staging tree
                    if let Some(sig) = crate::interrupt::pending() {
                        drop(catch);
                        crate::interrupt::die_of(sig);
                    }
                    return Err(e);
                }
            }
            drop(catch);
            // Complete and published: still stop as asked.
            if let Some(sig) = crate::interrupt::pending() {
                crate::interrupt::die_of(sig);
            }
        }
    }
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
        id: Some(id),
        lease: Some(lease),
    })
}

/// The canonical path and identity of an archive (for an image directory: of the file that
/// changes whenever its images do, [`DirKind::identity_file`]).
fn identify(image: &Path) -> Result<(PathBuf, FileIdentity), ImageError> {
    let open_err = |e| ImageError::Open { path: image.to_owned(), source: e };
    let canon = fs::canonicalize(image).map_err(open_err)?;
    let meta = fs::metadata(identity_probe(&canon)).map_err(open_err)?;
    Ok((canon, FileIdentity::of(&meta)))
}

/// The file whose identity stands for the image at `path` (the archive itself, or a file of an
/// image directory).
pub fn identity_probe(path: &Path) -> PathBuf {
    match DirKind::of(path).and_then(DirKind::identity_file) {
        Some(name) => path.join(name),
        None => path.to_owned(),
    }
}

/// The warm path: the memo matches the archive and the rootfs is published. Returns the
/// image's recorded platform beside it.
fn warm(
    cache: &Cache,
    memo_path: &Path,
    identity: &FileIdentity,
) -> Result<Option<(Prepared, String)>, ImageError> {
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
        id: Some(memo.id),
        lease: Some(lease),
    };
    Ok(Some((prepared, rec.platform)))
}

/// Applies every layer of `resolved` into `staging`. Returns the bytes of file data written.
pub fn unpack_to(
    source: &Source,
    resolved: &Resolved,
    staging: &Staging,
    ui: &Ui,
) -> Result<u64, ImageError> {
    check_space(staging, resolved)?;
    let root_path = staging.rootfs();
    let root: OwnedFd =
        rustix::fs::open(&root_path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ImageError::Open { path: root_path.clone(), source: e.into() })?;
    let limits = Limits::from_env();
    let mut applier = Applier::new(root, limits);
    let total: u64 = resolved.layers.iter().fold(0u64, |t, l| t.saturating_add(l.size));
    let progress = ui.progress(total, resolved.layers.len());
    let count = resolved.layers.len();
    let mut expanded = 0u64;
    for (i, lref) in resolved.layers.iter().enumerate() {
        progress.set_layer(i + 1);
        let (reader, _) = source.open_member(&lref.member)?;
        let name = lref.digest.as_ref().unwrap_or(&lref.diff_id).to_string();
        let cap = limits.max_layer_bytes.min(limits.max_image_bytes.saturating_sub(expanded));
        let size = layer::apply(lref, reader, &mut applier, cap, &|n| progress.inc(n))
            .map_err(|e| ImageError::Layer { index: i + 1, count, digest: name, source: e })?;
        expanded = expanded.saturating_add(size);
    }
    let written = applier.bytes_written;
    let warnings = applier.finish().map_err(|e| ImageError::Layer {
        index: count,
        count,
        digest: "final directory modes".into(),
        source: e.into(),
    })?;
    progress.finish();
    for line in warnings.lines() {
        ui.warn(&line);
    }
    Ok(written)
}

/// Refuses early when the compressed layers alone would not fit.
fn check_space(staging: &Staging, resolved: &Resolved) -> Result<(), ImageError> {
    let need: u64 = resolved.layers.iter().fold(0u64, |t, l| t.saturating_add(l.size));
    let Ok(st) = rustix::fs::statvfs(&staging.path) else { return Ok(()) };
    let have = st.f_bavail.saturating_mul(st.f_frsize);
    if need > have {
        return Err(ImageError::NoSpace { path: staging.path.clone(), need, have });
    }
    Ok(())
}

fn run_config(r: &Resolved) -> RunConfig {
    let c = r.config.config.clone().unwrap_or_default();
    RunConfig {
        env: c.env.unwrap_or_default(),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
        labels: c.labels.unwrap_or_default(),
        stop_signal: c.stop_signal,
    }
}

fn layer_infos(r: &Resolved) -> Vec<LayerInfo> {
    r.layers
        .iter()
        .map(|l| LayerInfo {
            digest: l.digest.as_ref().map(ToString::to_string),
            diff_id: l.diff_id.to_string(),
            size: l.size,
            media_type: l.media_type.clone(),
        })
        .collect()
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

/// What `gpurun inspect` shows: the image's identity, configuration and layers, read from the
/// archive's metadata alone (no layer data).
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    pub id: String,
    pub format: select::Format,
    pub reference: Option<String>,
    pub platform: String,
    pub config: RunConfig,
    pub layers: Vec<LayerInfo>,
}

pub fn inspect(image: &Path, sel: &Selection) -> Result<Inspection, ImageError> {
    let source = Source::open(image)?;
    let r = select::resolve(&source, sel)?;
    Ok(Inspection {
        id: r.id.to_string(),
        format: r.format,
        reference: r.reference.clone(),
        platform: r.platform(),
        config: run_config(&r),
        layers: layer_infos(&r),
    })
}
