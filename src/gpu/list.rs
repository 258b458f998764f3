//! `gpurun gpus [--json]`: every GPU discovery finds, with what a user needs to pick one (index
//! per vendor, PCI ids and address, discrete or integrated, DRM nodes, gfx target, AMD's VRAM and
//! GTT totals: an integrated GPU's usable memory is its GTT) and whether the caller can open its
//! nodes.

use serde::Serialize;

use super::{Gpu, HostPaths, check_access};

#[derive(Debug, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub gpu: Gpu,
    /// `vendor:device` PCI ids, e.g. `1002:7480`.
    pub model: String,
    /// Whether every node of this GPU (and `/dev/kfd` for AMD) opens read-write for the caller.
    pub accessible: bool,
}

pub fn rows(host: &HostPaths) -> Vec<Row> {
    super::discover::discover(host)
        .into_iter()
        .map(|gpu| {
            let mut nodes = gpu.nodes();
            if gpu.vendor == super::Vendor::Amd {
                nodes.push("/dev/kfd".into());
            }
            let accessible = !nodes.is_empty() && nodes.iter().all(|n| check_access(&host.path(n)).is_ok());
            Row { model: format!("{:04x}:{:04x}", gpu.vendor_id, gpu.device_id), accessible, gpu }
        })
        .collect()
}

/// The table `gpurun gpus` prints.
pub fn render_table(rows: &[Row]) -> String {
    if rows.is_empty() {
        return "no GPUs found (no display-class PCI devices in /sys/bus/pci/devices)\n".into();
    }
    let mut out = format!(
        "{:<7} {:<4} {:<10} {:<13} {:<11} {:<8} {:<11} {:<8} {:<7} {:<7} {}\n",
        "VENDOR", "IDX", "MODEL", "PCI", "KIND", "CARD", "RENDER", "GFX", "VRAM", "GTT", "ACCESS"
    );
    for r in rows {
        let g = &r.gpu;
        let kind = if g.kind == super::GpuKind::Discrete { "discrete" } else { "integrated" };
        out.push_str(&format!(
            "{:<7} {:<4} {:<10} {:<13} {:<11} {:<8} {:<11} {:<8} {:<7} {:<7} {}\n",
            g.vendor.name(),
            g.index,
            r.model,
            g.pci,
            kind,
            g.card.as_deref().unwrap_or("-"),
            g.render.as_deref().unwrap_or("-"),
            g.gfx_target.as_deref().unwrap_or("-"),
            size(g.vram_bytes),
            size(g.gtt_bytes),
            if r.accessible { "yes" } else { "no" },
        ));
    }
    out
}

/// A byte count as `512M` or `15.6G` (binary units), `-` when unknown.
fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => "-".into(),
        Some(b) if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        Some(b) => format!("{}M", b >> 20),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::size(None), "-");
        assert_eq!(super::size(Some(512 << 20)), "512M");
        assert_eq!(super::size(Some(16_743_383_040)), "15.6G");
    }
}
