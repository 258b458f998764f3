//! AMD specifics: the KFD topology (`/sys/class/kfd/kfd/topology/nodes/*/properties`), gfx
//! target names, which targets are APUs (integrated), and the default ROCm tool and library lists. Parsing
//! ([`parse_kfd_properties`]) is pure; [`read_kfd_nodes`] only reads.

use super::HostPaths;

/// One KFD topology node (a CPU, a GPU, or an APU's GPU part).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KfdNode {
    /// The directory name under `topology/nodes`.
    pub node: u32,
    pub cpu_cores_count: u32,
    pub simd_count: u32,
    pub drm_render_minor: Option<u32>,
    /// PCI bus/device/function: `bus << 8 | device << 3 | function` ("equivalent to BDF_ID").
    pub location_id: u32,
    pub domain: u32,
    /// e.g. 90006 for gfx906, 110003 for gfx1103.
    pub gfx_target_version: Option<u32>,
    pub unique_id: Option<u64>,
}

impl KfdNode {
    /// The node's PCI address, `DDDD:BB:DD.F`.
    pub fn pci_address(&self) -> String {
        let loc = self.location_id;
        format!("{:04x}:{:02x}:{:02x}.{:x}", self.domain, (loc >> 8) & 0xff, (loc >> 3) & 0x1f, loc & 0x7)
    }

    pub fn gfx_target(&self) -> Option<String> {
        self.gfx_target_version.filter(|&v| v != 0).map(gfx_name)
    }
}

/// Parses a KFD `properties` file (`name value` lines; unknown keys ignored). Pure.
pub fn parse_kfd_properties(node: u32, text: &str) -> KfdNode {
    let mut out = KfdNode { node, ..KfdNode::default() };
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else { continue };
        let Ok(v) = value.parse::<u64>() else { continue };
        match key {
            "cpu_cores_count" => out.cpu_cores_count = v as u32,
            "simd_count" => out.simd_count = v as u32,
            // Minor 0 is "none": render minors start at 128.
            "drm_render_minor" if v > 0 => out.drm_render_minor = Some(v as u32),
            "location_id" => out.location_id = v as u32,
            "domain" => out.domain = v as u32,
            "gfx_target_version" => out.gfx_target_version = Some(v as u32),
            "unique_id" => out.unique_id = Some(v),
            _ => {}
        }
    }
    out
}

/// Every KFD node, sorted by node number (numeric, not lexical: node 10 after node 9).
pub fn read_kfd_nodes(host: &HostPaths) -> Vec<KfdNode> {
    let dir = host.sys("class/kfd/kfd/topology/nodes");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut nodes: Vec<KfdNode> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let node: u32 = e.file_name().to_str()?.parse().ok()?;
            let text = std::fs::read_to_string(e.path().join("properties")).ok()?;
            Some(parse_kfd_properties(node, &text))
        })
        .collect();
    nodes.sort_by_key(|n| n.node);
    nodes
}

/// 90006 -> "gfx906", 90012 -> "gfx90c", 110003 -> "gfx1103" (major, minor, stepping in hex:
/// the LLVM AMDGPU processor names).
pub fn gfx_name(version: u32) -> String {
    let (major, minor, step) = (version / 10000, (version / 100) % 100, version % 100);
    format!("gfx{major}{minor:x}{step:x}")
}

/// gfx targets that are APUs (integrated GPUs), from the LLVM AMDGPUUsage processor table
/// ("APU" column) and AMD's product pages: Carrizo, Raven/Picasso, Renoir/Cezanne, Van Gogh,
/// Rembrandt, Raphael/Mendocino, Phoenix (Radeon 780M), Hawk Point, Strix.
pub const APU_TARGETS: &[&str] = &[
    "gfx801", "gfx902", "gfx909", "gfx90c", "gfx1013", "gfx1033", "gfx1035", "gfx1036", "gfx1103", "gfx1150",
    "gfx1151", "gfx1152",
];

pub fn is_apu_target(target: &str) -> bool {
    APU_TARGETS.contains(&target)
}

/// ROCm host tools bound with `--rocm` (Apptainer `etc/rocmliblist.conf`, v1.4.0 and later).
pub const ROCM_BINARIES: &[&str] = &["rocminfo", "rocm-smi", "amd-smi"];

/// ROCm host libraries bound with `--rocm` when the image lacks them: Apptainer's trimmed
/// `rocmliblist.conf` (apptainer/apptainer PR #2606: the full ROCm stack belongs in the image;
/// binding it from the host broke images through glibc mismatches, #1621). Tools' own
/// dependencies come from the ELF closure, not from this list.
pub const ROCM_LIBRARIES: &[&str] = &[
    "libCXLActivityLogger.so",
    "libhc_am.so",
    "libmcwamp.so",
    "libdrm.so",
    "libdrm_amdgpu.so",
    "libnuma.so",
    "libpci.so",
    "librocr_debug_agent64.so",
    "libamdcomgr64.so",
    "libamdocl64.so",
    "libcltrace.so",
    "libOpenCL.so",
];

#[cfg(test)]
mod tests {
    use super::*;

    const MI50: &str = "cpu_cores_count 0\nsimd_count 240\nmem_banks_count 1\nlocation_id 17152\n\
                        domain 0\ndrm_render_minor 129\ngfx_target_version 90006\nunique_id 1234\n";
    const CPU: &str = "cpu_cores_count 32\nsimd_count 0\nlocation_id 0\ndrm_render_minor 0\n";

    #[test]
    fn kfd_properties() {
        let gpu = parse_kfd_properties(2, MI50);
        assert_eq!(gpu.pci_address(), "0000:43:00.0");
        assert_eq!(gpu.drm_render_minor, Some(129));
        assert_eq!(gpu.gfx_target().as_deref(), Some("gfx906"));
        assert_eq!(gpu.unique_id, Some(1234));
        let cpu = parse_kfd_properties(0, CPU);
        assert_eq!((cpu.cpu_cores_count, cpu.simd_count, cpu.drm_render_minor), (32, 0, None));
        assert_eq!(cpu.gfx_target(), None);
        let odd = parse_kfd_properties(1, "garbage\nsimd_count x\n\nlocation_id 51200 extra\n");
        assert_eq!((odd.simd_count, odd.pci_address().as_str()), (0, "0000:c8:00.0"));
    }

    #[test]
    fn gfx_names_and_apus() {
        let table = [
            (90006, "gfx906", false),
            (90012, "gfx90c", true),
            (90402, "gfx942", false),
            (100300, "gfx1030", false),
            (110002, "gfx1102", false),
            (110003, "gfx1103", true),
        ];
        for (v, name, apu) in table {
            assert_eq!(gfx_name(v), name);
            assert_eq!(is_apu_target(name), apu, "{name}");
        }
    }
}
