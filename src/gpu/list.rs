//! `gpurun gpus [--json]`: every GPU discovery finds, with what a user needs to pick one (index
//! per vendor, PCI ids and address, discrete or integrated, DRM nodes, gfx target) and whether
//! the caller can open its nodes.

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
        "{:<7} {:<4} {:<10} {:<13} {:<11} {:<8} {:<11} {:<8} {}\n",
        "VENDOR", "IDX", "MODEL", "PCI", "KIND", "CARD", "RENDER", "GFX", "ACCESS"
    );
    for r in rows {
        let g = &r.gpu;
        let kind = if g.kind == super::GpuKind::Discrete { "discrete" } else { "integrated" };
        out.push_str(&format!(
            "{:<7} {:<4} {:<10} {:<13} {:<11} {:<8} {:<11} {:<8} {}\n",
            g.vendor.name(),
            g.index,
            r.model,
            g.pci,
            kind,
            g.card.as_deref().unwrap_or("-"),
            g.render.as_deref().unwrap_or("-"),
            g.gfx_target.as_deref().unwrap_or("-"),
            if r.accessible { "yes" } else { "no" },
        ));
    }
    out
}
