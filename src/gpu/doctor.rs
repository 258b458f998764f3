//! `gpurun doctor [--rocm|--nv]`: checks what a GPU run needs, each with a fix: user namespaces,
//! the driver modules, the device nodes (and the group to join), the vendor libraries with their
//! versions, and for integrated AMD GPUs the `HSA_OVERRIDE_GFX_VERSION` to use. Reads only.

use std::path::Path;

use super::ldcache::parse_ld_so_cache;
use super::libs::HostLibs;
use super::{GpuKind, HostPaths, Vendor, access_hint, amd, check_access};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub what: String,
    pub hint: Option<String>,
}

fn check(status: Status, what: impl Into<String>, hint: Option<String>) -> Check {
    Check { status, what: what.into(), hint }
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Runs the checks for the chosen vendors (both when neither is named).
pub fn run(host: &HostPaths, rocm: bool, nv: bool) -> Vec<Check> {
    let (rocm, nv) = if !rocm && !nv { (true, true) } else { (rocm, nv) };
    let mut out = vec![userns(host)];
    let libs = HostLibs::new(
        std::fs::read(host.path("/etc/ld.so.cache"))
            .ok()
            .and_then(|b| parse_ld_so_cache(&b).ok())
            .unwrap_or_default(),
        super::ldcache::native_arch_flags(),
    );
    if rocm {
        out.extend(amd_checks(host, &libs));
    }
    if nv {
        out.extend(nvidia_checks(host, &libs));
    }
    out
}

fn userns(host: &HostPaths) -> Check {
    let max = read(&host.proc("sys/user/max_user_namespaces")).and_then(|v| v.parse::<u64>().ok());
    let clone = read(&host.proc("sys/kernel/unprivileged_userns_clone"));
    let apparmor = read(&host.proc("sys/kernel/apparmor_restrict_unprivileged_userns"));
    if max == Some(0) || clone.as_deref() == Some("0") || apparmor.as_deref() == Some("1") {
        return check(
            Status::Fail,
            "unprivileged user namespaces are disabled",
            Some(crate::sandbox::userns_hint()),
        );
    }
    check(Status::Ok, "user namespaces available", None)
}

fn node_check(host: &HostPaths, node: &str) -> Check {
    let path = host.path(node);
    match check_access(&path) {
        Ok(()) => check(Status::Ok, format!("{node} opens read-write"), None),
        Err(e) => check(Status::Fail, format!("{node}: {e}"), Some(access_hint(&path, &e))),
    }
}

/// `libfoo.so.1 -> /usr/lib/.../libfoo.so.1.2.3` shows as version `1.2.3`.
fn lib_check(libs: &HostLibs, soname: &str, missing: Status, hint: &str) -> Check {
    match libs.get(soname) {
        Some(path) => {
            let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.into());
            let file = real.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            let version = file.split_once(".so.").map(|(_, v)| v.to_string()).unwrap_or_else(|| "?".into());
            check(Status::Ok, format!("{soname} {version} ({})", real.display()), None)
        }
        None => check(missing, format!("{soname} not in the host's ld.so.cache"), Some(hint.into())),
    }
}

fn amd_checks(host: &HostPaths, libs: &HostLibs) -> Vec<Check> {
    let gpus: Vec<_> =
        super::discover::discover(host).into_iter().filter(|g| g.vendor == Vendor::Amd).collect();
    let mut out = Vec::new();
    match read(&host.sys("module/amdgpu/initstate")).as_deref() {
        Some("live") => out.push(check(Status::Ok, "amdgpu driver loaded", None)),
        _ => out.push(check(
            Status::Fail,
            "amdgpu driver not loaded (/sys/module/amdgpu/initstate is not \"live\"): rocminfo says \"ROCk module is NOT loaded\"",
            Some("load it on the host: `sudo modprobe amdgpu` (install the amdgpu-dkms driver if that fails)".into()),
        )),
    }
    out.push(check(
        if gpus.is_empty() { Status::Fail } else { Status::Ok },
        format!("{} AMD GPU(s) found", gpus.len()),
        gpus.is_empty().then(|| "`gpurun gpus` lists what sysfs shows".into()),
    ));
    if host.path("/dev/kfd").exists() || !gpus.is_empty() {
        out.push(node_check(host, "/dev/kfd"));
    }
    for g in &gpus {
        for node in g.nodes() {
            out.push(node_check(host, &node));
        }
        let target = g.gfx_target.as_deref().unwrap_or("unknown gfx target");
        if let Some(version) = g.gfx_target.as_deref().and_then(amd::hsa_override) {
            let status = if g.kind == GpuKind::Integrated { Status::Warn } else { Status::Ok };
            out.push(check(
                status,
                format!("GPU {} ({}, {target}) may lack kernels in ROCm builds", g.index, g.pci),
                Some(format!("run it as a supported target: --env HSA_OVERRIDE_GFX_VERSION={version}")),
            ));
        }
    }
    out.push(lib_check(
        libs,
        "libhsa-runtime64.so.1",
        Status::Warn,
        "ROCm belongs in the image; install rocminfo on the host for `--rocm rocminfo`",
    ));
    out
}

fn nvidia_checks(host: &HostPaths, libs: &HostLibs) -> Vec<Check> {
    let mut out = Vec::new();
    match read(&host.proc("driver/nvidia/version")) {
        Some(v) => out.push(check(
            Status::Ok,
            format!("nvidia driver loaded: {}", v.lines().next().unwrap_or("")),
            None,
        )),
        None => out.push(check(
            Status::Fail,
            "nvidia driver not loaded (no /proc/driver/nvidia/version): nvidia-smi exits 9",
            Some("load it on the host: `sudo modprobe nvidia` (or `sudo nvidia-modprobe`)".into()),
        )),
    }
    if host.path("/dev/nvidia-uvm").exists() {
        out.push(node_check(host, "/dev/nvidia-uvm"));
    } else {
        out.push(check(
            Status::Fail,
            "/dev/nvidia-uvm missing (nvidia_uvm not loaded): CUDA fails with CUDA_ERROR_UNKNOWN",
            Some("load it on the host: `sudo modprobe nvidia-uvm`, or `nvidia-modprobe -u -c=0`".into()),
        ));
    }
    if host.path("/dev/nvidiactl").exists() {
        out.push(node_check(host, "/dev/nvidiactl"));
    }
    for g in super::discover::discover(host).iter().filter(|g| g.vendor == Vendor::Nvidia) {
        for node in g.nodes() {
            if host.path(&node).exists() {
                out.push(node_check(host, &node));
            }
        }
    }
    let hint = "install the driver's userspace (libcuda1, libnvidia-ml1) and run `sudo ldconfig`";
    out.push(lib_check(libs, "libcuda.so.1", Status::Fail, hint));
    out.push(lib_check(libs, "libnvidia-ml.so.1", Status::Fail, hint));
    out
}

/// The report text; also returns whether anything failed.
pub fn render(checks: &[Check]) -> (String, bool) {
    let mut out = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{tag} {}\n", c.what));
        if let Some(h) = &c.hint {
            out.push_str(&format!("     hint: {h}\n"));
        }
    }
    (out, checks.iter().any(|c| c.status == Status::Fail))
}
