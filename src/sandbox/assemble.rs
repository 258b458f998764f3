//! The container root without overlayfs (Apptainer's "underlay"): on kernels that refuse
//! overlayfs in a user namespace (before 5.11), or when asked (`--root-mode bind`, e.g. for a
//! cache on a filesystem overlayfs will not take as a lower layer), the root is a tmpfs whose
//! entries are read-only binds of the image's top-level directories and files and copies of its
//! top-level symlinks.
//!
//! A mount point the image lacks (a bind destination, `$HOME`, the working directory,
//! `/.gpurun`, `/etc/hosts`) is made without writing the cache: the image directory that must
//! hold it is "opened", a tmpfs mounted over it and filled the same way from the image's
//! directory, one level down, as deep as needed. It happens in three passes so that opening a
//! directory never hides one opened or made before it:
//!
//! 1. decide, from the image alone, which directories must be opened: for each mount point, the
//!    parent of its first component the image lacks (or has as another kind: a symlink where a
//!    directory is needed, as an overlay's upper layer would replace it);
//! 2. open them, parents first;
//! 3. make the missing nodes, in directories that are now all gpurun's own tmpfs.
//!
//! Mutations go through [`Sys`]; the reads that decide them are plain `lstat`/`readdir`/
//! `readlink` of the image's directory in the cache (whose path holds no symlink: every component
//! on the way was found to be a real directory) and of the tree being built.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::host::NodeKind;
use crate::plan::MountPointSpec;
use crate::sys::{MountFlags, Sys};

/// The tmpfs mounts opened over image directories, made read-only at the end ([`freeze`]).
#[derive(Debug, Default)]
pub struct Assembly {
    opened: Vec<PathBuf>,
}

/// An entry's kind, by `lstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Symlink,
    /// A regular file, FIFO, socket or device node: bound as a file.
    Other,
}

fn kind_of(path: &Path) -> io::Result<Option<(Kind, u32)>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            let kind = if t.is_dir() {
                Kind::Dir
            } else if t.is_symlink() {
                Kind::Symlink
            } else {
                Kind::Other
            };
            Ok(Some((kind, m.permissions().mode() & 0o7777)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a node of `found` kind serves where a directory (`want_dir`) or a file is needed.
fn fits(found: Option<(Kind, u32)>, want_dir: bool) -> bool {
    match found {
        Some((Kind::Dir, _)) => want_dir,
        Some((Kind::Other, _)) => !want_dir,
        Some((Kind::Symlink, _)) | None => false,
    }
}

/// `path` (a container path) below `base`.
fn below(base: &Path, path: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    out.extend(path.components().filter(|c| matches!(c, Component::Normal(_))));
    out
}

/// The container paths from `/x` down to `path`, one per component.
fn prefixes(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut cur = PathBuf::from("/");
    for c in path.components() {
        if let Component::Normal(name) = c {
            cur.push(name);
            out.push(cur.clone());
        }
    }
    out
}

fn depth(path: &Path) -> usize {
    path.components().filter(|c| matches!(c, Component::Normal(_))).count()
}

impl Assembly {
    /// Assembles the root at `root` from `image`, with every mount point of `points` made and
    /// every directory of `writable` gpurun's own (for symlinks made in it later).
    pub fn build(
        &mut self,
        sys: &mut dyn Sys,
        image: &Path,
        root: &Path,
        points: &[MountPointSpec],
        writable: &[PathBuf],
    ) -> io::Result<()> {
        let mut points: Vec<MountPointSpec> = points.to_vec();
        points.extend(writable.iter().map(|w| MountPointSpec {
            path: w.clone(),
            kind: NodeKind::Dir,
            mode: 0o755,
        }));
        points.sort_by_key(|p| depth(&p.path));
        let mut open: BTreeSet<PathBuf> = BTreeSet::new();
        for p in &points {
            if let Some(dir) = first_misfit_parent(image, p)? {
                open.insert(dir);
            }
        }
        // A directory for new symlinks is opened itself when the image has it through real
        // directories all the way (a symlink on the way is replaced by a directory of ours).
        for w in writable {
            let spec = MountPointSpec { path: w.clone(), kind: NodeKind::Dir, mode: 0o755 };
            if first_misfit_parent(image, &spec)?.is_none() {
                open.insert(w.clone());
            }
        }
        let mode = kind_of(image)?.map_or(0o755, |(_, m)| m);
        tmpfs(sys, root, mode)?;
        fill(sys, image, root)?;
        let mut open: Vec<PathBuf> = open.into_iter().filter(|d| depth(d) > 0).collect();
        open.sort_by_key(|d| depth(d));
        for dir in open {
            let (source, target) = (below(image, &dir), below(root, &dir));
            let mode = kind_of(&source)?.map_or(0o755, |(_, m)| m);
            tmpfs(sys, &target, mode)?;
            self.opened.push(target.clone());
            fill(sys, &source, &target)?;
        }
        for p in &points {
            make(sys, root, p)?;
        }
        Ok(())
    }

    /// Makes every opened tmpfs read-only, as the root is (`--writable-tmpfs` is refused in this
    /// mode, so nothing may stay writable).
    pub fn freeze(&mut self, sys: &mut dyn Sys) -> io::Result<()> {
        for target in std::mem::take(&mut self.opened) {
            sys.make_read_only(&target, false)?;
        }
        Ok(())
    }
}

/// The directory to open for `p`: the parent of the first component the image lacks or has as
/// another kind; `None` when the image already has every node `p` needs.
fn first_misfit_parent(image: &Path, p: &MountPointSpec) -> io::Result<Option<PathBuf>> {
    let all = prefixes(&p.path);
    for (i, prefix) in all.iter().enumerate() {
        let want_dir = i + 1 < all.len() || p.kind == NodeKind::Dir;
        if !fits(kind_of(&below(image, prefix))?, want_dir) {
            return Ok(Some(prefix.parent().unwrap_or(Path::new("/")).to_path_buf()));
        }
    }
    Ok(None)
}

/// Makes the nodes of `p` that the tree lacks; their directories are gpurun's tmpfs by now.
fn make(sys: &mut dyn Sys, root: &Path, p: &MountPointSpec) -> io::Result<()> {
    let all = prefixes(&p.path);
    for (i, prefix) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        let want_dir = !last || p.kind == NodeKind::Dir;
        let at = below(root, prefix);
        let found = kind_of(&at)?;
        if fits(found, want_dir) {
            continue;
        }
        if found.is_some() {
            sys.remove(&at)?;
        }
        if want_dir {
            sys.mkdir(&at, if last { p.mode } else { 0o755 })?;
        } else {
            sys.create_file(&at, p.mode)?;
        }
    }
    Ok(())
}

fn tmpfs(sys: &mut dyn Sys, target: &Path, mode: u32) -> io::Result<()> {
    let flags = MountFlags { nosuid: true, nodev: true, ..MountFlags::default() };
    sys.mount(OsStr::new("tmpfs"), target, Some("tmpfs"), flags, Some(&format!("mode={mode:o}")))
}

/// Fills `target` (a fresh tmpfs) with the entries of the image directory `source`: directories
/// and files as read-only binds, symlinks as copies.
fn fill(sys: &mut dyn Sys, source: &Path, target: &Path) -> io::Result<()> {
    let mut names: Vec<OsString> =
        std::fs::read_dir(source)?.map(|e| e.map(|e| e.file_name())).collect::<io::Result<_>>()?;
    names.sort();
    for name in &names {
        let (from, to) = (source.join(name), target.join(name));
        let Some((kind, _)) = kind_of(&from)? else { continue };
        match kind {
            Kind::Symlink => sys.symlink(&std::fs::read_link(&from)?, &to)?,
            Kind::Dir => {
                sys.mkdir(&to, 0o755)?;
                bind_read_only(sys, &from, &to)?;
            }
            Kind::Other => {
                sys.create_file(&to, 0o644)?;
                bind_read_only(sys, &from, &to)?;
            }
        }
    }
    Ok(())
}

fn bind_read_only(sys: &mut dyn Sys, source: &Path, target: &Path) -> io::Result<()> {
    let flags = MountFlags { bind: true, ..MountFlags::default() };
    sys.mount(source.as_os_str(), target, None, flags, None)?;
    sys.make_read_only(target, false)
}
