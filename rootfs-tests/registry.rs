//! Registry pulls against real registries: Debian's docker-registry on 127.0.0.1, with TLS from a
//! test CA, htpasswd (Basic) and a Bearer flow with a token endpoint of the tests' own, and a
//! plain-HTTP one; images pushed by skopeo from the fixtures (`rootfs-tests/registry/setup.sh`,
//! run here as root; the unprivileged pass uses the registries the root pass started). Each
//! pulled image must be byte-for-byte the fixture's: its id (the config digest) is compared, and
//! every layer's DiffID was verified by the pull itself.

mod support;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use support::*;

const BASIC: &str = "127.0.0.1:5443";
const BEARER: &str = "127.0.0.1:5444";
const PLAIN: &str = "127.0.0.1:5080";
const USER: &str = "gpurun-test";
const DIR: &str = "/run/gpurun-registry";

/// The registries are up (started here when root); `false` after a SKIP line.
fn registries() -> bool {
    static UP: OnceLock<Result<(), String>> = OnceLock::new();
    let state = UP.get_or_init(|| {
        if is_root() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs-tests/registry/setup.sh");
            let out = output(Command::new(script).arg(fixtures_dir()));
            if !out.status.success() {
                return Err(format!("rootfs-tests/registry/setup.sh failed: {}", describe(&out)));
            }
        }
        let up = [BASIC, BEARER, PLAIN].iter().all(|a| std::net::TcpStream::connect(a).is_ok());
        if up && Path::new(DIR).join("password").is_file() {
            Ok(())
        } else {
            Err("the test registries are not running: run rootfs-tests/registry/setup.sh as root".into())
        }
    });
    support::service_up(state)
}

fn password() -> String {
    fs::read_to_string(Path::new(DIR).join("password")).unwrap().trim().to_string()
}

/// The fixture image's id for `(fixture, ref, platform)`, from fixtures.json.
fn fixture_id(name: &str, reference: &str, platform: &str) -> String {
    let path = fixture("fixtures.json").expect("fixtures.json");
    let doc: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    doc["fixtures"][name]["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ref"] == reference && i["platform"] == platform)
        .unwrap_or_else(|| panic!("no {name} {reference} {platform} in fixtures.json"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The fixture image's layer blob digests (hex).
fn fixture_layers(name: &str, reference: &str) -> Vec<String> {
    let path = fixture("fixtures.json").expect("fixtures.json");
    let doc: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let image =
        doc["fixtures"][name]["images"].as_array().unwrap().iter().find(|i| i["ref"] == reference).unwrap();
    image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string())
        .collect()
}

/// A scratch place: cache, auth file, config home, all private to one test.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        Scratch { dir: TempDir::new(tag) }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// gpurun with this test's cache and auth file, and no credentials from the user's own files.
    fn gpurun(&self) -> Command {
        let mut cmd = gpurun(&self.path("cache"));
        cmd.env("REGISTRY_AUTH_FILE", self.path("auth.json"))
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null());
        cmd
    }
    fn login(&self, registry: &str, password: &str) -> Output {
        let mut cmd = self.gpurun();
        cmd.args(["login", "-u", USER, "--password-stdin", registry])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
    /// `gpurun pull REF`'s printed id.
    fn pull(&self, args: &[&str]) -> String {
        let out = run_ok(self.gpurun().arg("pull").args(args), "gpurun pull");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Requests for `path_part` in a registry's access log so far.
fn requests(log: &str, path_part: &str) -> usize {
    fs::read_to_string(Path::new(DIR).join(log))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("127.0.0.1 - ") && l.contains(path_part))
        .count()
}

#[test]
fn basic_auth_login_and_every_manifest_kind() {
    if !registries() || fixture("fixtures.json").is_none() {
        return;
    }
    let s = Scratch::new("reg-basic");
    let image = format!("docker://{BASIC}/test/oci:latest");
    let err = run_fails(s.gpurun().args([&image, "true"]), "a pull without credentials");
    assert!(err.contains("gpurun login 127.0.0.1:5443"), "{err}");
    let refused = s.login(BASIC, "wrong");
    assert_eq!(refused.status.code(), Some(125), "{}", describe(&refused));
    assert!(!s.path("auth.json").exists(), "refused credentials are not stored");
    let ok = s.login(BASIC, &password());
    assert!(ok.status.success(), "{}", describe(&ok));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(s.path("auth.json")).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(
        !fs::read_to_string(s.path("auth.json")).unwrap().contains(&password()),
        "stored encoded, as podman does"
    );
    let oci = fixture_id("oci-layout", "latest", "linux/amd64");
    assert_eq!(s.pull(&[&image]), oci, "OCI manifest");
    assert_eq!(s.pull(&[&format!("{BASIC}/test/docker:v2s2")]), oci, "Docker schema 2 (same config)");
    assert_eq!(s.pull(&[&format!("{BASIC}/test/zstd:latest")]), oci, "zstd layers");
    let multi = format!("{BASIC}/test/multi:latest");
    assert_eq!(s.pull(&[&multi]), fixture_id("oci-multiarch", "latest", "linux/amd64"), "index: this host's");
    let arm = s.pull(&["--platform", "linux/arm64", &multi]);
    assert_eq!(arm, fixture_id("oci-multiarch", "latest", "linux/arm64/v8"), "index: --platform");
    let out = run_ok(s.gpurun().args([&image, "cat", "/etc/group"]), "run the pulled image");
    assert!(String::from_utf8_lossy(&out.stdout).contains("root:"), "{}", describe(&out));
    // What gpurun login wrote, skopeo reads.
    if let Ok(o) = Command::new("skopeo")
        .args(["inspect", "--authfile"])
        .arg(s.path("auth.json"))
        .arg(format!("docker://{BASIC}/test/oci:latest"))
        .output()
    {
        assert!(o.status.success(), "skopeo inspect with gpurun's auth file: {}", describe(&o));
    }
    let out = run_ok(s.gpurun().args(["logout", BASIC]), "logout");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Removed"), "{}", describe(&out));
    let fresh = Scratch::new("reg-basic-out");
    fs::copy(s.path("auth.json"), fresh.path("auth.json")).unwrap();
    run_fails(fresh.gpurun().args([&image, "true"]), "a pull after logout");
}

#[test]
fn credentials_from_skopeo_and_docker_files() {
    if !registries() {
        return;
    }
    // skopeo login writes containers' auth.json; gpurun reads it.
    let s = Scratch::new("reg-skopeo");
    let mut login = Command::new("skopeo");
    login
        .args(["login", "--authfile"])
        .arg(s.path("auth.json"))
        .args(["-u", USER, "--password-stdin", BASIC])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = login.spawn().expect("skopeo");
    child.stdin.take().unwrap().write_all(password().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "skopeo login: {}", describe(&out));
    run_ok(
        s.gpurun().args([&format!("docker://{BASIC}/test/oci:latest"), "true"]),
        "pull with skopeo's login",
    );
    // Docker's ~/.docker/config.json, keyed https://HOST.
    let d = Scratch::new("reg-docker");
    fs::create_dir_all(d.path(".docker")).unwrap();
    let auth = base64_encode(&format!("{USER}:{}", password()));
    fs::write(
        d.path(".docker/config.json"),
        format!(r#"{{"auths":{{"https://{BASIC}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let mut cmd = d.gpurun();
    cmd.env_remove("REGISTRY_AUTH_FILE").args([&format!("docker://{BASIC}/test/oci:latest"), "true"]);
    run_ok(&mut cmd, "pull with Docker's config.json");
    // A credential helper named in credHelpers (docker-credential-NAME get: server on stdin,
    // {"Username","Secret"} on stdout), found on PATH.
    let h = Scratch::new("reg-helper");
    fs::create_dir_all(h.path("bin")).unwrap();
    let helper = h.path("bin/docker-credential-gpuruntest");
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\n[ \"$server\" = {BASIC} ] || exit 1\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{}\"}}' \"$server\"\n",
        password()
    );
    fs::write(&helper, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(h.path("auth.json"), format!(r#"{{"credHelpers":{{"{BASIC}":"gpuruntest"}}}}"#)).unwrap();
    let path = format!("{}:{}", h.path("bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = h.gpurun();
    cmd.env("PATH", path).args([&format!("docker://{BASIC}/test/oci:latest"), "true"]);
    run_ok(&mut cmd, "pull with a credential helper");
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn bearer_tokens_anonymous_and_with_credentials() {
    if !registries() {
        return;
    }
    let tokens = || fs::read_to_string(Path::new(DIR).join("token-requests.log")).unwrap_or_default();
    let image = format!("docker://{BEARER}/test/oci:latest");
    let s = Scratch::new("reg-bearer");
    let before = tokens().lines().count();
    run_ok(s.gpurun().args(["pull", &image]), "anonymous Bearer pull");
    let new: Vec<String> = tokens().lines().skip(before).map(str::to_string).collect();
    assert!(
        !new.is_empty() && new.iter().all(|l| l.starts_with("anonymous scope=repository:test/oci:pull")),
        "{new:?}"
    );
    assert!(new.len() <= 2, "one token per scope and run, not per request: {new:?}");
    let ok = s.login(BEARER, &password());
    assert!(ok.status.success(), "login through the token endpoint: {}", describe(&ok));
    let before = tokens().lines().count();
    run_ok(s.gpurun().args(["pull", &image]), "Bearer pull with credentials");
    assert!(tokens().lines().skip(before).any(|l| l.starts_with(&format!("{USER} scope="))), "{}", tokens());
    let bad = Scratch::new("reg-bearer-bad");
    let auth =
        format!(r#"{{"auths":{{"{BEARER}":{{"auth":"{}"}}}}}}"#, base64_encode(&format!("{USER}:wrong")));
    fs::write(bad.path("auth.json"), auth).unwrap();
    let err = run_fails(bad.gpurun().args(["pull", &image]), "wrong credentials");
    assert!(err.contains("refused") && !err.contains("wrong"), "names the failure, never the secret: {err}");
}

#[test]
fn cached_tags_start_without_the_network() {
    if !registries() {
        return;
    }
    let s = Scratch::new("reg-warm");
    assert!(s.login(BASIC, &password()).status.success());
    // Only this test asks for test/warm: the access log's lines for it are this test's requests.
    let image = format!("docker://{BASIC}/test/warm:latest");
    run_ok(s.gpurun().args([&image, "true"]), "first run pulls");
    let seen = requests("basic.log", "/v2/test/warm/");
    assert!(seen > 0);
    run_ok(s.gpurun().args([&image, "true"]), "warm run");
    assert_eq!(requests("basic.log", "/v2/test/warm/"), seen, "--pull missing: a cached tag sends nothing");
    run_ok(s.gpurun().args(["--pull", "never", &image, "true"]), "--pull never, cached");
    let gets = requests("basic.log", "\"GET /v2/test/warm/");
    run_ok(s.gpurun().args(["--pull", "newer", &image, "true"]), "--pull newer, unchanged tag");
    assert_eq!(requests("basic.log", "\"GET /v2/test/warm/"), gets, "--pull newer, same digest: no GET");
    assert!(requests("basic.log", "\"HEAD /v2/test/warm/manifests/latest") > 0, "but a HEAD");
    let err = run_fails(
        s.gpurun().args(["--pull", "never", &format!("docker://{BASIC}/test/zstd:other"), "true"]),
        "--pull never, not cached",
    );
    assert!(err.contains("not in the cache") && err.contains("--pull never"), "{err}");
    // images, rm and prune know pulled images.
    let out = run_ok(s.gpurun().arg("images"), "images");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&image), "{}", describe(&out));
    assert!(
        listing.contains(&format!("{BASIC}/test/warm:latest@sha256:")),
        "reference and digest: {listing}"
    );
    let out = run_ok(s.gpurun().arg("prune"), "prune");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("removed "),
        "a pulled tag keeps its image: {}",
        describe(&out)
    );
    run_ok(s.gpurun().args(["rm", &image]), "rm docker://REF");
    run_fails(s.gpurun().args(["--pull", "never", &image, "true"]), "--pull never after rm");
}

#[test]
fn plain_http_only_for_insecure_registries() {
    if !registries() {
        return;
    }
    let s = Scratch::new("reg-plain");
    let image = format!("docker://{PLAIN}/test/oci:latest");
    let err = run_fails(s.gpurun().args([&image, "true"]), "HTTPS to a plain-HTTP registry");
    assert!(err.contains("insecure"), "{err}");
    fs::create_dir_all(s.path("config/gpurun")).unwrap();
    fs::write(s.path("config/gpurun/config.toml"), format!("[registry]\ninsecure = [\"{PLAIN}\"]\n"))
        .unwrap();
    let id = s.pull(&[&image]);
    assert_eq!(id, fixture_id("oci-layout", "latest", "linux/amd64"));
}

#[test]
fn references_are_checked() {
    let s = Scratch::new("reg-refs");
    for bad in [
        "docker://host/../etc",
        "docker://host/App",
        "docker://host/app:bad/tag",
        "docker://host/app@sha256:00",
    ] {
        let err = run_fails(s.gpurun().args([bad, "true"]), bad);
        assert!(err.contains("docker://[HOST[:PORT]/]NAME"), "{bad}: {err}");
    }
    let err =
        run_fails(s.gpurun().args(["--ref", "x", "docker://host/app", "true"]), "--ref with a registry");
    assert!(err.contains("--ref x chooses an image inside an archive"), "{err}");
}

/// The fault proxy (127.0.0.1:5081, plain HTTP in front of the plain registry): each fault is
/// named by the repository (`fault/MODE`), and the proxy logs every request it answered.
const FAULTS: &str = "127.0.0.1:5081";

fn fault_log() -> Vec<String> {
    fs::read_to_string(Path::new(DIR).join("fault-requests.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

impl Scratch {
    /// A configuration that lets this test speak plain HTTP to the fault proxy.
    fn trust_faults(&self, extra: &str) {
        fs::create_dir_all(self.path("config/gpurun")).unwrap();
        let text = format!(
            "[registry]\ninsecure = [\"{FAULTS}\", \"localhost:5081\", \"{PLAIN}\", \"127.0.0.1:5082\", \"127.0.0.1:5099\"]\n{extra}"
        );
        fs::write(self.path("config/gpurun/config.toml"), text).unwrap();
    }
}

#[test]
fn a_cut_download_resumes_where_it_stopped() {
    if !registries() {
        return;
    }
    let s = Scratch::new("reg-cut");
    s.trust_faults("");
    let before = fault_log().len();
    let id = s.pull(&[&format!("{FAULTS}/fault/cut:latest")]);
    assert_eq!(id, fixture_id("oci-layout", "latest", "linux/amd64"));
    // The proxy cut the big layer's download in half; the next request for it asked for the
    // rest only, from the byte where the cut was.
    let log: Vec<String> = fault_log().into_iter().skip(before).filter(|l| l.starts_with("cut ")).collect();
    let cut = log.iter().find(|l| l.starts_with("cut ") && l.contains("status=200-cut")).expect("a cut");
    let path = cut.split_whitespace().nth(2).unwrap();
    let sent: u64 = cut.rsplit("bytes=").next().unwrap().parse().unwrap();
    let resumed = log.iter().find(|l| l.contains(path) && l.contains("status=206"));
    let resumed = resumed.unwrap_or_else(|| panic!("no ranged request after the cut: {log:#?}"));
    assert!(resumed.contains(&format!("range=bytes={sent}-")), "{resumed}");
}

#[test]
fn retries_redirects_and_refusals() {
    if !registries() {
        return;
    }
    let oci = fixture_id("oci-layout", "latest", "linux/amd64");
    // Each pull in a cache of its own, so that every blob is downloaded.
    let pull = |mode: &str| {
        let s = Scratch::new(&format!("reg-{mode}"));
        s.trust_faults("");
        let auth = format!(r#"{{"auths":{{"{FAULTS}":{{"auth":"{}"}}}}}}"#, base64_encode("u:p"));
        fs::write(s.path("auth.json"), auth).unwrap();
        s.pull(&[&format!("{FAULTS}/fault/{mode}:latest")])
    };
    // 429 with Retry-After, and 503 for every blob once: retried, then pulled.
    let before = fault_log().len();
    assert_eq!(pull("r429"), oci);
    assert_eq!(pull("r503"), oci);
    let log: Vec<String> = fault_log().into_iter().skip(before).collect();
    assert!(log.iter().any(|l| l.starts_with("r429 ") && l.contains("status=429")), "{log:#?}");
    assert!(log.iter().any(|l| l.starts_with("r503 ") && l.contains("status=503")), "{log:#?}");
    // A redirect to another host (blob storage) is followed without the credentials.
    let before = fault_log().len();
    assert_eq!(pull("redirect"), oci);
    let log: Vec<String> = fault_log().into_iter().skip(before).collect();
    assert!(
        log.iter().any(|l| l.starts_with("redirect ") && l.contains("status=307") && l.contains("auth=yes"))
    );
    let direct: Vec<&String> = log.iter().filter(|l| l.starts_with("direct ")).collect();
    assert!(!direct.is_empty() && direct.iter().all(|l| l.contains("auth=no")), "{direct:#?}");
    // Bytes that do not match the digest, and a manifest over the cap: refused, nothing kept.
    let bad = Scratch::new("reg-bad");
    bad.trust_faults("");
    let err =
        run_fails(bad.gpurun().args(["pull", &format!("{FAULTS}/fault/flip:latest")]), "a flipped byte");
    assert!(err.contains("digest mismatch"), "{err}");
    let err =
        run_fails(bad.gpurun().args(["pull", &format!("{FAULTS}/fault/big:latest")]), "a 5 MiB manifest");
    assert!(err.contains("larger than 4194304 bytes"), "{err}");
    let images = run_ok(bad.gpurun().args(["images", "--json"]), "images");
    assert_eq!(String::from_utf8_lossy(&images.stdout).trim(), "[]", "nothing published");
    assert!(dir_entries(&bad.path("cache/staging")).is_empty(), "no staging left");
}

#[test]
fn mirrors_in_order_then_the_registry() {
    if !registries() {
        return;
    }
    let oci = fixture_id("oci-layout", "latest", "linux/amd64");
    // A mirror that is down (nothing listens on 5082): the registry itself is asked.
    let s = Scratch::new("reg-mirror-down");
    s.trust_faults(&format!("mirrors = {{ \"{PLAIN}\" = [\"127.0.0.1:5082\"] }}\n"));
    assert_eq!(s.pull(&[&format!("{PLAIN}/test/oci:latest")]), oci);
    // A registry that is down (5099) behind a mirror that works: the mirror serves it, and the
    // image is recorded under the name asked for.
    let m = Scratch::new("reg-mirror-up");
    m.trust_faults(&format!("mirrors = {{ \"127.0.0.1:5099\" = [\"{PLAIN}\"] }}\n"));
    assert_eq!(m.pull(&["127.0.0.1:5099/test/oci:latest"]), oci);
    let out = run_ok(m.gpurun().arg("images"), "images");
    assert!(String::from_utf8_lossy(&out.stdout).contains("docker://127.0.0.1:5099/test/oci:latest"));
}

#[test]
fn pull_to_an_oci_archive() {
    if !registries() {
        return;
    }
    let s = Scratch::new("reg-export");
    assert!(s.login(BASIC, &password()).status.success());
    let out = s.path("multi.tar");
    let id = s.pull(&[
        "-o",
        out.to_str().unwrap(),
        "--platform",
        "linux/arm64",
        &format!("{BASIC}/test/multi:latest"),
    ]);
    assert_eq!(id, fixture_id("oci-multiarch", "latest", "linux/arm64/v8"));
    assert!(
        !s.path("cache/images").exists() || dir_entries(&s.path("cache/images")).is_empty(),
        "not into the cache"
    );
    // Every gpurun command and skopeo read it; its id is the registry's.
    let inspect = run_ok(s.gpurun().args(["inspect", "--json"]).arg(&out), "inspect the archive");
    let doc: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(doc["id"].as_str(), Some(id.as_str()));
    assert!(doc["platform"].as_str().is_some_and(|p| p.starts_with("linux/arm64")), "{doc}");
    if let Ok(o) =
        Command::new("skopeo").arg("inspect").arg(format!("oci-archive:{}", out.display())).output()
    {
        assert!(o.status.success(), "skopeo reads it: {}", describe(&o));
    }
    // A failed export leaves no file, not even a partial one.
    let bad = Scratch::new("reg-export-bad");
    bad.trust_faults("");
    let target = bad.path("bad.tar");
    let err = run_fails(
        bad.gpurun().args(["pull", "-o"]).arg(&target).arg(format!("{FAULTS}/fault/flip:latest")),
        "export of corrupt bytes",
    );
    assert!(err.contains("digest mismatch"), "{err}");
    assert!(
        dir_entries(bad.dir.path()).iter().all(|p| !p.to_string_lossy().contains(".tar")),
        "no partial file"
    );
}

#[test]
fn shared_layers_download_once_and_prune_removes_unused_blobs() {
    if !registries() {
        return;
    }
    let s = Scratch::new("reg-store");
    assert!(s.login(BASIC, &password()).status.success());
    // test/sbase is the fixture's "base" image; test/stop is built on it (its first layer).
    let base = fixture_id("oci-layout", "base", "linux/amd64");
    let top = fixture_id("oci-layout", "latest", "linux/amd64");
    assert_eq!(s.pull(&[&format!("{BASIC}/test/sbase:latest")]), base);
    let shared = fs::read_dir(s.path("cache/blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect::<Vec<_>>();
    assert_eq!(shared.len(), 1, "the base image's one layer is in the store: {shared:?}");
    let shared = shared[0].to_string_lossy().into_owned();
    // (The log is the registry's since it started: count this pull's requests only.)
    let shared_gets = || requests("basic.log", &format!("\"GET /v2/test/stop/blobs/sha256:{shared}"));
    let all_gets = || requests("basic.log", "\"GET /v2/test/stop/blobs/");
    let (shared_before, all_before) = (shared_gets(), all_gets());
    assert_eq!(s.pull(&[&format!("{BASIC}/test/stop:latest")]), top);
    assert_eq!(shared_gets(), shared_before, "the shared layer came from the store");
    assert!(all_gets() > all_before, "the other layers were downloaded");
    let stored = dir_entries(&s.path("cache/blobs/sha256")).len();
    assert!(stored > 1, "the other layers joined it");
    // prune keeps blobs the cached images use; after `rm` of both, it removes them.
    let out = run_ok(s.gpurun().arg("prune"), "prune");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("removed blob"), "{}", describe(&out));
    run_ok(
        s.gpurun().args([
            "rm",
            &format!("docker://{BASIC}/test/sbase:latest"),
            &format!("docker://{BASIC}/test/stop:latest"),
        ]),
        "rm",
    );
    // While a pull downloads (it holds the store's lock shared), prune leaves the store alone.
    {
        use std::os::fd::AsRawFd;
        let lock = fs::File::open(s.path("cache/blobs/.lock")).unwrap();
        // SAFETY: flock on a descriptor we own; it is released when `lock` is dropped.
        assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH) }, 0);
        let out = run_ok(s.gpurun().arg("prune"), "prune during a pull");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("removed blob"), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("in use by a running pull"),
            "{}",
            describe(&out)
        );
    }
    let out = run_ok(s.gpurun().arg("prune"), "prune");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("removed blob").count(),
        stored,
        "{}",
        describe(&out)
    );
    assert!(dir_entries(&s.path("cache/blobs/sha256")).is_empty());
    // Without the store, layers stream from the registry and nothing is kept.
    let off = Scratch::new("reg-nostore");
    fs::copy(s.path("auth.json"), off.path("auth.json")).unwrap();
    fs::create_dir_all(off.path("config/gpurun")).unwrap();
    fs::write(off.path("config/gpurun/config.toml"), "[registry]\nstore = false\n").unwrap();
    assert_eq!(off.pull(&[&format!("{BASIC}/test/stop:latest")]), top);
    assert!(dir_entries(&off.path("cache/blobs/sha256")).is_empty(), "no blob kept");
}

#[test]
fn concurrent_cold_starts_download_once() {
    if !registries() {
        return;
    }
    let s = Scratch::new("reg-herd");
    assert!(s.login(BASIC, &password()).status.success());
    let image = format!("docker://{BASIC}/test/herd:latest");
    let gets = |hex: &str| requests("basic.log", &format!("\"GET /v2/test/herd/blobs/sha256:{hex}"));
    let layers: Vec<String> = fixture_layers("oci-layout", "latest");
    let before: Vec<usize> = layers.iter().map(|l| gets(l)).collect();
    // Four ranks of a job start together on a cold cache: one downloads and unpacks, the others
    // wait on the image's lock and find it published.
    let children: Vec<_> = (0..4).map(|_| s.gpurun().args([&image, "true"]).spawn().unwrap()).collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    for (l, b) in layers.iter().zip(before) {
        assert_eq!(gets(l) - b, 1, "layer {l} downloaded once");
    }
}
