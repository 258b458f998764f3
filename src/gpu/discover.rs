//! Finds the host's GPUs from sysfs and `/dev` alone (no vendor tool is ever run): PCI display
//! devices from `/sys/bus/pci/devices`, their DRM nodes from `/sys/class/drm` (falling back to
//! `/dev/dri/by-path`), AMD's KFD topology, and NVIDIA's `/proc/driver/nvidia/gpus`. Every read
//! goes through [`HostPaths`], so tests point it at a fake tree. The result is sorted by PCI
//! address, and indexes are per vendor in that order (the order NVML uses by default and the
//! order KFD enumerates PCI GPUs).

use std::collections::BTreeMap;
use std::path::Path;

use super::amd::{self, KfdNode};
use super::{Gpu, GpuKind, HostPaths, Vendor};

/// PCI base class 0x03: display controller (VGA 0x0300, XGA, 3D 0x0302, other 0x0380).
const PCI_CLASS_DISPLAY: u32 = 0x03;

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_hex(path: &Path) -> Option<u32> {
    let text = read_trim(path)?;
    u32::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

/// Every display-class PCI device, with DRM nodes, KFD data and NVIDIA minors filled in.
pub fn discover(host: &HostPaths) -> Vec<Gpu> {
    let drm = drm_nodes(host);
    let kfd = amd::read_kfd_nodes(host);
    let mut gpus = Vec::new();
    let Ok(entries) = std::fs::read_dir(host.sys("bus/pci/devices")) else { return gpus };
    let mut addrs: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    addrs.sort();
    for pci in addrs {
        let dir = host.sys("bus/pci/devices").join(&pci);
        let Some(class) = read_hex(&dir.join("class")) else { continue };
        if class >> 16 != PCI_CLASS_DISPLAY {
            continue;
        }
        let vendor_id = read_hex(&dir.join("vendor")).unwrap_or(0) as u16;
        let device_id = read_hex(&dir.join("device")).unwrap_or(0) as u16;
        let (card, render) = drm.get(&pci).cloned().unwrap_or_default();
        let mut gpu = Gpu {
            index: 0,
            vendor: Vendor::from_pci(vendor_id),
            vendor_id,
            device_id,
            pci: pci.clone(),
            class,
            kind: GpuKind::Discrete,
            boot_vga: read_trim(&dir.join("boot_vga")).as_deref() == Some("1"),
            card,
            render,
            gfx_target: None,
            kfd_cpu_cores: None,
            unique_id: None,
            nvidia_minor: None,
            uuid: None,
            vram_bytes: None,
            gtt_bytes: None,
        };
        if let Some(node) = kfd.iter().find(|n| kfd_matches(n, &gpu)) {
            gpu.gfx_target = node.gfx_target();
            gpu.kfd_cpu_cores = Some(node.cpu_cores_count);
            gpu.unique_id = node.unique_id.filter(|&u| u != 0).map(|u| format!("GPU-{u:016x}"));
        }
        if gpu.vendor == Vendor::Nvidia {
            read_nvidia_proc(host, &mut gpu);
        }
        if gpu.vendor == Vendor::Amd {
            // amdgpu's totals in bytes; an iGPU's usable memory is its GTT (system RAM the driver
            // lends it), not the small VRAM carve-out.
            gpu.vram_bytes = read_trim(&dir.join("mem_info_vram_total")).and_then(|t| t.parse().ok());
            gpu.gtt_bytes = read_trim(&dir.join("mem_info_gtt_total")).and_then(|t| t.parse().ok());
        }
        gpu.kind = classify(&gpu);
        gpus.push(gpu);
    }
    number(&mut gpus);
    default_nvidia_minors(&mut gpus);
    gpus
}

/// A KFD node belongs to a GPU by render minor (unique even for MI300 partitions sharing a BDF)
/// or, without DRM nodes, by domain and `location_id` (bus << 8 | device << 3 | function).
fn kfd_matches(node: &KfdNode, gpu: &Gpu) -> bool {
    if node.simd_count == 0 {
        return false;
    }
    match (gpu.render_minor(), node.drm_render_minor) {
        (Some(a), Some(b)) => a == b,
        _ => node.pci_address() == gpu.pci,
    }
}

/// Discrete or integrated; see the rules in [`GpuKind`].
pub fn classify(gpu: &Gpu) -> GpuKind {
    match gpu.vendor {
        Vendor::Amd => {
            let apu_node = gpu.kfd_cpu_cores.is_some_and(|c| c > 0);
            let apu_target = gpu.gfx_target.as_deref().is_some_and(amd::is_apu_target);
            if apu_node || apu_target { GpuKind::Integrated } else { GpuKind::Discrete }
        }
        // Intel's integrated GPU always sits at 00:02.0; Arc cards sit behind a bridge.
        Vendor::Intel if gpu.pci.ends_with(":00:02.0") => GpuKind::Integrated,
        _ => GpuKind::Discrete,
    }
}

fn number(gpus: &mut [Gpu]) {
    let mut next: BTreeMap<Vendor, usize> = BTreeMap::new();
    for gpu in gpus {
        let n = next.entry(gpu.vendor).or_default();
        gpu.index = *n;
        *n += 1;
    }
}

/// PCI address -> (card, render) node names, from `/sys/class/drm/<node>/device` links, else
/// from `/dev/dri/by-path/pci-<addr>-{card,render}`.
fn drm_nodes(host: &HostPaths) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut out: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut add = |pci: String, node: String| {
        let slot = out.entry(pci).or_default();
        if node.starts_with("renderD") {
            slot.1.get_or_insert(node);
        } else if node.starts_with("card") && !node.contains('-') {
            slot.0.get_or_insert(node);
        }
    };
    if let Ok(entries) = std::fs::read_dir(host.sys("class/drm")) {
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        for name in names {
            let link = host.sys("class/drm").join(&name).join("device");
            if let Some(pci) =
                std::fs::read_link(&link).ok().and_then(|t| Some(t.file_name()?.to_str()?.to_string()))
            {
                add(pci, name);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(host.dev("dri/by-path")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("pci-") else { continue };
            let Some((pci, _)) = rest.rsplit_once('-') else { continue };
            if let Some(target) = std::fs::read_link(entry.path())
                .ok()
                .and_then(|t| t.file_name().map(|f| f.to_string_lossy().into_owned()))
            {
                add(pci.to_string(), target);
            }
        }
    }
    out
}

/// `Device Minor:` and `GPU UUID:` from `/proc/driver/nvidia/gpus/<pci>/information`; without
/// the driver, the minor falls back to the GPU's index (the usual but not guaranteed numbering:
/// the nvidia-docker wiki warns minor and NVML index can differ, which is why the file wins).
fn read_nvidia_proc(host: &HostPaths, gpu: &mut Gpu) {
    let path = host.proc(&format!("driver/nvidia/gpus/{}/information", gpu.pci));
    let Some(text) = read_trim(&path) else { return };
    let (minor, uuid) = super::nvidia::parse_gpu_information(&text);
    gpu.nvidia_minor = minor;
    gpu.uuid = uuid;
}

/// Fills NVIDIA minors that `/proc` did not give, in index order.
fn default_nvidia_minors(gpus: &mut [Gpu]) {
    for gpu in gpus.iter_mut().filter(|g| g.vendor == Vendor::Nvidia) {
        gpu.nvidia_minor.get_or_insert(gpu.index as u32);
    }
}
