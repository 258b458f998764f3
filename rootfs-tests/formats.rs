//! Real-binary tests of image unpacking over every archive shape that
//! `rootfs-tests/images/build.sh` produces (umoci + skopeo output, a Docker 25+ `docker save`, a
//! multi-platform index with an attestation, zstd and multi-member gzip layers). Each fixture's
//! expected rootfs listing, configuration and layers come from `fixtures.json`, written by the
//! same script from the source tree that went into the image, so these tests compare gpurun's
//! output with what went in, byte for byte. They run as root and as an unprivileged user.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

// ---------------------------------------------------------------------------------------------
// fixtures.json

fn manifest() -> Option<&'static Value> {
    static DOC: OnceLock<Option<Value>> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = fixture("fixtures.json")?;
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Some(serde_json::from_str(&text).expect("fixtures.json is JSON"))
    })
    .as_ref()
}

/// The fixture's entry in fixtures.json and its path, or None after a SKIP line.
fn fixture_entry(name: &str) -> Option<(PathBuf, &'static Value)> {
    let doc = manifest()?;
    let Some(entry) = doc["fixtures"].get(name) else {
        skip(&format!("fixture {name} is not in fixtures.json: rebuild the fixtures"));
        return None;
    };
    Some((fixture(name)?, entry))
}

fn images(entry: &Value) -> &Vec<Value> {
    entry["images"].as_array().expect("images array")
}

/// The command-line selection that picks `image` out of its fixture: nothing when it is the
/// default, else --ref (when the fixture's images differ by reference) and --platform (when
/// several images share the reference).
fn selection(entry: &Value, index: usize) -> Vec<String> {
    if entry["default"].as_u64() == Some(index as u64) {
        return Vec::new();
    }
    let imgs = images(entry);
    let img = &imgs[index];
    let mut args = Vec::new();
    if let Some(r) = img["refs"].as_array().and_then(|r| r.first()).and_then(Value::as_str) {
        args.extend(["--ref".to_string(), r.to_string()]);
    }
    let same_ref = imgs.iter().filter(|i| i["refs"] == img["refs"]).count();
    if same_ref > 1 {
        args.extend(["--platform".to_string(), img["platform"].as_str().unwrap().to_string()]);
    }
    args
}

fn expected_rootfs(name: &str) -> &'static Vec<Value> {
    manifest().expect("fixtures.json")["rootfs"][name]
        .as_array()
        .unwrap_or_else(|| panic!("no rootfs listing {name} in fixtures.json"))
}

// ---------------------------------------------------------------------------------------------
// running gpurun

fn unpack(cache: &Path, image: &Path, select: &[String]) -> PathBuf {
    let out = run_ok(gpurun(cache).arg("unpack").args(select).arg(image), "gpurun unpack");
    let stdout = out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout);
    let rootfs = PathBuf::from(OsStr::from_bytes(stdout));
    assert!(rootfs.is_absolute(), "unpack printed {rootfs:?}, not an absolute path");
    assert!(
        rootfs.starts_with(cache.join("images")),
        "rootfs {} is not under {}/images",
        rootfs.display(),
        cache.display()
    );
    assert!(rootfs.is_dir(), "rootfs {} is not a directory", rootfs.display());
    rootfs
}

fn inspect(cache: &Path, image: &Path, select: &[String]) -> Value {
    let out = run_ok(gpurun(cache).arg("inspect").arg("--json").args(select).arg(image), "gpurun inspect");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect --json is not JSON ({e}):\n{}", describe(&out)))
}

fn images_json(cache: &Path) -> Vec<Value> {
    let out = run_ok(gpurun(cache).args(["images", "--json"]), "gpurun images --json");
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(v)) => v,
        other => panic!("images --json is not a JSON array ({other:?}):\n{}", describe(&out)),
    }
}

fn strip_algo(id: &str) -> &str {
    id.strip_prefix("sha256:").unwrap_or(id)
}

/// The published image directories (`$CACHE/images/*`).
fn published(cache: &Path) -> Vec<PathBuf> {
    dir_entries(&cache.join("images"))
}

fn assert_no_staging(cache: &Path, when: &str) {
    let left = dir_entries(&cache.join("staging"));
    assert!(left.is_empty(), "{when}: staging not empty: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// comparing a rootfs with its listing

/// (st_dev, st_ino)
type Inode = (u64, u64);

struct Actual {
    kind: &'static str,
    mode: u32,
    uid: u32,
    dev_ino: Inode,
    size: u64,
    target: Option<Vec<u8>>,
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, Actual>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let path = e.expect("dir entry").path();
        let md = fs::symlink_metadata(&path).expect("lstat");
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if std::os::unix::fs::FileTypeExt::is_fifo(&ft) {
            "fifo"
        } else {
            "other"
        };
        let rel = path.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let target = ft.is_symlink().then(|| fs::read_link(&path).unwrap().as_os_str().as_bytes().to_vec());
        out.insert(
            rel,
            Actual {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                dev_ino: (md.dev(), md.ino()),
                size: md.len(),
                target,
            },
        );
        if ft.is_dir() {
            walk(root, &path, out);
        }
    }
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn file_sha256(path: &Path) -> String {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    format!("sha256:{}", hex(ring::digest::digest(&ring::digest::SHA256, &data).as_ref()))
}

/// Asserts that `rootfs` holds exactly the entries of `expected`: byte-exact names, types,
/// modes (setuid/setgid stripped), sizes and contents, symlink targets, hardlinks sharing an
/// inode, and every entry owned by the invoking user.
fn assert_rootfs_matches(rootfs: &Path, expected: &[Value], what: &str) {
    let mut actual = BTreeMap::new();
    walk(rootfs, rootfs, &mut actual);
    let mut problems = Vec::new();
    let want: BTreeMap<Vec<u8>, &Value> =
        expected.iter().map(|e| (unhex(e["path_hex"].as_str().unwrap()), e)).collect();
    let shown = |p: &[u8]| String::from_utf8_lossy(p).escape_debug().to_string();
    for p in want.keys().filter(|p| !actual.contains_key(*p)) {
        problems.push(format!("missing: {}", shown(p)));
    }
    for p in actual.keys().filter(|p| !want.contains_key(*p)) {
        problems.push(format!("unexpected: {}", shown(p)));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    // inode -> (name, hardlink group) of every regular file, to check hardlinks both ways.
    let mut inodes: HashMap<Inode, Vec<(String, Option<u64>)>> = HashMap::new();
    for (p, e) in &want {
        let Some(a) = actual.get(p) else { continue };
        let name = shown(p);
        let kind = e["type"].as_str().unwrap();
        if a.kind != kind {
            problems.push(format!("{name}: type {} (want {kind})", a.kind));
            continue;
        }
        if a.uid != euid {
            problems.push(format!("{name}: owner uid {} (want the invoking user {euid})", a.uid));
        }
        let want_mode = e["mode"].as_u64().unwrap() as u32 & !0o6000;
        if kind != "symlink" && a.mode != want_mode {
            problems.push(format!("{name}: mode {:o} (want {want_mode:o}, setuid/setgid stripped)", a.mode));
        }
        match kind {
            "symlink" => {
                let t = unhex(e["target_hex"].as_str().unwrap());
                if a.target.as_deref() != Some(&t[..]) {
                    problems.push(format!(
                        "{name}: symlink target {:?} (want {})",
                        a.target.as_deref().map(&shown),
                        shown(&t)
                    ));
                }
            }
            "file" => {
                if a.size != e["size"].as_u64().unwrap() {
                    problems.push(format!("{name}: size {} (want {})", a.size, e["size"]));
                } else if (a.mode & 0o400 != 0 || is_root()) && a.size > 0 {
                    let got = file_sha256(&rootfs.join(OsStr::from_bytes(p)));
                    if got != e["sha256"].as_str().unwrap() {
                        problems.push(format!("{name}: content differs"));
                    }
                }
                let group = e.get("hardlink_group").and_then(Value::as_u64);
                inodes.entry(a.dev_ino).or_default().push((name, group));
            }
            _ => {}
        }
    }
    let mut inode_of_group: HashMap<u64, Inode> = HashMap::new();
    for (ino, names) in &inodes {
        if names.len() > 1 && names.iter().any(|(_, g)| g.is_none() || *g != names[0].1) {
            problems.push(format!("not hardlinked in the source but share an inode: {names:?}"));
        }
        for (name, g) in names {
            if let Some(g) = g
                && *inode_of_group.entry(*g).or_insert(*ino) != *ino
            {
                problems.push(format!("{name}: should be a hardlink of group {g} (same inode)"));
            }
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(40);
        panic!(
            "{what}: rootfs {} differs from the source ({n} problems):\n  {}",
            rootfs.display(),
            problems.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// inspect

fn assert_inspect_matches(got: &Value, entry: &Value, img: &Value, what: &str) {
    assert_eq!(got["id"], img["id"], "{what}: image id (sha256 of the config)\n{got:#}");
    // The variant (arm64/v8) lives in the index descriptor; the config may not repeat it.
    let gp = got["platform"].as_str().unwrap_or_default();
    let wp = img["platform"].as_str().unwrap();
    assert!(gp == wp || wp.starts_with(&format!("{gp}/")), "{what}: platform {gp} (want {wp})\n{got:#}");
    let format = got["format"].as_str().unwrap_or_default();
    match entry["kind"].as_str().unwrap() {
        // A Docker 25+ `docker save` is both a docker-archive and an OCI archive.
        "docker25" => assert!(
            format.contains("docker") || format == "oci-archive",
            "{what}: format {format:?} for a Docker 25 docker save"
        ),
        _ => assert_eq!(format, entry["format"].as_str().unwrap(), "{what}: format"),
    }
    if let Some(reference) = got["reference"].as_str() {
        let refs: Vec<&str> = img["refs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let familiar =
            |r: &str| r.trim_start_matches("docker.io/").trim_start_matches("library/").to_string();
        assert!(
            refs.is_empty() || refs.iter().any(|r| familiar(r) == familiar(reference)),
            "{what}: reference {reference:?} is none of {refs:?}"
        );
    }
    let want = &img["config"];
    let cfg = &got["config"];
    for key in ["env", "entrypoint", "cmd", "labels"] {
        let empty = if key == "labels" { Value::Object(Default::default()) } else { Value::Array(vec![]) };
        let g = if cfg[key].is_null() { &empty } else { &cfg[key] };
        assert_eq!(g, &want[key], "{what}: config.{key}\n{got:#}");
    }
    for key in ["working_dir", "user"] {
        let g = cfg[key].as_str().unwrap_or_default();
        assert_eq!(g, want[key].as_str().unwrap(), "{what}: config.{key}\n{got:#}");
    }
    let layers = got["layers"].as_array().unwrap_or_else(|| panic!("{what}: no layers\n{got:#}"));
    let want_layers = img["layers"].as_array().unwrap();
    assert_eq!(layers.len(), want_layers.len(), "{what}: layer count\n{got:#}");
    for (i, (g, w)) in layers.iter().zip(want_layers).enumerate() {
        for key in ["diff_id", "digest", "size", "media_type"] {
            if !w[key].is_null() {
                assert_eq!(g[key], w[key], "{what}: layers[{i}].{key}\n{got:#}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// every fixture: inspect and unpack each image it holds

fn check_fixture(name: &str) {
    let Some((path, entry)) = fixture_entry(name) else {
        return;
    };
    for (i, img) in images(entry).iter().enumerate() {
        let select = selection(entry, i);
        let what = format!("{name} {select:?}");
        let tmp = TempDir::new("formats");
        let cache = tmp.path().join("cache");
        assert_inspect_matches(&inspect(&cache, &path, &select), entry, img, &what);
        let rootfs = unpack(&cache, &path, &select);
        assert_rootfs_matches(&rootfs, expected_rootfs(img["rootfs"].as_str().unwrap()), &what);
        assert_no_staging(&cache, &what);
        assert_eq!(published(&cache).len(), 1, "{what}: one published image");
    }
}

macro_rules! fixture_tests {
    ($($test:ident => $name:literal,)*) => {$(
        #[test]
        fn $test() {
            check_fixture($name);
        }
    )*};
}

fixture_tests! {
    unpack_oci_layout_umoci => "oci-layout",
    unpack_oci_layout_skopeo => "oci-layout-skopeo",
    unpack_oci_archive => "oci-archive.tar",
    unpack_oci_archive_two_refs => "oci-two.tar",
    unpack_oci_zstd => "oci-zstd",
    unpack_oci_uncompressed => "oci-uncompressed",
    unpack_oci_multi_member_gzip => "oci-multigzip",
    unpack_oci_multiarch_nested_index => "oci-multiarch",
    unpack_oci_multiarch_flat_index => "oci-multiarch-flat",
    unpack_docker_archive => "docker-archive.tar",
    unpack_docker_archive_two_tags => "docker-archive-tags.tar",
    unpack_docker_archive_two_images => "docker-archive-two.tar",
    unpack_docker25_save => "docker25.tar",
    unpack_docker25_save_two_images => "docker25-two.tar",
}

/// Every fixture in fixtures.json has a test above (so a new shape cannot go untested).
#[test]
fn every_fixture_has_a_test() {
    let Some(doc) = manifest() else { return };
    let tested: BTreeSet<&str> = [
        "oci-layout",
        "oci-layout-skopeo",
        "oci-archive.tar",
        "oci-two.tar",
        "oci-zstd",
        "oci-uncompressed",
        "oci-multigzip",
        "oci-multiarch",
        "oci-multiarch-flat",
        "docker-archive.tar",
        "docker-archive-tags.tar",
        "docker-archive-two.tar",
        "docker25.tar",
        "docker25-two.tar",
        "big",
    ]
    .into();
    let all: BTreeSet<&str> = doc["fixtures"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(all, tested, "fixtures.json and this file disagree on the fixture list");
}

// ---------------------------------------------------------------------------------------------
// selection

#[test]
fn several_images_without_ref_is_an_error_listing_the_choices() {
    for name in ["oci-layout", "oci-two.tar", "docker-archive-two.tar", "docker25-two.tar"] {
        let Some((path, entry)) = fixture_entry(name) else {
            return;
        };
        let tmp = TempDir::new("ambiguous");
        let cache = tmp.path().join("cache");
        for verb in ["unpack", "inspect"] {
            let err = run_fails(gpurun(&cache).arg(verb).arg(&path), &format!("{verb} {name} without --ref"));
            assert!(err.contains("--ref"), "{name}: the error should say to use --ref:\n{err}");
            for img in images(entry) {
                let r = img["refs"][0].as_str().unwrap();
                let tag = r.rsplit(':').next().unwrap();
                assert!(err.contains(tag), "{name}: the error does not list {r}:\n{err}");
            }
        }
        assert!(published(&cache).is_empty(), "{name}: nothing may be published");
        assert_no_staging(&cache, name);
    }
}

#[test]
fn unknown_ref_is_an_error_naming_it() {
    let Some(path) = fixture("oci-layout") else {
        return;
    };
    let tmp = TempDir::new("badref");
    let cache = tmp.path().join("cache");
    let err = run_fails(
        gpurun(&cache).args(["unpack", "--ref", "no-such-ref"]).arg(&path),
        "unpack --ref no-such-ref",
    );
    assert!(err.contains("no-such-ref"), "error does not name the ref:\n{err}");
    assert!(err.contains("latest") && err.contains("base"), "error does not list the refs:\n{err}");
}

#[test]
fn platform_selection_and_attestation_skipped() {
    for name in ["oci-multiarch", "oci-multiarch-flat"] {
        let Some((path, entry)) = fixture_entry(name) else {
            return;
        };
        let tmp = TempDir::new("platform");
        let cache = tmp.path().join("cache");
        let by_platform =
            |p: &str| images(entry).iter().find(|i| i["platform"].as_str().unwrap().starts_with(p)).unwrap();
        let arm = inspect(&cache, &path, &["--platform".into(), "linux/arm64".into()]);
        assert_eq!(arm["id"], by_platform("linux/arm64")["id"], "{name}: --platform linux/arm64");
        assert_eq!(arm["config"]["labels"]["gpurun.test.arch"], "arm64", "{name}: arm64 config");
        let arm_v8 = inspect(&cache, &path, &["--platform".into(), "linux/arm64/v8".into()]);
        assert_eq!(arm_v8["id"], arm["id"], "{name}: --platform linux/arm64/v8");
        let amd = inspect(&cache, &path, &["--platform".into(), "linux/amd64".into()]);
        assert_eq!(amd["id"], by_platform("linux/amd64")["id"], "{name}: --platform linux/amd64");
        if cfg!(target_arch = "x86_64") {
            let default = inspect(&cache, &path, &[]);
            assert_eq!(default["id"], amd["id"], "{name}: the host platform is the default");
        }
        for bad in ["linux/s390x", "unknown/unknown"] {
            let err = run_fails(
                gpurun(&cache).args(["unpack", "--platform", bad]).arg(&path),
                &format!("{name} --platform {bad}"),
            );
            assert!(
                err.contains("linux/amd64") && err.contains("linux/arm64"),
                "{name}: the error for {bad} should list the platforms:\n{err}"
            );
            assert!(
                bad == "unknown/unknown" || !err.contains("unknown/unknown"),
                "{name}: the attestation manifest is not a choice:\n{err}"
            );
        }
        let rootfs = unpack(&cache, &path, &["--platform".into(), "linux/arm64".into()]);
        assert_rootfs_matches(&rootfs, expected_rootfs("busybox"), name);
        assert_no_staging(&cache, name);
    }
}

// ---------------------------------------------------------------------------------------------
// the cache

#[test]
fn warm_run_reuses_the_cache_and_is_fast() {
    let Some(path) = fixture("docker-archive.tar") else {
        return;
    };
    let tmp = TempDir::new("warm");
    let cache = tmp.path().join("cache");
    let t = Instant::now();
    let rootfs = unpack(&cache, &path, &[]);
    let cold = t.elapsed();
    let before = fs::metadata(&rootfs).unwrap();
    let mut warm = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let again = unpack(&cache, &path, &[]);
        warm = warm.min(t.elapsed());
        assert_eq!(again, rootfs, "warm run printed another rootfs");
    }
    let after = fs::metadata(&rootfs).unwrap();
    assert_eq!(
        (before.ino(), before.mtime(), before.mtime_nsec(), before.ctime(), before.ctime_nsec()),
        (after.ino(), after.mtime(), after.mtime_nsec(), after.ctime(), after.ctime_nsec()),
        "the warm run changed the rootfs directory (re-unpacked?)"
    );
    println!("cold unpack {cold:?}, warm {warm:?}");
    assert!(warm < Duration::from_millis(500), "warm run took {warm:?} (cold {cold:?})");
    assert_eq!(images_json(&cache).len(), 1, "images lists one entry");
    assert_eq!(published(&cache).len(), 1);
}

#[test]
fn cache_is_private_and_owned_by_the_invoking_user() {
    let Some(path) = fixture("oci-archive.tar") else {
        return;
    };
    let tmp = TempDir::new("perms");
    let cache = tmp.path().join("cache");
    let rootfs = unpack(&cache, &path, &[]);
    let md = fs::metadata(&cache).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o700, "cache dir mode");
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    for p in [cache.clone(), cache.join("images"), rootfs.clone()] {
        assert_eq!(fs::metadata(&p).unwrap().uid(), euid, "{} owner", p.display());
    }
    // The rootfs (every entry, checked in assert_rootfs_matches) belongs to us too.
    assert_rootfs_matches(&rootfs, expected_rootfs("busybox"), "oci-archive.tar");
}

#[test]
fn parallel_cold_unpacks_publish_once() {
    let Some(path) = fixture("oci-archive.tar") else {
        return;
    };
    let tmp = TempDir::new("parallel");
    let cache = tmp.path().join("cache");
    let children: Vec<_> = (0..16)
        .map(|_| {
            gpurun(&cache)
                .arg("unpack")
                .arg(&path)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn gpurun")
        })
        .collect();
    let outs: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (i, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "parallel unpack #{i} failed:\n{}", describe(out));
        assert_eq!(out.stdout, outs[0].stdout, "parallel unpacks printed different rootfs paths");
    }
    assert_eq!(published(&cache).len(), 1, "exactly one published entry: {:?}", published(&cache));
    assert_no_staging(&cache, "after 16 parallel unpacks");
    assert_eq!(images_json(&cache).len(), 1);
    let rootfs = PathBuf::from(OsStr::from_bytes(outs[0].stdout.trim_ascii_end()));
    assert_rootfs_matches(&rootfs, expected_rootfs("busybox"), "parallel");
}

/// MPI ranks on a cold cache: ranks already running hold shared use-leases and wait (in
/// MPI_Init) for a rank that saw the image unpublished. That rank must not wait for the leases.
#[test]
fn cold_start_does_not_wait_for_running_users() {
    let Some(path) = fixture("oci-archive.tar") else {
        return;
    };
    let tmp = TempDir::new("lease");
    let cache = tmp.path().join("cache");
    let id = inspect(&cache, &path, &[])["id"].as_str().expect("id").to_owned();
    let locks = cache.join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::File::create(locks.join(format!("{}.lock", strip_algo(&id)))).unwrap();
    // SAFETY: flock on a valid descriptor we own; LOCK_SH never blocks on an unlocked file.
    assert_eq!(unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_SH) }, 0);
    let mut child = gpurun(&cache).arg("unpack").arg(&path).stdout(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a cold unpack waited for a running container's lease (deadlock)");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(published(&cache).len(), 1);
    drop(lock);
}

/// Starts a cold `gpurun unpack` of `path` and returns it once the unpack is under way (a
/// staging entry exists) plus `grace`; `None` when it finished first (the cache is then emptied
/// for another try).
fn unpack_under_way(cache: &Path, path: &Path, grace: Duration) -> Option<std::process::Child> {
    let mut child = gpurun(cache)
        .arg("unpack")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gpurun");
    let start = Instant::now();
    while dir_entries(&cache.join("staging")).is_empty() && start.elapsed() < Duration::from_secs(30) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(grace);
    if child.try_wait().unwrap().is_none() {
        return Some(child);
    }
    run_ok(gpurun(cache).args(["prune", "--all"]), "prune --all");
    None
}

/// SIGTERM and SIGINT (Ctrl-C) during a cold unpack: gpurun removes its staging tree, then dies
/// of the signal; nothing is published.
#[test]
fn sigterm_or_ctrl_c_during_unpack_removes_staging() {
    use std::os::unix::process::ExitStatusExt;
    let Some(path) = fixture("big") else { return };
    for (signal, number) in [("TERM", libc::SIGTERM), ("INT", libc::SIGINT)] {
        let tmp = TempDir::new("sigterm");
        let cache = tmp.path().join("cache");
        let Some(mut child) = (0..3).find_map(|_| unpack_under_way(&cache, &path, Duration::from_millis(50)))
        else {
            skip("the big fixture unpacked before it could be interrupted; make it bigger");
            return;
        };
        // SAFETY: signalling our own child, which has not been waited for yet (its pid is live).
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, number) }, 0, "kill -{signal}");
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(number), "SIG{signal}: gpurun should die of it: {status:?}");
        assert_no_staging(&cache, &format!("after SIG{signal} during the unpack"));
        assert!(published(&cache).is_empty(), "SIG{signal}: nothing published");
    }
}

#[test]
fn sigkill_during_unpack_then_a_good_run() {
    let Some(path) = fixture("big") else { return };
    let tmp = TempDir::new("sigkill");
    let cache = tmp.path().join("cache");
    let mut killed = false;
    // Once the unpack is under way, give it 100 ms, then SIGKILL it.
    if let Some(mut child) = (0..3).find_map(|_| unpack_under_way(&cache, &path, Duration::from_millis(100)))
    {
        child.kill().expect("SIGKILL gpurun");
        child.wait().unwrap();
        killed = true;
    }
    if !killed {
        skip("the big fixture unpacked before it could be killed; make it bigger");
        return;
    }
    for p in published(&cache) {
        assert!(
            p.join("image.json").exists() && p.join("rootfs").is_dir(),
            "a killed unpack left a half-published entry {}",
            p.display()
        );
    }
    let rootfs = unpack(&cache, &path, &[]);
    assert_no_staging(&cache, "after a good run following SIGKILL");
    assert_eq!(published(&cache).len(), 1);
    assert_rootfs_matches(&rootfs, expected_rootfs("big"), "big after SIGKILL");
}

#[test]
fn failed_unpack_leaves_nothing_behind() {
    let Some(src) = fixture("oci-layout-skopeo") else {
        return;
    };
    let tmp = TempDir::new("corrupt");
    let layout = tmp.path().join("layout");
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(&layout), "cp -a");
    // Flip one byte in the largest blob (the busybox layer): its digest no longer matches.
    let blobs = layout.join("blobs/sha256");
    let victim = dir_entries(&blobs).into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let mut data = fs::read(&victim).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    fs::write(&victim, &data).unwrap();
    let cache = tmp.path().join("cache");
    let err = run_fails(gpurun(&cache).arg("unpack").arg(&layout), "unpack of a corrupt layer");
    let hexname = victim.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(&hexname[..12]) || err.to_lowercase().contains("layer"),
        "the error should name the layer:\n{err}"
    );
    assert!(published(&cache).is_empty(), "nothing published after a failure");
    assert_no_staging(&cache, "after a failed unpack");
}

#[test]
fn images_rm_and_prune() {
    let Some((layout, entry)) = fixture_entry("oci-layout") else {
        return;
    };
    let tmp = TempDir::new("images");
    let cache = tmp.path().join("cache");
    assert!(images_json(&cache).is_empty(), "a fresh cache lists nothing");
    let mut ids = BTreeSet::new();
    for i in 0..images(entry).len() {
        unpack(&cache, &layout, &selection(entry, i));
        ids.insert(strip_algo(images(entry)[i]["id"].as_str().unwrap()).to_string());
    }
    let listed = images_json(&cache);
    assert_eq!(listed.len(), 2, "two images: {listed:#?}");
    let listed_ids: BTreeSet<String> =
        listed.iter().map(|i| strip_algo(i["id"].as_str().expect("id")).to_string()).collect();
    assert_eq!(listed_ids, ids, "images lists the image ids");
    for i in &listed {
        assert!(i["size"].as_u64().is_some_and(|s| s > 0), "size: {i}");
        let source = i["source"].to_string();
        assert!(source.contains("oci-layout"), "source should name the layout: {i}");
    }
    let text = run_ok(gpurun(&cache).arg("images"), "images (table)");
    assert!(!text.stdout.is_empty(), "images prints a table");

    // rm by a unique id prefix removes that image only.
    let first = ids.iter().next().unwrap().clone();
    run_ok(gpurun(&cache).args(["rm", &first[..12]]), "rm ID-prefix");
    let left = images_json(&cache);
    assert_eq!(left.len(), 1, "rm by id prefix: {left:#?}");
    assert_ne!(strip_algo(left[0]["id"].as_str().unwrap()), first);
    assert_eq!(published(&cache).len(), 1);
    run_fails(gpurun(&cache).args(["rm", "0000000000000000"]), "rm of an unknown id");

    // rm by source path removes what came from it.
    run_ok(gpurun(&cache).arg("rm").arg(&layout), "rm IMAGE");
    assert!(images_json(&cache).is_empty(), "rm IMAGE removes its images");
    assert!(published(&cache).is_empty());

    // rm by the path of a second archive of the same image (a copy run after the first).
    let second = tmp.path().join("second-copy.tar");
    fs::copy(fixture("oci-archive.tar").unwrap(), &second).unwrap();
    let first_copy = tmp.path().join("first-copy.tar");
    fs::copy(fixture("oci-archive.tar").unwrap(), &first_copy).unwrap();
    run_ok(gpurun(&cache).arg("unpack").arg(&first_copy), "unpack a copy");
    run_ok(gpurun(&cache).arg("unpack").arg(&second), "unpack a second copy");
    assert_eq!(published(&cache).len(), 1, "one image for both copies");
    run_ok(gpurun(&cache).arg("rm").arg(&second), "rm by the second copy's path");
    assert!(published(&cache).is_empty(), "rm by any archive of the image removes it");
    fs::remove_file(&first_copy).unwrap();
    fs::remove_file(&second).unwrap();

    // prune removes images whose source vanished, and staging leftovers of killed unpacks.
    // (docker25.tar holds another image id than oci-archive.tar: skopeo rewrote its config.)
    let copy = tmp.path().join("copy.tar");
    fs::copy(fixture("oci-archive.tar").unwrap(), &copy).unwrap();
    unpack(&cache, &copy, &[]);
    unpack(&cache, &fixture("docker25.tar").unwrap(), &[]);
    assert_eq!(images_json(&cache).len(), 2, "two images before prune");
    fs::remove_file(&copy).unwrap();
    let junk = cache.join("staging").join("leftover-of-a-killed-unpack");
    fs::create_dir_all(junk.join("rootfs/etc")).unwrap();
    run_ok(gpurun(&cache).arg("prune"), "prune");
    let left = images_json(&cache);
    assert_eq!(left.len(), 1, "prune keeps the image whose source exists: {left:#?}");
    assert!(left[0]["source"].to_string().contains("docker25.tar"), "{left:#?}");
    assert_no_staging(&cache, "after prune");
    run_ok(gpurun(&cache).args(["prune", "--all"]), "prune --all");
    assert!(images_json(&cache).is_empty(), "prune --all empties the cache");
    assert!(published(&cache).is_empty());
}

/// A Buildah image whose WORKDIR no layer holds (issue 9) starts there, as under `podman run`:
/// from `/` (nothing bound), with `--contain` and with `--fakeroot`. The directory is made in the
/// run's own upper layer: the cached rootfs never gets it.
#[test]
fn buildah_workdir_in_no_layer_is_created_at_start() {
    let Some(path) = fixture("buildah-workdir.tar") else { return };
    let tmp = TempDir::new("buildah-workdir");
    let cache = tmp.path().join("cache");
    for opts in [&[][..], &["--contain"], &["--fakeroot"]] {
        let out = run_ok(
            gpurun(&cache).current_dir("/").args(opts).arg(&path).arg("pwd"),
            &format!("gpurun {opts:?} buildah-workdir.tar"),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "/work/dir", "{opts:?}: {}", describe(&out));
    }
    let rootfs = unpack(&cache, &path, &[]);
    assert!(!rootfs.join("work").exists(), "the WORKDIR was made in the cached rootfs {}", rootfs.display());
}

/// Every command classifies a directory IMAGE the same way (issue 9): an extracted `docker save`
/// is an image for `inspect`, `unpack` and a run alike (it used to run as a root filesystem), and
/// skopeo's `dir:` layout is refused by all three with the command that converts it.
#[test]
fn directory_images_are_classified_once() {
    let Some(archive) = fixture("docker-archive.tar") else { return };
    let Some(layout) = fixture("oci-layout") else { return };
    let tmp = TempDir::new("dirkinds");
    let cache = tmp.path().join("cache");
    let saved = tmp.path().join("saved");
    fs::create_dir(&saved).unwrap();
    run_ok(Command::new("tar").arg("-C").arg(&saved).arg("-xf").arg(&archive), "tar -xf docker-archive.tar");
    let from_archive = unpack(&cache, &archive, &[]);
    assert_eq!(unpack(&cache, &saved, &[]), from_archive, "the extracted save is the same image");
    let inspected = inspect(&cache, &saved, &[]);
    assert!(inspected.to_string().contains("gpurun/busybox"), "{inspected}");
    let probe = "test -x /bin/busybox && test -d /home/app && echo from-the-image";
    let out = run_ok(gpurun(&cache).arg(&saved).args(["sh", "-c", probe]), "run the extracted save");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-the-image", "{}", describe(&out));

    let skopeo_dir = tmp.path().join("skopeo-dir");
    let copy = output(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "-q"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("dir:{}", skopeo_dir.display())),
    );
    if !copy.status.success() {
        skip(&format!("skopeo copy to dir: failed: {}", describe(&copy)));
        return;
    }
    for args in [&["inspect"][..], &["unpack"], &[]] {
        let mut cmd = gpurun(&cache);
        cmd.args(args).arg(&skopeo_dir);
        if args.is_empty() {
            cmd.arg("true");
        }
        let err = run_fails(&mut cmd, &format!("{args:?} on a skopeo dir:"));
        assert!(
            err.contains("is a skopeo dir: layout") && err.contains("skopeo copy dir:"),
            "{args:?}: {err}"
        );
    }
}

/// skopeo's zstd:chunked layers (issue 9): skopeo 1.9 writes them with a DiffID that no longer
/// names their tar, which gpurun refuses saying so; a writer whose layers do match is accepted.
#[test]
fn zstd_chunked_layers_are_checked_and_explained() {
    let Some(layout) = fixture("oci-layout") else { return };
    let tmp = TempDir::new("zstd-chunked");
    let chunked = tmp.path().join("chunked");
    let copy = output(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "-q",
                "--dest-compress",
                "--dest-compress-format",
                "zstd:chunked",
            ])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("oci:{}:latest", chunked.display())),
    );
    if !copy.status.success() {
        skip(&format!("this skopeo cannot write zstd:chunked: {}", describe(&copy)));
        return;
    }
    let cache = tmp.path().join("cache");
    let out = output(gpurun(&cache).arg("unpack").arg(&chunked));
    if out.status.success() {
        let rootfs = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert_rootfs_matches(&rootfs, expected_rootfs("busybox"), "zstd:chunked");
        return;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(err.contains("DiffID mismatch in a zstd:chunked layer"), "{err}");
    assert!(err.contains("hint: copy the image again without zstd:chunked"), "{err}");
    assert_no_staging(&cache, "after the refused zstd:chunked layer");
    assert!(published(&cache).is_empty(), "nothing published");
}
