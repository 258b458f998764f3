//! Turns a validated GPU request into [`GpuEdits`]: selects GPUs per vendor, collects their
//! device nodes (checking the caller can open them, with the group to join when not), resolves
//! the vendor's tools and libraries through the host ld.so.cache and their ELF closure, adds ICD
//! files and CDI devices, and keeps the visibility variables consistent with what the container
//! sees.
//!
//! Extending the lists: `GPURUN_ROCM_LIBS`, `GPURUN_ROCM_BINS`, `GPURUN_NV_LIBS`, `GPURUN_NV_BINS`
//! (`:` or `,` separated sonames prefixes / binary names) are appended to the built-in tables;
//! the configuration files' `[rocm]` and `[nv]` lists apply where the variable is unset.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::libs::{self, BIN_DIR, HostLibs, ImageView, LIB_DIR, Wanted};
use super::select::{self, Selector};
use super::{EnvEdit, FileBind, Gpu, GpuEdits, GpuError, HostPaths, Vendor, amd, cdi, gfx, nvidia};
use crate::host::ProcessEnv;

/// The GPU part of a run request, validated by `request.rs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GpuRequest {
    pub rocm: bool,
    pub nv: bool,
    /// `--gpus`; `None` defers to the vendor variables.
    #[serde(skip)]
    pub gpus: Option<Selector>,
    /// `--device` CDI names.
    pub cdi: Vec<String>,
    /// Extra list entries from the configuration files (the variables outrank them).
    #[serde(skip)]
    pub lists: ListExtensions,
    /// `--rocm`: set `HSA_OVERRIDE_GFX_VERSION` for a GPU the image has no code for (off with
    /// `--no-gfx-override`, `GPURUN_NO_GFX_OVERRIDE`, `[rocm] gfx_override = false`).
    pub gfx_override: bool,
    /// The container is shared by the ranks of a job (`crate::join`): it holds the GPUs of the
    /// job's allocation (or the vendor's default), and a rank's own `--gpus` selects among them
    /// through the runtimes' visibility variables, as each rank's container would hold different
    /// devices otherwise.
    #[serde(skip)]
    pub shared: bool,
}

impl GpuRequest {
    pub fn is_empty(&self) -> bool {
        !self.rocm && !self.nv && self.cdi.is_empty()
    }
}

/// Extra list entries beyond the built-in tables (environment variables, configuration files).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListExtensions {
    pub rocm_libs: Vec<String>,
    pub rocm_bins: Vec<String>,
    pub nv_libs: Vec<String>,
    pub nv_bins: Vec<String>,
}

impl ListExtensions {
    pub fn from_env(env: &ProcessEnv) -> ListExtensions {
        let get = |k: &str| libs::split_list(env.get(k));
        ListExtensions {
            rocm_libs: get("GPURUN_ROCM_LIBS"),
            rocm_bins: get("GPURUN_ROCM_BINS"),
            nv_libs: get("GPURUN_NV_LIBS"),
            nv_bins: get("GPURUN_NV_BINS"),
        }
    }

    /// Each list from `self` (the environment) where it has entries, else from `fallback` (the
    /// configuration files): the variable outranks the files, as every `GPURUN_*` variable does.
    pub fn or(self, fallback: &ListExtensions) -> ListExtensions {
        let pick =
            |mine: Vec<String>, theirs: &Vec<String>| if mine.is_empty() { theirs.clone() } else { mine };
        ListExtensions {
            rocm_libs: pick(self.rocm_libs, &fallback.rocm_libs),
            rocm_bins: pick(self.rocm_bins, &fallback.rocm_bins),
            nv_libs: pick(self.nv_libs, &fallback.nv_libs),
            nv_bins: pick(self.nv_bins, &fallback.nv_bins),
        }
    }
}

/// Inputs of [`prepare`] besides the request.
pub struct Context<'a> {
    pub host: &'a HostPaths,
    /// The process environment: Slurm's allocation and the host's `PATH` are read here.
    pub host_env: &'a ProcessEnv,
    /// The workload's environment before GPU edits (`plan::before_gpu`): the vendors'
    /// selection variables and `NVIDIA_DRIVER_CAPABILITIES` are read here.
    pub env: &'a BTreeMap<String, String>,
    pub image: &'a dyn ImageView,
    pub lists: ListExtensions,
    /// The gfx targets the image has GPU code for ([`super::devcode`]); called only when a
    /// `--rocm` run may need an override, so other runs never scan.
    pub image_targets: &'a dyn Fn() -> BTreeSet<String>,
}

/// Host-side roots gathered per vendor, resolved together at the end.
#[derive(Default)]
struct Roots {
    wanted: Vec<Wanted>,
}

/// Builds the edits for `req`. Errors are the request's fault or the host's (no such GPU,
/// permission denied); anything merely missing becomes a warning.
pub fn prepare(req: &GpuRequest, ctx: &Context) -> Result<GpuEdits, GpuError> {
    let mut edits = GpuEdits::default();
    if req.is_empty() {
        return Ok(edits);
    }
    let gpus = super::discover::discover(ctx.host);
    let host_libs = read_host_libs(ctx.host, &mut edits.warnings);
    let path_var = ctx.host_env.path();
    let mut roots = Roots::default();
    if req.rocm {
        rocm(req, ctx, &gpus, &host_libs, path_var, &mut roots, &mut edits)?;
    }
    if req.nv {
        nv(req, ctx, &gpus, &host_libs, path_var, &mut roots, &mut edits)?;
    }
    for name in &req.cdi {
        cdi::apply(ctx.host, name, &mut edits)?;
    }
    let resolved = libs::resolve(ctx.host, &host_libs, ctx.image, roots.wanted);
    edits.warnings.extend(resolved.warnings);
    edits.files.extend(resolved.binds);
    // The sandbox resolves bind sources below /oldroot, where an absolute host symlink (Debian's
    // /lib64/ld-linux-x86-64.so.2) would point into the staging tmpfs: bind canonical paths.
    let mut files: Vec<super::FileBind> = Vec::new();
    for mut bind in std::mem::take(&mut edits.files) {
        if let Ok(real) = std::fs::canonicalize(ctx.host.path(&bind.host.to_string_lossy())) {
            bind.host = ctx.host.strip(&real);
        }
        if !files.iter().any(|f| f.container == bind.container) {
            files.push(bind);
        }
    }
    edits.files = files;
    if edits.files.iter().any(|f| f.container.starts_with(BIN_DIR)) {
        edits.env.push(EnvEdit::Append { name: "PATH".into(), value: BIN_DIR.into() });
    }
    if edits.files.iter().any(|f| f.container.starts_with(LIB_DIR)) {
        edits.env.push(EnvEdit::Append { name: "LD_LIBRARY_PATH".into(), value: LIB_DIR.into() });
    }
    Ok(edits)
}

fn read_host_libs(host: &HostPaths, warnings: &mut Vec<String>) -> HostLibs {
    let path = host.path("/etc/ld.so.cache");
    let entries = match std::fs::read(&path).map(|b| super::ldcache::parse_ld_so_cache(&b)) {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            warnings.push(format!("{}: {e}; no host libraries will be bound", path.display()));
            Vec::new()
        }
        Err(e) => {
            warnings.push(format!("cannot read {}: {e}; no host libraries will be bound", path.display()));
            Vec::new()
        }
    };
    HostLibs::new(entries, super::ldcache::native_arch_flags())
}

/// Slurm's allocation, step first: the global GPU IDs (gres.conf order, which is PCI order with
/// `AutoDetect` and with `File=/dev/nvidia[0-N]`) of the GPUs this step or job was given.
pub const SLURM_GPU_VARS: [&str; 2] = ["SLURM_STEP_GPUS", "SLURM_JOB_GPUS"];

/// The variables by which a scheduler or the caller asks for GPUs: the vendors' selection
/// variables and `NVIDIA_DRIVER_CAPABILITIES`. In the environment merge a host value outranks
/// the image's, which is a build-time default (`NVIDIA_VISIBLE_DEVICES=all` and
/// `NVIDIA_DRIVER_CAPABILITIES=compute,utility` in NVIDIA's images), and passes `--cleanenv` as
/// `TERM` does: a job's GPU allocation is not the caller's environment to clean away.
pub const REQUEST_VARS: [&str; 7] = [
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
    "AMD_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "NVIDIA_DRIVER_CAPABILITIES",
];

/// The selector for one vendor and where it came from (for messages and env rewriting):
/// `--gpus`, then Slurm's allocation (its IDs name host GPUs, whereas the `*_VISIBLE_DEVICES`
/// Slurm also sets may already be renumbered for a device cgroup), then the vendor's variables.
fn selector_for(
    req: &GpuRequest,
    ctx: &Context,
    vars: &[&'static str],
) -> Result<(Selector, String), GpuError> {
    if let Some(sel) = &req.gpus {
        return Ok((sel.clone(), "--gpus".into()));
    }
    let slurm = SLURM_GPU_VARS.iter().filter_map(|v| Some((*v, ctx.host_env.get(v)?)));
    let vendor = vars.iter().filter_map(|v| Some((*v, ctx.env.get(*v)?.as_str())));
    if let Some((var, value)) = slurm.chain(vendor).next() {
        return Ok((select::parse_visible_devices(var, Some(value))?, var.to_string()));
    }
    Ok((Selector::Default, "default".into()))
}

/// The GPUs a container holds, and those this run may use: the same, except for a rank's own
/// choice (`--gpus` or the vendor's variable) in a shared container ([`GpuRequest::shared`]),
/// which holds the job's GPUs (Slurm's allocation, else the default) and must include the
/// rank's.
fn container_and_visible<'a>(
    req: &GpuRequest,
    ctx: &Context,
    gpus: &'a [Gpu],
    vendor: Vendor,
    flag: &'static str,
    vars: &[&'static str],
) -> Result<Selection<'a>, GpuError> {
    let (sel, origin) = selector_for(req, ctx, vars)?;
    let chosen = choose(gpus, vendor, flag, &sel, &origin)?;
    let own = origin == "--gpus" || vars.contains(&origin.as_str());
    if !(req.shared && own) || matches!(sel, Selector::None | Selector::Void) {
        return Ok(Selection { held: chosen.clone(), visible: chosen, sel, origin, narrowed: false });
    }
    // Every rank must compute the same set: Slurm's allocation, else every GPU of the vendor
    // (the default's discrete ones would leave out an iGPU a rank may choose).
    let wide = GpuRequest { gpus: None, ..req.clone() };
    let (wide_sel, wide_origin) = match selector_for(&wide, ctx, &[])? {
        (Selector::Default, _) => (Selector::All, "all GPUs".to_string()),
        other => other,
    };
    let held = choose(gpus, vendor, flag, &wide_sel, &wide_origin)?;
    let outside: Vec<String> =
        chosen.iter().filter(|g| !held.iter().any(|h| h.pci == g.pci)).map(|g| g.index.to_string()).collect();
    if !outside.is_empty() {
        let available = held.iter().map(|g| format!("{} {}", g.index, g.pci)).collect::<Vec<_>>().join(", ");
        return Err(GpuError::Unmatched {
            origin: format!("{origin} (the container the job's ranks share holds the GPUs of {wide_origin})"),
            vendor,
            idents: outside.join(","),
            available,
        });
    }
    let narrowed = chosen.len() < held.len();
    Ok(Selection { held, visible: chosen, sel, origin, narrowed })
}

/// The device nodes of `held`, each required (the caller must be able to open it) when its GPU
/// is one of `visible`: a shared container's other GPUs are bound where they can be.
fn gpu_nodes(held: &[&Gpu], visible: &[&Gpu], required: impl Fn(&str) -> bool) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for g in held {
        let mine = visible.iter().any(|v| v.pci == g.pci);
        out.extend(g.nodes().into_iter().map(|n| {
            let needed = mine && required(&n);
            (n, needed)
        }));
    }
    out
}

/// `CUDA_VISIBLE_DEVICES` for a rank of a shared container: its GPUs among those CUDA sees there.
/// A value the rank set itself that lists indexes of its own GPUs (as it would in a container
/// of its own: `--gpus 0,1` with `CUDA_VISIBLE_DEVICES=1`) picks among them; any other value
/// (Slurm's list of the step's GPUs, an index it does not have) gives way to its selection.
fn cuda_narrowed(ctx: &Context, held: &[&Gpu], visible: &[&Gpu]) -> String {
    let slurms = |v: &&String| SLURM_GPU_VARS.iter().any(|s| ctx.host_env.get(s) == Some(v.as_str()));
    let own = ctx.env.get("CUDA_VISIBLE_DEVICES").filter(|v| !slurms(v));
    let picked: Option<Vec<&Gpu>> = own.and_then(|v| {
        v.split(',').map(|i| i.trim().parse::<usize>().ok().and_then(|i| visible.get(i).copied())).collect()
    });
    narrowed(held, picked.as_deref().unwrap_or(visible), |g| g.uuid.as_ref())
}

/// What [`container_and_visible`] decided.
struct Selection<'a> {
    /// Bound into the container.
    held: Vec<&'a Gpu>,
    /// This run's, by its selection.
    visible: Vec<&'a Gpu>,
    sel: Selector,
    origin: String,
    /// `visible` is a part of `held` that the runtime must be told about.
    narrowed: bool,
}

/// The runtime's visibility value for `visible` among `held`: their UUIDs where every one has
/// one (ROCm and CUDA accept `GPU-...`, whatever order they enumerate in), else their
/// positions, which assume the runtime enumerates in PCI order as [`renumbered`] does.
fn narrowed(held: &[&Gpu], visible: &[&Gpu], uuid: impl Fn(&Gpu) -> Option<&String>) -> String {
    if let Some(ids) = visible.iter().map(|g| uuid(g).cloned()).collect::<Option<Vec<String>>>() {
        return ids.join(",");
    }
    let position = |g: &&Gpu| held.iter().position(|h| h.pci == g.pci).unwrap_or(0).to_string();
    visible.iter().map(position).collect::<Vec<_>>().join(",")
}

fn choose<'a>(
    gpus: &'a [Gpu],
    vendor: Vendor,
    flag: &'static str,
    sel: &Selector,
    origin: &str,
) -> Result<Vec<&'a Gpu>, GpuError> {
    let mine: Vec<&Gpu> = gpus.iter().filter(|g| g.vendor == vendor).collect();
    if mine.is_empty() && !matches!(sel, Selector::None | Selector::Void) {
        return Err(GpuError::NoGpus { flag, vendor });
    }
    let (chosen, unmatched) = select::select(&mine, sel);
    if !unmatched.is_empty() {
        let available = mine.iter().map(|g| format!("{} {}", g.index, g.pci)).collect::<Vec<_>>().join(", ");
        let idents = unmatched.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        return Err(GpuError::Unmatched { origin: origin.into(), vendor, idents, available });
    }
    tracing::debug!(?vendor, origin, chosen = ?chosen.iter().map(|g| &g.pci).collect::<Vec<_>>(), "GPU selection");
    Ok(chosen)
}

/// Adds device nodes that exist on the host; `required` ones must be openable by the caller.
fn add_devices(
    host: &HostPaths,
    flag: &'static str,
    nodes: &[(String, bool)],
    edits: &mut GpuEdits,
) -> Result<(), GpuError> {
    for (node, required) in nodes {
        let path = host.path(node);
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        // Directories (/dev/nvidia-caps) are only containers of nodes; their own mode is 0755.
        let checked = if meta.is_dir() { Ok(()) } else { super::check_access(&path) };
        if let Err(source) = checked {
            let hint = super::access_hint(&path, &source);
            if *required {
                return Err(GpuError::DeviceAccess { flag, path: host.strip(&path), hint, source });
            }
            edits.warnings.push(format!("{}: {source}; {hint}", host.strip(&path).display()));
        }
        let bind =
            FileBind { host: node.into(), container: node.into(), dir: meta.is_dir(), read_only: false };
        if !edits.devices.contains(&bind) {
            edits.devices.push(bind);
        }
    }
    Ok(())
}

/// Slurm chose (`origin` is its variable) and `CUDA_VISIBLE_DEVICES` is the value Slurm sets
/// with it (the same IDs): then it names host GPUs and is renumbered. A different value is the
/// job's own choice among them (`CUDA_VISIBLE_DEVICES=$SLURM_LOCALID`) and is left alone.
fn slurms_cuda(ctx: &Context, origin: &str) -> bool {
    SLURM_GPU_VARS.contains(&origin)
        && ctx.env.get("CUDA_VISIBLE_DEVICES").is_some_and(|v| ctx.host_env.get(origin) == Some(v.as_str()))
}

/// `0,1,...,k-1`: the indexes the container's runtime will use for what it can see.
fn renumbered(k: usize) -> String {
    (0..k).map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

fn rocm(
    req: &GpuRequest,
    ctx: &Context,
    gpus: &[Gpu],
    host_libs: &HostLibs,
    path_var: &str,
    roots: &mut Roots,
    edits: &mut GpuEdits,
) -> Result<(), GpuError> {
    const VARS: &[&str] = &["AMD_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"];
    let Selection { held, visible: chosen, sel, origin, narrowed: narrow } =
        container_and_visible(req, ctx, gpus, Vendor::Amd, "--rocm", VARS)?;
    if sel == Selector::Void {
        edits.warnings.push(format!("--rocm: {origin} says void: no AMD GPU and no ROCm tools"));
        return Ok(());
    }
    // /dev/kfd is the compute interface shared by all AMD GPUs; ROCm skips a GPU whose render
    // node it cannot open (libhsakmt topology.c), which is what makes per-GPU binding isolate.
    let mut nodes = vec![("/dev/kfd".to_string(), true)];
    nodes.extend(gpu_nodes(&held, &chosen, |n| n.contains("renderD")));
    add_devices(ctx.host, "--rocm", &nodes, edits)?;
    if req.gfx_override {
        gfx_override(ctx, &chosen, edits)?;
    }
    if origin != "default" {
        // The container sees only the chosen GPUs: every selection variable it inherits (Slurm
        // sets CUDA_VISIBLE_DEVICES, which HIP honours, with host numbering) counts from 0.
        let chosen_by_us = origin == "--gpus" || SLURM_GPU_VARS.contains(&origin.as_str());
        for var in
            ["AMD_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"]
                .into_iter()
                .chain((origin == "--gpus" || slurms_cuda(ctx, &origin)).then_some("CUDA_VISIBLE_DEVICES"))
        {
            let value = if var == "ROCR_VISIBLE_DEVICES" && narrow {
                // ROCr narrows the shared container's GPUs to this rank's; the others count
                // among what ROCr then shows.
                narrowed(&held, &chosen, |g| g.unique_id.as_ref())
            } else {
                renumbered(chosen.len())
            };
            if ctx.env.contains_key(var) || (var == "ROCR_VISIBLE_DEVICES" && (chosen_by_us || narrow)) {
                edits.env.push(EnvEdit::Set { name: var.into(), value });
            }
        }
    }
    let bins: Vec<String> =
        amd::ROCM_BINARIES.iter().map(|s| s.to_string()).chain(ctx.lists.rocm_bins.clone()).collect();
    let lib_names: Vec<String> =
        amd::ROCM_LIBRARIES.iter().map(|s| s.to_string()).chain(ctx.lists.rocm_libs.clone()).collect();
    roots.wanted.extend(libs::binary_roots(ctx.host, path_var, &bins));
    roots.wanted.extend(libs::library_roots(ctx.host, host_libs, ctx.image, &lib_names, false));
    add_opencl_icds(ctx.host, "amd", edits);
    Ok(())
}

/// ROCm's variable that makes every GPU of the process report (and load code for) one target.
pub const HSA_OVERRIDE: &str = "HSA_OVERRIDE_GFX_VERSION";

/// Sets [`HSA_OVERRIDE`] when the chosen GPUs lack code in the image but a target of their family
/// has it ([`gfx::decide`]), with one notice line. A value the workload's environment already has
/// (the caller's, `--env`, the image's) is never replaced.
fn gfx_override(ctx: &Context, chosen: &[&Gpu], edits: &mut GpuEdits) -> Result<(), GpuError> {
    // Also ROCm's per-node form, HSA_OVERRIDE_GFX_VERSION_<KFD node>, which the caller may have
    // set for one GPU of several.
    if ctx.env.keys().any(|k| k.starts_with(HSA_OVERRIDE)) {
        return Ok(());
    }
    let selected: Vec<gfx::Selected> = chosen
        .iter()
        .filter_map(|g| {
            let target = g.gfx_target.clone()?;
            Some(gfx::Selected { label: format!("GPU {} ({target}, {})", g.index, g.pci), target })
        })
        .collect();
    if selected.is_empty() {
        return Ok(());
    }
    let image = (ctx.image_targets)();
    let decision = gfx::decide(&selected, &image).map_err(|detail| GpuError::GfxOverride { detail })?;
    let has = image.iter().cloned().collect::<Vec<_>>().join(", ");
    for gpu in decision.no_code {
        edits.warnings.push(format!(
            "the image has GPU code for {has}, none that {gpu} can run: HIP programs will fail on it \
             with \"invalid device function\" (an image built for its target, or its family's, is needed)"
        ));
    }
    if let Some(o) = decision.apply {
        let moved = match o.moved.as_slice() {
            [] => String::new(),
            m => format!(", and {} with it", m.join(" and ")),
        };
        edits.notices.push(format!(
            "{} has no code in this image: running it as {}{moved} ({HSA_OVERRIDE}={}; --no-gfx-override turns \
             this off)",
            o.lacking.join(" and "),
            o.target,
            o.version
        ));
        edits.env.push(EnvEdit::Set { name: HSA_OVERRIDE.into(), value: o.version });
    }
    Ok(())
}

fn nv(
    req: &GpuRequest,
    ctx: &Context,
    gpus: &[Gpu],
    host_libs: &HostLibs,
    path_var: &str,
    roots: &mut Roots,
    edits: &mut GpuEdits,
) -> Result<(), GpuError> {
    let Selection { held, visible: chosen, sel, origin, narrowed: narrow } =
        container_and_visible(req, ctx, gpus, Vendor::Nvidia, "--nv", &["NVIDIA_VISIBLE_DEVICES"])?;
    if sel == Selector::Void {
        edits.warnings.push(format!("--nv: {origin} says void: no NVIDIA GPU and no driver libraries"));
        return Ok(());
    }
    let mut nodes: Vec<(String, bool)> =
        nvidia::CONTROL_NODES.iter().map(|n| (n.to_string(), *n == "/dev/nvidiactl")).collect();
    nodes.push((nvidia::CAPS_DIR.into(), false));
    nodes.extend(gpu_nodes(&held, &chosen, |n| n.starts_with("/dev/nvidia")));
    add_devices(ctx.host, "--nv", &nodes, edits)?;
    if !ctx.host.path("/dev/nvidia-uvm").exists() && ctx.host.path("/dev/nvidiactl").exists() {
        edits.warnings.push(
            "--nv: /dev/nvidia-uvm is missing, so CUDA will fail with CUDA_ERROR_UNKNOWN; load the module on \
             the host: `sudo modprobe nvidia-uvm` (or `nvidia-modprobe -u -c=0`)"
                .into(),
        );
    }
    let value = if sel == Selector::None { "none".to_string() } else { renumbered(chosen.len()) };
    edits.env.push(EnvEdit::Set { name: "NVIDIA_VISIBLE_DEVICES".into(), value: value.clone() });
    if narrow {
        // CUDA sees every GPU of the shared container: it is told which are this rank's.
        let value = cuda_narrowed(ctx, &held, &chosen);
        if !value.starts_with("GPU-") {
            edits.env.push(EnvEdit::Set { name: "CUDA_DEVICE_ORDER".into(), value: "PCI_BUS_ID".into() });
        }
        edits.env.push(EnvEdit::Set { name: "CUDA_VISIBLE_DEVICES".into(), value });
    } else if slurms_cuda(ctx, &origin) {
        // Slurm's CUDA_VISIBLE_DEVICES names host GPUs; inside, only the allocated ones exist.
        edits.env.push(EnvEdit::Set { name: "CUDA_VISIBLE_DEVICES".into(), value });
    }
    let (caps, unknown) =
        nvidia::parse_capabilities(ctx.env.get("NVIDIA_DRIVER_CAPABILITIES").map(String::as_str));
    for u in unknown {
        edits.warnings.push(format!("NVIDIA_DRIVER_CAPABILITIES: unknown capability {u:?} ignored"));
    }
    let lib_names: Vec<String> =
        nvidia::libraries_for(&caps).iter().map(|s| s.to_string()).chain(ctx.lists.nv_libs.clone()).collect();
    let bins: Vec<String> =
        nvidia::binaries_for(&caps).iter().map(|s| s.to_string()).chain(ctx.lists.nv_bins.clone()).collect();
    roots.wanted.extend(libs::binary_roots(ctx.host, path_var, &bins));
    roots.wanted.extend(libs::library_roots(ctx.host, host_libs, ctx.image, &lib_names, true));
    if caps.iter().any(|c| matches!(c, nvidia::Capability::Graphics | nvidia::Capability::Display)) {
        for file in nvidia::GRAPHICS_FILES {
            if ctx.host.path(file).is_file() {
                edits.files.push(FileBind::read_only(*file, *file));
            }
        }
    }
    if caps.contains(&nvidia::Capability::Compute) {
        add_opencl_icds(ctx.host, "nvidia", edits);
    }
    let socket = ctx.host.path(nvidia::PERSISTENCED_SOCKET);
    if socket.exists() {
        edits.files.push(FileBind::read_only(nvidia::PERSISTENCED_SOCKET, nvidia::PERSISTENCED_SOCKET));
    }
    Ok(())
}

/// OpenCL vendor ICD files (`/etc/OpenCL/vendors/*.icd`) naming this vendor's library, bound at
/// the same path so the image's ICD loader finds the host driver (Singularity users had to add
/// `--bind /etc/OpenCL` by hand).
fn add_opencl_icds(host: &HostPaths, vendor_word: &str, edits: &mut GpuEdits) {
    let Ok(entries) = std::fs::read_dir(host.path("/etc/OpenCL/vendors")) else { return };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.sort();
    for file in files {
        let is_icd = file.extension().is_some_and(|e| e == "icd");
        let text = std::fs::read_to_string(&file).unwrap_or_default().to_ascii_lowercase();
        if is_icd && text.contains(vendor_word) {
            let inside = host.strip(&file);
            edits.files.push(FileBind::read_only(&inside, &inside));
        }
    }
}
