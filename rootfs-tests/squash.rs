//! SIF and SquashFS images (issue 13), from fixtures made by the real tools
//! (`rootfs-tests/squash/build.sh`: mksquashfs with every compressor, SIF files by the SIF
//! reference implementation) and hostile images crafted here from them. What gpurun extracts is
//! compared with the listing of the tree that went in. They run as root and as an unprivileged
//! user.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

fn squash_fixture(name: &str) -> Option<PathBuf> {
    fixture(&format!("squash/{name}"))
}

/// The listing of `root` in the shape `rootfs-tests/squash/listing.py` writes.
fn listing(root: &Path) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    walk(root, root, &mut out, &mut by_inode);
    for paths in by_inode.values() {
        let first = paths.iter().min().expect("a group").clone();
        for p in paths {
            out.get_mut(p).expect("listed")["link_group"] = json!(first);
        }
    }
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, Value>,
    by_inode: &mut BTreeMap<u64, Vec<String>>,
) {
    let mut names: Vec<PathBuf> = dir_entries(dir);
    names.sort();
    for full in names {
        let rel = full.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(&full).expect("lstat");
        let ft = meta.file_type();
        let mut e = json!({ "mode": meta.permissions().mode() & 0o7777 });
        if ft.is_dir() {
            e["type"] = json!("dir");
        } else if ft.is_symlink() {
            e = json!({ "type": "symlink", "target": fs::read_link(&full).expect("readlink").to_string_lossy() });
        } else if ft.is_fifo() {
            e["type"] = json!("fifo");
        } else if ft.is_file() {
            e["type"] = json!("file");
            e["size"] = json!(meta.len());
            let digest = ring_sha256(&fs::read(&full).expect("read"));
            e["sha256"] = json!(digest);
            if meta.nlink() > 1 {
                by_inode.entry(meta.ino()).or_default().push(rel.clone());
            }
        } else {
            e["type"] = json!("other");
        }
        if !ft.is_symlink() {
            let xattrs = user_xattrs(&full);
            if !xattrs.is_empty() {
                e["xattrs"] = json!(xattrs);
            }
        }
        out.insert(rel, e);
        if ft.is_dir() {
            walk(root, &full, out, by_inode);
        }
    }
}

fn ring_sha256(data: &[u8]) -> String {
    gpurun::image::digest::Digest::of(gpurun::image::digest::Algorithm::Sha256, data).hex
}

/// user.* extended attributes as name -> hex value (l*xattr: never through a symlink).
fn user_xattrs(path: &Path) -> BTreeMap<String, String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).expect("no NUL in paths");
    let mut names = vec![0u8; 64 << 10];
    // SAFETY: c is NUL-terminated; names is valid for writes of its length.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let mut out = BTreeMap::new();
    if n <= 0 {
        return out;
    }
    for name in names[..n as usize].split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let cname = CString::new(name).expect("xattr names have no NUL");
        let mut value = vec![0u8; 64 << 10];
        // SAFETY: both strings are NUL-terminated; value is valid for writes of its length.
        let len =
            unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len >= 0 {
            let hex: String = value[..len as usize].iter().map(|b| format!("{b:02x}")).collect();
            out.insert(String::from_utf8_lossy(name).into_owned(), hex);
        }
    }
    out
}

fn expected_listing() -> Option<BTreeMap<String, Value>> {
    let path = squash_fixture("listing.json")?;
    Some(serde_json::from_slice(&fs::read(path).expect("listing.json")).expect("JSON"))
}

/// `gpurun unpack IMAGE`: the rootfs directory it printed.
fn unpack(cache: &Path, image: &Path) -> PathBuf {
    let out = run_ok(gpurun(cache).arg("-q").arg("unpack").arg(image), "gpurun unpack");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn sha256_file(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path), "sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_string()
}

fn assert_same_tree(image: &Path, rootfs: &Path, want: &BTreeMap<String, Value>) {
    let got = listing(rootfs);
    let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: missing {missing:?}, extra {extra:?}",
        image.display()
    );
    for (path, w) in want {
        assert_eq!(&got[path], w, "{}: {path} differs", image.display());
    }
}

#[test]
fn every_compressor_extracts_exactly_what_went_in() {
    let Some(want) = expected_listing() else { return };
    let tmp = TempDir::new("squash-codecs");
    for name in
        ["img-gzip.sqsh", "img-xz.sqsh", "img-zstd.sqsh", "img-lz4.sqsh", "img-lzo.sqsh", "plain.sqsh"]
    {
        let Some(image) = squash_fixture(name) else { return };
        let cache = tmp.path().join(name);
        let rootfs = unpack(&cache, &image);
        assert_same_tree(&image, &rootfs, &want);
        // The id is the SHA-256 of the file system's bytes.
        let id = rootfs
            .parent()
            .and_then(Path::file_name)
            .expect("images/<id>/rootfs")
            .to_string_lossy()
            .into_owned();
        assert_eq!(id, sha256_file(&image), "{name}: image id");
        // Holes stay holes.
        let sparse = fs::metadata(rootfs.join("special/sparse")).expect("sparse file");
        assert!(
            sparse.blocks() * 512 < 1 << 20,
            "{name}: the 8 MiB sparse file takes {} blocks",
            sparse.blocks()
        );
        // Warm: the same rootfs, nothing left in staging.
        assert_eq!(unpack(&cache, &image), rootfs, "{name}: warm unpack");
        assert!(dir_entries(&cache.join("staging")).is_empty(), "{name}: staging left behind");
    }
}

#[test]
fn a_sif_partition_is_the_same_image_as_its_squashfs() {
    let (Some(want), Some(sif), Some(sqsh)) =
        (expected_listing(), squash_fixture("app.sif"), squash_fixture("img-zstd.sqsh"))
    else {
        return;
    };
    let tmp = TempDir::new("squash-sif");
    let cache = tmp.path().join("cache");
    let rootfs = unpack(&cache, &sif);
    assert_same_tree(&sif, &rootfs, &want);
    // The partition holds img-zstd.sqsh's bytes: one id, one cache entry.
    assert_eq!(unpack(&cache, &sqsh), rootfs);
    let images = run_ok(gpurun(&cache).args(["images", "--json"]), "gpurun images");
    let list: Value = serde_json::from_slice(&images.stdout).expect("JSON");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["format"], "sif");
    assert_eq!(list[0]["platform"], "linux/amd64");
    assert_eq!(list[0]["config"]["labels"]["org.example.team"], "hpc", "labels.json");
    assert_eq!(list[0]["config"]["entrypoint"], json!(["/.singularity.d/runscript"]));
}

/// Runs `gpurun ARGS` on the fixture SIF with `envs` set; returns stdout.
fn run_sif(cache: &Path, args: &[&str], envs: &[(&str, &str)]) -> String {
    let Some(sif) = squash_fixture("app.sif") else { return String::new() };
    let mut cmd = gpurun(cache);
    let (verb, rest) = args.split_first().expect("a verb or option");
    cmd.arg(verb).arg(&sif).args(rest).env_remove("APP_OVERRIDDEN");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    String::from_utf8_lossy(&run_ok(&mut cmd, &format!("gpurun {args:?}")).stdout).into_owned()
}

fn env_of(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn a_sif_runs_its_runscript_as_apptainer_run_does() {
    if squash_fixture("app.sif").is_none() {
        return;
    }
    let tmp = TempDir::new("squash-run");
    let cache = tmp.path().join("cache");
    let out = run_sif(&cache, &["run", "one", "two words"], &[]);
    assert!(out.contains("runscript: 2 args: one two words"), "{out}");
    assert!(out.contains("composed: docker layer+environment"), "env scripts sourced first: {out}");
    let Some(sif) = squash_fixture("app.sif") else { return };
    // `gpurun IMAGE` with no command, like `./app.sif`, runs it too.
    let bare = run_ok(gpurun(&cache).arg(&sif), "gpurun app.sif");
    assert!(String::from_utf8_lossy(&bare.stdout).contains("runscript: 0 args"), "{}", describe(&bare));
    // `--run` is the short form's `run`.
    let short = run_ok(gpurun(&cache).arg("--run").arg(&sif).arg("x"), "gpurun --run app.sif x");
    assert!(String::from_utf8_lossy(&short.stdout).contains("runscript: 1 args: x"), "{}", describe(&short));
    // `apptainer exec IMAGE` without a command is an error, and so it is here.
    let err = run_fails(gpurun(&cache).arg("exec").arg(&sif), "gpurun exec app.sif");
    assert!(err.contains("exec needs a COMMAND") && err.contains("gpurun run IMAGE"), "{err}");
    // A gpurun option after IMAGE is the command's: gpurun's own hint, not the shell's.
    let bad = output(gpurun(&cache).arg(&sif).args(["--nv", "true"]));
    assert_eq!(bad.status.code(), Some(127), "{}", describe(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("before IMAGE"), "{}", describe(&bad));
    let missing = output(gpurun(&cache).arg("exec").arg(&sif).arg("no-such-command"));
    assert_eq!(missing.status.code(), Some(127), "{}", describe(&missing));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("no-such-command: command not found in the container (PATH=/opt/app/bin:"), "{err}");
    // A path that is not executable: 126, as without the scripts.
    let noexec = output(gpurun(&cache).arg("exec").arg(&sif).arg("/etc/passwd"));
    assert_eq!(noexec.status.code(), Some(126), "{}", describe(&noexec));
    // exec runs the command, after the env scripts.
    let tool = run_sif(&cache, &["exec", "apptool"], &[]);
    assert_eq!(tool.trim(), "tool on PATH");
}

#[test]
fn env_scripts_then_apptainerenv_and_env_as_apptainer_orders_them() {
    if squash_fixture("app.sif").is_none() {
        return;
    }
    let tmp = TempDir::new("squash-env");
    let cache = tmp.path().join("cache");
    let env = env_of(&run_sif(
        &cache,
        &["exec", "env"],
        &[("APP_OVERRIDDEN", "host value"), ("HOST_ONLY", "h"), ("APP_DEFAULTED", "host value")],
    ));
    assert_eq!(env["APP_OVERRIDDEN"], "image value", "the image's scripts win over the host: {env:?}");
    // Docker ENV as Apptainer converts it (`${K:-v}`): the scripts run without the host's
    // variables, which come back only where the scripts set nothing.
    assert_eq!(env["APP_DEFAULTED"], "image default", "{env:?}");
    assert_eq!(env["APP_COMPOSED"], "docker layer+environment");
    assert_eq!(env["APP_ACTIVATED"], "yes, by a sourced file");
    assert_eq!(env["APP_SAW_NAME"], "app.sif", "APPTAINER_NAME is set before the scripts run");
    assert_eq!(env["HOST_ONLY"], "h");
    assert!(env["PATH"].starts_with("/opt/app/bin:"), "{}", env["PATH"]);
    assert!(env["APPTAINER_CONTAINER"].ends_with("app.sif"));
    let env = env_of(&run_sif(
        &cache,
        &["exec", "env"],
        &[("APPTAINERENV_APP_OVERRIDDEN", "apptainerenv"), ("APPTAINERENV_PREPEND_PATH", "/pre")],
    ));
    assert_eq!(env["APP_OVERRIDDEN"], "apptainerenv", "APPTAINERENV_ wins over the image");
    assert!(env["PATH"].starts_with("/pre:/opt/app/bin:"), "APPTAINERENV_PREPEND_PATH: {}", env["PATH"]);
    assert!(!env.contains_key("PREPEND_PATH"));
    let Some(sif) = squash_fixture("app.sif") else { return };
    let out = run_ok(
        gpurun(&cache)
            .args(["exec", "--env", "APP_OVERRIDDEN=cli", "--cleanenv"])
            .arg(&sif)
            .arg("env")
            .env("HOST_ONLY", "h"),
        "exec --env --cleanenv",
    );
    let env = env_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(env["APP_OVERRIDDEN"], "cli", "--env wins over everything: {env:?}");
    assert!(!env.contains_key("HOST_ONLY"), "--cleanenv");
    assert_eq!(env["APP_FROM_DOCKER"], "docker layer", "--cleanenv keeps the image's environment");
}

#[test]
fn an_apptainer_sandbox_directory_runs_with_the_same_conventions() {
    let Some(sqsh) = squash_fixture("img-gzip.sqsh") else { return };
    let tmp = TempDir::new("squash-sandbox");
    let cache = tmp.path().join("cache");
    let rootfs = unpack(&cache, &sqsh);
    let out = run_ok(gpurun(&cache).arg("run").arg(&rootfs).arg("a"), "gpurun run SANDBOX a");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("runscript: 1 args: a") && text.contains("composed: docker layer+environment"),
        "{text}"
    );
}

#[test]
fn symlinks_out_of_the_root_resolve_inside_it() {
    let Some(sqsh) = squash_fixture("img-lz4.sqsh") else { return };
    let tmp = TempDir::new("squash-escape");
    let cache = tmp.path().join("cache");
    let out = run_ok(gpurun(&cache).arg(&sqsh).args(["cat", "/special/escape"]), "cat /special/escape");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("root:x:0:0:root:/root:/bin/sh"),
        "the image's /etc/passwd, not the host's: {text}"
    );
    let out = output(gpurun(&cache).arg(&sqsh).args(["cat", "/special/absolute"]));
    assert!(!out.status.success(), "/etc/shadow is not in the image: {}", describe(&out));
}

#[test]
fn inspect_reports_every_sif_object() {
    let Some(sif) = squash_fixture("app.sif") else { return };
    let tmp = TempDir::new("squash-inspect");
    let out = run_ok(gpurun(tmp.path()).args(["inspect", "--json"]).arg(&sif), "inspect --json");
    let i: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let kinds: Vec<&str> = i["sif"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["definition file", "labels", "environment", "partition"], "{i}");
    let part = &i["sif"]["objects"][3]["partition"];
    assert_eq!(part, &json!({ "fs": "squashfs", "kind": "primary system", "arch": "amd64" }));
    assert!(i["definition"].as_str().unwrap_or("").starts_with("Bootstrap: docker"), "{i}");
    assert_eq!(i["labels"]["org.example.team"], "hpc");
    assert_eq!(i["environment"], "export SIF_ENV_OBJECT=1\n");
    assert_eq!(i["sif"]["created"], 1_700_000_000);
    assert_eq!(i["squashfs"]["compression"], "zstd");
    let Some(sqsh) = squash_fixture("img-zstd.sqsh") else { return };
    assert_eq!(i["id"].as_str(), Some(sha256_file(&sqsh).as_str()), "the id is the partition's digest");
    let text = run_ok(gpurun(tmp.path()).arg("inspect").arg(&sif), "inspect");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("partition (squashfs, primary system, amd64)") && text.contains("org.example.team=hpc"),
        "{text}"
    );
}

/// The SIF reference implementation's own sample files (Debian installs them with its source).
#[test]
fn inspect_reads_the_reference_implementations_samples() {
    let samples = Path::new("/usr/share/gocode/src/github.com/sylabs/sif/test/images");
    if !samples.is_dir() {
        skip("golang-github-sylabs-sif-dev is not installed (rootfs-tests/squash/build.sh installs it)");
        return;
    }
    let tmp = TempDir::new("squash-samples");
    let inspect = |name: &str| -> Value {
        let out = run_ok(gpurun(tmp.path()).args(["inspect", "--json"]).arg(samples.join(name)), name);
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let signed = inspect("one-group-signed.sif");
    let sig = signed["sif"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "signature")
        .expect("a signature");
    assert_eq!(sig["signature"]["entity"], "12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84");
    assert_eq!(sig["signature"]["hash"], "sha256");
    assert_eq!(sig["signature"]["signs"], "group 1");
    assert_eq!(sig["signature"]["format"], "pgp");
    let legacy = inspect("one-group-signed-legacy.sif");
    let sig = legacy["sif"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .find(|o| o["kind"] == "signature")
        .expect("a signature");
    assert_eq!(sig["signature"]["format"], "pgp (legacy)");
    assert!(legacy["not_runnable"].as_str().unwrap_or("").contains("not a SquashFS image"), "{legacy}");
    let sbom = inspect("one-object-sbom.sif");
    assert_eq!(sbom["sif"]["objects"][0]["sbom_format"], "cyclonedx-json");
    assert!(sbom["not_runnable"].as_str().unwrap_or("").contains("no partition"), "{sbom}");
    let two = inspect("two-groups-signed.sif");
    let fs: Vec<&str> = two["sif"]["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["partition"]["fs"].as_str())
        .collect();
    assert_eq!(fs, ["raw", "squashfs", "ext3"]);
    for name in ["empty.sif", "one-object-time.sif", "two-groups.sif"] {
        inspect(name);
    }
}

/// A refused image: gpurun exits 125 within the limit, says `want`, and leaves nothing in the
/// cache (no image, no staging tree) and nothing beside it.
fn assert_refused(image: &Path, want: &str) {
    let tmp = TempDir::new("squash-refused");
    let cache = tmp.path().join("cache");
    let run = run_limited(gpurun(&cache).arg(image).arg("true"), Duration::from_secs(60));
    assert!(!run.timed_out, "{}: gpurun hung", image.display());
    let err = String::from_utf8_lossy(&run.output.stderr);
    assert_eq!(run.output.status.code(), Some(125), "{}: {}", image.display(), describe(&run.output));
    assert!(err.contains(want), "{}: expected {want:?} in: {err}", image.display());
    assert!(dir_entries(&cache.join("images")).is_empty(), "{}: an image was published", image.display());
    assert!(dir_entries(&cache.join("staging")).is_empty(), "{}: staging left behind", image.display());
    assert_eq!(
        dir_entries(tmp.path()),
        std::slice::from_ref(&cache),
        "{}: something was written beside the cache",
        image.display()
    );
}

#[test]
fn sifs_gpurun_cannot_run_are_refused_saying_why() {
    let (Some(ext3), Some(enc)) = (squash_fixture("app-ext3.sif"), squash_fixture("app-encrypted.sif"))
    else {
        return;
    };
    assert_refused(&ext3, "its system partition is ext3, not SquashFS");
    assert_refused(&enc, "its system partition is encrypted");
}

/// A copy of fixture `name` in `dir`, patched by `patch`.
fn crafted(dir: &Path, name: &str, label: &str, patch: impl FnOnce(&mut Vec<u8>)) -> Option<PathBuf> {
    let mut bytes = fs::read(squash_fixture(name)?).expect("read fixture");
    patch(&mut bytes);
    let out = dir.join(format!("{label}-{name}"));
    fs::write(&out, bytes).expect("write crafted image");
    fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).expect("chmod");
    Some(out)
}

fn u16_at(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// The offset in plain.sqsh (whose metadata is stored uncompressed) of the directory entry
/// named `name`: its name's bytes, preceded by its 8-byte entry header (name size - 1 last).
fn dir_entry(b: &[u8], name: &[u8]) -> usize {
    let dir_table = u64_at(b, 72) as usize;
    let mut pat = ((name.len() - 1) as u16).to_le_bytes().to_vec();
    pat.extend_from_slice(name);
    let hits: Vec<usize> =
        (dir_table..b.len() - pat.len()).filter(|&i| b[i..i + pat.len()] == pat[..]).collect();
    assert_eq!(hits.len(), 1, "directory entry {:?} in plain.sqsh", String::from_utf8_lossy(name));
    hits[0] + 2 - 8
}

/// The image offset of the inode a one-entry listing's entry (at `entry`) refers to: its
/// header's start block (12 bytes before the entry) and the entry's offset in that block.
fn inode_of_sole_entry(b: &[u8], entry: usize) -> usize {
    assert_eq!(u32_at(b, entry - 12), 0, "a one-entry listing (count - 1 = 0)");
    let start = u32_at(b, entry - 8) as usize;
    let inode_table = u64_at(b, 64) as usize;
    // Uncompressed metadata blocks: 2 header bytes, then the data.
    inode_table + start + 2 + u16_at(b, entry)
}

#[test]
fn hostile_squashfs_images_are_refused_without_writing_anything() {
    if squash_fixture("plain.sqsh").is_none() {
        return;
    }
    let tmp = TempDir::new("squash-hostile");
    let dir = tmp.path();
    let mut cases: Vec<(Option<PathBuf>, &str)> = vec![
        (
            crafted(dir, "plain.sqsh", "dotdot", |b| {
                let e = dir_entry(b, b"q1");
                b[e + 8..e + 10].copy_from_slice(b"..");
            }),
            "names a directory link",
        ),
        (
            crafted(dir, "plain.sqsh", "slash", |b| {
                let e = dir_entry(b, b"q2");
                b[e + 8..e + 10].copy_from_slice(b"a/");
            }),
            "contains '/'",
        ),
        (
            crafted(dir, "plain.sqsh", "duplicate", |b| {
                let e = dir_entry(b, b"q2");
                b[e + 8..e + 10].copy_from_slice(b"q1");
            }),
            "out of order or repeated",
        ),
        (
            // loopb names the root directory: the tree becomes a cycle.
            crafted(dir, "plain.sqsh", "loop", |b| {
                let root = u64_at(b, 32);
                let e = dir_entry(b, b"loopb");
                put_u32(b, e - 8, (root >> 16) as u32);
                put_u16(b, e, (root & 0xffff) as u16);
            }),
            "the directory table loops",
        ),
        (
            crafted(dir, "plain.sqsh", "blockpast", |b| {
                let e = dir_entry(b, b"multiblock");
                let ino = inode_of_sole_entry(b, e);
                assert_eq!(u16_at(b, ino), 2, "multiblock has a basic file inode");
                put_u32(b, ino + 16, 0xffff_0000);
            }),
            "past the end of the image",
        ),
        (
            crafted(dir, "plain.sqsh", "fragment", |b| {
                let e = dir_entry(b, b"tail");
                let ino = inode_of_sole_entry(b, e);
                assert_eq!(u16_at(b, ino), 2, "tail has a basic file inode");
                put_u32(b, ino + 20, 999);
            }),
            "fragment 999 is not in the fragment table",
        ),
        (
            crafted(dir, "plain.sqsh", "fragtable", |b| {
                // The fragment entry's start, past the end of the image.
                let table = u64_at(b, 80) as usize;
                let block = u64_at(b, table) as usize;
                put_u64(b, block + 2, 1 << 40);
            }),
            "past the end of the image",
        ),
        (
            crafted(dir, "img-gzip.sqsh", "truncated", |b| {
                let keep = b.len() / 2;
                b.truncate(keep);
            }),
            "truncated",
        ),
        (
            crafted(dir, "img-xz.sqsh", "inodetable", |b| {
                let past = u64_at(b, 40) + 10;
                put_u64(b, 64, past);
            }),
            "outside the image",
        ),
        (
            crafted(dir, "img-zstd.sqsh", "garbage", |b| {
                // Compressed metadata overwritten with noise.
                let at = u64_at(b, 72) as usize;
                for (i, x) in b[at + 2..at + 200].iter_mut().enumerate() {
                    *x = (i * 37) as u8;
                }
            }),
            "metadata block",
        ),
    ];
    // SIF descriptors that point outside the file or overlap, and an absurd count.
    cases.push((
        crafted(dir, "app.sif", "outside", |b| {
            let table = u64_at(b, 96) as usize;
            let part = table + 3 * 585; // the fourth descriptor: the partition
            let past = b.len() as u64 + 4096;
            put_u64(b, part + 17, past);
        }),
        "is not inside the file",
    ));
    cases.push((
        crafted(dir, "app.sif", "overlap", |b| {
            let table = u64_at(b, 96) as usize;
            let part_offset = u64_at(b, table + 3 * 585 + 17);
            put_u64(b, table + 585 + 17, part_offset + 16); // labels inside the partition
        }),
        "overlap",
    ));
    cases.push((
        crafted(dir, "app.sif", "count", |b| {
            put_u64(b, 88, 1 << 40);
        }),
        "descriptors",
    ));
    for (image, want) in cases {
        let Some(image) = image else { return };
        assert_refused(&image, want);
    }
}

#[test]
fn concurrent_cold_starts_of_one_sif_share_one_extraction() {
    let Some(sif) = squash_fixture("app.sif") else { return };
    let tmp = TempDir::new("squash-concurrent");
    let cache = tmp.path().join("cache");
    let children: Vec<_> = (0..4)
        .map(|_| gpurun(&cache).arg("-q").arg("exec").arg(&sif).arg("true").spawn().expect("spawn"))
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success());
    }
    assert_eq!(dir_entries(&cache.join("images")).len(), 1);
    assert!(dir_entries(&cache.join("staging")).is_empty());
}

#[test]
fn binds_contain_and_writable_tmpfs_work_as_for_any_image() {
    let Some(sif) = squash_fixture("app.sif") else { return };
    let tmp = TempDir::new("squash-options");
    let cache = tmp.path().join("cache");
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).expect("mkdir");
    fs::write(data.join("x"), "bound\n").expect("write");
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let script = "cat /data/x; ls -A \"$HOME\" | wc -l; echo new > /special/created && cat /special/created";
    let out = run_ok(
        gpurun(&cache)
            .args(["exec", "--contain", "--writable-tmpfs", "-B"])
            .arg(format!("{}:/data:ro", data.display()))
            .arg(&sif)
            .args(["sh", "-c", script]),
        "exec --contain --writable-tmpfs -B",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(lines, ["bound", "0", "new"], "bind, an empty contained HOME, a writable overlay: {text}");
    // The cached tree is not written.
    let rootfs = unpack(&cache, &sif);
    assert!(!rootfs.join("special/created").exists());
}

/// `rootfs-tests/squash/craft.py KIND OUT ARGS...`: a hostile image that attacks the reader's
/// resource bounds (see the script).
fn craft(dir: &Path, kind: &str, args: &[&str]) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-tests/squash/craft.py");
    let out = dir.join(format!("{kind}.sqsh"));
    run_ok(Command::new("python3").arg(&script).arg(kind).arg(&out).args(args), &format!("craft.py {kind}"));
    fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).expect("chmod");
    out
}

/// Runs `gpurun unpack IMAGE`: it must end within a minute, with a peak RSS under `rss_mib`
/// (above this test process's own, which the kernel charges the child with at exec).
fn bounded(image: &Path, rss_mib: i64) -> Limited {
    let tmp = TempDir::new("squash-bounded");
    let run = run_limited(
        gpurun(&tmp.path().join("cache")).args(["-q", "unpack"]).arg(image),
        Duration::from_secs(60),
    );
    assert!(!run.timed_out, "{}: gpurun ran past a minute", image.display());
    let rss = run.max_rss_kib.max(run.parent_max_rss_kib) / 1024;
    assert!(rss < rss_mib.max(run.parent_max_rss_kib / 1024 + 1), "{}: {rss} MiB peak RSS", image.display());
    run
}

#[test]
fn resource_attacks_end_quickly_in_bounded_memory() {
    let tmp = TempDir::new("squash-bombs");
    // 6 names for one inode whose block list is 4M holes (a 16 GiB sparse file): read once.
    let links = craft(tmp.path(), "hardlinks", &["4000000", "6"]);
    let run = bounded(&links, 160);
    assert!(run.output.status.success(), "{}", describe(&run.output));
    // 32 files, each with 1024 xattrs of 64 KiB all sharing one stored value: refused.
    let xattrs = craft(tmp.path(), "xattrs", &["32", "1024"]);
    let run = bounded(&xattrs, 64);
    assert!(
        String::from_utf8_lossy(&run.output.stderr).contains("xattrs exceed"),
        "{}",
        describe(&run.output)
    );
    // 100 nested listings sharing 200,000 names: refused once the names read pass the limit.
    let deep = craft(tmp.path(), "deep", &["200000", "100"]);
    let run = bounded(&deep, 160);
    assert!(
        String::from_utf8_lossy(&run.output.stderr).contains("listings name more than"),
        "{}",
        describe(&run.output)
    );
    // A shared xattr value in 1-byte metadata blocks, more than the reader caches: refused at
    // the first short block the value goes on past, not re-decoded byte by byte.
    let tiny = craft(tmp.path(), "tinyblocks", &["2000", "4096"]);
    let run = bounded(&tiny, 64);
    assert!(
        String::from_utf8_lossy(&run.output.stderr).contains("the data goes on past it"),
        "{}",
        describe(&run.output)
    );
    // Names that would be whiteouts in a layer are ordinary files here: all 2,000 written.
    let wh = craft(tmp.path(), "whiteouts", &["2000"]);
    let cache = tmp.path().join("wh-cache");
    let rootfs = unpack(&cache, &wh);
    let files = dir_entries(&rootfs);
    assert_eq!(files.len(), 2000);
    assert!(files.iter().all(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".wh.f"))));
    assert_eq!(fs::metadata(&files[0]).expect("stat").len(), 32 * 4096);
}

#[test]
fn a_copy_at_another_path_uses_the_cached_tree() {
    let Some(sif) = squash_fixture("app.sif") else { return };
    let tmp = TempDir::new("squash-copy");
    let cache = tmp.path().join("cache");
    let rootfs = unpack(&cache, &sif);
    // As `sbcast` stages a job's SIF to each node's disk: a new path, inode and mtime.
    let copy = tmp.path().join("copy.sif");
    fs::copy(&sif, &copy).expect("copy");
    let out = run_ok(
        gpurun(&cache).args(["-q", "unpack"]).arg(&copy).env("GPURUN_LOG", "gpurun=debug"),
        "unpack copy",
    );
    assert_eq!(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()), rootfs);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("published"), "the copy was extracted again: {log}");
    // APPTAINERENV_ names sh cannot assign do not break the env scripts' wrapper (the image's
    // shell passes them on, bash, or drops them, dash and busybox).
    let env = run_ok(
        gpurun(&cache)
            .arg("exec")
            .arg(&copy)
            .arg("env")
            .env("APPTAINERENV_A.B", "1")
            .env("APPTAINERENV_OK_NAME", "2"),
        "exec env with APPTAINERENV_A.B",
    );
    let env = env_of(&String::from_utf8_lossy(&env.stdout));
    assert_eq!(env.get("OK_NAME").map(String::as_str), Some("2"));
}

/// RHEL 8's feature set (no openat2, mount_setattr, or overlayfs in a user namespace): the
/// in-root writer falls back to its userspace resolver, the root to bind assembly.
#[test]
fn a_sif_runs_on_a_4_18_feature_set() {
    let (Some(want), Some(sif)) = (expected_listing(), squash_fixture("app.sif")) else { return };
    let tmp = TempDir::new("squash-4-18");
    let cache = tmp.path().join("cache");
    let out = run_ok(gpurun_on(&cache, Kernel::As4_18).args(["-q", "unpack"]).arg(&sif), "unpack on 4.18");
    let rootfs = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_same_tree(&sif, &rootfs, &want);
    let out = run_ok(gpurun_on(&cache, Kernel::As4_18).arg("run").arg(&sif).arg("x"), "run on 4.18");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("runscript: 1 args: x") && text.contains("composed: docker layer+environment"),
        "{text}"
    );
}
