//! Registry credentials: found in the files users already have, in containers/image's order
//! (`REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json`, `$DOCKER_CONFIG/config.json`,
//! `~/.docker/config.json`), with their credential helpers (`credHelpers`, `credsStore`); and
//! written by `gpurun login` where podman and skopeo write (`REGISTRY_AUTH_FILE`, else
//! `$XDG_RUNTIME_DIR/containers/auth.json`), mode 0600. This is the only module that holds a
//! secret; [`Secret`] never formats one.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::host::ProcessEnv;

/// The longest a credential helper may take.
const HELPER_TIME: std::time::Duration = std::time::Duration::from_secs(30);

/// The child's exit status, or `None` when it is still running after `limit`.
fn wait_for(child: &mut std::process::Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if start.elapsed() < limit => std::thread::sleep(std::time::Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Auth files are small; a larger one is refused rather than read.
const MAX_AUTH_FILE: u64 = 1 << 20;

/// A password or token. `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A user name and its password (or identity token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.username, self.password.expose())))
    }
}

/// Why credentials could not be read or written. Messages name files and helpers, never values.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("credential helper docker-credential-{helper}: {why}")]
    Helper { helper: String, why: String },
    #[error("no place to keep credentials: REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR and HOME are all unset")]
    NoAuthFile,
}

/// The files searched, in order (those that do not exist are skipped).
pub fn auth_files(env: &ProcessEnv) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(f) = env.non_empty("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(f));
    }
    if let Some(d) = env.non_empty("XDG_RUNTIME_DIR") {
        files.push(Path::new(d).join("containers/auth.json"));
    }
    match (env.non_empty("XDG_CONFIG_HOME"), env.non_empty("HOME")) {
        (Some(c), _) => files.push(Path::new(c).join("containers/auth.json")),
        (None, Some(h)) => files.push(Path::new(h).join(".config/containers/auth.json")),
        _ => {}
    }
    if let Some(d) = env.non_empty("DOCKER_CONFIG") {
        files.push(Path::new(d).join("config.json"));
    }
    if let Some(h) = env.non_empty("HOME") {
        files.push(Path::new(h).join(".docker/config.json"));
    }
    files
}

/// Where `gpurun login` writes (podman's and skopeo's default).
pub fn login_file(env: &ProcessEnv) -> Result<PathBuf, AuthError> {
    if let Some(f) = env.non_empty("REGISTRY_AUTH_FILE") {
        return Ok(PathBuf::from(f));
    }
    if let Some(d) = env.non_empty("XDG_RUNTIME_DIR") {
        return Ok(Path::new(d).join("containers/auth.json"));
    }
    match env.non_empty("HOME") {
        Some(h) => Ok(Path::new(h).join(".config/containers/auth.json")),
        None => Err(AuthError::NoAuthFile),
    }
}

/// The credentials for `registry` (`host[:port]`, Docker Hub as `docker.io`) and `repository`,
/// from the first file that has any: a helper named for the registry, else the longest
/// matching `auths` key (`host`, `host/namespace`, `https://host/v1/`), else `credsStore`.
pub fn lookup(registry: &str, repository: &str, env: &ProcessEnv) -> Result<Option<Credentials>, AuthError> {
    for path in auth_files(env) {
        let Some(doc) = read_json(&path)? else { continue };
        if let Some(helper) = doc.get("credHelpers").and_then(|h| h.get(registry)).and_then(|v| v.as_str()) {
            return helper_get(helper, registry, env);
        }
        if let Some(creds) = from_auths(&doc, registry, repository, &path)? {
            return Ok(Some(creds));
        }
        if let Some(store) = doc.get("credsStore").and_then(|v| v.as_str()).filter(|s| !s.is_empty())
            && let Some(creds) = helper_get(store, registry, env)?
        {
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

/// Reads an auth file; `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<serde_json::Value>, AuthError> {
    let bad = |why: String| AuthError::File { path: path.to_owned(), why };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut text = String::new();
    file.take(MAX_AUTH_FILE + 1).read_to_string(&mut text).map_err(|e| bad(e.to_string()))?;
    if text.len() as u64 > MAX_AUTH_FILE {
        return Err(bad(format!("larger than {MAX_AUTH_FILE} bytes")));
    }
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text).map(Some).map_err(|e| bad(format!("not JSON: {e}")))
}

/// `host`, with Docker Hub's other spellings folded, from an `auths` key.
fn key_scope(key: &str) -> String {
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let key = key.trim_end_matches('/');
    let key = key.strip_suffix("/v1").or_else(|| key.strip_suffix("/v2")).unwrap_or(key);
    for hub in ["index.docker.io", "registry-1.docker.io"] {
        if let Some(rest) = key.strip_prefix(hub) {
            return format!("docker.io{rest}");
        }
    }
    key.to_string()
}

fn from_auths(
    doc: &serde_json::Value,
    registry: &str,
    repository: &str,
    path: &Path,
) -> Result<Option<Credentials>, AuthError> {
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else { return Ok(None) };
    let full = format!("{registry}/{repository}");
    let best = auths
        .iter()
        .map(|(k, v)| (key_scope(k), v))
        .filter(|(scope, _)| full == *scope || full.starts_with(&format!("{scope}/")))
        .max_by_key(|(scope, _)| scope.len());
    let Some((scope, entry)) = best else { return Ok(None) };
    let bad =
        |why: &str| AuthError::File { path: path.to_owned(), why: format!("auths entry for {scope}: {why}") };
    let Some(auth) = entry.get("auth").and_then(|a| a.as_str()).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let decoded = STANDARD.decode(auth).map_err(|_| bad("\"auth\" is not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| bad("\"auth\" is not UTF-8"))?;
    let (user, pass) = text.split_once(':').ok_or_else(|| bad("\"auth\" is not user:password"))?;
    Ok(Some(Credentials { username: user.to_string(), password: Secret::new(pass.to_string()) }))
}

/// `docker-credential-HELPER get`, the server on stdin, `{"Username","Secret"}` on stdout.
fn helper_get(helper: &str, registry: &str, env: &ProcessEnv) -> Result<Option<Credentials>, AuthError> {
    let err = |why: String| AuthError::Helper { helper: helper.to_string(), why };
    if !helper.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(err("the helper's name may hold only letters, digits, - _ .".into()));
    }
    let server = if registry == "docker.io" { "https://index.docker.io/v1/" } else { registry };
    let spawned = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .env_clear()
        .envs(env.vars())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        // A helper named in a config.json copied from another machine ("desktop"): no
        // credentials from it, rather than no pull at all (public images need none).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(helper, "credential helper not installed; ignoring it");
            return Ok(None);
        }
        Err(e) => return Err(err(e.to_string())),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    // Read on a thread and wait with a deadline: a helper that prompts on a keyring, or leaves
    // a daemon holding its stdout, must not hang every pull.
    let stdout = child.stdout.take();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(MAX_AUTH_FILE).read_to_end(&mut out);
        }
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(HELPER_TIME).ok();
    let status = out.as_ref().and_then(|_| wait_for(&mut child, HELPER_TIME));
    // Joined when it has answered (it is ending): the sandbox later needs a single thread.
    if out.is_some() {
        let _ = reader.join();
    }
    let (Some(out), Some(status)) = (out, status) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(err(format!("no answer within {HELPER_TIME:?}")));
    };
    if !status.success() {
        // Helpers exit 1 with "credentials not found in native keychain" for an unknown server.
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out).map_err(|_| err("its output is not JSON".into()))?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    match (field("Username"), field("Secret")) {
        (Some(u), Some(s)) if !s.is_empty() => {
            Ok(Some(Credentials { username: u, password: Secret::new(s) }))
        }
        _ => Ok(None),
    }
}

/// Stores `creds` for `registry` in `file` (other entries kept), written whole to a temporary
/// file of mode 0600 and renamed over it.
pub fn store(file: &Path, registry: &str, creds: Option<&Credentials>) -> Result<bool, AuthError> {
    let bad = |why: String| AuthError::File { path: file.to_owned(), why };
    let mut doc = read_json(file)?.unwrap_or_else(|| serde_json::json!({}));
    if !doc.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    let auths = doc.as_object_mut().expect("checked").entry("auths").or_insert_with(|| serde_json::json!({}));
    let Some(auths) = auths.as_object_mut() else { return Err(bad("\"auths\" is not an object".into())) };
    let changed = match creds {
        Some(c) => {
            let auth = STANDARD.encode(format!("{}:{}", c.username, c.password.expose()));
            auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
            true
        }
        None => {
            let keys: Vec<String> = auths.keys().filter(|k| key_scope(k) == registry).cloned().collect();
            keys.iter().for_each(|k| {
                auths.remove(k);
            });
            !keys.is_empty()
        }
    };
    if changed {
        write_private(file, &serde_json::to_vec_pretty(&doc).expect("a JSON value"))
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(changed)
}

fn write_private(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = dir.join(format!(
        ".{}.gpurun-{}",
        file.file_name().and_then(|n| n.to_str()).unwrap_or("auth"),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    match written.and_then(|()| std::fs::rename(&tmp, file)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(dir: &Path) -> ProcessEnv {
        [("HOME", dir.to_str().unwrap())].into_iter().collect()
    }

    #[test]
    fn secrets_never_format() {
        let c = Credentials { username: "ana".into(), password: Secret::new("hunter2".into()) };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic(), format!("Basic {}", STANDARD.encode("ana:hunter2")));
    }

    #[test]
    fn files_in_order_keys_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("gpurun-auth-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let env = env_with(&dir);
        assert_eq!(lookup("host:5000", "a/b", &env).unwrap(), None);
        let docker = dir.join(".docker/config.json");
        std::fs::create_dir_all(docker.parent().unwrap()).unwrap();
        let enc = |s: &str| STANDARD.encode(s);
        std::fs::write(
            &docker,
            format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{}"}}, "host:5000": {{"auth": "{}"}}, "host:5000/team": {{"auth": "{}"}}}}}}"#,
                enc("hub:h"),
                enc("reg:r"),
                enc("team:t")
            ),
        )
        .unwrap();
        let user = |r: &str, repo: &str| lookup(r, repo, &env).unwrap().map(|c| c.username);
        assert_eq!(user("docker.io", "library/ubuntu").as_deref(), Some("hub"));
        assert_eq!(user("host:5000", "other/x").as_deref(), Some("reg"));
        assert_eq!(user("host:5000", "team/app").as_deref(), Some("team"), "longest key wins");
        assert_eq!(user("host:5001", "team/app"), None);
        // What login writes comes first (containers' file before Docker's) and logout removes it.
        let login = login_file(&env).unwrap();
        let creds = Credentials { username: "new".into(), password: Secret::new("p:w".into()) };
        assert!(store(&login, "host:5000", Some(&creds)).unwrap());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&login).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(lookup("host:5000", "team/app", &env).unwrap(), Some(creds));
        assert!(store(&login, "host:5000", None).unwrap());
        assert!(!store(&login, "host:5000", None).unwrap(), "nothing left to remove");
        assert_eq!(user("host:5000", "team/app").as_deref(), Some("team"));
        std::fs::write(&docker, "{not json").unwrap();
        let e = lookup("host:5000", "x", &env).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("not JSON"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
