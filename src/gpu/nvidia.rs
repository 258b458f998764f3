//! NVIDIA specifics: driver capabilities (`NVIDIA_DRIVER_CAPABILITIES`) and the driver
//! libraries, binaries and files each one needs, the control device nodes, and the parsing of
//! `/proc/driver/nvidia/gpus/*/information`. The driver userspace always comes from the host: it
//! must match the loaded kernel module exactly.

/// One driver capability, as the NVIDIA Container Toolkit names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    Compute,
    Compat32,
    Graphics,
    Utility,
    Video,
    Display,
    Ngx,
}

pub const ALL_CAPABILITIES: &[Capability] = &[
    Capability::Compute,
    Capability::Compat32,
    Capability::Graphics,
    Capability::Utility,
    Capability::Video,
    Capability::Display,
    Capability::Ngx,
];

/// The toolkit default for an empty or unset `NVIDIA_DRIVER_CAPABILITIES` (enroot uses only
/// `utility`; the toolkit's `utility,compute` is what CUDA images expect).
pub const DEFAULT_CAPABILITIES: &[Capability] = &[Capability::Compute, Capability::Utility];

impl Capability {
    pub fn parse(name: &str) -> Option<Capability> {
        Some(match name {
            "compute" => Capability::Compute,
            "compat32" => Capability::Compat32,
            "graphics" => Capability::Graphics,
            "utility" => Capability::Utility,
            "video" => Capability::Video,
            "display" => Capability::Display,
            "ngx" => Capability::Ngx,
            _ => return None,
        })
    }
}

/// Parses `NVIDIA_DRIVER_CAPABILITIES`: comma-separated names or `all`; empty means the
/// default. Unknown names are returned separately (warned about, not fatal, unlike enroot).
pub fn parse_capabilities(value: Option<&str>) -> (Vec<Capability>, Vec<String>) {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return (DEFAULT_CAPABILITIES.to_vec(), Vec::new());
    }
    let mut caps = Vec::new();
    let mut unknown = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            caps.extend_from_slice(ALL_CAPABILITIES);
        } else if let Some(c) = Capability::parse(name) {
            caps.push(c);
        } else {
            unknown.push(name.to_string());
        }
    }
    caps.sort();
    caps.dedup();
    (caps, unknown)
}

/// Driver libraries per capability, from libnvidia-container `src/nvc_info.c` (the list
/// `nvidia-container-cli configure` binds), plus the GLVND/EGL pieces Apptainer's
/// `nvliblist.conf` adds. Each entry is a soname prefix: `libcuda.so` matches `libcuda.so.1`.
pub const LIBRARIES: &[(Capability, &[&str])] = &[
    (Capability::Utility, &["libnvidia-ml.so", "libnvidia-cfg.so", "libnvidia-nscq.so"]),
    (
        Capability::Compute,
        &[
            "libcuda.so",
            "libcudadebugger.so",
            "libnvidia-opencl.so",
            "libnvidia-gpucomp.so",
            "libnvidia-ptxjitcompiler.so",
            "libnvidia-fatbinaryloader.so",
            "libnvidia-allocator.so",
            "libnvidia-compiler.so",
            "libnvidia-pkcs11.so",
            "libnvidia-pkcs11-openssl3.so",
            "libnvidia-nvvm.so",
            "libnvidia-tileiras.so",
        ],
    ),
    (
        Capability::Video,
        &["libvdpau_nvidia.so", "libnvidia-encode.so", "libnvidia-opticalflow.so", "libnvcuvid.so"],
    ),
    (
        Capability::Graphics,
        &[
            "libnvidia-eglcore.so",
            "libnvidia-glcore.so",
            "libnvidia-tls.so",
            "libnvidia-glsi.so",
            "libnvidia-fbc.so",
            "libnvidia-ifr.so",
            "libnvidia-rtcore.so",
            "libnvoptix.so",
            "libGLX_nvidia.so",
            "libEGL_nvidia.so",
            "libGLESv2_nvidia.so",
            "libGLESv1_CM_nvidia.so",
            "libnvidia-glvkspirv.so",
            "libnvidia-cbl.so",
            "libnvidia-egl-wayland.so",
            "libnvidia-egl-gbm.so",
        ],
    ),
    (Capability::Ngx, &["libnvidia-ngx.so"]),
];

/// Driver binaries per capability (nvc_info.c).
pub const BINARIES: &[(Capability, &[&str])] = &[
    (Capability::Utility, &["nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nv-fabricmanager"]),
    (Capability::Compute, &["nvidia-cuda-mps-control", "nvidia-cuda-mps-server"]),
];

/// Non-library driver files bound at the same path (Apptainer `nvliblist.conf` since v1.4.0,
/// apptainer/apptainer#2210 and #2656): Vulkan and EGL ICDs and the OptiX data file.
pub const GRAPHICS_FILES: &[&str] = &[
    "/usr/share/glvnd/egl_vendor.d/10_nvidia.json",
    "/usr/share/vulkan/icd.d/nvidia_icd.json",
    "/usr/share/vulkan/icd.d/nvidia_layers.json",
    "/usr/share/vulkan/implicit_layer.d/nvidia_layers.json",
    "/usr/share/egl/egl_external_platform.d/15_nvidia_gbm.json",
    "/usr/share/egl/egl_external_platform.d/10_nvidia_wayland.json",
    "/usr/share/nvidia/nvoptix.bin",
    "/etc/vulkan/icd.d/nvidia_icd.json",
];

/// Control nodes every NVIDIA container needs (nvc_internal.h: nvidiactl 195:255, modeset
/// 195:254, nvidia-uvm* with a dynamic major); missing ones are skipped.
pub const CONTROL_NODES: &[&str] =
    &["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"];

/// The MIG capability node directory.
pub const CAPS_DIR: &str = "/dev/nvidia-caps";

/// nvidia-persistenced's socket (libnvidia-container binds it when present).
pub const PERSISTENCED_SOCKET: &str = "/run/nvidia-persistenced/socket";

/// `Device Minor:` and `GPU UUID:` from a `/proc/driver/nvidia/gpus/<pci>/information` file.
pub fn parse_gpu_information(text: &str) -> (Option<u32>, Option<String>) {
    let mut minor = None;
    let mut uuid = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        match key.trim() {
            "Device Minor" => minor = value.trim().parse().ok(),
            "GPU UUID" => uuid = Some(value.trim().to_string()),
            _ => {}
        }
    }
    (minor, uuid)
}

pub fn libraries_for(caps: &[Capability]) -> Vec<&'static str> {
    LIBRARIES.iter().filter(|(c, _)| caps.contains(c)).flat_map(|(_, l)| l.iter().copied()).collect()
}

pub fn binaries_for(caps: &[Capability]) -> Vec<&'static str> {
    BINARIES.iter().filter(|(c, _)| caps.contains(c)).flat_map(|(_, l)| l.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_spellings() {
        use Capability::*;
        let table: &[(Option<&str>, &[Capability], &[&str])] = &[
            (None, &[Compute, Utility], &[]),
            (Some(""), &[Compute, Utility], &[]),
            (Some("utility"), &[Utility], &[]),
            (Some("compute, video"), &[Compute, Video], &[]),
            (Some("all"), ALL_CAPABILITIES, &[]),
            (Some("compute,bogus"), &[Compute], &["bogus"]),
        ];
        for (value, caps, unknown) in table {
            let (got, bad) = parse_capabilities(*value);
            let mut want = caps.to_vec();
            want.sort();
            assert_eq!(got, want, "{value:?}");
            assert_eq!(bad, *unknown, "{value:?}");
        }
        assert!(libraries_for(&[Utility]).contains(&"libnvidia-ml.so"));
        assert!(!libraries_for(&[Utility]).contains(&"libcuda.so"));
        assert_eq!(binaries_for(&[Utility])[0], "nvidia-smi");
    }

    #[test]
    fn proc_information() {
        let text = "Model: \t\t NVIDIA A2\nIRQ:   \t\t 150\nGPU UUID: \t GPU-4d1e-x\nDevice Minor: \t 1\n";
        assert_eq!(parse_gpu_information(text), (Some(1), Some("GPU-4d1e-x".into())));
        assert_eq!(parse_gpu_information(""), (None, None));
    }
}
