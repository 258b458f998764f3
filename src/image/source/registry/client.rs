//! HTTP to one registry, for one repository: TLS with the system's CA store plus the registry's
//! own CAs (`/etc/containers/certs.d/HOST[:PORT]/*.crt`, `/etc/docker/certs.d/...`), plain HTTP
//! only for registries the configuration marks insecure, the proxy variables, the
//! `WWW-Authenticate` Bearer and Basic flows (a token reused for its scope, re-authenticated once
//! when a request is refused), retries of 429 and 5xx honouring `Retry-After`, and bounded
//! waits. Redirects (blob storage) are followed without `Authorization`. Every reply is
//! untrusted: bodies are read with caps, and the caller checks what it got against digests.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{HeaderMap, StatusCode};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::auth::{Credentials, Secret};
use super::reference::Reference;
use crate::host::ProcessEnv;

/// Most bytes of a token reply or an error body read.
const MAX_SMALL: u64 = 1 << 20;
/// Retries of 429 and 5xx replies, and the longest wait honoured between them.
const RETRIES: u32 = 4;
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// No byte for this long on an open connection is a dead connection.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The most one small document (a manifest, a config, a token, an error body) may take whole.
const SMALL_DOCUMENT_TIME: Duration = Duration::from_secs(300);
/// The system CA bundles, first found wins (Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine/Arch).
const CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];
const CERTS_D: [&str; 2] = ["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// How to reach registries, from the configuration and the environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `host[:port]` of registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// Registry (`docker.io`, `host[:port]`) -> its mirrors (`host[:port]`), tried in order
    /// before it.
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    /// Layers downloaded at once (into the blob store; without the store, one after the other).
    pub downloads: usize,
    /// Keep layer blobs in the cache's blob store, so that a layer shared by several images is
    /// downloaded once (`prune` removes those no cached image uses).
    pub blob_store: bool,
    /// The process environment (proxies, `SSL_CERT_FILE`, credential files).
    pub env: ProcessEnv,
}

/// Why a registry could not be used. Messages name URLs and statuses, never credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{url}: {why}")]
    Transport { url: String, why: String },
    #[error("{url}: HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status { url: String, status: u16, detail: Option<String> },
    #[error("{registry}: authentication failed: {why}")]
    Auth { registry: String, why: String },
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: String, limit: u64 },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Credentials(#[from] super::auth::AuthError),
}

impl RegistryError {
    pub fn hint(&self, registry: &str) -> Option<String> {
        match self {
            RegistryError::Status { status: 401 | 403, .. } | RegistryError::Auth { .. } => Some(format!(
                "log in with `gpurun login {registry}` (podman's, skopeo's and docker's logins work too)"
            )),
            RegistryError::Status { status: 404, .. } => Some(
                "check the repository and tag; private repositories may also answer 404 without a login"
                    .into(),
            ),
            RegistryError::Transport { why, .. } if why.contains("InvalidContentType") => Some(format!(
                "{registry} did not answer in TLS (plain HTTP?); if it is a registry you trust on your network, \
                 list it in the configuration's [registry] insecure"
            )),
            RegistryError::Transport { why, .. }
                if ["lookup address", "Connection refused", "timed out", "Timeout", "unreachable"]
                    .iter()
                    .any(|w| why.contains(w)) =>
            {
                Some(format!(
                    "cannot reach {registry}: check the name, this machine's network and HTTPS_PROXY/NO_PROXY; \
                     cluster nodes often reach registries only through a mirror ([registry] mirrors) or not at \
                     all (pull on a login node: gpurun pull -o FILE.tar)"
                ))
            }
            RegistryError::Transport { why, .. }
                if why.contains("UnknownIssuer") || why.contains("certificate") =>
            {
                Some(format!(
                    "put the registry's CA certificate in /etc/containers/certs.d/{registry}/ca.crt (or in the system store)"
                ))
            }
            _ => None,
        }
    }
}

/// A connection to one repository of one registry.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// `host[:port]` the API is served from.
    host: String,
    registry: String,
    repository: String,
    creds: Option<Credentials>,
    /// The `Authorization` value for this repository's pull scope, once known.
    auth: Mutex<Option<Secret>>,
}

impl Client {
    pub fn new(reference: &Reference, opts: &Options) -> Result<Client, RegistryError> {
        let host = reference.api_host();
        let insecure = opts.insecure.iter().any(|i| i == &reference.registry || i == host);
        let scheme = if insecure { "http" } else { "https" };
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(roots(&reference.registry, &opts.env)?.into()))
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(proxy(host, insecure, &opts.env)?)
            .http_status_as_error(false)
            .https_only(!insecure)
            .max_redirects(5)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(READ_TIMEOUT))
            .timeout_per_read(Some(READ_TIMEOUT))
            .user_agent(concat!("gpurun/", env!("CARGO_PKG_VERSION")))
            .build();
        let creds = super::auth::lookup(&reference.registry, &reference.repository, &opts.env)?;
        Ok(Client {
            agent: config.new_agent(),
            base: format!("{scheme}://{host}/v2"),
            host: host.to_string(),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            creds,
            auth: Mutex::new(None),
        })
    }

    /// Uses `creds` instead of the files' (`gpurun login` checks what it is about to store).
    pub fn with_credentials(mut self, creds: Credentials) -> Client {
        self.creds = Some(creds);
        self
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `GET /v2/`: the registry answers and accepts the credentials (what `login` checks).
    pub fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/", self.base);
        let resp = self.send(&url, None, false, None)?;
        expect_ok(&url, resp).map(drop)
    }

    /// A manifest or index by tag or digest: its bytes (at most `limit`), its media type (the
    /// `Content-Type`, else the document's own `mediaType`).
    pub fn manifest(
        &self,
        reference: &str,
        accept: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let url = format!("{}/{}/manifests/{reference}", self.base, self.repository);
        let (bytes, content_type) = again_if_cut(|| {
            let resp = expect_ok(&url, self.send(&url, Some(accept), false, None)?)?;
            let content_type = header(resp.headers(), "content-type")
                .map(|c| c.split(';').next().unwrap_or("").trim().to_string());
            Ok((read_capped(resp, limit, &url)?, content_type))
        })?;
        let media_type = content_type
            .filter(|c| c.starts_with("application/vnd."))
            .or_else(|| own_media_type(&bytes))
            .unwrap_or_default();
        Ok((bytes, media_type))
    }

    /// `HEAD` of a manifest: the digest the registry names it by (`Docker-Content-Digest`).
    pub fn manifest_digest(&self, reference: &str, accept: &str) -> Result<Option<String>, RegistryError> {
        let url = format!("{}/{}/manifests/{reference}", self.base, self.repository);
        let resp = expect_ok(&url, self.send(&url, Some(accept), true, None)?)?;
        Ok(header(resp.headers(), "docker-content-digest").map(str::to_string))
    }

    /// A small blob (a config), at most `limit` bytes.
    pub fn small_blob(&self, digest: &str, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let url = format!("{}/{}/blobs/{digest}", self.base, self.repository);
        again_if_cut(|| read_capped(expect_ok(&url, self.send(&url, None, false, None)?)?, limit, &url))
    }

    /// A blob as a stream (layers): the caller's pipeline checks its size and digest.
    pub fn blob(&self, digest: &str) -> Result<ureq::BodyReader<'static>, RegistryError> {
        let url = format!("{}/{}/blobs/{digest}", self.base, self.repository);
        Ok(expect_ok(&url, self.send(&url, None, false, Some(0))?)?.into_body().into_reader())
    }

    /// The rest of a blob from byte `offset` on (`Range: bytes=OFFSET-`), after a connection
    /// broke: the reader, and how many bytes of it to discard first (all of `offset` when the
    /// server ignored the range and sent the whole blob again).
    pub fn blob_from(
        &self,
        digest: &str,
        offset: u64,
    ) -> Result<(ureq::BodyReader<'static>, u64), RegistryError> {
        let url = format!("{}/{}/blobs/{digest}", self.base, self.repository);
        let resp = expect_ok(&url, self.send(&url, None, false, Some(offset))?)?;
        debug_assert!(offset > 0, "a resume asks for the rest");
        let skip = if resp.status() == StatusCode::PARTIAL_CONTENT {
            let start = header(resp.headers(), "content-range")
                .and_then(|r| r.strip_prefix("bytes "))
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.trim().parse::<u64>().ok());
            if start != Some(offset) {
                return Err(RegistryError::Transport {
                    url,
                    why: format!("asked for bytes {offset}- and got Content-Range {start:?}"),
                });
            }
            0
        } else {
            offset
        };
        Ok((resp.into_body().into_reader(), skip))
    }

    /// One request with the current token; a 401 is answered by (re-)authenticating once, as
    /// the challenge asks (an expired token, `insufficient_scope`); 429 and 5xx are retried.
    fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        head: bool,
        stream_from: Option<u64>,
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            let auth = self.auth.lock().expect("not poisoned").clone();
            let mut req = if head { self.agent.head(url) } else { self.agent.get(url) };
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(a) = &auth {
                req = req.header("Authorization", a.expose());
            }
            if let Some(offset) = stream_from.filter(|&o| o > 0) {
                req = req.header("Range", format!("bytes={offset}-"));
            }
            // A small document must arrive whole within a bounded time (a registry that drips a
            // byte a minute would otherwise hold gpurun for days); a layer stream has its own
            // watchdog on its rate (`Resuming`).
            if stream_from.is_none() {
                req = req.config().timeout_global(Some(SMALL_DOCUMENT_TIME)).build();
            }
            let resp = req.call().map_err(|e| transport(url, e))?;
            let status = resp.status();
            // A 401 from where a redirect led (blob storage on another host) is that host's
            // business: the registry's credentials are never offered to it.
            let from_registry =
                ureq::ResponseExt::get_uri(&resp).authority().map(|a| a.as_str()) == Some(self.host.as_str());
            if status == StatusCode::UNAUTHORIZED && !authenticated && from_registry {
                let challenge = header(resp.headers(), "www-authenticate").map(str::to_string);
                self.authenticate(challenge.as_deref())?;
                authenticated = true;
                continue;
            }
            if (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) && attempt < RETRIES {
                let wait = retry_after(resp.headers()).unwrap_or(Duration::from_millis(500 << attempt));
                tracing::debug!(%url, status = status.as_u16(), ?wait, "retrying");
                std::thread::sleep(wait.min(MAX_RETRY_WAIT));
                attempt += 1;
                continue;
            }
            return Ok(resp);
        }
    }

    /// Answers a challenge: Bearer (a token from the realm, with the credentials if there are
    /// any) or Basic (the credentials themselves).
    fn authenticate(&self, challenge: Option<&str>) -> Result<(), RegistryError> {
        let fail = |why: String| RegistryError::Auth { registry: self.registry.clone(), why };
        let (scheme, params) = parse_challenge(challenge.unwrap_or(""));
        let value = match scheme.as_str() {
            "bearer" => {
                let realm = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone());
                let realm = realm.ok_or_else(|| fail("the Bearer challenge names no realm".into()))?;
                Secret::new(format!("Bearer {}", self.token(&realm, &params)?.expose()))
            }
            "basic" => match &self.creds {
                Some(c) => Secret::new(c.basic()),
                None => return Err(fail("the registry asks for a user name and password".into())),
            },
            "" => return Err(fail("HTTP 401 without a WWW-Authenticate challenge".into())),
            other => return Err(fail(format!("unsupported authentication scheme {other:?}"))),
        };
        *self.auth.lock().expect("not poisoned") = Some(value);
        Ok(())
    }

    /// `GET realm?service=...&scope=...`, Basic-authenticated when there are credentials.
    fn token(&self, realm: &str, params: &[(String, String)]) -> Result<Secret, RegistryError> {
        let fail = |why: String| RegistryError::Auth { registry: self.registry.clone(), why };
        // Plain HTTP only to the insecure registry itself: credentials in clear text must not
        // travel to another host it names.
        let same_host =
            realm.strip_prefix("http://").and_then(|r| r.split('/').next()) == Some(self.host.as_str());
        if !(realm.starts_with("https://") || same_host && self.base.starts_with("http://")) {
            return Err(fail(format!("token realm {realm:?} is not https")));
        }
        let scope = format!("repository:{}:pull", self.repository);
        let mut req = self
            .agent
            .get(realm)
            .query("scope", &scope)
            .config()
            .timeout_global(Some(SMALL_DOCUMENT_TIME))
            .build();
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            req = req.query("service", service);
        }
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic());
        }
        let resp = req.call().map_err(|e| transport(realm, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let who = if self.creds.is_some() {
                "the stored credentials were refused"
            } else {
                "anonymous access refused"
            };
            return Err(fail(format!("token endpoint {realm}: {who} (HTTP {})", resp.status().as_u16())));
        }
        let body = read_capped(expect_ok(realm, resp)?, MAX_SMALL, realm)?;
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| fail(format!("token endpoint {realm}: reply is not JSON")))?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()));
        let token = token.ok_or_else(|| fail(format!("token endpoint {realm}: no token in the reply")))?;
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail(format!("token endpoint {realm}: the token is not printable ASCII")));
        }
        Ok(Secret::new(token.to_string()))
    }
}

/// A small document is fetched again, twice at most, when its connection broke (a layer blob
/// resumes instead: see `Resuming`).
fn again_if_cut<T>(fetch: impl Fn() -> Result<T, RegistryError>) -> Result<T, RegistryError> {
    let mut tries = 0;
    loop {
        match fetch() {
            Err(RegistryError::Transport { url, why }) if tries < 2 => {
                tries += 1;
                tracing::debug!(%url, %why, "fetching again");
                std::thread::sleep(Duration::from_millis(300 * tries));
            }
            other => return other,
        }
    }
}

fn transport(url: &str, e: ureq::Error) -> RegistryError {
    RegistryError::Transport { url: url.to_string(), why: e.to_string() }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn expect_ok(
    url: &str,
    resp: ureq::http::Response<ureq::Body>,
) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    // The distribution error body: {"errors":[{"code","message"}]}; only its codes and messages,
    // cut short, are shown.
    let detail = read_capped(resp, 16 << 10, url).ok().and_then(|b| {
        let v: serde_json::Value = serde_json::from_slice(&b).ok()?;
        let errors = v.get("errors")?.as_array()?;
        let text: Vec<String> = errors
            .iter()
            .take(3)
            .map(|e| {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                format!("{code} {msg}").chars().filter(|c| !c.is_control()).take(200).collect()
            })
            .collect();
        (!text.is_empty()).then(|| text.join("; "))
    });
    Err(RegistryError::Status { url: url.to_string(), status, detail })
}

fn read_capped(
    resp: ureq::http::Response<ureq::Body>,
    limit: u64,
    url: &str,
) -> Result<Vec<u8>, RegistryError> {
    use std::io::Read;
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| RegistryError::Transport { url: url.to_string(), why: e.to_string() })?;
    if out.len() as u64 > limit {
        return Err(RegistryError::TooLarge { what: url.to_string(), limit });
    }
    Ok(out)
}

fn own_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = v.get("mediaType").and_then(|m| m.as_str()) {
        return Some(mt.to_string());
    }
    // The OCI types may leave mediaType out: an index has manifests, a manifest layers.
    Some(if v.get("manifests").is_some() {
        "application/vnd.oci.image.index.v1+json".into()
    } else {
        "application/vnd.oci.image.manifest.v1+json".into()
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header(headers, "retry-after")?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `Bearer realm="...",service="...",scope="..."`: the scheme (lower case) and its parameters.
pub fn parse_challenge(text: &str) -> (String, Vec<(String, String)>) {
    let text = text.trim();
    let (scheme, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (quoted[..end].to_string(), &quoted[end + 1..]),
                None => (quoted.to_string(), ""),
            }
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_ascii_lowercase(), params)
}

/// The system's CA bundle and the registry's own CAs.
fn roots(registry: &str, env: &ProcessEnv) -> Result<Vec<Certificate<'static>>, RegistryError> {
    let mut files: Vec<PathBuf> = Vec::new();
    match env.non_empty("SSL_CERT_FILE") {
        Some(f) => files.push(f.into()),
        None => files.extend(CA_BUNDLES.iter().map(PathBuf::from).find(|p| p.is_file())),
    }
    for dir in CERTS_D.iter().map(|d| Path::new(d).join(registry)) {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut crts: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        crts.sort();
        files.extend(crts);
    }
    let mut certs = Vec::new();
    for f in &files {
        let pem = std::fs::read(f)
            .map_err(|e| RegistryError::Config(format!("reading CA certificates {}: {e}", f.display())))?;
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(PemItem::Certificate(c)) = item {
                certs.push(c.to_owned());
            }
        }
    }
    if certs.is_empty() {
        return Err(RegistryError::Config(format!(
            "no CA certificates found (looked in {} and SSL_CERT_FILE); install ca-certificates",
            CA_BUNDLES.join(", ")
        )));
    }
    Ok(certs)
}

/// `HTTPS_PROXY` (`HTTP_PROXY` for an insecure registry), then `ALL_PROXY`, unless `NO_PROXY`
/// names the host (a suffix, `.suffix`, or `*`).
fn proxy(host: &str, insecure: bool, env: &ProcessEnv) -> Result<Option<ureq::Proxy>, RegistryError> {
    let get = |names: &[&str]| names.iter().find_map(|n| env.non_empty(n)).map(str::to_string);
    let no_proxy = get(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let bypass = no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|e| {
        let e = e.rsplit_once(':').map_or(e, |(h, _)| h);
        e == "*"
            || name == e.trim_start_matches('.')
            || name.ends_with(&format!(".{}", e.trim_start_matches('.')))
    });
    if bypass {
        return Ok(None);
    }
    let url =
        if insecure { get(&["HTTP_PROXY", "http_proxy"]) } else { get(&["HTTPS_PROXY", "https_proxy"]) }
            .or_else(|| get(&["ALL_PROXY", "all_proxy"]));
    url.map(|u| ureq::Proxy::new(&u).map_err(|e| RegistryError::Config(format!("proxy setting: {e}"))))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull",error="insufficient_scope""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p[0], ("realm".into(), "https://auth.docker.io/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.docker.io".into()));
        assert_eq!(p[2], ("scope".into(), "repository:library/ubuntu:pull".into()));
        assert_eq!(p[3], ("error".into(), "insufficient_scope".into()));
        let (s, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((s.as_str(), p[0].1.as_str()), ("basic", "Registry Realm"));
        assert_eq!(parse_challenge("").0, "");
        let (_, p) = parse_challenge(r#"Bearer realm=unquoted, service = "s""#);
        assert_eq!(p, vec![("realm".into(), "unquoted".into()), ("service".into(), "s".into())]);
    }

    #[test]
    fn proxies_and_no_proxy() {
        let env: ProcessEnv =
            [("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", "localhost,.internal,10.0.0.1")]
                .into_iter()
                .collect();
        assert!(proxy("registry.example.com", false, &env).unwrap().is_some());
        assert!(proxy("reg.internal:5000", false, &env).unwrap().is_none());
        assert!(proxy("localhost:5000", false, &env).unwrap().is_none());
        assert!(proxy("reg.example.com", true, &env).unwrap().is_none(), "no HTTP_PROXY for plain HTTP");
    }
}
