//! `gpurun doctor [--rocm|--nv]`: checks what a GPU run needs, each with a fix: user namespaces,
//! the driver modules, the device nodes (and the group to join), the vendor libraries with their
//! versions, and for integrated AMD GPUs the `HSA_OVERRIDE_GFX_VERSION` gpurun applies and their
//! GTT (the memory they really have) with how to raise it. Reads only.

use std::path::Path;

use super::ldcache::parse_ld_so_cache;
use super::libs::HostLibs;
use super::{GpuKind, HostPaths, Vendor, access_hint, check_access, gfx};

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

/// Runs the checks for the chosen vendors (both when neither is named). A vendor with no GPU in
/// sysfs gets one line saying so, not a list of its driver's fixes: a failure when that vendor was
/// asked for (`--rocm`, `--nv`), a warning when it was only checked because neither was named.
pub fn run(host: &HostPaths, env: &crate::host::ProcessEnv, rocm: bool, nv: bool) -> Vec<Check> {
    let named = rocm || nv;
    let (rocm, nv) = if named { (rocm, nv) } else { (true, true) };
    let mut out = vec![userns(host), kernel(env)];
    let libs = HostLibs::new(
        std::fs::read(host.path("/etc/ld.so.cache"))
            .ok()
            .and_then(|b| parse_ld_so_cache(&b).ok())
            .unwrap_or_default(),
        super::ldcache::native_arch_flags(),
    );
    let gpus = super::discover::discover(host);
    let absent = if named { Status::Fail } else { Status::Warn };
    if rocm {
        out.extend(amd_checks(host, &libs, &gpus, absent));
    }
    if nv {
        out.extend(nvidia_checks(host, &libs, &gpus, absent));
    }
    out
}

/// The one line for a vendor that sysfs shows no GPU of (and whose driver shows nothing either).
fn no_gpu(vendor: &str, status: Status) -> Check {
    check(
        status,
        format!("no {vendor} GPU on this machine (no {vendor} display device in /sys/bus/pci/devices)"),
        Some("`gpurun gpus` lists the GPUs gpurun sees; run on a node that has one".into()),
    )
}

fn userns(host: &HostPaths) -> Check {
    let max = read(&host.proc("sys/user/max_user_namespaces")).and_then(|v| v.parse::<u64>().ok());
    let clone = read(&host.proc("sys/kernel/unprivileged_userns_clone"));
    let apparmor = read(&host.proc("sys/kernel/apparmor_restrict_unprivileged_userns"));
    if max == Some(0) || clone.as_deref() == Some("0") || apparmor.as_deref() == Some("1") {
        return check(
            Status::Fail,
            "unprivileged user namespaces are disabled",
            Some(crate::host::userns_hint()),
        );
    }
    check(Status::Ok, "user namespaces available", None)
}

/// The kernel features gpurun uses past Linux 4.18, and what it does without each (README,
/// "Kernel requirements"); `env` for where fuse-overlayfs is.
fn kernel(env: &crate::host::ProcessEnv) -> Check {
    let (release, _) = crate::host::kernel_at_least(5, 11);
    let mut notes = Vec::new();
    if !crate::inroot::openat2_supported() {
        notes.push("no openat2: paths in images resolved in userspace".to_string());
    }
    if !crate::sys::mount_setattr_supported() {
        notes.push("no mount_setattr: read-only binds by remount".to_string());
    }
    let short = release.split('-').next().unwrap_or(&release).to_string();
    let overlay = crate::host::overlay_in_userns();
    if overlay == crate::host::UsernsOverlay::Plain {
        notes.push("overlayfs in user namespaces without userxattr (a distribution backport): used".into());
    }
    if overlay == crate::host::UsernsOverlay::No {
        let fuse = crate::sys::fuse::device_usable();
        let writable = match (crate::host::find_program("fuse-overlayfs", env.path()), fuse) {
            (Some(path), Ok(())) => format!("--writable-tmpfs through {}", path.display()),
            (Some(path), Err(e)) => format!(
                "--writable-tmpfs through {} needs /dev/fuse readable and writable by you ({})",
                path.display(),
                e.desc()
            ),
            (None, _) => "--writable-tmpfs needs fuse-overlayfs (not on PATH)".into(),
        };
        notes.push(format!("no overlayfs in user namespaces (5.11): roots assembled from binds; {writable}"));
    }
    let what = if notes.is_empty() { "every feature gpurun uses".to_string() } else { notes.join("; ") };
    check(Status::Ok, format!("kernel {short}: {what}"), None)
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

fn amd_checks(host: &HostPaths, libs: &HostLibs, all: &[super::Gpu], absent: Status) -> Vec<Check> {
    let gpus: Vec<_> = all.iter().filter(|g| g.vendor == Vendor::Amd).collect();
    let live = read(&host.sys("module/amdgpu/initstate")).as_deref() == Some("live");
    if gpus.is_empty() && !live && !host.path("/dev/kfd").exists() {
        return vec![no_gpu("AMD", absent)];
    }
    let mut out = Vec::new();
    if live {
        out.push(check(Status::Ok, "amdgpu driver loaded", None));
    } else {
        out.push(check(
            Status::Fail,
            format!("{} AMD GPU(s) found but the amdgpu driver is not loaded (/sys/module/amdgpu/initstate is not \"live\")", gpus.len()),
            Some("load it on the host: `sudo modprobe amdgpu` (install the amdgpu-dkms driver if that fails)".into()),
        ));
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
        if let Some(version) = g.gfx_target.as_deref().and_then(gfx::usual_override) {
            let status = if g.kind == GpuKind::Integrated { Status::Warn } else { Status::Ok };
            out.push(check(
                status,
                format!("GPU {} ({}, {target}) may lack kernels in ROCm builds", g.index, g.pci),
                Some(format!(
                    "`gpurun --rocm` sets HSA_OVERRIDE_GFX_VERSION={version} (or its family's target the \
                     image has) when the image has no code for {target}; --no-gfx-override turns that off"
                )),
            ));
        }
        if g.kind == GpuKind::Integrated {
            out.extend(gtt_check(host, g));
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

/// An integrated GPU's memory is its GTT: system memory amdgpu lets it map, by default about
/// half of RAM on current kernels, less on older ones or where `amdgpu.gttsize` or
/// `ttm.pages_limit` cap it. Below half of RAM, say how to raise it.
fn gtt_check(host: &HostPaths, g: &super::Gpu) -> Option<Check> {
    let gtt = g.gtt_bytes?;
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let vram = g.vram_bytes.map(|v| format!("{:.1} GiB VRAM carve-out, ", gib(v))).unwrap_or_default();
    let what = format!(
        "GPU {} ({}, integrated): {vram}{:.1} GiB GTT, the system memory it can use",
        g.index,
        g.pci,
        gib(gtt)
    );
    let ram = mem_total(host);
    if ram.is_none_or(|r| gtt >= r / 2) {
        return Some(check(Status::Ok, what, None));
    }
    let half_pages = ram.unwrap_or_default() / 2 / 4096;
    Some(check(
        Status::Warn,
        format!("{what}, less than half of the {:.1} GiB of RAM", gib(ram.unwrap_or_default())),
        Some(format!(
            "raise it with the kernel parameters ttm.pages_limit={half_pages} ttm.page_pool_size={half_pages} \
             (4 KiB pages; this is half of RAM), or amdgpu.gttsize=<MiB> where the kernel still honours it, then \
             reboot; `gpurun gpus` shows the result"
        )),
    ))
}

/// `MemTotal` of the host's `/proc/meminfo`, in bytes.
fn mem_total(host: &HostPaths) -> Option<u64> {
    let text = std::fs::read_to_string(host.proc("meminfo")).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn nvidia_checks(host: &HostPaths, libs: &HostLibs, all: &[super::Gpu], absent: Status) -> Vec<Check> {
    let gpus: Vec<_> = all.iter().filter(|g| g.vendor == Vendor::Nvidia).collect();
    let version = read(&host.proc("driver/nvidia/version"));
    if gpus.is_empty() && version.is_none() {
        return vec![no_gpu("NVIDIA", absent)];
    }
    let mut out = Vec::new();
    match version {
        Some(v) => out.push(check(
            Status::Ok,
            format!("nvidia driver loaded: {}", v.lines().next().unwrap_or("")),
            None,
        )),
        None => out.push(check(
            Status::Fail,
            format!(
                "{} NVIDIA GPU(s) found but the nvidia driver is not loaded (no /proc/driver/nvidia/version)",
                gpus.len()
            ),
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
    for g in &gpus {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake host root, removed on drop.
    struct FakeHost(std::path::PathBuf);
    impl FakeHost {
        fn new(tag: &str) -> FakeHost {
            let dir = std::env::temp_dir().join(format!("gpurun-doctor-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            FakeHost(dir)
        }
        fn pci_gpu(&self, addr: &str, vendor: &str) {
            let dir = self.0.join("sys/bus/pci/devices").join(addr);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("class"), "0x030000\n").unwrap();
            std::fs::write(dir.join("vendor"), format!("{vendor}\n")).unwrap();
            std::fs::write(dir.join("device"), "0x1234\n").unwrap();
        }
        fn host(&self) -> HostPaths {
            HostPaths { root: self.0.clone() }
        }
    }
    impl Drop for FakeHost {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_gpu_less_machine_gets_no_driver_advice() {
        let fake = FakeHost::new("none");
        let (text, failed) = render(&run(&fake.host(), &Default::default(), false, true));
        assert!(failed, "{text}");
        assert!(text.contains("FAIL no NVIDIA GPU on this machine"), "{text}");
        for unobserved in ["modprobe", "nvidia-smi", "rocminfo", "AMD"] {
            assert!(!text.contains(unobserved), "{unobserved} in:\n{text}");
        }
        // Neither vendor named: both are reported as absent, and that is no failure.
        let (text, failed) = render(&run(&fake.host(), &Default::default(), false, false));
        assert!(!failed, "{text}");
        assert!(text.contains("warn no AMD GPU") && text.contains("warn no NVIDIA GPU"), "{text}");
        assert!(!text.contains("modprobe") && !text.contains("ROCk"), "{text}");
    }

    #[test]
    fn a_gpu_without_its_driver_gets_the_modprobe_hint() {
        let fake = FakeHost::new("nodriver");
        fake.pci_gpu("0000:01:00.0", "0x10de");
        fake.pci_gpu("0000:02:00.0", "0x1002");
        let (text, failed) = render(&run(&fake.host(), &Default::default(), true, true));
        assert!(failed, "{text}");
        assert!(text.contains("1 NVIDIA GPU(s) found but the nvidia driver is not loaded"), "{text}");
        assert!(text.contains("sudo modprobe nvidia"), "{text}");
        assert!(text.contains("1 AMD GPU(s) found but the amdgpu driver is not loaded"), "{text}");
        assert!(text.contains("sudo modprobe amdgpu"), "{text}");
        assert!(!text.contains("nvidia-smi exits") && !text.contains("ROCk module"), "{text}");
    }

    #[test]
    fn an_apu_with_a_small_gtt_is_told_how_to_raise_it() {
        let fake = FakeHost::new("apu");
        fake.pci_gpu("0000:c8:00.0", "0x1002");
        let dev = fake.0.join("sys/bus/pci/devices/0000:c8:00.0");
        std::fs::write(dev.join("mem_info_vram_total"), "536870912\n").unwrap();
        std::fs::write(dev.join("mem_info_gtt_total"), "4294967296\n").unwrap();
        let node = fake.0.join("sys/class/kfd/kfd/topology/nodes/1");
        std::fs::create_dir_all(&node).unwrap();
        std::fs::write(
            node.join("properties"),
            "cpu_cores_count 0\nsimd_count 24\nlocation_id 51200\ndomain 0\ngfx_target_version 110003\n",
        )
        .unwrap();
        std::fs::create_dir_all(fake.0.join("proc")).unwrap();
        std::fs::write(fake.0.join("proc/meminfo"), "MemTotal:       32768000 kB\n").unwrap();
        let (text, _) = render(&run(&fake.host(), &Default::default(), true, false));
        assert!(text.contains("0.5 GiB VRAM carve-out, 4.0 GiB GTT"), "{text}");
        assert!(text.contains("warn GPU 0 (0000:c8:00.0, integrated)"), "{text}");
        assert!(text.contains("ttm.pages_limit=4096000"), "{text}");
        assert!(text.contains("HSA_OVERRIDE_GFX_VERSION=11.0.0"), "{text}");
        // Half of RAM or more: a plain line.
        std::fs::write(fake.0.join("proc/meminfo"), "MemTotal:       8000000 kB\n").unwrap();
        let (text, _) = render(&run(&fake.host(), &Default::default(), true, false));
        assert!(text.contains("ok   GPU 0 (0000:c8:00.0, integrated)") && !text.contains("ttm."), "{text}");
    }
}
