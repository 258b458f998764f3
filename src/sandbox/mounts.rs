//! Applies the plan's mount operations, in order, through the [`Sys`] seam. It decides nothing:
//! every ordering rule lives in the planner. Runs inside the new mount and PID namespaces.

use std::ffi::OsStr;
use std::path::Path;

use crate::plan::{Layout, MountOp};
use crate::sys::{MountFlags, Propagation, Sys};

use super::SandboxError;
use super::assemble::Assembly;

/// Applies `ops` in order; the first failure stops and names the step.
pub fn apply(sys: &mut dyn Sys, ops: &[MountOp], layout: &Layout) -> Result<(), SandboxError> {
    let mut assembly = Assembly::default();
    for op in ops {
        let done = match op {
            MountOp::AssembleRoot { image, target, mount_points, writable } => {
                assembly.build(sys, image, target, mount_points, writable)
            }
            MountOp::FreezeAssembly => assembly.freeze(sys),
            _ => apply_one(sys, op),
        };
        done.map_err(|source| SandboxError::Mount {
            step: describe(op, layout),
            hint: mount_hint(op, layout, &source),
            source,
        })?;
    }
    Ok(())
}

fn apply_one(sys: &mut dyn Sys, op: &MountOp) -> std::io::Result<()> {
    let nosuid_nodev = MountFlags { nosuid: true, nodev: true, ..MountFlags::default() };
    match op {
        MountOp::MakePrivate { target } => sys.set_propagation(target, Propagation::RecursivePrivate),
        MountOp::Staging { target } => {
            sys.mount(OsStr::new("tmpfs"), target, Some("tmpfs"), nosuid_nodev, Some("mode=755"))
        }
        MountOp::Unbindable { target } => sys.set_propagation(target, Propagation::Unbindable),
        MountOp::Mkdir { path, mode } => sys.mkdir(path, *mode),
        MountOp::CreateFile { path, mode } => sys.create_file(path, *mode),
        MountOp::WriteFile { path, contents, mode } => sys.write_file(path, contents.as_bytes(), *mode),
        MountOp::Symlink { target, link } => match sys.symlink(target, link) {
            // A user bind over /dev may already provide the link; keep theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        },
        MountOp::Overlay { lower, upper, work, target, userxattr } => {
            let mut data =
                format!("lowerdir={},upperdir={},workdir={}", escape(lower), escape(upper), escape(work));
            if *userxattr {
                // Unprivileged overlay stores its metadata in user.* xattrs (Linux 5.11,
                // Documentation/filesystems/overlayfs.rst "Permission model").
                data.push_str(",userxattr");
            }
            sys.mount(OsStr::new("overlay"), target, Some("overlay"), MountFlags::default(), Some(&data))
        }
        MountOp::FuseOverlay { program, lower, upper, work, target } => {
            let options = fuse_options(lower, upper, work)?;
            sys.fuse_mount(program, &options, target)?;
            // The pivot moves every process whose root is the old one onto the new root, and the
            // daemon must stay where it is (its lookups through its own mount would wait on
            // itself): the init continues in a copy of this mount namespace, the daemon does not.
            sys.unshare(libc::CLONE_NEWNS)
        }
        MountOp::Bind { source, target, recursive } => {
            let flags = MountFlags { bind: true, recursive: *recursive, ..MountFlags::default() };
            sys.mount(source.as_os_str(), target, None, flags, None)
        }
        MountOp::Tmpfs { target, mode } => sys.mount(
            OsStr::new("tmpfs"),
            target,
            Some("tmpfs"),
            nosuid_nodev,
            Some(&format!("mode={mode:o}")),
        ),
        MountOp::Proc { target } => {
            let flags = MountFlags { noexec: true, ..nosuid_nodev };
            sys.mount(OsStr::new("proc"), target, Some("proc"), flags, None)
        }
        MountOp::Devpts { target } => {
            // newinstance: a private pty namespace; no gid= because the tty group is usually not
            // mapped in the user namespace (devpts(5)).
            let flags = MountFlags { nosuid: true, noexec: true, ..MountFlags::default() };
            sys.mount(
                OsStr::new("devpts"),
                target,
                Some("devpts"),
                flags,
                Some("newinstance,ptmxmode=0666,mode=0620"),
            )
        }
        MountOp::ReadOnly { target, recursive } => sys.make_read_only(target, *recursive),
        MountOp::PivotRoot { new_root } => pivot_into(sys, new_root),
        // Applied by `apply`, which keeps the assembly's state between the two.
        MountOp::AssembleRoot { .. } | MountOp::FreezeAssembly => Ok(()),
    }
}

/// The bubblewrap sequence: `pivot_root(".", ".")` stacks the old root on top of the new one,
/// and detaching "." then drops the staging tmpfs together with the host tree below it, which a
/// user namespace may detach as a whole even though its mounts are locked (pivot_root(2) notes).
fn pivot_into(sys: &mut dyn Sys, new_root: &Path) -> std::io::Result<()> {
    sys.chdir(new_root)?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    sys.detach(Path::new("."))?;
    sys.chdir(Path::new("/"))
}

/// overlayfs splits its options on ',' and its layer lists on ':'; a backslash escapes both.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// fuse-overlayfs's options: its layers, and `allow_other` so that a workload that switches to
/// the image's user (`--fakeroot` with subordinate ids) may use its own root. libfuse splits
/// options on ',' and fuse-overlayfs its layer lists on ':', without a reliable escape.
fn fuse_options(lower: &Path, upper: &Path, work: &Path) -> std::io::Result<String> {
    for path in [lower, upper, work] {
        let text = path.to_string_lossy();
        if text.contains([',', ':', '\\']) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidFilename,
                format!("fuse-overlayfs cannot take the path {text} (it contains ',', ':' or '\\')"),
            ));
        }
    }
    Ok(format!(
        "lowerdir={},upperdir={},workdir={},allow_other",
        lower.display(),
        upper.display(),
        work.display()
    ))
}

/// Container paths live below the layout's root while the plan runs; messages show them as the
/// user wrote them.
fn inside(path: &Path, layout: &Layout) -> String {
    match layout.container_path(path) {
        Some(p) => format!("{} in the container", p.display()),
        None => format!("{} in the staging tmpfs", path.display()),
    }
}

/// A human description of one operation, naming the step and the object.
pub fn describe(op: &MountOp, layout: &Layout) -> String {
    let inside = |path: &Path| inside(path, layout);
    match op {
        MountOp::MakePrivate { target } => {
            format!("make the mount tree at {} private", target.display())
        }
        MountOp::Staging { target } => format!("mount the staging tmpfs on {}", target.display()),
        MountOp::Unbindable { target } => format!("make the staging tmpfs {} unbindable", target.display()),
        MountOp::Mkdir { path, .. } => format!("create mount point directory {}", inside(path)),
        MountOp::CreateFile { path, .. } => format!("create mount point file {}", inside(path)),
        MountOp::WriteFile { path, .. } => format!("write generated file {}", inside(path)),
        MountOp::Symlink { link, target } => {
            format!("create symlink {} -> {}", inside(link), target.display())
        }
        MountOp::Overlay { lower, .. } => {
            format!("mount the image {} as an overlay root", lower.display())
        }
        MountOp::FuseOverlay { program, lower, .. } => format!(
            "mount the image {} as a writable root with {} (--writable-tmpfs without overlayfs)",
            lower.display(),
            program.display()
        ),
        MountOp::Bind { source, target, .. } => {
            format!("bind-mount {} onto {}", source.display(), inside(target))
        }
        MountOp::Tmpfs { target, .. } => format!("mount a tmpfs on {}", inside(target)),
        MountOp::Proc { target } => format!("mount a new /proc on {}", inside(target)),
        MountOp::Devpts { target } => format!("mount a new devpts on {}", inside(target)),
        MountOp::ReadOnly { target, .. } => format!("make {} read-only", inside(target)),
        MountOp::PivotRoot { .. } => "pivot into the container root".into(),
        MountOp::AssembleRoot { image, .. } => {
            format!("assemble the container root from binds of the image {}", image.display())
        }
        MountOp::FreezeAssembly => "make the assembled root's directories read-only".into(),
    }
}

fn mount_hint(op: &MountOp, layout: &Layout, err: &std::io::Error) -> Option<String> {
    let errno = err.raw_os_error();
    match op {
        MountOp::Overlay { .. } => Some(
            "unprivileged overlayfs needs Linux 5.11 or later, and the image directory must be on a \
             filesystem overlayfs accepts as a lower layer (local disk works; some FUSE and NFS setups do not); \
             --root-mode bind assembles the root from binds instead"
                .into(),
        ),
        MountOp::FuseOverlay { .. } if err.kind() == std::io::ErrorKind::InvalidFilename => Some(
            "move that directory (an image directory, or the cache: GPURUN_CACHE_DIR) to a path without \
             ',', ':' or '\\'"
                .into(),
        ),
        MountOp::FuseOverlay { .. } => Some(
            "fuse-overlayfs needs /dev/fuse readable and writable by you (mode 0666, as the fuse3 package \
             sets it; `modprobe fuse` loads the module) and FUSE in user namespaces (Linux 4.18); its own \
             message, if any, is above. Without --writable-tmpfs the run needs neither"
                .into(),
        ),
        MountOp::Proc { .. } if errno == Some(libc::EPERM) => Some(
            "the kernel refuses a new /proc when the host's /proc has hidden (over-mounted) paths, \
             as inside many containers; run gpurun on the host or with an unmasked /proc"
                .into(),
        ),
        MountOp::Bind { target, .. } if errno == Some(libc::ENOENT) => Some(format!(
            "{} lies inside another bind from the host, where gpurun does not create directories: \
             create it on the host or choose another destination",
            inside(target, layout)
        )),
        MountOp::ReadOnly { .. } if errno == Some(libc::EPERM) => Some(
            "the kernel refused to make a mount read-only with the flags it carries from the host; \
             `gpurun doctor` shows what this kernel supports"
                .into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, Recording};

    fn layout() -> Layout {
        Layout { base: "/c/mnt".into() }
    }

    #[test]
    fn pivot_sequence_and_overlay_options() {
        let ops = vec![
            MountOp::Overlay {
                lower: "/cache/a,b:c".into(),
                upper: "/c/mnt/upper".into(),
                work: "/c/mnt/work".into(),
                target: "/c/mnt/newroot".into(),
                userxattr: true,
            },
            MountOp::PivotRoot { new_root: "/c/mnt/newroot".into() },
        ];
        let mut sys = Recording::default();
        apply(&mut sys, &ops, &layout()).unwrap();
        let Call::Mount { data, .. } = &sys.calls[0] else { panic!("{:?}", sys.calls) };
        assert_eq!(
            data.as_deref(),
            Some("lowerdir=/cache/a\\,b\\:c,upperdir=/c/mnt/upper,workdir=/c/mnt/work,userxattr")
        );
        assert_eq!(
            sys.calls[1..],
            [
                Call::Chdir("/c/mnt/newroot".into()),
                Call::PivotRoot(".".into(), ".".into()),
                Call::Detach(".".into()),
                Call::Chdir("/".into()),
            ]
        );
    }

    /// The daemon mounts, then the init leaves its mount namespace for a copy before anything
    /// else (the pivot must not move the daemon's root); a path the options cannot carry is
    /// refused with the step named.
    #[test]
    fn fuse_overlay_starts_the_daemon_then_unshares() {
        let op = |lower: &str| MountOp::FuseOverlay {
            program: "/usr/bin/fuse-overlayfs".into(),
            lower: lower.into(),
            upper: "/c/mnt/upper".into(),
            work: "/c/mnt/work".into(),
            target: "/c/mnt/newroot".into(),
        };
        let mut sys = Recording::default();
        apply(&mut sys, &[op("/cache/img")], &layout()).unwrap();
        assert_eq!(
            sys.calls,
            [
                Call::FuseMount {
                    program: "/usr/bin/fuse-overlayfs".into(),
                    options: "lowerdir=/cache/img,upperdir=/c/mnt/upper,workdir=/c/mnt/work,allow_other"
                        .into(),
                    target: "/c/mnt/newroot".into(),
                },
                Call::Unshare(libc::CLONE_NEWNS),
            ]
        );
        let mut sys = Recording::default();
        let err = apply(&mut sys, &[op("/cache/a:b")], &layout()).unwrap_err();
        assert!(sys.calls.is_empty());
        assert!(err.to_string().contains("fuse-overlayfs"), "{err}");
        assert!(err.hint().unwrap().contains("GPURUN_CACHE_DIR"), "{:?}", err.hint());
    }

    #[test]
    fn failure_names_the_step_and_stops() {
        let ops = vec![
            MountOp::Bind { source: "/data".into(), target: "/c/mnt/newroot/mnt".into(), recursive: true },
            MountOp::Tmpfs { target: "/c/mnt/newroot/tmp".into(), mode: 0o1777 },
        ];
        let mut sys = Recording { fail_at: Some(0), ..Recording::default() };
        let err = apply(&mut sys, &ops, &layout()).unwrap_err();
        assert_eq!(sys.calls.len(), 1);
        assert_eq!(err.to_string(), "bind-mount /data onto /mnt in the container");
    }
}
