//! Unpacking one resolved image into a directory: every layer streamed from its source through
//! the decode pipeline and applied in-root, with the limits. Also `inspect`, which reads the same
//! metadata and no layer data. Where the directory is (a cache staging tree) and what happens to
//! it afterwards is the prepare stage's business (`crate::prepare`).

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::ui::Ui;

use super::apply::{Applier, Limits};
use super::select::{self, Resolved};
use super::source::registry::Options;
use super::source::{ImageArg, ImageSource};
use super::{ImageError, LayerInfo, RunConfig, Selection, layer};

/// Applies every layer of `resolved`, read from `source`, into the empty directory `dest`.
/// Returns the bytes of file data written.
pub fn unpack_to(
    source: &dyn ImageSource,
    resolved: &Resolved,
    dest: &Path,
    limits: Limits,
    ui: &Ui,
) -> Result<u64, ImageError> {
    check_space(dest, resolved)?;
    let root: OwnedFd =
        rustix::fs::open(dest, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| ImageError::Open { path: dest.to_owned(), source: e.into() })?;
    let mut applier = Applier::new(root, limits);
    let total: u64 = resolved.layers.iter().fold(0u64, |t, l| t.saturating_add(l.size));
    let progress = ui.progress(total, resolved.layers.len());
    let count = resolved.layers.len();
    let mut expanded = 0u64;
    for (i, lref) in resolved.layers.iter().enumerate() {
        progress.set_layer(i + 1);
        let reader = source.open_layer(lref)?;
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
fn check_space(dest: &Path, resolved: &Resolved) -> Result<(), ImageError> {
    let need: u64 = resolved.layers.iter().fold(0u64, |t, l| t.saturating_add(l.size));
    let Ok(st) = rustix::fs::statvfs(dest) else { return Ok(()) };
    let have = st.f_bavail.saturating_mul(st.f_frsize);
    if need > have {
        return Err(ImageError::NoSpace { path: dest.to_owned(), need, have });
    }
    Ok(())
}

pub fn run_config(r: &Resolved) -> RunConfig {
    let c = r.config.config.clone().unwrap_or_default();
    RunConfig {
        env: c.env.unwrap_or_default(),
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        working_dir: c.working_dir.filter(|w| !w.is_empty()),
        user: c.user.filter(|u| !u.is_empty()),
        labels: c.labels.unwrap_or_default(),
        stop_signal: c.stop_signal,
        apptainer: None,
    }
}

pub fn layer_infos(r: &Resolved) -> Vec<LayerInfo> {
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

pub fn inspect(image: &ImageArg, sel: &Selection, net: &Options) -> Result<Inspection, ImageError> {
    let r = image.open(net)?.resolve(sel)?;
    Ok(Inspection {
        id: r.id.to_string(),
        format: r.format,
        reference: r.reference.clone(),
        platform: r.platform(),
        config: run_config(&r),
        layers: layer_infos(&r),
    })
}

/// What `gpurun inspect` shows of a SIF or SquashFS file: its id (the SHA-256 of the file
/// system's bytes, read once), the SquashFS superblock, and for a SIF every data object with the
/// definition file, labels and environment it carries.
#[derive(Debug, serde::Serialize)]
pub struct SquashInspection {
    /// `None` when gpurun cannot run the image (`not_runnable` says why).
    pub id: Option<String>,
    pub format: &'static str,
    pub squashfs: Option<super::squash::Superblock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_runnable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sif: Option<super::source::sif::Sif>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

pub fn inspect_squash(path: &Path) -> Result<SquashInspection, ImageError> {
    let file =
        std::fs::File::open(path).map_err(|e| ImageError::Open { path: path.to_owned(), source: e })?;
    let mut head = [0u8; 64];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0)
        .map_err(|e| ImageError::Open { path: path.to_owned(), source: e })?;
    let mut sif = if super::source::sif::is_sif(&head[..n]) {
        Some(super::source::sif::Sif::read(&file, path)?)
    } else {
        None
    };
    let text = |kind: &str| -> Option<String> {
        let sif = sif.as_ref()?;
        let o = sif.of_type(kind).next()?;
        sif.small_object(&file, o).map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    let (definition, environment) = (text("deffile"), text("env"));
    let labels = text("labels").and_then(|t| serde_json::from_str(&t).ok());
    if let Some(sif) = sif.as_mut() {
        sif.describe_signatures(&file);
    }
    // What gpurun would run, and its id; a SIF it cannot run is still described.
    let runnable = super::source::SquashSource::open(path).and_then(|s| Ok((s.image()?, s.region)));
    let (squashfs, id, not_runnable) = match runnable {
        Ok((fs, region)) => (Some(fs.sb.clone()), Some(super::squash::image_id(&file, path, region)?), None),
        Err(e) if sif.is_some() => (None, None, Some(crate::error_chain(&e))),
        Err(e) => return Err(e),
    };
    Ok(SquashInspection {
        id,
        format: if sif.is_some() { "sif" } else { "squashfs" },
        squashfs,
        not_runnable,
        sif,
        definition,
        labels,
        environment,
    })
}
