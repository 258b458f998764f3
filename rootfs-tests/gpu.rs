//! GPU support on fake GPU hosts, without a GPU. Each scenario is a real machine's layout (the
//! seeds' mixed MI50 + Tesla A2 server, and an RX 7600 beside a Phoenix1 iGPU): a fake sysfs
//! tree and a `/dev` of REAL character nodes (the real majors: 226 DRI, 195 nvidia, dynamic ones
//! for kfd and nvidia-uvm) are put at the real paths inside a private mount namespace (`unshare
//! -m`, as root), with an ld.so.cache that also knows the NVIDIA userspace extracted by
//! `rootfs-tests/gpu/fetch-vendor.sh` (rocminfo and libhsa-runtime64 are installed from Debian
//! main). gpurun then runs as root, as `gpurun-test` (groups render and video) and as a user in
//! neither group, against a busybox-static image (no glibc) and a small glibc image made by
//! copying the host's glibc next to busybox. The vendor tools must get past their library
//! loading to their "no driver" errors: rocminfo exits 1 with "ROCk module is NOT loaded",
//! nvidia-smi exits 9 ("couldn't communicate with the NVIDIA driver").

mod support;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::{TempDir, describe, needs_root, output, skip};

const RENDER: &str = "render";
const VIDEO: &str = "video";
const PLAIN_USER: &str = "gpurun-nogpu";
const GPU_USER: &str = "gpurun-test";

/// A PCI display device of a scenario.
struct Pci {
    addr: &'static str,
    vendor: u16,
    device: u16,
    class: u32,
    boot_vga: bool,
    card: u32,
    render: Option<u32>,
}

/// A fake host: sysfs tree, device node list, ld cache.
struct FakeHost {
    dir: TempDir,
    /// (path below /dev, major, minor, mode, group)
    nodes: Vec<(String, u32, u32, u32, &'static str)>,
    /// Extra shell lines run as root in the fake host's namespace after it is set up.
    setup: String,
}

impl FakeHost {
    fn new(tag: &str, pcis: &[Pci], kfd: &[String]) -> FakeHost {
        let dir = TempDir::new(tag);
        let sys = dir.path().join("sys");
        let mut nodes = vec![
            ("null".to_string(), 1, 3, 0o666, "root"),
            ("zero".into(), 1, 5, 0o666, "root"),
            ("full".into(), 1, 7, 0o666, "root"),
            ("random".into(), 1, 8, 0o666, "root"),
            ("urandom".into(), 1, 9, 0o666, "root"),
            ("tty".into(), 5, 0, 0o666, "root"),
        ];
        for p in pcis {
            let dev = sys.join("bus/pci/devices").join(p.addr);
            std::fs::create_dir_all(&dev).unwrap();
            write(&dev.join("vendor"), &format!("0x{:04x}\n", p.vendor));
            write(&dev.join("device"), &format!("0x{:04x}\n", p.device));
            write(&dev.join("class"), &format!("0x{:06x}\n", p.class));
            write(&dev.join("boot_vga"), if p.boot_vga { "1\n" } else { "0\n" });
            let mut drm = vec![format!("card{}", p.card)];
            nodes.push((format!("dri/card{}", p.card), 226, p.card, 0o660, VIDEO));
            if let Some(r) = p.render {
                drm.push(format!("renderD{r}"));
                nodes.push((format!("dri/renderD{r}"), 226, r, 0o660, RENDER));
            }
            for name in drm {
                let class = sys.join("class/drm").join(&name);
                std::fs::create_dir_all(&class).unwrap();
                symlink(format!("../../../bus/pci/devices/{}", p.addr), class.join("device")).unwrap();
            }
        }
        for (i, props) in kfd.iter().enumerate() {
            let node = sys.join(format!("class/kfd/kfd/topology/nodes/{i}"));
            std::fs::create_dir_all(&node).unwrap();
            write(&node.join("properties"), props);
        }
        FakeHost { dir, nodes, setup: String::new() }
    }

    /// amdgpu's memory totals of the GPU at `addr` (bytes).
    fn memory(&self, addr: &str, vram: u64, gtt: u64) {
        let dev = self.dir.path().join("sys/bus/pci/devices").join(addr);
        write(&dev.join("mem_info_vram_total"), &format!("{vram}\n"));
        write(&dev.join("mem_info_gtt_total"), &format!("{gtt}\n"));
    }

    /// The script that sets the fake host up in a private mount namespace and runs `cmd` as `user`.
    fn script(&self, ld_cache: &Path, user: &str, env: &[(&str, &str)], cmd: &[String]) -> String {
        let fake = self.dir.path().display();
        let mut s = format!(
            "set -e\nmount --rbind {fake}/sys /sys\nmount -t tmpfs -o mode=755 fakedev /dev\n\
             mkdir -p /dev/dri /dev/pts /dev/nvidia-caps\nmkdir -m 1777 /dev/shm\n\
             mount --bind {} /etc/ld.so.cache\n",
            ld_cache.display()
        );
        for (path, major, minor, mode, group) in &self.nodes {
            s.push_str(&format!(
                "mknod -m {mode:o} /dev/{path} c {major} {minor}\nchgrp {group} /dev/{path}\n"
            ));
        }
        s.push_str(&self.setup);
        let env: String = env.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
        let quoted: Vec<String> = cmd.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
        let who = if user == "root" {
            String::new()
        } else {
            format!("setpriv --reuid={user} --regid={user} --init-groups -- ")
        };
        s.push_str(&format!("exec {who}env HOME=/tmp {env}{}\n", quoted.join(" ")));
        s
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn kfd_gpu(minor: u32, location: u32, gfx: u32, simds: u32, cpus: u32, unique: u64) -> String {
    format!(
        "cpu_cores_count {cpus}\nsimd_count {simds}\nmem_banks_count 1\nlocation_id {location}\ndomain 0\n\
         drm_render_minor {minor}\ngfx_target_version {gfx}\nunique_id {unique}\n"
    )
}

const KFD_CPU: &str = "cpu_cores_count 32\nsimd_count 0\nlocation_id 0\ndrm_render_minor 0\n";

/// Two Instinct MI50 (renderD128/129) and two Tesla A2 (renderD130/131), plus the BMC's VGA.
fn mixed_server() -> FakeHost {
    let pcis = [
        Pci {
            addr: "0000:02:00.0",
            vendor: 0x1a03,
            device: 0x2000,
            class: 0x030000,
            boot_vga: true,
            card: 0,
            render: None,
        },
        Pci {
            addr: "0000:03:00.0",
            vendor: 0x1002,
            device: 0x66a1,
            class: 0x038000,
            boot_vga: false,
            card: 1,
            render: Some(128),
        },
        Pci {
            addr: "0000:43:00.0",
            vendor: 0x1002,
            device: 0x66a1,
            class: 0x038000,
            boot_vga: false,
            card: 2,
            render: Some(129),
        },
        Pci {
            addr: "0000:83:00.0",
            vendor: 0x10de,
            device: 0x25b6,
            class: 0x030200,
            boot_vga: false,
            card: 3,
            render: Some(130),
        },
        Pci {
            addr: "0000:c3:00.0",
            vendor: 0x10de,
            device: 0x25b6,
            class: 0x030200,
            boot_vga: false,
            card: 4,
            render: Some(131),
        },
    ];
    let kfd = [
        KFD_CPU.to_string(),
        kfd_gpu(128, 0x0300, 90006, 240, 0, 0x1111),
        kfd_gpu(129, 0x4300, 90006, 240, 0, 0x2222),
    ];
    let mut host = FakeHost::new("gpu-mixed", &pcis, &kfd);
    host.nodes.push(("kfd".into(), 235, 0, 0o660, RENDER));
    for (name, major, minor) in [
        ("nvidiactl", 195, 255),
        ("nvidia-modeset", 195, 254),
        ("nvidia0", 195, 0),
        ("nvidia1", 195, 1),
        ("nvidia-uvm", 511, 0),
        ("nvidia-uvm-tools", 511, 1),
        ("nvidia-caps/nvidia-cap1", 510, 1),
    ] {
        host.nodes.push((name.into(), major, minor, 0o666, "root"));
    }
    host
}

/// An RX 7600 (Navi 33, gfx1102) at 07:00.0 and the Phoenix1 iGPU (gfx1103) at c8:00.0.
fn dgpu_and_igpu() -> FakeHost {
    let pcis = [
        Pci {
            addr: "0000:07:00.0",
            vendor: 0x1002,
            device: 0x7480,
            class: 0x030000,
            boot_vga: false,
            card: 1,
            render: Some(128),
        },
        Pci {
            addr: "0000:c8:00.0",
            vendor: 0x1002,
            device: 0x15bf,
            class: 0x030000,
            boot_vga: true,
            card: 2,
            render: Some(129),
        },
    ];
    let kfd = [
        KFD_CPU.to_string(),
        kfd_gpu(128, 0x0700, 110002, 64, 0, 0xaaaa),
        kfd_gpu(129, 0xc800, 110003, 24, 0, 0xbbbb),
    ];
    let mut host = FakeHost::new("gpu-apu", &pcis, &kfd);
    host.nodes.push(("kfd".into(), 235, 0, 0o660, RENDER));
    host.memory("0000:07:00.0", 8 << 30, 16 << 30);
    host.memory("0000:c8:00.0", 512 << 20, 15_600 << 20);
    host
}

/// A Radeon 780M laptop: the Phoenix1 APU (gfx1103) alone, with a 512 MiB carve-out and a GTT
/// capped at 4 GiB.
fn apu_alone() -> FakeHost {
    let pcis = [Pci {
        addr: "0000:c6:00.0",
        vendor: 0x1002,
        device: 0x15bf,
        class: 0x030000,
        boot_vga: true,
        card: 1,
        render: Some(128),
    }];
    let kfd = [KFD_CPU.to_string(), kfd_gpu(128, 0xc600, 110003, 24, 0, 0xcccc)];
    let mut host = FakeHost::new("gpu-apu-alone", &pcis, &kfd);
    host.nodes.push(("kfd".into(), 235, 0, 0o660, RENDER));
    host.memory("0000:c6:00.0", 512 << 20, 4 << 30);
    host
}

/// An older Radeon VII (gfx906) beside a Phoenix1 APU: two GPUs of different ISA families.
fn radeon_vii_and_apu() -> FakeHost {
    let gpu = |addr, device, card, render| Pci {
        addr,
        vendor: 0x1002,
        device,
        class: 0x030000,
        boot_vga: false,
        card,
        render: Some(render),
    };
    let pcis = [gpu("0000:03:00.0", 0x66af, 1, 128), gpu("0000:c8:00.0", 0x15bf, 2, 129)];
    let kfd = [
        KFD_CPU.to_string(),
        kfd_gpu(128, 0x0300, 90006, 240, 0, 0xdddd),
        kfd_gpu(129, 0xc800, 110003, 24, 0, 0xeeee),
    ];
    let mut host = FakeHost::new("gpu-vii-apu", &pcis, &kfd);
    host.nodes.push(("kfd".into(), 235, 0, 0o660, RENDER));
    host
}

/// Everything a scenario run needs: vendor tree, ld cache, images, per-user caches.
struct Env {
    dir: TempDir,
    vendor: PathBuf,
    ld_cache: PathBuf,
    busybox_image: PathBuf,
    glibc_image: PathBuf,
    /// The glibc rootfs as an Apptainer-built SquashFS image, whose env script sets its own PATH.
    apptainer_image: PathBuf,
    caches: PathBuf,
}

fn vendor_dir() -> PathBuf {
    std::env::var_os("GPURUN_GPU_VENDOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".fixtures/gpu-vendor"))
}

fn setup() -> Option<Env> {
    if !needs_root("fake GPU hosts need root (mknod, mount namespaces); CI runs this as root") {
        return None;
    }
    for tool in ["unshare", "setpriv", "mknod", "ldconfig"] {
        if output(Command::new("sh").args(["-c", &format!("command -v {tool}")])).status.code() != Some(0) {
            skip(&format!("{tool} missing"));
            return None;
        }
    }
    let vendor = vendor_dir();
    let fetch = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-tests/gpu/fetch-vendor.sh");
    let got = output(Command::new("sh").arg(&fetch).arg(&vendor));
    if got.status.code() != Some(0) {
        skip(&format!("vendor userspace could not be fetched: {}", describe(&got)));
        return None;
    }
    ensure_accounts();
    let dir = public_temp("gpu-env");
    let ld_cache = build_ld_cache(dir.path(), &vendor.join("root/usr/lib/x86_64-linux-gnu/nvidia/current"));
    let busybox_image = busybox_rootfs(&dir.path().join("busybox"))?;
    let glibc_image = glibc_rootfs(&dir.path().join("glibc"))?;
    let apptainer_image = apptainer_squashfs(dir.path())?;
    let caches = dir.path().join("caches");
    std::fs::create_dir_all(&caches).unwrap();
    std::fs::set_permissions(&caches, std::fs::Permissions::from_mode(0o1777)).unwrap();
    Some(Env { dir, vendor, ld_cache, busybox_image, glibc_image, apptainer_image, caches })
}

/// A fresh machine has neither the groups nor the users: make them here, so no test depends on
/// run.sh's unprivileged pass (which runs later) having created them. Once per test process,
/// because these tests run in parallel threads and the shadow tools refuse to race: `useradd`
/// exits 9 when another thread created the user between our check and our call, and 10 when it
/// holds the lock on /etc/passwd. Exit 9 from another process (hpc/setup.sh) is no error either.
fn ensure_accounts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for group in [RENDER, VIDEO] {
            ensure_group(group);
        }
        ensure_user(GPU_USER, &[RENDER, VIDEO]);
        ensure_user(PLAIN_USER, &[]);
    });
}

/// `useradd`/`groupadd`'s exit status for "already exists" (shadow-utils).
const EXISTS: i32 = 9;

fn ensure_group(name: &str) {
    if output(Command::new("getent").args(["group", name])).status.code() == Some(0) {
        return;
    }
    let out = output(Command::new("groupadd").args(["--system", name]));
    assert!(matches!(out.status.code(), Some(0 | EXISTS)), "groupadd {name}: {}", describe(&out));
}

/// Creates `name` (no home) or adds an existing one to `groups`.
fn ensure_user(name: &str, groups: &[&str]) {
    if output(Command::new("id").arg(name)).status.code() != Some(0) {
        let mut cmd = Command::new("useradd");
        cmd.args(["-M", "-s", "/bin/sh", name]);
        if !groups.is_empty() {
            cmd.args(["-G", &groups.join(",")]);
        }
        let out = output(&mut cmd);
        match out.status.code() {
            Some(0) => return,
            Some(EXISTS) => {}
            _ => panic!("useradd {name}: {}", describe(&out)),
        }
    }
    if !groups.is_empty() {
        let out = output(Command::new("usermod").args(["-a", "-G", &groups.join(","), name]));
        assert_eq!(out.status.code(), Some(0), "usermod {name}: {}", describe(&out));
    }
}

/// The host's cache plus one more library directory (the extracted NVIDIA libraries, or a test's
/// own), written with `ldconfig -C` (the real /etc/ld.so.cache is only covered by a bind inside
/// the test's mount namespace).
fn build_ld_cache(dir: &Path, extra_lib_dir: &Path) -> PathBuf {
    let conf = dir.join("ld.so.conf");
    write(
        &conf,
        &format!(
            "include /etc/ld.so.conf.d/*.conf\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n{}\n",
            extra_lib_dir.display()
        ),
    );
    let cache = dir.join("ld.so.cache");
    let out = output(Command::new("ldconfig").arg("-X").arg("-C").arg(&cache).arg("-f").arg(&conf));
    assert_eq!(out.status.code(), Some(0), "ldconfig: {}", describe(&out));
    cache
}

fn busybox_rootfs(root: &Path) -> Option<PathBuf> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        skip("no /bin/busybox: apt-get install busybox-static");
        return None;
    }
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "echo", "env", "true", "grep", "tr", "id"] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&root.join("etc/group"), "root:x:0:\n");
    Some(root.to_path_buf())
}

/// busybox plus the host's glibc, libgcc_s and libstdc++ copied in: a glibc image that lacks
/// every ROCm and NVIDIA library (documented stand-in for a debootstrapped one, which is slow).
fn glibc_rootfs(root: &Path) -> Option<PathBuf> {
    busybox_rootfs(root)?;
    let lib = root.join("lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&lib).unwrap();
    for name in ["ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libgcc_s.so.1", "libstdc++.so.6"] {
        let src = Path::new("/lib/x86_64-linux-gnu").join(name);
        std::fs::copy(&src, lib.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    std::fs::create_dir_all(root.join("lib64")).unwrap();
    symlink("../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", root.join("lib64/ld-linux-x86-64.so.2")).unwrap();
    Some(root.to_path_buf())
}

/// The glibc rootfs with Apptainer's `/.singularity.d`, as a SquashFS image: its env script sets
/// a PATH without `/.gpurun/bin` and `NVIDIA_VISIBLE_DEVICES=all`, which gpurun must correct
/// after the script, so the GPU tools stay found and the selection stays gpurun's.
fn apptainer_squashfs(dir: &Path) -> Option<PathBuf> {
    let root = glibc_rootfs(&dir.join("apptainer-root"))?;
    let env = root.join(".singularity.d/env");
    std::fs::create_dir_all(&env).unwrap();
    std::fs::write(
        env.join("10-docker2singularity.sh"),
        "export PATH=/usr/local/bin:/usr/bin:/bin\nexport NVIDIA_VISIBLE_DEVICES=all\n",
    )
    .unwrap();
    let image = dir.join("apptainer.sqsh");
    let made = output(Command::new("mksquashfs").arg(&root).arg(&image).args([
        "-noappend",
        "-quiet",
        "-no-progress",
    ]));
    if !made.status.success() {
        skip(&format!("mksquashfs (squashfs-tools) failed or is missing: {}", describe(&made)));
        return None;
    }
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o644)).unwrap();
    Some(image)
}

/// Runs `gpurun ARGS` as `user` on the fake host.
fn gpurun(env: &Env, host: &FakeHost, user: &str, vars: &[(&str, &str)], args: &[&str]) -> Output {
    gpurun_with_cache(env, &env.ld_cache, host, user, vars, args)
}

/// [`gpurun`] with another host `ld.so.cache`.
fn gpurun_with_cache(
    env: &Env,
    ld_cache: &Path,
    host: &FakeHost,
    user: &str,
    vars: &[(&str, &str)],
    args: &[&str],
) -> Output {
    let cache = env.caches.join(user);
    let path =
        format!("{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", env.vendor.join("root/usr/bin").display());
    let mut all: Vec<(&str, &str)> = vec![("PATH", &path), ("GPURUN_CACHE_DIR", cache.to_str().unwrap())];
    all.extend_from_slice(vars);
    let mut cmd = vec![support::gpurun_bin().display().to_string()];
    cmd.extend(args.iter().map(|a| a.to_string()));
    let script = host.script(ld_cache, user, &all, &cmd);
    output(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null()),
    )
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs `sh -c SCRIPT` in `image` with GPU options and returns stdout, requiring exit 0.
fn inside(
    env: &Env,
    host: &FakeHost,
    user: &str,
    vars: &[(&str, &str)],
    opts: &[&str],
    script: &str,
) -> String {
    let image = env.busybox_image.to_str().unwrap();
    let mut args = vec!["-c"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[image, "sh", "-c", script]);
    let out = gpurun(env, host, user, vars, &args);
    assert_eq!(out.status.code(), Some(0), "{user} {opts:?}: {}", describe(&out));
    text(&out).trim().to_string()
}

const SHOW: &str = "ls /dev/dri | tr '\\n' ' '; echo; ls /dev | grep -E '^(kfd|nvidia)' | tr '\\n' ' '; echo; \
                    echo \"ROCR=${ROCR_VISIBLE_DEVICES-unset} NV=${NVIDIA_VISIBLE_DEVICES-unset}\"";

#[test]
fn mixed_amd_nvidia_server() {
    let Some(env) = setup() else { return };
    let host = mixed_server();
    for user in ["root", GPU_USER] {
        let rocm = inside(&env, &host, user, &[], &["--rocm"], SHOW);
        assert_eq!(
            rocm.lines().collect::<Vec<_>>()[..2],
            ["card1 card2 renderD128 renderD129 ", "kfd "],
            "{user}: {rocm}"
        );
        let nv = inside(&env, &host, user, &[], &["--nv"], SHOW);
        let lines: Vec<&str> = nv.lines().collect();
        assert_eq!(lines[0], "card3 card4 renderD130 renderD131 ", "{user}: {nv}");
        assert_eq!(
            lines[1],
            "nvidia-caps nvidia-modeset nvidia-uvm nvidia-uvm-tools nvidia0 nvidia1 nvidiactl "
        );
        let one = inside(&env, &host, user, &[], &["--nv", "--gpus", "1"], SHOW);
        assert!(one.starts_with("card4 renderD131 \n") && one.contains("NV=0"), "{user}: {one}");
        let by_env =
            inside(&env, &host, user, &[("NVIDIA_VISIBLE_DEVICES", "0000:c3:00.0")], &["--nv"], SHOW);
        assert_eq!(by_env, one, "the variable selects like --gpus");
        let amd1 = inside(&env, &host, user, &[("ROCR_VISIBLE_DEVICES", "1")], &["--rocm"], SHOW);
        assert!(amd1.starts_with("card2 renderD129 \nkfd \nROCR=0 "), "renumbered: {amd1}");
        // Slurm's allocation selects (issue 9): its IDs win over the *_VISIBLE_DEVICES it also
        // sets, and what the container inherits is renumbered from 0.
        let show_cuda = format!("{SHOW}; echo \"CUDA=${{CUDA_VISIBLE_DEVICES-unset}}\"");
        let slurm = [("SLURM_JOB_GPUS", "0,1"), ("SLURM_STEP_GPUS", "1"), ("CUDA_VISIBLE_DEVICES", "1")];
        let own = [("SLURM_STEP_GPUS", "0,1"), ("CUDA_VISIBLE_DEVICES", "1")];
        let own = inside(&env, &host, user, &own, &["--nv"], &show_cuda);
        assert!(own.ends_with("CUDA=1"), "the job's own choice among its GPUs is kept: {own}");
        let step = inside(&env, &host, user, &slurm, &["--nv"], &show_cuda);
        assert!(step.starts_with("card4 renderD131 \n") && step.contains("NV=0"), "{user}: {step}");
        assert!(step.ends_with("CUDA=0"), "CUDA_VISIBLE_DEVICES renumbered: {step}");
        let job = [("SLURM_JOB_GPUS", "1"), ("ROCR_VISIBLE_DEVICES", "0"), ("CUDA_VISIBLE_DEVICES", "1")];
        let amd = inside(&env, &host, user, &job, &["--rocm"], &show_cuda);
        assert!(amd.starts_with("card2 renderD129 \nkfd \nROCR=0 "), "SLURM_JOB_GPUS=1: {amd}");
        assert!(amd.ends_with("CUDA=0"), "{amd}");
        for image in [&env.busybox_image, &env.glibc_image, &env.apptainer_image] {
            let out = gpurun(&env, &host, user, &[], &["-c", "--rocm", image.to_str().unwrap(), "rocminfo"]);
            println!("{user} {} rocminfo: {}", image.display(), describe(&out));
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert!(text(&out).contains("ROCk module is NOT loaded"), "{}", describe(&out));
            let out = gpurun(&env, &host, user, &[], &["-c", "--nv", image.to_str().unwrap(), "nvidia-smi"]);
            println!("{user} {} nvidia-smi: {}", image.display(), describe(&out));
            assert_eq!(out.status.code(), Some(9), "{}", describe(&out));
            assert!(text(&out).contains("couldn't communicate with the NVIDIA driver"), "{}", describe(&out));
        }
        // The Apptainer image's env script set PATH and NVIDIA_VISIBLE_DEVICES=all: gpurun's
        // selection and search path win over it, as over an OCI image's Env.
        let probe = "echo NV=$NVIDIA_VISIBLE_DEVICES PATH=$PATH";
        let seen = |image: &Path| {
            let out = gpurun(
                &env,
                &host,
                user,
                &[],
                &["-c", "--nv", "--gpus", "1", image.to_str().unwrap(), "sh", "-c", probe],
            );
            assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
            text(&out).trim().to_string()
        };
        let (oci, apptainer) = (seen(&env.glibc_image), seen(&env.apptainer_image));
        assert_eq!(oci.split(' ').next(), apptainer.split(' ').next(), "{user}: {oci} / {apptainer}");
        assert!(apptainer.ends_with("PATH=/usr/local/bin:/usr/bin:/bin:/.gpurun/bin"), "{user}: {apptainer}");
        let listing = gpurun(&env, &host, user, &[], &["gpus", "--json"]);
        let rows: serde_json::Value = serde_json::from_slice(&listing.stdout).expect("gpus --json");
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert!(rows.iter().filter(|r| r["vendor"] != "other").all(|r| r["accessible"] == true), "{rows:?}");
        assert_eq!(rows[1]["gfx_target"], "gfx906");
        assert_eq!(rows[3]["render"], "renderD130");
    }
    let denied =
        gpurun(&env, &host, PLAIN_USER, &[], &["-c", "--rocm", env.busybox_image.to_str().unwrap(), "true"]);
    println!("{PLAIN_USER} --rocm: {}", describe(&denied));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(denied.status.code(), Some(125), "{}", describe(&denied));
    assert!(err.contains("/dev/kfd") && err.contains("sudo usermod -aG render $USER"), "{err}");
    let doctor = gpurun(&env, &host, PLAIN_USER, &[], &["doctor", "--rocm"]);
    assert!(text(&doctor).contains("sudo usermod -aG render $USER"), "{}", describe(&doctor));
    // NVIDIA nodes are world-accessible: the plain user still gets nvidia-smi's driver error.
    let nv = gpurun(
        &env,
        &host,
        PLAIN_USER,
        &[],
        &["-c", "--nv", env.glibc_image.to_str().unwrap(), "nvidia-smi"],
    );
    assert_eq!(nv.status.code(), Some(9), "{}", describe(&nv));
}

#[test]
fn discrete_gpu_beside_an_apu() {
    let Some(env) = setup() else { return };
    let host = dgpu_and_igpu();
    for user in ["root", GPU_USER] {
        let default = inside(&env, &host, user, &[], &["--rocm"], SHOW);
        assert!(default.starts_with("card1 renderD128 \nkfd \n"), "iGPU left out: {default}");
        let all = inside(&env, &host, user, &[], &["--rocm", "--gpus", "all"], SHOW);
        assert!(all.starts_with("card1 card2 renderD128 renderD129 \n"), "{all}");
        let igpu = inside(&env, &host, user, &[], &["--rocm", "--gpus", "renderD129"], SHOW);
        assert!(igpu.starts_with("card2 renderD129 \n"), "{igpu}");
        let amd = inside(&env, &host, user, &[("AMD_VISIBLE_DEVICES", "0xbbbb")], &["--rocm"], SHOW);
        assert!(amd.starts_with("card2 renderD129 \n"), "unique id: {amd}");
        let none = gpurun(
            &env,
            &host,
            user,
            &[],
            &["-c", "--rocm", "--gpus", "5", env.busybox_image.to_str().unwrap(), "true"],
        );
        assert_eq!(none.status.code(), Some(125));
        assert!(
            String::from_utf8_lossy(&none.stderr).contains("0 0000:07:00.0, 1 0000:c8:00.0"),
            "{}",
            describe(&none)
        );
        let table = text(&gpurun(&env, &host, user, &[], &["gpus"]));
        println!("{table}");
        assert!(table.contains("0000:c8:00.0  integrated") && table.contains("gfx1103"), "{table}");
        assert!(table.contains("0000:07:00.0  discrete") && table.contains("gfx1102"), "{table}");
        let doctor = text(&gpurun(&env, &host, user, &[], &["doctor", "--rocm"]));
        println!("{doctor}");
        assert!(doctor.contains("HSA_OVERRIDE_GFX_VERSION=11.0.0"), "{doctor}");
    }
}

/// `--device` with a CDI spec in the host's `/var/run/cdi` (a tmpfs over `/run` in the fake
/// host's namespace), shaped like `nvidia-ctk cdi generate` output: the device's and the common
/// device nodes only, a library mount from the host, the env, the two emulated hooks and one that
/// is reported.
#[test]
fn cdi_device_from_a_spec() {
    let Some(env) = setup() else { return };
    let mut host = mixed_server();
    let lib = env.vendor.join("root/usr/lib/x86_64-linux-gnu/nvidia/current/libnvidia-ml.so.535.309.01");
    assert!(lib.is_file(), "{}", lib.display());
    let spec = host.dir.path().join("nvidia.yaml");
    write(
        &spec,
        &format!(
            "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"1\"\n  containerEdits:\n    deviceNodes:\n    \
             - path: /dev/nvidia1\n- name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n\
             containerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  deviceNodes:\n  - path: /dev/nvidiactl\n  \
             mounts:\n  - hostPath: {lib}\n    containerPath: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.309.01\n    \
             options: [ro, nosuid, nodev, bind]\n  hooks:\n  - hookName: createContainer\n    \
             path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, create-symlinks, --link, \
             libnvidia-ml.so.535.309.01::/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1]\n  \
             - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    \
             args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]\n  \
             - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, chmod, --mode, '755']\n",
            lib = lib.display()
        ),
    );
    host.setup = format!(
        "mount -t tmpfs -o mode=755 fakerun /run\nmkdir -p /run/cdi\ncp {} /run/cdi/nvidia.yaml\n",
        spec.display()
    );
    let show = "ls /dev | grep nvidia | tr '\\n' ' '; echo; echo \"NV=$NVIDIA_VISIBLE_DEVICES LD=$LD_LIBRARY_PATH\"; \
                readlink /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1; \
                wc -c < /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.535.309.01";
    let size = std::fs::metadata(&lib).unwrap().len().to_string();
    for user in ["root", GPU_USER] {
        let image = env.glibc_image.to_str().unwrap();
        let out =
            gpurun(&env, &host, user, &[], &["-c", "--device", "nvidia.com/gpu=1", image, "sh", "-c", show]);
        assert_eq!(out.status.code(), Some(0), "{user}: {}", describe(&out));
        let got = text(&out);
        println!("{user} --device nvidia.com/gpu=1: {}", describe(&out));
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines[0], "nvidia1 nvidiactl ", "only the device's and the common nodes: {got}");
        assert!(
            lines[1].starts_with("NV=void LD=") && lines[1].contains("/usr/lib/x86_64-linux-gnu"),
            "{got}"
        );
        assert_eq!(lines[2], "libnvidia-ml.so.535.309.01", "create-symlinks emulated: {got}");
        assert_eq!(lines[3].trim(), size, "the host library is mounted: {got}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("chmod"), "the hook that cannot run is reported: {}", describe(&out));
        let quiet =
            gpurun(&env, &host, user, &[], &["-q", "-c", "--device", "nvidia.com/gpu=1", image, "true"]);
        assert_eq!(quiet.status.code(), Some(0), "{user} -q: {}", describe(&quiet));
        assert!(quiet.stderr.is_empty(), "-q silences the GPU warnings too: {}", describe(&quiet));
        let unknown = gpurun(&env, &host, user, &[], &["-c", "--device", "nvidia.com/gpu=7", image, "true"]);
        assert_eq!(unknown.status.code(), Some(125), "{}", describe(&unknown));
        assert!(String::from_utf8_lossy(&unknown.stderr).contains("gpu=7"), "{}", describe(&unknown));
    }
}

/// Host libraries never replace the image's own: with `--rocm`, a library the image already has
/// (here the ROCm runtime itself) is not bound into `/.gpurun/lib`, while the same image without it
/// gets the host's.
#[test]
fn image_libraries_are_not_replaced() {
    let Some(env) = setup() else { return };
    let host = mixed_server();
    let dir = public_temp("gpu-ownlib");
    let Some(image) = glibc_rootfs(&dir.path().join("image")) else { return };
    let hsa = "libhsa-runtime64.so.1";
    let host_copy = Path::new("/usr/lib/x86_64-linux-gnu").join(hsa);
    std::fs::copy(&host_copy, image.join("lib/x86_64-linux-gnu").join(hsa))
        .unwrap_or_else(|e| panic!("copy {}: {e}", host_copy.display()));
    let bound = |user: &str, image: &Path| -> Vec<String> {
        let out = gpurun(
            &env,
            &host,
            user,
            &[],
            &["-c", "--rocm", "--dry-run", image.to_str().unwrap(), "rocminfo"],
        );
        assert_eq!(out.status.code(), Some(0), "{user}: {}", describe(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON plan");
        plan["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["op"] == "bind")
            .filter_map(|m| m["target"].as_str())
            .filter_map(|t| t.split_once("/.gpurun/").map(|(_, rest)| rest.to_string()))
            .collect()
    };
    for user in ["root", GPU_USER] {
        let without = bound(user, &env.glibc_image);
        let with = bound(user, &image);
        println!("{user}: image without {hsa}: {without:?}\n{user}: image with it: {with:?}");
        assert!(
            without.contains(&format!("lib/{hsa}")),
            "the host's copy is bound when missing: {without:?}"
        );
        assert!(!with.contains(&format!("lib/{hsa}")), "the image's copy wins: {with:?}");
        assert!(with.contains(&"bin/rocminfo".to_string()), "the tool is still bound: {with:?}");
        // The image's copy brings its own dependencies (they are the image's business), so only
        // the host's copy and what only it needed drop out.
        assert!(with.iter().all(|b| without.contains(b)), "nothing else is added: {with:?} vs {without:?}");
    }
}

/// A host library that needs a newer glibc than the image's is skipped with a warning naming both
/// versions (mixing glibcs breaks the image's processes), while an image without glibc, which
/// gets the host's, takes it. The library is built here against a stub libc.so.6 that defines
/// GLIBC_2.99 and is offered through `GPURUN_ROCM_LIBS`.
#[test]
fn host_library_needing_a_newer_glibc_is_skipped() {
    let Some(env) = setup() else { return };
    let host = mixed_server();
    let dir = public_temp("gpu-newglibc");
    let (stub, lib) = (dir.path().join("stub"), dir.path().join("lib"));
    std::fs::create_dir_all(&stub).unwrap();
    std::fs::create_dir_all(&lib).unwrap();
    write(&dir.path().join("stub.c"), "void gpurun_future(void) {}\n");
    write(&dir.path().join("stub.map"), "GLIBC_2.99 { global: gpurun_future; };\n");
    write(
        &dir.path().join("f.c"),
        "extern void gpurun_future(void);\nvoid gpurun_needs(void) { gpurun_future(); }\n",
    );
    let cc = |args: &[&str]| {
        let out = output(Command::new("cc").current_dir(dir.path()).args(args));
        assert_eq!(out.status.code(), Some(0), "cc {args:?}: {}", describe(&out));
    };
    cc(&[
        "-shared",
        "-nostdlib",
        "-fPIC",
        "-o",
        "stub/libc.so.6",
        "-Wl,-soname,libc.so.6",
        "-Wl,--version-script=stub.map",
        "stub.c",
    ]);
    cc(&[
        "-shared",
        "-nostdlib",
        "-fPIC",
        "-o",
        "lib/libgpurunfuture.so.1",
        "-Wl,-soname,libgpurunfuture.so.1",
        "f.c",
        "stub/libc.so.6",
    ]);
    chmod_tree(dir.path());
    let ld_cache = build_ld_cache(dir.path(), &lib);
    let vars = [("GPURUN_ROCM_LIBS", "libgpurunfuture.so")];
    for user in ["root", GPU_USER] {
        let run = |image: &Path| {
            let args = ["-c", "--rocm", "--dry-run", image.to_str().unwrap(), "true"];
            let out = gpurun_with_cache(&env, &ld_cache, &host, user, &vars, &args);
            assert_eq!(out.status.code(), Some(0), "{user}: {}", describe(&out));
            out
        };
        let glibc = run(&env.glibc_image);
        let err = String::from_utf8_lossy(&glibc.stderr);
        println!("{user} glibc image: {err}");
        // The image's glibc is a copy of the host's, whatever its version.
        assert!(
            err.contains("libgpurunfuture.so.1 needs glibc 2.99 but the image has glibc 2.")
                && err.contains("; not bound"),
            "{}",
            describe(&glibc)
        );
        assert!(
            !text(&glibc).contains(".gpurun/lib/libgpurunfuture.so.1"),
            "not bound: {}",
            describe(&glibc)
        );
        let static_image = run(&env.busybox_image);
        assert!(
            text(&static_image).contains(".gpurun/lib/libgpurunfuture.so.1"),
            "{}",
            describe(&static_image)
        );
    }
}

/// A kernel and nothing else, so clang needs neither the HIP headers nor ROCm's device libraries:
/// the host side registers the offload bundle, which is all the override logic reads.
const HIP_SOURCE: &str = "#define __global__ __attribute__((global))\n\
    typedef struct { unsigned x, y, z; } dim3;\n\
    typedef struct ihipStream_t *hipStream_t;\n\
    extern \"C\" int hipLaunchKernel(const void *, dim3, dim3, void **, unsigned long, hipStream_t);\n\
    extern \"C\" __global__ void gpurun_probe(int *p) { *p = 42; }\n";

/// A busybox image whose `/usr/lib/x86_64-linux-gnu/libprobe.so.1` carries real HIP device code
/// for `targets`, compiled by clang 15 (`--offload-arch`).
fn hip_image(env: &Env, targets: &[&str]) -> PathBuf {
    let name = targets.join("-");
    let root = env.dir.path().join(format!("hip-{name}"));
    busybox_rootfs(&root).unwrap();
    let lib_dir = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&lib_dir).unwrap();
    let src = env.dir.path().join("probe.hip");
    write(&src, HIP_SOURCE);
    let mut cmd = Command::new("clang++-15");
    cmd.args(["-x", "hip", "-nogpulib", "-nogpuinc", "-fPIC", "-shared", "-o"]);
    cmd.arg(lib_dir.join("libprobe.so.1")).arg(&src);
    cmd.args(targets.iter().map(|t| format!("--offload-arch={t}")));
    let out = output(&mut cmd);
    assert_eq!(out.status.code(), Some(0), "clang++-15 for {name}: {}", describe(&out));
    chmod_tree(&root);
    root
}

const SHOW_HSA: &str = "echo \"HSA=${HSA_OVERRIDE_GFX_VERSION-unset}\"";

/// `gpurun -c --rocm OPTS IMAGE sh -c SHOW_HSA`: the variable's value and gpurun's notices.
fn hsa(
    env: &Env,
    host: &FakeHost,
    vars: &[(&str, &str)],
    opts: &[&str],
    image: &Path,
) -> (String, Vec<String>) {
    let mut args = vec!["-c", "--rocm"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[image.to_str().unwrap(), "sh", "-c", SHOW_HSA]);
    let out = gpurun(env, host, GPU_USER, vars, &args);
    assert_eq!(out.status.code(), Some(0), "{opts:?} {}: {}", image.display(), describe(&out));
    let notices = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("gpurun: notice:") || l.starts_with("gpurun: warning:"))
        .map(str::to_string)
        .collect();
    (text(&out).trim().to_string(), notices)
}

/// Issue 15: a Radeon 780M (gfx1103) with images built for other targets. The variable is set
/// exactly when the image has a target of the GPU's family and not the GPU's own, with one notice;
/// the user's own value, `--no-gfx-override` and its variable win.
#[test]
fn an_apu_runs_as_the_target_its_image_has() {
    let Some(env) = setup() else { return };
    let host = apu_alone();
    let navi31 = hip_image(&env, &["gfx1100"]);
    let (value, notes) = hsa(&env, &host, &[], &[], &navi31);
    assert_eq!(value, "HSA=11.0.0");
    println!("{notes:?}");
    assert_eq!(notes.len(), 1, "one notice: {notes:?}");
    assert!(
        notes[0].contains("GPU 0 (gfx1103, 0000:c6:00.0)") && notes[0].contains("as gfx1100"),
        "{notes:?}"
    );
    let (value, notes) = hsa(&env, &host, &[], &["-q"], &navi31);
    assert_eq!((value.as_str(), notes.len()), ("HSA=11.0.0", 0), "-q silences the notice only");
    let own = [("HSA_OVERRIDE_GFX_VERSION", "11.0.2")];
    assert_eq!(
        hsa(&env, &host, &own, &[], &navi31),
        ("HSA=11.0.2".into(), vec![]),
        "the caller's value wins"
    );
    let flag = ["--env", "HSA_OVERRIDE_GFX_VERSION=11.0.1"];
    assert_eq!(hsa(&env, &host, &[], &flag, &navi31).0, "HSA=11.0.1", "--env wins");
    assert_eq!(hsa(&env, &host, &[], &["--no-gfx-override"], &navi31), ("HSA=unset".into(), vec![]));
    let off = [("GPURUN_NO_GFX_OVERRIDE", "1")];
    assert_eq!(hsa(&env, &host, &off, &[], &navi31), ("HSA=unset".into(), vec![]));
    // Code for the APU's own target, or for several including it: nothing to do.
    let own_code = hip_image(&env, &["gfx1030", "gfx1103"]);
    assert_eq!(hsa(&env, &host, &[], &[], &own_code), ("HSA=unset".into(), vec![]));
    // Debian's real librocsparse (gfx803 ... gfx90a, gfx1030): nothing of the gfx11 family, so
    // no override, and a warning naming what the image has.
    let rocsparse = env.vendor.join("rocsparse");
    let (value, notes) = hsa(&env, &host, &[], &[], &rocsparse);
    assert_eq!(value, "HSA=unset");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("gpurun: warning:") && notes[0].contains("gfx1030, gfx803"), "{notes:?}");
    // Without --rocm nothing is read or set.
    let out = gpurun(&env, &host, GPU_USER, &[], &["-c", navi31.to_str().unwrap(), "sh", "-c", SHOW_HSA]);
    assert_eq!(text(&out).trim(), "HSA=unset", "{}", describe(&out));
    // What the user sees of the APU's memory.
    let table = text(&gpurun(&env, &host, GPU_USER, &[], &["gpus"]));
    assert!(table.contains("VRAM") && table.contains("512M    4.0G"), "{table}");
    let rows = gpurun(&env, &host, GPU_USER, &[], &["gpus", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&rows.stdout).expect("gpus --json");
    assert_eq!(
        (rows[0]["vram_bytes"].as_u64(), rows[0]["gtt_bytes"].as_u64()),
        (Some(512 << 20), Some(4 << 30))
    );
    assert_eq!(rows[0]["kind"], "integrated");
    let doctor = text(&gpurun(&env, &host, GPU_USER, &[], &["doctor", "--rocm"]));
    println!("{doctor}");
    assert!(doctor.contains("4.0 GiB GTT") && doctor.contains("ttm.pages_limit="), "{doctor}");
}

/// Issue 15: one override covers every GPU of a process. An RX 7600 (gfx1102) and the Phoenix1
/// APU share the gfx11 family, so they run one target's code; a Radeon VII (gfx906) with code
/// of its own beside the APU cannot, and selecting both is refused with what to do.
#[test]
fn one_override_for_the_selected_gpus() {
    let Some(env) = setup() else { return };
    let host = dgpu_and_igpu();
    let navi31 = hip_image(&env, &["gfx1100"]);
    let all = ["--gpus", "all"];
    let (value, notes) = hsa(&env, &host, &[], &all, &navi31);
    assert_eq!(value, "HSA=11.0.0");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("gfx1102") && notes[0].contains("gfx1103"), "both GPUs named: {notes:?}");
    // The dGPU's own target is in the image: the APU runs as it, the dGPU stays itself.
    let navi3 = hip_image(&env, &["gfx1100", "gfx1102"]);
    assert_eq!(hsa(&env, &host, &[], &all, &navi3).0, "HSA=11.0.2");
    assert_eq!(hsa(&env, &host, &[], &[], &navi3), ("HSA=unset".into(), vec![]), "default: the dGPU alone");
    let host = radeon_vii_and_apu();
    let vega_navi = hip_image(&env, &["gfx906", "gfx1100"]);
    let mut args = vec!["-c", "--rocm", "--gpus", "all", vega_navi.to_str().unwrap(), "true"];
    let refused = gpurun(&env, &host, GPU_USER, &[], &args);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(125), "{}", describe(&refused));
    assert!(err.contains("GPU 0 (gfx906, 0000:03:00.0)") && err.contains("select one GPU"), "{err}");
    args[3] = "1";
    let apu = gpurun(&env, &host, GPU_USER, &[], &args);
    assert_eq!(apu.status.code(), Some(0), "the APU alone: {}", describe(&apu));
    assert_eq!(hsa(&env, &host, &[], &["--gpus", "1"], &vega_navi).0, "HSA=11.0.0");
    assert_eq!(hsa(&env, &host, &[], &["--gpus", "0"], &vega_navi).0, "HSA=unset");
    let own = [("HSA_OVERRIDE_GFX_VERSION", "11.0.0")];
    assert_eq!(hsa(&env, &host, &own, &all, &vega_navi).0, "HSA=11.0.0", "the caller decided");
    // ROCm's per-node form, set by the caller for the APU alone, is left to do its work.
    let per_node = [("HSA_OVERRIDE_GFX_VERSION_2", "11.0.0")];
    assert_eq!(hsa(&env, &host, &per_node, &all, &vega_navi), ("HSA=unset".into(), vec![]));
}

/// Issue 15: a cached image's targets are read once and remembered with it; the warm start reads
/// the memo, not the image (proved by changing the memo).
#[test]
fn device_code_is_remembered_with_the_cached_image() {
    let Some(env) = setup() else { return };
    let host = apu_alone();
    let rootfs = hip_image(&env, &["gfx1100"]);
    let archive = env.dir.path().join("hip-gfx1100.tar");
    support::docker_archive(&[&rootfs], &archive);
    chmod_tree(env.dir.path());
    assert_eq!(hsa(&env, &host, &[], &[], &archive).0, "HSA=11.0.0");
    let images = env.caches.join(GPU_USER).join("images");
    let memos: Vec<PathBuf> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path().join("device-code.json"))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(memos.len(), 1, "one memo in {}", images.display());
    let memo = std::fs::read_to_string(&memos[0]).unwrap();
    assert!(memo.contains("\"gfx1100\""), "{memo}");
    assert_eq!(hsa(&env, &host, &[], &[], &archive).0, "HSA=11.0.0", "warm");
    write(&memos[0], &memo.replace("gfx1100", "gfx1103"));
    assert_eq!(
        hsa(&env, &host, &[], &[], &archive),
        ("HSA=unset".into(), vec![]),
        "the memo is what is read"
    );
}

/// Makes a test tree readable (and its directories searchable) by the unprivileged test user.
fn chmod_tree(root: &Path) {
    let out = output(Command::new("chmod").arg("-R").arg("a+rX").arg(root));
    assert_eq!(out.status.code(), Some(0), "chmod: {}", describe(&out));
}

/// A temporary directory the unprivileged test users can enter.
fn public_temp(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Ranks that share one container (`--join`) each keep their own `--gpus`: the container holds
/// the GPUs the job may use (here the vendor's default, all of them), and each rank's runtime
/// is narrowed to its own by its visibility variable (ROCm: the GPU's unique id; CUDA: its
/// position, in PCI order, as the fake host has no UUIDs).
#[test]
fn ranks_sharing_a_container_keep_their_own_gpus() {
    let Some(env) = setup() else { return };
    let host = mixed_server();
    let image = env.busybox_image.to_str().unwrap();
    // Each rank reports, then waits for the other's mark in the /tmp they share (-c: a tmpfs of
    // the container's own), which also keeps the first alive until the second has joined.
    // Each rank's choice by --gpus (0), by the vendor's variable set per rank (1), (CUDA) by its
    // own CUDA_VISIBLE_DEVICES beside the NVIDIA_VISIBLE_DEVICES=all of NVIDIA's images (2), or by
    // --gpus among Slurm's allocation (3).
    let rank = |vendor: &str, gpu: u32, by: u8| {
        let (var, flag) = match (vendor, by) {
            (_, 0) => (String::new(), format!("--gpus {gpu}")),
            // Slurm's step list in CUDA_VISIBLE_DEVICES gives way to the rank's --gpus.
            (_, 3) => ("SLURM_STEP_GPUS=0,1 CUDA_VISIBLE_DEVICES=0,1 ".into(), format!("--gpus {gpu}")),
            ("--rocm", _) => (format!("ROCR_VISIBLE_DEVICES={gpu} "), String::new()),
            (_, 1) => (format!("NVIDIA_VISIBLE_DEVICES={gpu} "), String::new()),
            _ => (format!("NVIDIA_VISIBLE_DEVICES=all CUDA_VISIBLE_DEVICES={gpu} "), String::new()),
        };
        format!(
            "{var}{gpurun} -c --join gpus-{vendor}-{by}-{pid} --join-count 2 {vendor} {flag} {image} sh -c '\
             echo \"{gpu}: $( (ls /dev; ls /dev/dri) | grep -E \"^(renderD|nvidia[0-9])\" | sort | tr \"\\n\" \" \")\
             ROCR=${{ROCR_VISIBLE_DEVICES-unset}} CUDA=${{CUDA_VISIBLE_DEVICES-unset}} \
             ORDER=${{CUDA_DEVICE_ORDER-unset}} $(readlink /proc/self/ns/mnt)\"; touch /tmp/mark{gpu}; \
             for i in $(seq 100); do [ -e /tmp/mark0 ] && [ -e /tmp/mark1 ] && exit 0; sleep 0.1; done; exit 3'",
            gpurun = support::gpurun_bin().display(),
            pid = std::process::id(),
        )
    };
    let cases = [("--rocm", "renderD128 renderD129"), ("--nv", "nvidia0 nvidia1 renderD130 renderD131")];
    for ((vendor, render), by) in cases.into_iter().flat_map(|c| [(c, 0), (c, 1), (c, 2), (c, 3)]) {
        let both =
            format!("{} & a=$!; {} & b=$!; wait $a && wait $b", rank(vendor, 0, by), rank(vendor, 1, by));
        let out = gpurun_script(&env, &host, GPU_USER, &both);
        assert_eq!(out.status.code(), Some(0), "{vendor}: {}", describe(&out));
        let mut lines: Vec<String> = text(&out).lines().map(str::to_string).collect();
        lines.sort();
        assert_eq!(lines.len(), 2, "{vendor}: {}", describe(&out));
        let ns: Vec<&str> = lines.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(ns[0], ns[1], "{vendor}: one mount namespace: {lines:?}");
        for (i, line) in lines.iter().enumerate() {
            assert!(line.starts_with(&format!("{i}: {render} ")), "{vendor}: both GPUs held: {line}");
            if vendor == "--rocm" {
                assert!(line.contains(&format!("ROCR=GPU-{:016x} ", 0x1111 * (i + 1))), "{line}");
            } else if by != 2 {
                assert!(line.contains(&format!("CUDA={i} ORDER=PCI_BUS_ID ")), "{line}");
            } else {
                assert!(
                    line.contains(&format!("CUDA={i} ORDER=unset ")),
                    "the rank's own choice kept: {line}"
                );
            }
        }
    }
    // A rank's --gpus outside what the shared container holds (Slurm's allocation) is refused.
    let outside = gpurun(
        &env,
        &host,
        GPU_USER,
        &[("SLURM_STEP_GPUS", "0")],
        &["-c", "--join", "k", "--nv", "--gpus", "1", image, "true"],
    );
    assert_eq!(outside.status.code(), Some(125), "{}", describe(&outside));
    assert!(String::from_utf8_lossy(&outside.stderr).contains("SLURM_STEP_GPUS"), "{}", describe(&outside));
}

/// Runs `sh -c SCRIPT` as `user` on the fake host (for several gpurun processes at once).
fn gpurun_script(env: &Env, host: &FakeHost, user: &str, script: &str) -> Output {
    let cache = env.caches.join(user);
    let path =
        format!("{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", env.vendor.join("root/usr/bin").display());
    let vars = [("PATH", path.as_str()), ("GPURUN_CACHE_DIR", cache.to_str().unwrap())];
    let cmd = ["sh".to_string(), "-c".to_string(), script.to_string()];
    let setup = host.script(&env.ld_cache, user, &vars, &cmd);
    output(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &setup])
            .stdin(Stdio::null()),
    )
}
