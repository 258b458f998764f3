//! What an image's own loader would find: its `/etc/ld.so.cache`, the default library
//! directories and its glibc version, read in-root (`RESOLVE_IN_ROOT`, so an absolute symlink in
//! the image cannot make gpurun read a host file; through [`crate::inroot`], like every read of
//! image content). Used to bind only what the image lacks.

use std::collections::BTreeSet;
use std::path::Path;

use crate::inroot::Root;

use super::elf::{self, GlibcVersion};
use super::ldcache;
use super::libs::ImageView;

/// Directories glibc's loader searches without a cache (and Debian's multiarch ones).
pub const DEFAULT_DIRS: &[&str] = &[
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
];

/// The most of the image's `/etc/ld.so.cache` gpurun reads (a full distribution's is < 1 MiB).
const LD_CACHE_CAP: u64 = 16 << 20;
/// The most of the image's `libc.so.6` gpurun reads for its version (glibc's is about 2 MiB).
const LIBC_CAP: u64 = 64 << 20;

/// The image's libraries, gathered once.
#[derive(Debug, Default)]
pub struct RootfsView {
    root: Option<Root>,
    names: BTreeSet<String>,
    glibc: Option<GlibcVersion>,
    /// What could not be read and was treated as absent, for the user.
    pub warnings: Vec<String>,
}

impl RootfsView {
    /// Reads `rootfs` (a directory); `extra_dirs` are the image's `LD_LIBRARY_PATH` entries.
    /// Every read goes through the in-root reader: a FIFO, device, huge file or escaping symlink
    /// in the image is treated as absent, with a warning.
    pub fn read(rootfs: &Path, extra_dirs: &[String]) -> RootfsView {
        let Ok(root) = Root::open(rootfs) else { return RootfsView::default() };
        let mut view = RootfsView::default();
        let mut libc_path = None;
        if let Some(entries) = view.read_file(&root, "/etc/ld.so.cache", LD_CACHE_CAP).and_then(|b| {
            ldcache::parse_ld_so_cache(&b)
                .map_err(|e| {
                    view.warnings.push(format!("the image's /etc/ld.so.cache: {e}; treated as absent"))
                })
                .ok()
        }) {
            let arch = ldcache::native_arch_flags();
            for e in entries.into_iter().filter(|e| arch.is_none_or(|f| e.flags == f)) {
                if e.soname == "libc.so.6" && libc_path.is_none() {
                    libc_path = Some(e.path.clone());
                }
                view.names.insert(e.soname);
            }
        }
        for dir in DEFAULT_DIRS.iter().map(|d| d.to_string()).chain(extra_dirs.iter().cloned()) {
            let Some(d) = root.open_dir(&dir) else { continue };
            let Ok(iter) = rustix::fs::Dir::read_from(&d) else { continue };
            for entry in iter.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(".so") {
                    if name == "libc.so.6" && libc_path.is_none() {
                        libc_path = Some(format!("{dir}/libc.so.6"));
                    }
                    view.names.insert(name);
                }
            }
        }
        view.glibc = libc_path
            .and_then(|p| view.read_file(&root, &p, LIBC_CAP))
            .and_then(|bytes| elf::parse_elf(&bytes).ok())
            .and_then(|info| info.glibc_defined);
        view.root = Some(root);
        view
    }

    /// A file of the image, or `None` (with a warning unless it is simply missing).
    fn read_file(&mut self, root: &Root, path: &str, cap: u64) -> Option<Vec<u8>> {
        match root.read(path, cap) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                self.warnings.push(format!("{e}; treated as absent"));
                None
            }
        }
    }
}

impl ImageView for RootfsView {
    fn has_library(&self, soname: &str) -> bool {
        self.names.contains(soname)
    }

    fn has_file(&self, path: &str) -> bool {
        self.root.as_ref().is_some_and(|r| r.file_type(path).is_some())
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
