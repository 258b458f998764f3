//! The hostile-input corpus against the real `gpurun` binary.
//!
//! `rootfs-tests/corpus/make_corpus.py` writes one crafted image per row of the unpacking
//! test tables (H1-H30 hostile layers, A1-A12 hostile archives and metadata, L1-L16 legitimate
//! edge cases) plus `cases.json`, which says what each must do: apply (and what the rootfs must
//! then hold), refuse (exit 125 with the layer and entry named on stderr), or apply with a
//! warning. This file only interprets that data: every case runs with a fresh cache, and after
//! every case the host sentinel (`/tmp/gpurun-sentinel`, the one host path the corpus aims at)
//! must be unchanged and `$CACHE/staging` empty. Each test runs all of its cases and reports
//! every failing one at the end, not just the first.
//!
//! The corpus comes from `GPURUN_CORPUS` (default `.fixtures/corpus`); when it is missing or was
//! made by another version of the generator it is rebuilt (python3 is needed for that). Set
//! `GPURUN_CORPUS_FILTER=H01,L1` to run only cases whose names contain one of the parts.
//!
//! Nothing here depends on being root: the same binary runs as an unprivileged user in CI.

mod support;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use gpurun::image::digest::{Algorithm, Hasher};
use serde_json::Value;

use support::{Kernel, TempDir, gpurun_on, is_root, run_limited, skip};

/// The one host path the corpus's escaping entries aim at; see make_corpus.py.
const SENTINEL: &str = "/tmp/gpurun-sentinel";
const SENTINEL_MTIME: i64 = 1_000_000_000;
const DEFAULT_TIMEOUT_S: u64 = 120;

fn generator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-tests/corpus/make_corpus.py")
}

// ---------------------------------------------------------------------------------------------
// Finding (or building) the corpus

struct Corpus {
    dir: PathBuf,
    doc: Value,
}

fn file_sha256(path: &Path) -> Option<String> {
    let data = fs::read(path).ok()?;
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(&data);
    Some(h.finish().hex)
}

/// The corpus at `dir` if it is complete and made by the generator in this checkout.
fn load(dir: &Path, want_sha: Option<&str>) -> Option<Value> {
    let text = fs::read_to_string(dir.join("cases.json")).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    match (want_sha, doc["generator_sha256"].as_str()) {
        (Some(want), Some(have)) if want != have => None,
        _ => Some(doc),
    }
}

fn generate(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
    }
    let out =
        Command::new("python3").arg(generator()).arg(dir).output().map_err(|e| format!("python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{} {}: {}", generator().display(), dir.display(), support::describe(&out)))
    }
}

/// Locates the corpus once per process. `Err` carries a SKIP reason.
fn corpus() -> Result<&'static Corpus, String> {
    static CORPUS: OnceLock<Result<Corpus, String>> = OnceLock::new();
    CORPUS
        .get_or_init(|| {
            let want_sha = file_sha256(&generator());
            let dir = std::env::var_os("GPURUN_CORPUS")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".fixtures/corpus"));
            if let Some(doc) = load(&dir, want_sha.as_deref()) {
                return Ok(Corpus { dir, doc });
            }
            if want_sha.is_none() {
                return Err(format!("no corpus at {} and no generator to build it", dir.display()));
            }
            if Command::new("python3").arg("--version").output().is_err() {
                return Err(format!("no corpus at {} and python3 is missing", dir.display()));
            }
            // Where the configured directory is not writable (CI re-running the tests as an
            // unprivileged user), build a private copy instead.
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            let fallback = std::env::temp_dir().join(format!("gpurun-corpus-{uid}"));
            let mut errors = Vec::new();
            for candidate in [dir, fallback] {
                if let Some(doc) = load(&candidate, want_sha.as_deref()) {
                    return Ok(Corpus { dir: candidate, doc });
                }
                eprintln!("building the corpus in {}", candidate.display());
                match generate(&candidate) {
                    Ok(()) => {
                        let doc = load(&candidate, None).expect("generator wrote cases.json");
                        return Ok(Corpus { dir: candidate, doc });
                    }
                    Err(e) => errors.push(e),
                }
            }
            panic!("could not build the corpus:\n{}", errors.join("\n"));
        })
        .as_ref()
        .map_err(Clone::clone)
}

// ---------------------------------------------------------------------------------------------
// The host sentinel

/// One line per entry under the sentinel: type, mode, times (ctime too: any chmod, link or
/// write shows there), inode, link count, size, and the content or link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let path = root.join(rel);
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) => {
                out.insert(rel.to_path_buf(), format!("error {e}"));
                return;
            }
        };
        let body = if md.is_file() {
            fs::read(&path).map(|d| String::from_utf8_lossy(&d).into_owned()).unwrap_or_default()
        } else if md.file_type().is_symlink() {
            format!("-> {:?}", fs::read_link(&path).unwrap_or_default())
        } else {
            String::new()
        };
        out.insert(
            rel.to_path_buf(),
            format!(
                "{:?} mode {:o} uid {} mtime {}.{} ctime {}.{} ino {} nlink {} size {} {body:?}",
                md.file_type(),
                md.mode(),
                md.uid(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec(),
                md.ino(),
                md.nlink(),
                md.size()
            ),
        );
        if md.is_dir() {
            let mut names: Vec<_> = match fs::read_dir(&path) {
                Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect(),
                Err(e) => {
                    out.insert(rel.join("<unreadable>"), e.to_string());
                    return;
                }
            };
            names.sort();
            for name in names {
                walk(root, &rel.join(name), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// Whether the sentinel has exactly the layout and metadata the test gives it.
fn sentinel_is_pristine(root: &Path) -> Result<(), String> {
    let expect: [(&str, Option<&str>, u32); 4] = [
        ("", None, 0o777),
        ("file", Some("gpurun sentinel: must never change\n"), 0o666),
        ("dir", None, 0o755),
        ("dir/inner", Some("inner\n"), 0o666),
    ];
    for (rel, content, mode) in expect {
        let path = root.join(rel);
        let md = fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let kind_ok = if content.is_some() { md.is_file() } else { md.is_dir() };
        if !kind_ok || md.mode() & 0o7777 != mode || md.mtime() != SENTINEL_MTIME {
            return Err(format!(
                "{}: {:?} mode {:o} mtime {}",
                path.display(),
                md.file_type(),
                md.mode() & 0o7777,
                md.mtime()
            ));
        }
        if let Some(text) = content
            && fs::read(&path).map_err(|e| e.to_string())? != text.as_bytes()
        {
            return Err(format!("{}: content changed", path.display()));
        }
    }
    let names = |p: &Path| -> Vec<_> {
        let mut v: Vec<_> = fs::read_dir(p)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    if names(root) != ["dir", "file"] || names(&root.join("dir")) != ["inner"] {
        return Err(format!("{}: extra or missing entries", root.display()));
    }
    Ok(())
}

fn create_sentinel(root: &Path) -> std::io::Result<()> {
    let set_mtime = |p: &Path| -> std::io::Result<()> {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(SENTINEL_MTIME as u64);
        fs::File::open(p)?.set_modified(t)
    };
    fs::create_dir(root)?;
    fs::create_dir(root.join("dir"))?;
    fs::write(root.join("file"), "gpurun sentinel: must never change\n")?;
    fs::write(root.join("dir/inner"), "inner\n")?;
    for (rel, mode) in [("file", 0o666), ("dir/inner", 0o666), ("dir", 0o755), ("", 0o777)] {
        let p = root.join(rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
        set_mtime(&p)?;
    }
    Ok(())
}

/// Makes the sentinel pristine: kept as is when it already is, recreated when it is ours (or
/// we are root), an error when another user's copy was changed.
fn ensure_sentinel() -> Result<(), String> {
    let root = Path::new(SENTINEL);
    if sentinel_is_pristine(root).is_ok() {
        return Ok(());
    }
    match fs::symlink_metadata(root) {
        Ok(md) => {
            // SAFETY: geteuid has no preconditions and cannot fail.
            if md.uid() != unsafe { libc::geteuid() } && !is_root() {
                return Err(format!(
                    "{SENTINEL} (owned by uid {}) is not as this test left it; remove it",
                    md.uid()
                ));
            }
            if md.is_dir() {
                let _ = Command::new("chmod").arg("-R").arg("u+rwX").arg(root).output();
                fs::remove_dir_all(root).map_err(|e| format!("remove {SENTINEL}: {e}"))?;
            } else {
                fs::remove_file(root).map_err(|e| format!("remove {SENTINEL}: {e}"))?;
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{SENTINEL}: {e}")),
    }
    if let Err(e) = create_sentinel(root) {
        // Another test process may have made it at the same moment.
        if sentinel_is_pristine(root).is_err() {
            return Err(format!("create {SENTINEL}: {e}"));
        }
    }
    sentinel_is_pristine(root)
}

// ---------------------------------------------------------------------------------------------
// Checks on the rootfs

fn path_bytes(spec: &str) -> Result<Vec<u8>, String> {
    match spec.strip_prefix("hex:") {
        Some(hex) => unhex(hex),
        None => Ok(spec.as_bytes().to_vec()),
    }
}

fn unhex(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err(format!("odd-length hex {hex:?}"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|e| format!("hex {hex:?}: {e}")))
        .collect()
}

fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(80)];
    let more = if bytes.len() > 80 { format!("... ({} bytes)", bytes.len()) } else { String::new() };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

enum Resolved {
    Path(PathBuf),
    /// A parent component is missing or is not a directory: the entry cannot exist.
    Missing(String),
}

/// `rel` under `root` without following any symlink: a symlink as a parent component is an
/// error, so a check can never pass by looking at the host through a link in the rootfs.
fn resolve(root: &Path, rel: &str) -> Result<Resolved, String> {
    let bytes = path_bytes(rel)?;
    let comps: Vec<&[u8]> = bytes.split(|&c| c == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
    let mut path = root.to_path_buf();
    for (i, comp) in comps.iter().enumerate() {
        path.push(OsStr::from_bytes(comp));
        if i + 1 == comps.len() {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(format!("parent {} is a symlink (never followed)", path.display()));
            }
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Ok(Resolved::Missing(format!("{} is not a directory", path.display()))),
            Err(e) => return Ok(Resolved::Missing(format!("{}: {e}", path.display()))),
        }
    }
    Ok(Resolved::Path(path))
}

fn mode_of(v: &Value, key: &str) -> Result<Option<u32>, String> {
    match v.get(key).and_then(Value::as_str) {
        None => Ok(None),
        Some(s) => u32::from_str_radix(s, 8).map(Some).map_err(|e| format!("{key} {s:?}: {e}")),
    }
}

fn lgetxattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    use std::ffi::CString;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let n = CString::new(name).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; 256 << 10];
    // SAFETY: p and n are NUL-terminated; buf is valid for buf.len() bytes of writes.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// Whether the filesystem at `dir` takes `user.*` xattrs (tmpfs before Linux 6.6 does not).
fn user_xattrs_work(dir: &Path) -> bool {
    use std::ffi::CString;
    let probe = dir.join("xattr-probe");
    if fs::write(&probe, "").is_err() {
        return false;
    }
    let p = CString::new(probe.as_os_str().as_bytes()).expect("no NUL in a temp path");
    // SAFETY: both strings are NUL-terminated and the value is 1 valid byte.
    let r = unsafe { libc::lsetxattr(p.as_ptr(), c"user.probe".as_ptr(), c"1".as_ptr().cast(), 1, 0) };
    let _ = fs::remove_file(&probe);
    r == 0
}

/// Runs one check; `Ok(())` when it holds, else what was found instead.
fn check(root: &Path, c: &Value, xattrs_work: bool) -> Result<(), String> {
    let obj = c.as_object().ok_or("check is not an object")?;
    let (kind, arg) = obj
        .iter()
        .find(|(k, _)| {
            [
                "absent",
                "file",
                "dir",
                "empty_dir",
                "entries",
                "symlink",
                "fifo",
                "same_inode",
                "xattr",
                "no_xattr",
            ]
            .contains(&k.as_str())
        })
        .ok_or_else(|| format!("unknown check {c}"))?;
    if kind == "same_inode" {
        let pair: Vec<&str> = arg.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let [a, b] = pair[..] else { return Err("same_inode wants two paths".into()) };
        let md = |rel: &str| -> Result<fs::Metadata, String> {
            match resolve(root, rel)? {
                Resolved::Path(p) => fs::symlink_metadata(&p).map_err(|e| format!("{rel}: {e}")),
                Resolved::Missing(why) => Err(format!("{rel}: {why}")),
            }
        };
        let (ma, mb) = (md(a)?, md(b)?);
        return if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
            Ok(())
        } else {
            Err(format!("{a} is inode {}, {b} is inode {}", ma.ino(), mb.ino()))
        };
    }
    let rel = arg.as_str().ok_or_else(|| format!("{kind} wants a path"))?;
    let path = match resolve(root, rel)? {
        Resolved::Path(p) => p,
        Resolved::Missing(why) if kind == "absent" => {
            let _ = why;
            return Ok(());
        }
        Resolved::Missing(why) => return Err(format!("missing: {why}")),
    };
    let md = match fs::symlink_metadata(&path) {
        Ok(md) => md,
        Err(e) if e.kind() == ErrorKind::NotFound && kind == "absent" => return Ok(()),
        Err(e) => return Err(format!("{e}")),
    };
    let ft = md.file_type();
    let perm = md.mode() & 0o7777;
    let mut problems = Vec::new();
    let mut want_type = |ok: bool, what: &str| {
        if !ok {
            problems.push(format!("is {ft:?}, not {what}"));
        }
        ok
    };
    match kind.as_str() {
        "absent" => return Err(format!("exists ({ft:?}, mode {perm:o})")),
        "file" => {
            if want_type(md.is_file(), "a regular file") {
                let data = || fs::read(&path).map_err(|e| format!("read: {e}"));
                if let Some(text) = c.get("content").and_then(Value::as_str) {
                    let got = data()?;
                    if got != text.as_bytes() {
                        problems.push(format!("content {} != {}", show(&got), show(text.as_bytes())));
                    }
                }
                if let Some(hex) = c.get("content_hex").and_then(Value::as_str) {
                    let (got, want) = (data()?, unhex(hex)?);
                    if got != want {
                        problems.push(format!("content {} != {}", show(&got), show(&want)));
                    }
                }
                if let Some(want) = c.get("sha256").and_then(Value::as_str) {
                    // Streamed: reading a big file whole would raise this process's peak RSS,
                    // which the RSS checks of later cases cannot see past.
                    let mut hasher = Hasher::new(Algorithm::Sha256);
                    let mut f = fs::File::open(&path).map_err(|e| format!("open: {e}"))?;
                    let mut buf = vec![0u8; 1 << 16];
                    loop {
                        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| format!("read: {e}"))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                    let got = hasher.finish().hex;
                    if got != want {
                        problems.push(format!("sha256 {got} != {want}"));
                    }
                }
                if let Some(want) = c.get("size").and_then(Value::as_u64)
                    && md.size() != want
                {
                    problems.push(format!("size {} != {want}", md.size()));
                }
            }
        }
        "dir" => {
            want_type(md.is_dir(), "a directory");
        }
        "empty_dir" => {
            if want_type(md.is_dir(), "a directory") {
                let names: Vec<_> = fs::read_dir(&path)
                    .map_err(|e| format!("read_dir: {e}"))?
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                if !names.is_empty() {
                    problems.push(format!("not empty: {names:?}"));
                }
            }
        }
        "entries" => {
            if want_type(md.is_dir(), "a directory") {
                let mut got: Vec<Vec<u8>> = fs::read_dir(&path)
                    .map_err(|e| format!("read_dir: {e}"))?
                    .filter_map(|e| e.ok().map(|e| e.file_name().as_bytes().to_vec()))
                    .collect();
                let mut want: Vec<Vec<u8>> = Vec::new();
                for n in c.get("names").and_then(Value::as_array).into_iter().flatten() {
                    want.push(n.as_str().unwrap_or_default().as_bytes().to_vec());
                }
                for n in c.get("names_hex").and_then(Value::as_array).into_iter().flatten() {
                    want.push(unhex(n.as_str().unwrap_or_default())?);
                }
                got.sort();
                want.sort();
                if got != want {
                    let s = |v: &[Vec<u8>]| v.iter().map(|n| show(n)).collect::<Vec<_>>().join(", ");
                    problems.push(format!("entries [{}] != [{}]", s(&got), s(&want)));
                }
            }
        }
        "symlink" => {
            if want_type(ft.is_symlink(), "a symlink") {
                let got = fs::read_link(&path).map_err(|e| format!("readlink: {e}"))?;
                let want = match (c.get("target").and_then(Value::as_str), c.get("target_hex")) {
                    (Some(t), _) => Some(t.as_bytes().to_vec()),
                    (None, Some(h)) => Some(unhex(h.as_str().unwrap_or_default())?),
                    _ => None,
                };
                if let Some(want) = want
                    && got.as_os_str().as_bytes() != want
                {
                    problems.push(format!("target {} != {}", show(got.as_os_str().as_bytes()), show(&want)));
                }
            }
        }
        "fifo" => {
            want_type(ft.is_fifo(), "a FIFO");
        }
        "xattr" | "no_xattr" => {
            let name = c.get("name").and_then(Value::as_str).ok_or("xattr check wants a name")?;
            let got = lgetxattr(&path, name);
            if kind == "xattr" && xattrs_work {
                let want = c.get("value").and_then(Value::as_str).unwrap_or_default();
                match got {
                    Ok(v) if v == want.as_bytes() => {}
                    Ok(v) => problems.push(format!("xattr {name} = {} != {want:?}", show(&v))),
                    Err(e) => problems.push(format!("xattr {name}: {e}")),
                }
            } else if kind == "no_xattr"
                && let Ok(v) = got
            {
                problems.push(format!("xattr {name} present: {}", show(&v)));
            }
        }
        _ => unreachable!(),
    }
    if let Some(want) = mode_of(c, "mode")?
        && perm != want
    {
        problems.push(format!("mode {perm:04o} != {want:04o}"));
    }
    if let Some(bits) = mode_of(c, "mode_has")?
        && perm & bits != bits
    {
        problems.push(format!("mode {perm:04o} lacks {bits:04o}"));
    }
    if let Some(bits) = mode_of(c, "mode_lacks")?
        && perm & bits != 0
    {
        problems.push(format!("mode {perm:04o} has some of {bits:04o}"));
    }
    if let Some(want) = c.get("mtime").and_then(Value::as_i64)
        && md.mtime() != want
    {
        problems.push(format!("mtime {} != {want}", md.mtime()));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// A check on the launch plan that `gpurun --dry-run` prints as JSON.
fn check_plan(stdout: &[u8], c: &Value) -> Result<(), String> {
    let plan: Value = serde_json::from_slice(stdout).map_err(|e| format!("plan is not JSON: {e}"))?;
    match c.get("plan_ids").and_then(Value::as_str) {
        Some("caller") => {
            // SAFETY: geteuid and getegid have no preconditions and cannot fail.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let (pu, pg) = (plan["uid"].as_u64(), plan["gid"].as_u64());
            if (pu, pg) == (Some(uid.into()), Some(gid.into())) {
                Ok(())
            } else {
                Err(format!("plan runs as uid {pu:?} gid {pg:?}, the caller is {uid}:{gid}"))
            }
        }
        _ => Err(format!("unknown plan check {c}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Running a case

/// `needles`: each item a substring, or a list of alternative substrings, of `haystack`
/// (case-insensitive). Returns the items not found.
fn missing_needles(haystack: &str, needles: Option<&Value>) -> Vec<String> {
    let hay = haystack.to_lowercase();
    let mut missing = Vec::new();
    for item in needles.and_then(Value::as_array).into_iter().flatten() {
        let alts: Vec<&str> = match item {
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().into_iter().collect(),
        };
        if !alts.iter().any(|a| hay.contains(&a.to_lowercase())) {
            missing.push(alts.join(" | "));
        }
    }
    missing
}

fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start = text.len().saturating_sub(max);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    format!("{}{}", if start > 0 { "..." } else { "" }, &text[start..])
}

fn published_rootfs(cache: &Path) -> Vec<PathBuf> {
    fs::read_dir(cache.join("images"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("rootfs"))
                .filter(|p| fs::symlink_metadata(p).is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `/dev/shm` when it is a writable tmpfs. The `cpu_ratio` cases keep their cache there: on
/// ext4 without a journal, every inode the previous case freed makes the next case's creations
/// slower (the allocator skips recently deleted inodes), which is the filesystem's history, not
/// gpurun's scaling, and failed the ratio on a fresh CI machine.
fn tmpfs_dir() -> Option<&'static Path> {
    let shm = Path::new("/dev/shm");
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    let is_tmpfs = mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next().is_some() && f.next() == Some("/dev/shm") && f.next() == Some("tmpfs")
    });
    let probe = shm.join(format!("gpurun-probe-{}", std::process::id()));
    let writable = is_tmpfs && fs::create_dir(&probe).is_ok();
    let _ = fs::remove_dir(&probe);
    writable.then_some(shm)
}

/// Lowers the soft limit on open files of `cmd`'s process to `n` (the common default is 1024;
/// test machines often allow far more, which hides a descriptor per directory level).
fn limit_open_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only getrlimit/setrlimit run, both async-signal-safe, on a
    // stack value; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                lim.rlim_cur = n.min(lim.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            Ok(())
        });
    }
}

/// CPU time of each case that applied, for `cpu_ratio` checks.
fn cpu_times() -> &'static Mutex<BTreeMap<String, Duration>> {
    static TIMES: OnceLock<Mutex<BTreeMap<String, Duration>>> = OnceLock::new();
    TIMES.get_or_init(Default::default)
}

/// Serialises cases across the tests of this binary, so that a sentinel change is pinned on
/// the case that made it.
fn case_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one case; returns what went wrong (empty when it passed). With
/// `GPURUN_CORPUS_VERBOSE` set, every case's exit status, time and stderr are printed.
fn run_case(corpus: &Corpus, case: &Value, kernel: Kernel) -> Vec<String> {
    let _guard = case_lock();
    let mut problems = Vec::new();
    let s = |k: &str| case.get(k).and_then(Value::as_str);
    let expect = s("expect").unwrap_or("?");
    if let Err(e) = ensure_sentinel() {
        return vec![format!("sentinel: {e}")];
    }
    let before = snapshot(Path::new(SENTINEL));
    let tmp = match case.get("tmpfs_cache").and_then(Value::as_bool) {
        Some(true) => match tmpfs_dir() {
            Some(base) => TempDir::new_in(base, "corpus"),
            None => {
                println!(
                    "note: {}: no tmpfs at /dev/shm; cache on the default TMPDIR",
                    s("name").unwrap_or("?")
                );
                TempDir::new("corpus")
            }
        },
        _ => TempDir::new("corpus"),
    };
    let cache = tmp.path().join("cache");
    let image = corpus.dir.join(s("image").unwrap_or_default());
    let mut cmd = gpurun_on(&cache, kernel);
    let dry_run = s("stage") == Some("dry-run");
    if dry_run {
        cmd.arg("--dry-run");
    } else {
        cmd.arg("unpack");
    }
    if let Some(r) = s("ref") {
        cmd.arg("--ref").arg(r);
    }
    if let Some(p) = s("platform") {
        cmd.arg("--platform").arg(p);
    }
    cmd.arg(&image);
    if dry_run {
        cmd.arg("true");
    }
    for (k, v) in case.get("env").and_then(Value::as_object).into_iter().flatten() {
        cmd.env(k, v.as_str().unwrap_or_default());
    }
    if let Some(n) = case.get("max_open_files").and_then(Value::as_u64) {
        limit_open_files(&mut cmd, n);
    }
    let timeout = case.get("timeout_s").and_then(Value::as_u64).unwrap_or(DEFAULT_TIMEOUT_S);
    let run = run_limited(&mut cmd, Duration::from_secs(timeout));
    let out = &run.output;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    let refused = code == Some(125);
    let applied = code == Some(0);
    if run.timed_out {
        problems.push(format!("killed after the {timeout} s limit"));
    }
    let ok_status = match expect {
        "refuse" => refused,
        "apply" | "skip-warn" => applied,
        "apply-or-refuse" => refused || applied,
        other => {
            problems.push(format!("unknown expect {other:?}"));
            true
        }
    };
    if !ok_status {
        problems.push(format!(
            "expected {expect}, got {}",
            match code {
                Some(0) => "exit 0 (applied)".to_string(),
                Some(c) => format!("exit {c}"),
                None => format!("{:?}", out.status),
            }
        ));
    }
    if std::env::var_os("GPURUN_CORPUS_VERBOSE").is_some() {
        println!(
            "---- {} [{}; {:.2} s, CPU {:.2} s; peak RSS {} MiB (this process {} MiB)]\n{}",
            s("name").unwrap_or("?"),
            out.status,
            run.elapsed.as_secs_f64(),
            run.cpu.as_secs_f64(),
            run.max_rss_kib / 1024,
            run.parent_max_rss_kib / 1024,
            tail(&out.stderr, 600).trim_end()
        );
    }
    if refused && ok_status && !dry_run {
        let missing = missing_needles(&stderr, case.get("error_contains"));
        if !missing.is_empty() {
            problems.push(format!("error message lacks {missing:?}"));
        }
        let left = published_rootfs(&cache);
        if !left.is_empty() {
            problems.push(format!("refused but published {left:?}"));
        }
    }
    if refused && ok_status && dry_run {
        // The run stage refuses after the unpack, which may well have published the rootfs.
        let missing = missing_needles(&stderr, case.get("error_contains"));
        if !missing.is_empty() {
            problems.push(format!("error message lacks {missing:?}"));
        }
    }
    if applied && ok_status && dry_run {
        for c in case.get("checks").and_then(Value::as_array).into_iter().flatten() {
            if let Err(e) = check_plan(&out.stdout, c) {
                problems.push(format!("plan check {c}: {e}"));
            }
        }
    }
    if applied && ok_status && !dry_run {
        if expect == "skip-warn" {
            let missing = missing_needles(&stderr, case.get("warn_contains"));
            if !missing.is_empty() {
                problems.push(format!("warnings lack {missing:?}"));
            }
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let rootfs = PathBuf::from(line);
        let inside = match (rootfs.canonicalize(), cache.canonicalize()) {
            (Ok(r), Ok(c)) => r.starts_with(c.join("images")) && r.is_dir(),
            _ => false,
        };
        if !inside {
            problems.push(format!("stdout {line:?} is not a rootfs directory under $CACHE/images"));
        } else {
            let xattrs_work = user_xattrs_work(tmp.path());
            for c in case.get("checks").and_then(Value::as_array).into_iter().flatten() {
                if let Err(e) = check(&rootfs, c, xattrs_work) {
                    problems.push(format!("check {c}: {e}"));
                }
            }
        }
        if let Some(max) = case.get("max_seconds").and_then(Value::as_f64)
            && run.elapsed.as_secs_f64() > max
        {
            problems.push(format!("took {:.1} s, more than {max} s", run.elapsed.as_secs_f64()));
        }
    }
    if let Some(max) = case.get("max_rss_mb").and_then(Value::as_i64) {
        // See support::Limited: a peak no higher than this process's own says nothing.
        if run.max_rss_kib > max * 1024 && run.max_rss_kib > run.parent_max_rss_kib {
            problems.push(format!("peak RSS {} MiB, more than {max} MiB", run.max_rss_kib / 1024));
        } else if run.parent_max_rss_kib > max * 1024 {
            println!(
                "note: {}: the test process's own peak ({} MiB) hides gpurun's; RSS not checked",
                s("name").unwrap_or("?"),
                run.parent_max_rss_kib / 1024
            );
        }
    }
    if let Some(ratio) = case.get("cpu_ratio") {
        let base = ratio["base"].as_str().unwrap_or_default();
        let max = ratio["max"].as_f64().unwrap_or(f64::INFINITY);
        match cpu_times().lock().unwrap_or_else(|e| e.into_inner()).get(base) {
            Some(base_cpu) if applied => {
                let r = run.cpu.as_secs_f64() / base_cpu.as_secs_f64().max(0.05);
                if r > max {
                    problems.push(format!(
                        "CPU time {:.2} s is {r:.1} x that of {base} ({:.2} s), more than {max} x: \
                         superlinear",
                        run.cpu.as_secs_f64(),
                        base_cpu.as_secs_f64()
                    ));
                }
            }
            Some(_) => {}
            None => println!("note: {base} did not apply before; CPU ratio not checked"),
        }
    }
    if applied {
        let name = s("name").unwrap_or_default().to_string();
        cpu_times().lock().unwrap_or_else(|e| e.into_inner()).insert(name, run.cpu);
    }
    let staging = cache.join("staging");
    if let Ok(rd) = fs::read_dir(&staging) {
        let left: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        if !left.is_empty() {
            problems.push(format!("{} not empty afterwards: {left:?}", staging.display()));
        }
    }
    let after = snapshot(Path::new(SENTINEL));
    if after != before {
        let mut diff = Vec::new();
        for key in before.keys().chain(after.keys().filter(|k| !before.contains_key(*k))) {
            if before.get(key) != after.get(key) {
                diff.push(format!("{}: {:?} -> {:?}", key.display(), before.get(key), after.get(key)));
            }
        }
        problems.push(format!("HOST SENTINEL {SENTINEL} CHANGED:\n      {}", diff.join("\n      ")));
    }
    if !problems.is_empty() {
        problems.push(format!(
            "[{}; {:.1} s; peak RSS {} MiB] stdout: {}\n    stderr: {}",
            out.status,
            run.elapsed.as_secs_f64(),
            run.max_rss_kib / 1024,
            tail(&out.stdout, 300),
            tail(&out.stderr, 1500)
        ));
    }
    problems
}

/// Runs every case that `select` picks (and `GPURUN_CORPUS_FILTER` lets through) and fails
/// with the list of all failing cases.
fn run_all(what: &str, kernel: Kernel, select: impl Fn(&Value) -> bool) {
    let corpus = match corpus() {
        Ok(c) => c,
        Err(reason) => return skip(&reason),
    };
    if corpus.doc["sentinel"].as_str() != Some(SENTINEL) {
        panic!("corpus sentinel {:?} is not {SENTINEL}", corpus.doc["sentinel"]);
    }
    let filter: Vec<String> = std::env::var("GPURUN_CORPUS_FILTER")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let cases: Vec<&Value> = corpus.doc["cases"]
        .as_array()
        .expect("cases.json has a cases list")
        .iter()
        .filter(|c| select(c))
        .filter(|c| {
            let name = c["name"].as_str().unwrap_or_default();
            filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    let mut failed = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap_or("?");
        let problems = run_case(corpus, case, kernel);
        println!("{} {name}", if problems.is_empty() { "ok  " } else { "FAIL" });
        if !problems.is_empty() {
            failed.push(format!(
                "{name} ({}; expect {}):\n    {}",
                case["note"].as_str().unwrap_or(""),
                case["expect"].as_str().unwrap_or("?"),
                problems.join("\n    ")
            ));
        }
    }
    for s in corpus.doc["skipped"].as_array().into_iter().flatten() {
        println!("not in the corpus: {} {} ({})", s["row"], s["what"], s["why"]);
    }
    if !failed.is_empty() {
        panic!(
            "{what}: {} of {} corpus cases failed (corpus {}):\n\n{}",
            failed.len(),
            cases.len(),
            corpus.dir.display(),
            failed.join("\n\n")
        );
    }
    println!("{what}: all {} cases passed", cases.len());
}

fn is_slow(c: &Value) -> bool {
    c.get("slow").and_then(Value::as_bool).unwrap_or(false)
}

fn is_unpack(c: &Value) -> bool {
    c.get("stage").and_then(Value::as_str).unwrap_or("unpack") == "unpack"
}

/// Every quick unpack case: hostile layers, hostile archives, legitimate edge cases.
#[test]
fn corpus_unpack() {
    run_all("corpus_unpack", Kernel::Host, |c| is_unpack(c) && !is_slow(c));
}

/// The bombs and the whiteout flood: caps, peak memory and time bounds.
#[test]
fn corpus_unpack_slow() {
    run_all("corpus_unpack_slow", Kernel::Host, |c| is_unpack(c) && is_slow(c));
}

/// A12: image-config values the run stage must refuse (`gpurun --dry-run IMAGE true`).
#[test]
fn corpus_run_config() {
    run_all("corpus_run_config", Kernel::Host, |c| !is_unpack(c));
}

/// Issue 12: the quick unpack cases again with every system call added after Linux 4.18 failing
/// (no `openat2`: the in-root walk in userspace resolves every path), as on RHEL 8.
#[test]
fn corpus_unpack_on_4_18() {
    run_all("corpus_unpack_on_4_18", Kernel::As4_18, |c| is_unpack(c) && !is_slow(c));
}

/// Issue 12: the run-configuration cases on a 4.18 feature set (image files read in-root
/// without `openat2`).
#[test]
fn corpus_run_config_on_4_18() {
    run_all("corpus_run_config_on_4_18", Kernel::As4_18, |c| !is_unpack(c));
}
