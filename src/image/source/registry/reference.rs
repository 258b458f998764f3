//! `docker://` references, read as Docker reads them: `ubuntu` is
//! `docker.io/library/ubuntu:latest`; a first component with a `.` or a `:`, or `localhost`, is a
//! registry host; a tag, a digest or both may follow. Every part is checked against the
//! distribution grammar, so nothing from a reference can add a path segment, a query or a host
//! to a URL.

use std::fmt;

use crate::image::digest::Digest;

/// The prefix that makes an IMAGE argument a registry reference.
pub const SCHEME: &str = "docker://";

/// Docker Hub's name in references, and the host its API is served from.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, Docker Hub as `docker.io`.
    pub registry: String,
    /// `team/app`, Docker Hub's official images under `library/`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses `REF` or `docker://REF`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let rest = text.strip_prefix(SCHEME).unwrap_or(text);
        let (name, digest) = match rest.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| format!("digest {d:?}: {e}"))?)),
            None => (rest, None),
        };
        let (name, tag) = split_tag(name);
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" { DOCKER_HUB.to_string() } else { registry };
        check_host(&registry)?;
        let repository =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path };
        check_repository(&repository)?;
        if let Some(t) = &tag {
            check_tag(t)?;
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".into()) } else { tag };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// The host (and port) the registry API is served from.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB { DOCKER_HUB_API } else { &self.registry }
    }

    /// What the manifests endpoint is asked for: the digest when there is one (it pins the
    /// image), else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    /// The canonical, fully qualified form: `docker.io/library/ubuntu:24.04`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A `:tag` after the last `/` (a `:` before it belongs to a `host:port`).
fn split_tag(name: &str) -> (&str, Option<String>) {
    let last = name.rfind('/').map_or(0, |i| i + 1);
    match name[last..].rfind(':') {
        Some(i) => (&name[..last + i], Some(name[last + i + 1..].to_string())),
        None => (name, None),
    }
}

fn check_host(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if name_ok && port_ok { Ok(()) } else { Err(format!("registry host {host:?} is not a host name[:port]")) }
}

/// Path components as the distribution spec allows them: lower-case alphanumerics separated by
/// one `.`, one or two `_`, or any number of `-`.
fn check_repository(repo: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'a'..=b'z' | b'0'..=b'9' => i += 1,
                b'.' if b[i + 1].is_ascii_alphanumeric() => i += 1,
                b'_' if b[i + 1].is_ascii_alphanumeric() => i += 1,
                b'_' if b[i + 1] == b'_' && b.get(i + 2).is_some_and(u8::is_ascii_alphanumeric) => i += 2,
                b'-' => i += 1,
                _ => return false,
            }
        }
        !c.contains("-.") && !c.contains(".-") && !c.contains("-_") && !c.contains("_-")
    };
    if repo.len() <= 255 && repo.split('/').all(component_ok) {
        Ok(())
    } else {
        Err(format!("repository {repo:?}: lower-case letters, digits and . _ - separators only"))
    }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(format!("tag {tag:?}: letters, digits, _ . - (at most 128)")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> String {
        Reference::parse(text).unwrap().to_string()
    }

    #[test]
    fn docker_normalization() {
        assert_eq!(canon("docker://ubuntu"), "docker.io/library/ubuntu:latest");
        assert_eq!(canon("ubuntu:24.04"), "docker.io/library/ubuntu:24.04");
        assert_eq!(canon("docker://rocm/pytorch:latest"), "docker.io/rocm/pytorch:latest");
        assert_eq!(canon("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(canon("nvcr.io/nvidia/pytorch:24.01-py3"), "nvcr.io/nvidia/pytorch:24.01-py3");
        assert_eq!(canon("localhost/app"), "localhost/app:latest");
        assert_eq!(canon("127.0.0.1:5000/team/app:v1"), "127.0.0.1:5000/team/app:v1");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("host:5000/app@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.manifest_ref()), (None, d.clone()));
        let r = Reference::parse(&format!("host:5000/app:v1@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.manifest_ref()), (Some("v1"), d));
        assert_eq!(Reference::parse("docker://busybox").unwrap().api_host(), "registry-1.docker.io");
        assert_eq!(Reference::parse("host:5000/x").unwrap().api_host(), "host:5000");
    }

    #[test]
    fn nothing_can_reach_outside_the_repository_path() {
        for bad in [
            "docker://host/../x",
            "host/a/../../v2",
            "host/app?x=1",
            "host/app#f",
            "host/App",
            "host/app:../x",
            "host/app:",
            "ho st/app",
            "host:99999x/app",
            "user@host/app",
            "host/app@sha256:short",
            "host//app",
            "host/a..b",
            "",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
