//! What an image's own loader would find: its `/etc/ld.so.cache`, the default library
//! directories and its glibc version, read in-root (`RESOLVE_IN_ROOT`, so an absolute symlink in
//! the image cannot make gpurun read a host file). Used to bind only what the image lacks.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};

use super::elf::{self, GlibcVersion};
use super::ldcache;
use super::libs::ImageView;

/// Directories glibc's loader searches without a cache (and Debian's multiarch ones).
const DEFAULT_DIRS: &[&str] = &[
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
];

/// The image's libraries, gathered once.
#[derive(Debug, Default)]
pub struct RootfsView {
    root: Option<std::fs::File>,
    names: BTreeSet<String>,
    glibc: Option<GlibcVersion>,
}

fn open_in_root(root: &std::fs::File, path: &str, dir: bool) -> Option<std::fs::File> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    openat2(root, Path::new(rel), flags, Mode::empty(), ResolveFlags::IN_ROOT).ok().map(std::fs::File::from)
}

fn read_in_root(root: &std::fs::File, path: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    open_in_root(root, path, false)?.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

impl RootfsView {
    /// Reads `rootfs` (a directory); `extra_dirs` are the image's `LD_LIBRARY_PATH` entries.
    pub fn read(rootfs: &Path, extra_dirs: &[String]) -> RootfsView {
        let Ok(root) = std::fs::File::open(rootfs) else { return RootfsView::default() };
        let mut names = BTreeSet::new();
        let mut libc_path = None;
        if let Some(entries) =
            read_in_root(&root, "/etc/ld.so.cache").and_then(|b| ldcache::parse_ld_so_cache(&b).ok())
        {
            let arch = ldcache::native_arch_flags();
            for e in entries.into_iter().filter(|e| arch.is_none_or(|f| e.flags == f)) {
                if e.soname == "libc.so.6" && libc_path.is_none() {
                    libc_path = Some(e.path.clone());
                }
                names.insert(e.soname);
            }
        }
        for dir in DEFAULT_DIRS.iter().map(|d| d.to_string()).chain(extra_dirs.iter().cloned()) {
            let Some(d) = open_in_root(&root, &dir, true) else { continue };
            let Ok(iter) = rustix::fs::Dir::read_from(&d) else { continue };
            for entry in iter.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(".so") {
                    if name == "libc.so.6" && libc_path.is_none() {
                        libc_path = Some(format!("{dir}/libc.so.6"));
                    }
                    names.insert(name);
                }
            }
        }
        let glibc = libc_path
            .and_then(|p| read_in_root(&root, &p))
            .and_then(|bytes| elf::parse_elf(&bytes).ok())
            .and_then(|info| info.glibc_defined);
        RootfsView { root: Some(root), names, glibc }
    }
}

impl ImageView for RootfsView {
    fn has_library(&self, soname: &str) -> bool {
        self.names.contains(soname)
    }

    fn has_file(&self, path: &str) -> bool {
        self.root.as_ref().is_some_and(|r| open_in_root(r, path, false).is_some())
    }

    fn glibc(&self) -> Option<GlibcVersion> {
        self.glibc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_root_as_an_image() {
        let view = RootfsView::read(Path::new("/"), &[]);
        if view.has_library("libc.so.6") {
            let v = view.glibc().expect("glibc version from libc.so.6's version definitions");
            assert!(v >= (2, 17), "{v:?}");
        }
        assert!(view.has_file("/etc/passwd"));
        assert!(!view.has_file("/nonexistent-gpurun"));
        assert!(RootfsView::read(Path::new("/nonexistent-gpurun"), &[]).glibc().is_none());
    }
}
