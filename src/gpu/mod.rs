//! GPU support: discovery of the host's GPUs (sysfs, `/dev`, the ld cache, ELF files; no vendor
//! tool is ever run) and the [`GpuEdits`] a `--rocm`, `--nv` or `--device` run needs: device
//! nodes to bind, host files to bind read-only into gpurun's own directories, and environment
//! changes. The edits are plain data; the planner (`plan.rs`) orders them with every other mount.
//! This module reads the host through [`HostPaths`] ("/" in production, a fake tree in tests)
//! and the image through [`libs::ImageView`]; it never mounts or changes anything.
//!
//! Submodules: [`discover`] (PCI, DRM, KFD), [`amd`] and [`nvidia`] (vendor tables), [`select`]
//! (`--gpus` and `*_VISIBLE_DEVICES`), [`ldcache`] and [`elf`] (parsers), [`libs`] (dependency
//! closure), [`image`] (what the image has), [`devcode`] and [`gfx`] (the gfx targets the image
//! has code for, and the `HSA_OVERRIDE_GFX_VERSION` a GPU without code in it runs with), [`cdi`] (Container Device Interface specs),
//! [`doctor`] and [`list`] (the `gpurun doctor` and `gpurun gpus` reports).

pub mod amd;
pub mod cdi;
pub mod devcode;
pub mod discover;
pub mod doctor;
pub mod edits;
pub mod elf;
pub mod gfx;
pub mod image;
pub mod ldcache;
pub mod libs;
pub mod list;
pub mod nvidia;
pub mod select;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use edits::{GpuRequest, REQUEST_VARS, prepare};

/// Where the host's `/sys`, `/dev`, `/proc` and `/etc` are. Production uses `/`.
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths { root: "/".into() }
    }
}

impl HostPaths {
    /// An absolute host path below the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.root.join("sys").join(rel)
    }
    pub fn dev(&self, rel: &str) -> PathBuf {
        self.root.join("dev").join(rel)
    }
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.root.join("proc").join(rel)
    }
    /// The path as seen by the container's bind source: without the test root prefix.
    pub fn strip(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.root) {
            Ok(rel) => Path::new("/").join(rel),
            Err(_) => path.to_path_buf(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Amd,
    Nvidia,
    Intel,
    Other,
}

impl Vendor {
    /// PCI vendor ids: 0x1002 AMD/ATI, 0x10de NVIDIA, 0x8086 Intel.
    pub fn from_pci(id: u16) -> Vendor {
        match id {
            0x1002 => Vendor::Amd,
            0x10de => Vendor::Nvidia,
            0x8086 => Vendor::Intel,
            _ => Vendor::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Vendor::Amd => "AMD",
            Vendor::Nvidia => "NVIDIA",
            Vendor::Intel => "Intel",
            Vendor::Other => "other",
        }
    }
}

/// Discrete or integrated. AMD: integrated when its KFD node has CPU cores (an APU node) or its
/// gfx target is an APU's ([`amd::APU_TARGETS`]); `boot_vga` is not used because a discrete card
/// can drive the console too. Intel: integrated at 00:02.0. NVIDIA PCI GPUs: discrete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuKind {
    Discrete,
    Integrated,
}

/// One GPU on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gpu {
    /// Position among this vendor's GPUs, in PCI order.
    pub index: usize,
    pub vendor: Vendor,
    pub vendor_id: u16,
    pub device_id: u16,
    /// `DDDD:BB:DD.F`.
    pub pci: String,
    pub class: u32,
    pub kind: GpuKind,
    pub boot_vga: bool,
    /// DRM node names (`card1`, `renderD128`) under `/dev/dri`.
    pub card: Option<String>,
    pub render: Option<String>,
    /// AMD: `gfx906`, `gfx1103`, from the KFD topology.
    pub gfx_target: Option<String>,
    pub kfd_cpu_cores: Option<u32>,
    /// AMD: ROCm's `GPU-<unique_id>` spelling.
    pub unique_id: Option<String>,
    /// NVIDIA: the N of `/dev/nvidiaN`.
    pub nvidia_minor: Option<u32>,
    /// NVIDIA: `GPU-...` from the driver's `/proc` file.
    pub uuid: Option<String>,
    /// AMD: dedicated memory and GTT (system memory the driver maps for the GPU) in bytes, from
    /// amdgpu's `mem_info_vram_total` and `mem_info_gtt_total`.
    pub vram_bytes: Option<u64>,
    pub gtt_bytes: Option<u64>,
}

impl Gpu {
    pub fn render_minor(&self) -> Option<u32> {
        self.render.as_deref()?.strip_prefix("renderD")?.parse().ok()
    }

    /// The GPU-specific device nodes (container paths, equal to host paths).
    pub fn nodes(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(card) = &self.card {
            out.push(format!("/dev/dri/{card}"));
        }
        if let Some(render) = &self.render {
            out.push(format!("/dev/dri/{render}"));
        }
        if let (Vendor::Nvidia, Some(minor)) = (self.vendor, self.nvidia_minor) {
            out.push(format!("/dev/nvidia{minor}"));
        }
        out
    }
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileBind {
    pub host: PathBuf,
    pub container: PathBuf,
    pub dir: bool,
    pub read_only: bool,
}

impl FileBind {
    pub fn read_only(host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> FileBind {
        FileBind { host: host.into(), container: container.into(), dir: false, read_only: true }
    }
}

/// An environment change, applied by the planner (see its precedence table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum EnvEdit {
    Set {
        name: String,
        value: String,
    },
    /// Appends `value` to a `:`-separated list (creating it): the image's entries keep priority.
    Append {
        name: String,
        value: String,
    },
    Unset {
        name: String,
    },
}

/// Everything a GPU request adds to a container, as data for the planner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GpuEdits {
    /// Device nodes and node directories (`/dev/nvidia-caps`), bound read-write.
    pub devices: Vec<FileBind>,
    /// Host files: libraries and tools into `/.gpurun`, ICD files at their own paths.
    pub files: Vec<FileBind>,
    /// Symlinks to create in the container root (CDI `create-symlinks` hooks): (target, link).
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    pub env: Vec<EnvEdit>,
    /// Printed before the run (`gpurun: warning: ...`).
    pub warnings: Vec<String>,
    /// What gpurun decided for the user, printed before the run unless `-q` (`gpurun: notice: ...`).
    pub notices: Vec<String>,
}

impl GpuEdits {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.files.is_empty() && self.env.is_empty() && self.symlinks.is_empty()
    }
}

/// Why a GPU request cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("{origin}: cannot parse {token:?} as a GPU")]
    BadSelector { origin: String, token: String },
    #[error("{flag}: no {vendor} GPU found on this host", vendor = vendor.name())]
    NoGpus { flag: &'static str, vendor: Vendor },
    #[error("{origin}: no {vendor} GPU matches {idents} (have: {available})", vendor = vendor.name())]
    Unmatched { origin: String, vendor: Vendor, idents: String, available: String },
    #[error("{flag}: cannot open {}", path.display())]
    DeviceAccess {
        flag: &'static str,
        path: PathBuf,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cdi(#[from] cdi::CdiError),
    #[error("--rocm: the selected GPUs need different HSA_OVERRIDE_GFX_VERSION values: {detail}")]
    GfxOverride { detail: String },
}

impl GpuError {
    pub fn hint(&self) -> Option<String> {
        match self {
            GpuError::BadSelector { .. } => Some(
                "name GPUs as all, indexes (0,1), ranges (0-3), PCI addresses (0000:07:00.0), render \
                 nodes (renderD128) or UUIDs (GPU-...)"
                    .into(),
            ),
            GpuError::NoGpus { flag, .. } => Some(format!(
                "`gpurun gpus` lists the GPUs gpurun sees; `gpurun doctor {flag}` checks the driver"
            )),
            GpuError::Unmatched { .. } => {
                Some("`gpurun gpus` lists the GPUs with their indexes and addresses".into())
            }
            GpuError::DeviceAccess { hint, .. } => Some(hint.clone()),
            GpuError::Cdi(e) => e.hint(),
            GpuError::GfxOverride { .. } => Some(
                "HSA_OVERRIDE_GFX_VERSION covers every GPU of a process: select one GPU (--gpus N; \
                 `gpurun gpus` lists them), or set the value yourself (recent ROCm also reads \
                 HSA_OVERRIDE_GFX_VERSION_<KFD node> for one GPU), or pass --no-gfx-override"
                    .into(),
            ),
        }
    }
}

/// How to get access to a device node the caller cannot open: the group that owns it, or the
/// driver module when the node is missing. Shared by runs and `gpurun doctor`.
pub fn access_hint(path: &Path, err: &std::io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    if err.kind() == std::io::ErrorKind::NotFound {
        return format!("{} does not exist: is the driver loaded? `gpurun doctor` checks", path.display());
    }
    let Ok(meta) = std::fs::metadata(path) else { return "check the device node's permissions".into() };
    let group = nix::unistd::Group::from_gid(meta.gid().into())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| meta.gid().to_string());
    if meta.mode() & 0o060 == 0o060 {
        format!(
            "{} belongs to group {group}: join it with `sudo usermod -aG {group} $USER`, then log in again \
             (group changes apply to new logins)",
            path.display()
        )
    } else {
        format!(
            "{} is not accessible to group {group}; ask the administrator for a udev rule",
            path.display()
        )
    }
}

/// Whether the caller can open `path` for reading and writing (real ids and groups).
pub fn check_access(path: &Path) -> Result<(), std::io::Error> {
    use nix::unistd::{AccessFlags, access};
    access(path, AccessFlags::R_OK | AccessFlags::W_OK).map_err(std::io::Error::from)
}

#[cfg(test)]
pub(crate) fn test_gpu(vendor: Vendor, index: usize, pci: &str, minor: u32, kind: GpuKind) -> Gpu {
    Gpu {
        index,
        vendor,
        vendor_id: 0,
        device_id: 0,
        pci: pci.into(),
        class: 0x030000,
        kind,
        boot_vga: false,
        card: Some(format!("card{}", minor - 127)),
        render: Some(format!("renderD{minor}")),
        gfx_target: None,
        kfd_cpu_cores: None,
        unique_id: None,
        nvidia_minor: (vendor == Vendor::Nvidia).then_some(index as u32),
        uuid: None,
        vram_bytes: None,
        gtt_bytes: None,
    }
}
