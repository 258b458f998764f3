//! Issue 12: gpurun on real older kernels. Debian's own kernels (bullseye's 5.10: no overlayfs in
//! user namespaces, no mount_setattr; bookworm's 6.1: the modern path on a distribution kernel),
//! fetched by `rootfs-tests/vm/fetch-kernels.sh`, are booted with `qemu-system-x86_64` (KVM when
//! `/dev/kvm` is there, TCG otherwise) on an initramfs this test builds: busybox, the gpurun
//! under test with the host's glibc beside it, the seccomp helper, test images (a busybox root,
//! a two-layer archive, a hostile archive, a many-file archive), a fake AMD GPU's sysfs, and
//! `rootfs-tests/vm/init.sh` as PID 1, which runs gpurun as an unprivileged user and prints one
//! `VMTEST` line per check on the serial console. This file checks those lines and prints the
//! `VMBENCH` figures. As root (qemu with KVM, mknod in the image tree); CI runs it as root.

mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{TempDir, describe, needs_root, output, run_limited, skip};

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Every check `init.sh` runs; each must print `VMTEST PASS <name>`.
const CHECKS: &[&str] = &[
    "identity",
    "glibc-image",
    "exit-code",
    "signal",
    "read-only-root",
    "ro-bind-refuses-writes",
    "ro-bind-keeps-host-flags",
    "bind-reads",
    "contain",
    "home",
    "fakeroot-without-subuid",
    "cold-unpack-layers",
    "warm-start",
    "hostile-sample-contained",
    "rocm-fake-gpu",
    "writable-tmpfs",
    "writable-tmpfs-fuse",
    "writable-tmpfs-needs-fuse-overlayfs",
    "no-daemon-left",
    "join",
    "doctor",
];

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// The kernels, fetched once: suite -> (vmlinuz, modules directory).
fn kernel(suite: &str) -> Option<(PathBuf, PathBuf)> {
    let dest = support::fixtures_dir().join("vm");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-tests/vm/fetch-kernels.sh");
    let out = output(Command::new("sh").arg(&script).arg(&dest));
    if out.status.code() != Some(0) {
        skip(&format!("Debian kernels could not be fetched: {}", describe(&out)));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text.lines().find(|l| l.starts_with(&format!("{suite} ")))?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    Some((PathBuf::from(parts[1]), PathBuf::from(parts[2])))
}

/// Copies `binary` into the tree at `dest` and the shared libraries it loads (from `ldd`) to the
/// same paths in the tree, so it runs on the VM's initramfs as it does here.
fn install_with_libs(tree: &Path, binary: &Path, dest: &str) {
    let to = tree.join(dest.trim_start_matches('/'));
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let strip = output(Command::new("strip").arg("-o").arg(&to).arg(binary));
    if strip.status.code() != Some(0) {
        std::fs::copy(binary, &to).unwrap();
    }
    let ldd = output(Command::new("ldd").arg(binary));
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let lib = line.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from);
        let Some(lib) = lib else { continue };
        let at = tree.join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::copy(&lib, &at).unwrap();
    }
}

/// A busybox root with the applets the checks use.
fn busybox_root(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "id", "ls", "touch", "true", "grep", "test", "echo", "kill", "env"] {
        symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    write(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    write(&root.join("etc/group"), "root:x:0:\n");
}

/// The test images, below `tree/images`.
fn images(tree: &Path, work: &Path) {
    let images = tree.join("images");
    busybox_root(&images.join("busybox"));
    // A glibc image: busybox plus this machine's glibc and a dynamically linked tool (the stand-in
    // for a Debian image that rootfs-tests/gpu.rs also uses: a debootstrapped one is too large
    // for an initramfs booted under TCG).
    let glibc = images.join("glibc");
    busybox_root(&glibc);
    for lib in ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"] {
        let real = std::fs::canonicalize(lib).unwrap();
        let at = glibc.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::copy(&real, &at).unwrap();
    }
    std::fs::create_dir_all(glibc.join("usr/bin")).unwrap();
    std::fs::copy("/usr/bin/true", glibc.join("usr/bin/true")).unwrap();
    std::fs::copy("/usr/bin/printenv", glibc.join("usr/bin/printenv")).unwrap();
    // Two layers: the second replaces a file and whites another out.
    let (l1, l2) = (work.join("l1"), work.join("l2"));
    busybox_root(&l1);
    write(&l1.join("file"), "layer1\n");
    write(&l1.join("removed"), "x\n");
    write(&l2.join("file"), "layer2-wins\n");
    write(&l2.join(".wh.removed"), "");
    support::docker_archive(&[&l1, &l2], &images.join("layers.tar"));
    // Hostile: a symlink out of the root, then a file written through it.
    let h = work.join("hostile");
    busybox_root(&h);
    symlink("../../../../../../tmp", h.join("escape")).unwrap();
    let hostile_layer = work.join("hostile-layer");
    std::fs::create_dir_all(hostile_layer.join("escape")).unwrap();
    write(&hostile_layer.join("escape/pwned"), "escaped\n");
    // tar stores escape/pwned below the directory; applied over the symlink of layer 1 it must
    // stay inside the root (or be refused).
    support::docker_archive(&[&h, &hostile_layer], &images.join("hostile.tar"));
    // Many small files, for the cold unpack figures.
    let many = work.join("many");
    busybox_root(&many);
    for d in 0..50 {
        for f in 0..20 {
            write(&many.join(format!("d{d}/sub/f{f}")), "x");
        }
    }
    support::docker_archive(&[&many], &images.join("many.tar"));
}

/// An RX 7900 XTX's sysfs (PCI, DRM, KFD topology), for `--rocm`.
fn fake_gpu(tree: &Path) {
    let sys = tree.join("fakesys");
    let dev = sys.join("bus/pci/devices/0000:03:00.0");
    write(&dev.join("vendor"), "0x1002\n");
    write(&dev.join("device"), "0x744c\n");
    write(&dev.join("class"), "0x030000\n");
    write(&dev.join("boot_vga"), "0\n");
    for node in ["card0", "renderD128"] {
        std::fs::create_dir_all(sys.join("class/drm").join(node)).unwrap();
        symlink("../../../bus/pci/devices/0000:03:00.0", sys.join("class/drm").join(node).join("device"))
            .unwrap();
    }
    let nodes = sys.join("class/kfd/kfd/topology/nodes");
    write(
        &nodes.join("0/properties"),
        "cpu_cores_count 4\nsimd_count 0\nlocation_id 0\ndrm_render_minor 0\n",
    );
    write(
        &nodes.join("1/properties"),
        "cpu_cores_count 0\nsimd_count 192\nlocation_id 768\ndomain 0\ndrm_render_minor 128\n\
         gfx_target_version 110000\nunique_id 4660\n",
    );
}

/// The initramfs tree and its cpio archive.
fn initramfs(dir: &Path, modules: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let work = dir.join("work");
    for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "etc", "home", "data", "modules", "gpurun"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
    let init = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-tests/vm/init.sh");
    std::fs::copy(&init, tree.join("init")).unwrap();
    std::fs::set_permissions(tree.join("init"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    write(
        &tree.join("etc/passwd"),
        "root::0:0:root:/root:/bin/sh\nuser::1000:1000:user:/home/user:/bin/sh\n",
    );
    write(&tree.join("etc/group"), "root:x:0:\nuser:x:1000:\n");
    install_with_libs(&tree, &support::gpurun_bin(), "/gpurun/gpurun");
    install_with_libs(&tree, &support::old_kernel_helper(), "/gpurun/old-kernel");
    for module in ["overlayfs/overlay.ko", "fuse/fuse.ko"] {
        let from = modules.join("kernel/fs").join(module);
        if from.exists() {
            std::fs::copy(&from, tree.join("modules").join(from.file_name().unwrap())).unwrap();
        }
    }
    install_with_libs(&tree, &support::which("fuse-overlayfs").unwrap(), "/usr/bin/fuse-overlayfs");
    images(&tree, &work);
    fake_gpu(&tree);
    let out = dir.join("initrd.cpio");
    let script = format!("cd {} && find . | busybox cpio -o -H newc > {}", tree.display(), out.display());
    let made = output(Command::new("sh").args(["-c", &script]));
    assert_eq!(made.status.code(), Some(0), "cpio: {}", describe(&made));
    out
}

/// Whether KVM boots a kernel here: `/dev/kvm` exists on some machines whose nested
/// virtualization then hangs the guest, so a tiny initramfs is booted first (once per process).
fn kvm_works(vmlinuz: &Path, dir: &Path) -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        if !Path::new("/dev/kvm").exists() {
            return false;
        }
        let tree = dir.join("kvm-probe");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", tree.join("bin/busybox")).unwrap();
        write(
            &tree.join("init"),
            "#!/bin/busybox sh\n/bin/busybox echo KVM-PROBE-OK\n/bin/busybox poweroff -f\n",
        );
        output(Command::new("chmod").arg("755").arg(tree.join("init")));
        let cpio = dir.join("kvm-probe.cpio");
        let script =
            format!("cd {} && find . | busybox cpio -o -H newc > {}", tree.display(), cpio.display());
        output(Command::new("sh").args(["-c", &script]));
        let mut qemu = Command::new("qemu-system-x86_64");
        qemu.args(["-m", "256", "-nographic", "-no-reboot", "-accel", "kvm", "-cpu", "host", "-kernel"])
            .arg(vmlinuz)
            .arg("-initrd")
            .arg(&cpio)
            .args(["-append", "console=ttyS0 panic=-1 quiet rdinit=/init"]);
        let got = run_limited(&mut qemu, Duration::from_secs(30));
        let ok = String::from_utf8_lossy(&got.output.stdout).contains("KVM-PROBE-OK");
        if !ok {
            println!("note: /dev/kvm does not boot a guest here; using TCG (software emulation)");
        }
        ok
    })
}

/// Boots `suite`'s kernel on the initramfs; returns the console output.
fn boot(suite: &str) -> Option<String> {
    if !needs_root("the VM tests use KVM and build device-free images as root; CI runs them as root") {
        return None;
    }
    for tool in ["qemu-system-x86_64", "strip", "ldd", "tar", "sha256sum", "cc", "fuse-overlayfs"] {
        if support::which(tool).is_none() {
            skip(&format!("{tool} missing: apt-get install qemu-system-x86 binutils gcc fuse-overlayfs"));
            return None;
        }
    }
    let (vmlinuz, modules) = kernel(suite)?;
    let dir = TempDir::new(&format!("vm-{suite}"));
    let initrd = initramfs(dir.path(), &modules);
    let kvm = kvm_works(&vmlinuz, dir.path());
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-m", "2048", "-smp", "2", "-nographic", "-no-reboot", "-serial", "mon:stdio"])
        .args(if kvm { ["-accel", "kvm", "-cpu", "host"] } else { ["-accel", "tcg", "-cpu", "max"] })
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet rdinit=/init"]);
    let got = run_limited(&mut qemu, BOOT_TIMEOUT);
    let text = String::from_utf8_lossy(&got.output.stdout).replace('\r', "");
    println!(
        "{suite} ({}):\n{}",
        if kvm { "KVM" } else { "TCG" },
        text.lines().filter(|l| l.starts_with("VM")).collect::<Vec<_>>().join("\n")
    );
    assert!(
        text.contains("VMTEST DONE"),
        "{suite}: the VM did not finish: {}\n{text}",
        describe(&got.output)
    );
    Some(text)
}

/// Every check passed; returns the DOCTOR and ROOT lines for the caller's own expectations.
fn all_passed(suite: &str, text: &str) -> (String, String) {
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("VMTEST FAIL")).collect();
    assert!(failed.is_empty(), "{suite}:\n{}", failed.join("\n"));
    for check in CHECKS {
        assert!(text.lines().any(|l| l == format!("VMTEST PASS {check}")), "{suite}: no result for {check}");
    }
    let line = |tag: &str| text.lines().find(|l| l.starts_with(tag)).unwrap_or_default().to_string();
    (line("VMTEST DOCTOR"), line("VMTEST ROOT"))
}

/// Debian 11's kernel: no overlayfs in user namespaces (the root is assembled from binds) and no
/// mount_setattr (read-only by remount); what RHEL 8's 4.18 also lacks but openat2, which the
/// seccomp variants of the corpus and sandbox tests cover.
#[test]
fn debian_bullseye_5_10() {
    let Some(text) = boot("bullseye") else { return };
    assert!(text.contains("VMTEST KERNEL 5.10."), "{text}");
    let (doctor, root) = all_passed("bullseye", &text);
    assert!(
        doctor.contains("no mount_setattr")
            && doctor.contains("no overlayfs in user namespaces")
            && doctor.contains("--writable-tmpfs through /usr/bin/fuse-overlayfs"),
        "{doctor}"
    );
    assert!(root.contains("\"bind\""), "{root}");
    assert!(text.contains("VMTEST WRITABLE_ROOT fuse.fuse-overlayfs"), "{text}");
    let line = |tag: &str| text.lines().find(|l| l.starts_with(tag)).unwrap_or_default();
    assert!(line("VMTEST DOCTOR_NO_FUSE").contains("needs /dev/fuse readable and writable"), "{text}");
    assert!(line("VMTEST RUN_NO_FUSE").contains("/dev/fuse: Permission denied"), "{text}");
}

/// Debian 12's kernel: the modern path (overlay, mount_setattr, openat2) on a distribution kernel.
#[test]
fn debian_bookworm_6_1() {
    let Some(text) = boot("bookworm") else { return };
    assert!(text.contains("VMTEST KERNEL 6.1."), "{text}");
    let (doctor, root) = all_passed("bookworm", &text);
    assert!(doctor.contains("every feature"), "{doctor}");
    assert!(root.contains("\"overlay\""), "{root}");
    assert!(text.contains("VMTEST WRITABLE_ROOT overlay"), "{text}");
    // The kernel's overlay needs no FUSE.
    assert!(text.contains("VMTEST RUN_NO_FUSE ran"), "{text}");
}
