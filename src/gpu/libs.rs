//! Host libraries and binaries for the container: name lists become host files (through the
//! parsed ld.so.cache and `PATH`), and each file's ELF dependency closure adds what the image
//! lacks. The result is a list of read-only binds into [`LIB_DIR`] and [`BIN_DIR`], plus the
//! loader at its own path when the image has no glibc at all. It never binds a library the image
//! already has (except driver libraries, which must match the host kernel module), never binds
//! glibc into an image that has its own, and never binds a file that needs a newer glibc than
//! the image's (apptainer/apptainer#945: "GLIBC_2.34 not found").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::elf::{self, GlibcVersion};
use super::ldcache::CacheEntry;
use super::{FileBind, HostPaths};

/// gpurun's own directories inside the container (never in an image, so no shadowing).
pub const LIB_DIR: &str = "/.gpurun/lib";
pub const BIN_DIR: &str = "/.gpurun/bin";

/// What the planner-side caller knows about the image's libraries (read in-root elsewhere).
pub trait ImageView {
    /// Whether the image's loader would find `soname` (its ld.so.cache or default directories).
    fn has_library(&self, soname: &str) -> bool;
    /// Whether an absolute path exists in the image.
    fn has_file(&self, path: &str) -> bool;
    /// The image's glibc version, `None` when it has no glibc (busybox, musl, distroless-static).
    fn glibc(&self) -> Option<GlibcVersion>;
}

/// glibc's own libraries: one glibc per process, so they come from the image when it has one.
fn is_glibc_part(soname: &str) -> bool {
    const PARTS: &[&str] = &[
        "libc.so.",
        "libm.so.",
        "libpthread.so.",
        "libdl.so.",
        "librt.so.",
        "libutil.so.",
        "libresolv.so.",
        "libanl.so.",
        "libmvec.so.",
        "libBrokenLocale.so.",
        "libnss_",
        "ld-linux",
        "ld64.so.",
    ];
    PARTS.iter().any(|p| soname.starts_with(p))
}

/// The host's ld.so.cache, filtered to the launcher's architecture, by soname.
pub struct HostLibs {
    by_soname: BTreeMap<String, String>,
    order: Vec<String>,
}

impl HostLibs {
    pub fn new(entries: Vec<CacheEntry>, arch_flags: Option<i32>) -> HostLibs {
        let mut by_soname = BTreeMap::new();
        let mut order = Vec::new();
        for e in entries.into_iter().filter(|e| arch_flags.is_none_or(|f| e.flags == f)) {
            if let std::collections::btree_map::Entry::Vacant(slot) = by_soname.entry(e.soname.clone()) {
                order.push(e.soname);
                slot.insert(e.path);
            }
        }
        HostLibs { by_soname, order }
    }

    pub fn get(&self, soname: &str) -> Option<&str> {
        self.by_soname.get(soname).map(String::as_str)
    }

    /// Every soname starting with `prefix` followed by nothing or `.` (`libcuda.so` matches
    /// `libcuda.so.1` but `libGL.so` does not match `libGLX.so.0`), in cache order.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(&str, &str)> {
        self.order
            .iter()
            .filter(|s| s.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
            .map(|s| (s.as_str(), self.by_soname[s].as_str()))
            .collect()
    }
}

/// A file to consider: where it is on the host, its name inside, and whether the image's own
/// copy may replace it.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub host: PathBuf,
    pub dest: PathBuf,
    /// Driver libraries: bound even when the image has a file of that name.
    pub always: bool,
}

/// Output of [`resolve`].
#[derive(Debug, Default)]
pub struct Resolved {
    pub binds: Vec<FileBind>,
    pub warnings: Vec<String>,
}

/// Walks the dependency closure of `roots` and returns the binds for what the image lacks.
pub fn resolve(host: &HostPaths, libs: &HostLibs, image: &dyn ImageView, roots: Vec<Wanted>) -> Resolved {
    let mut out = Resolved::default();
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut queue: Vec<Wanted> = roots;
    queue.reverse();
    let native = elf::native_machine();
    while let Some(w) = queue.pop() {
        if !seen.insert(w.dest.clone()) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&w.host) else {
            out.warnings.push(format!("cannot read host file {}; not bound", w.host.display()));
            continue;
        };
        // Scripts (rocm-smi is Python) are bound as they are; they have no ELF closure.
        let info = match elf::parse_elf(&bytes) {
            Ok(info) => info,
            Err(_) => {
                out.binds.push(FileBind::read_only(host.strip(&w.host), &w.dest));
                continue;
            }
        };
        if (info.class64, info.machine) != native {
            out.warnings.push(format!("{}: not a {}-bit native ELF file; not bound", w.host.display(), 64));
            continue;
        }
        if let (Some(need), Some(have)) = (info.glibc_required, image.glibc())
            && need > have
        {
            out.warnings.push(format!(
                "host {} needs glibc {}.{} but the image has glibc {}.{}; not bound",
                w.host.display(),
                need.0,
                need.1,
                have.0,
                have.1
            ));
            continue;
        }
        out.binds.push(FileBind::read_only(host.strip(&w.host), &w.dest));
        if let Some(interp) = info.interpreter.as_deref().filter(|i| !image.has_file(i)) {
            // No loader at the path the binary names: an image without glibc gets the host's.
            queue.push(Wanted { host: host.path(interp), dest: interp.into(), always: true });
        }
        for needed in &info.needed {
            if image.has_library(needed) {
                continue;
            }
            if let Some(have) = image.glibc().filter(|_| is_glibc_part(needed)) {
                // One glibc per process: a part the image lacks may come from the host only when
                // the host's glibc is the very same version (GLIBC_PRIVATE symbols differ).
                if host_glibc(host, libs) != Some(have) {
                    out.warnings.push(format!(
                        "{} needs {needed}, which the image (glibc {}.{}) lacks; the host's glibc differs, so it is not bound",
                        w.host.display(),
                        have.0,
                        have.1
                    ));
                    continue;
                }
            }
            match libs.get(needed) {
                Some(path) => queue.push(Wanted {
                    host: host.path(path),
                    dest: Path::new(LIB_DIR).join(needed),
                    always: false,
                }),
                None => out.warnings.push(format!(
                    "{} needs {needed}, which neither the image nor the host's ld.so.cache has",
                    w.host.display()
                )),
            }
        }
    }
    out
}

/// The host's glibc version, from its libc.so.6's version definitions.
fn host_glibc(host: &HostPaths, libs: &HostLibs) -> Option<GlibcVersion> {
    let bytes = std::fs::read(host.path(libs.get("libc.so.6")?)).ok()?;
    elf::parse_elf(&bytes).ok()?.glibc_defined
}

/// Library roots from a name list: driver libraries (`always`) or optional extras.
pub fn library_roots(
    host: &HostPaths,
    libs: &HostLibs,
    image: &dyn ImageView,
    names: &[String],
    always: bool,
) -> Vec<Wanted> {
    let mut out = Vec::new();
    for name in names {
        for (soname, path) in libs.with_prefix(name) {
            if !always && image.has_library(soname) {
                continue;
            }
            out.push(Wanted { host: host.path(path), dest: Path::new(LIB_DIR).join(soname), always });
        }
    }
    out
}

/// Binary roots: each name looked up on the launcher's `PATH` (absent ones are skipped).
pub fn binary_roots(host: &HostPaths, path_var: &str, names: &[String]) -> Vec<Wanted> {
    names
        .iter()
        .filter_map(|name| {
            let found = path_var
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| host.path(&format!("{d}/{name}")))
                .find(|p| is_executable(p))?;
            Some(Wanted { host: found, dest: Path::new(BIN_DIR).join(name), always: true })
        })
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Splits a user-extensible list (`GPURUN_ROCM_LIBS=a.so:b.so`, also `,`-separated).
pub fn split_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split([':', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matching_and_arch_filter() {
        let entries = vec![
            CacheEntry { soname: "libcuda.so.1".into(), path: "/l64/libcuda.so.1".into(), flags: 0x0303 },
            CacheEntry { soname: "libcuda.so.1".into(), path: "/l32/libcuda.so.1".into(), flags: 0x0003 },
            CacheEntry { soname: "libcuda.so".into(), path: "/l64/libcuda.so".into(), flags: 0x0303 },
            CacheEntry { soname: "libGLX.so.0".into(), path: "/l64/libGLX.so.0".into(), flags: 0x0303 },
            CacheEntry {
                soname: "libcudart.so.12".into(),
                path: "/l64/libcudart.so.12".into(),
                flags: 0x0303,
            },
        ];
        let libs = HostLibs::new(entries, Some(0x0303));
        assert_eq!(
            libs.with_prefix("libcuda.so"),
            [("libcuda.so.1", "/l64/libcuda.so.1"), ("libcuda.so", "/l64/libcuda.so")]
        );
        assert!(libs.with_prefix("libGL.so").is_empty());
        assert_eq!(libs.get("libcuda.so.1"), Some("/l64/libcuda.so.1"));
    }

    #[test]
    fn glibc_parts_and_lists() {
        for (name, part) in [
            ("libc.so.6", true),
            ("ld-linux-x86-64.so.2", true),
            ("libcuda.so.1", false),
            ("libcap.so.2", false),
        ] {
            assert_eq!(is_glibc_part(name), part, "{name}");
        }
        assert_eq!(split_list(Some("a.so: b.so,,c")), ["a.so", "b.so", "c"]);
        assert!(split_list(None).is_empty());
    }
}
