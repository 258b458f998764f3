//! Choosing one image from a source and verifying its metadata: `docker save` (legacy
//! `manifest.json` and Docker 25+ OCI layout), OCI archives and layouts, nested indexes,
//! platforms and attestations. Every JSON document is size-capped and digest-checked before it
//! is parsed; the result names each layer blob and the DiffID its content must hash to.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::digest::{Algorithm, Digest, Hasher};
use super::source::{MAX_JSON, Source};

/// Where the OCI walk reads the documents descriptors name. An archive or a layout reads
/// `blobs/ALG/HEX`; a registry fetches manifests and indexes from its manifests endpoint and
/// configs from its blobs endpoint. Whatever returns the bytes, the walk checks their size and
/// digest before parsing them.
pub trait Blobs {
    /// The bytes `digest` names, at most `limit` of them.
    fn read_doc(&self, digest: &Digest, kind: DocKind, limit: u64) -> Result<Vec<u8>, ImageError>;
    /// Whether the blob is there at all (a `docker save` may list other platforms' manifests
    /// without their blobs); a source that fetches on demand says yes.
    fn has_blob(&self, digest: &Digest) -> bool;
}

/// Which kind of document a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// An index or a manifest.
    Manifest,
    /// A config (or any other blob).
    Blob,
}

impl Blobs for Source {
    fn read_doc(&self, digest: &Digest, _kind: DocKind, limit: u64) -> Result<Vec<u8>, ImageError> {
        self.read_small(&blob_path(digest), limit)
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.contains(&blob_path(digest))
    }
}

/// Docker's schema 1 manifests (signed or not): unverifiable layer lists, refused.
pub const SCHEMA1_TYPES: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];
/// What a client accepts when it fetches a manifest by tag or digest.
pub const ACCEPTED_MANIFEST_TYPES: [&str; 4] =
    [INDEX_TYPES[0], INDEX_TYPES[1], MANIFEST_TYPES[0], MANIFEST_TYPES[1]];
use super::{ImageError, Selection};

const INDEX_TYPES: [&str; 2] =
    ["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];
const MANIFEST_TYPES: [&str; 2] =
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"];
const CONFIG_TYPES: [&str; 2] =
    ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];
/// Nested indexes followed at most this deep (a cycle or a 100-deep chain is refused).
const MAX_INDEX_DEPTH: usize = 4;
/// Most descriptors visited while walking an index and its nested indexes. Real indexes hold a
/// few dozen; without a bound, K copies of a nested index at each of 4 levels would expand to
/// K^4 leaves from a few kilobytes of JSON.
const MAX_DESCRIPTORS: usize = 10_000;
/// Most layers in one image (Docker's own limit is 127 for overlay; leave room).
const MAX_LAYERS: usize = 1024;

/// Layer compression, from the media type or sniffed from magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// No media type given (docker-archive): sniff the magic bytes.
    Sniff,
}

/// How the image was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    DockerArchive,
    DockerOciArchive,
    OciArchive,
    OciLayout,
    Registry,
}

/// One layer to apply, in order.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub member: String,
    pub media_type: Option<String>,
    pub compression: Compression,
    /// Blob digest and size (OCI); docker-archive layers have only their DiffID.
    pub digest: Option<Digest>,
    pub size: u64,
    pub diff_id: Digest,
    /// The descriptor marks a zstd:chunked layer (containers/storage's annotations).
    pub zstd_chunked: bool,
}

/// The chosen image with verified metadata.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub format: Format,
    pub reference: Option<String>,
    /// The config digest: the image's content identity and cache key.
    pub id: Digest,
    pub config: ConfigDoc,
    pub layers: Vec<LayerRef>,
    /// The manifest the image came from (OCI walks only; `docker save`'s legacy format has none):
    /// its digest, media type and size.
    pub manifest: Option<(Digest, String, u64)>,
    /// The config's media type (OCI walks only).
    pub config_media_type: Option<String>,
}

impl Resolved {
    pub fn platform(&self) -> String {
        let mut p = format!("{}/{}", self.config.os, self.config.architecture);
        if let Some(v) = self.config.variant.as_deref().filter(|v| !v.is_empty()) {
            p = format!("{p}/{v}");
        }
        p
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConfigDoc {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFsDoc,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    pub user: Option<String>,
    pub env: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RootFsDoc {
    #[serde(rename = "type")]
    pub typ: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<PlatformDoc>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct PlatformDoc {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// An index or a manifest; which one is decided from the content, and both at once is refused.
#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

#[derive(Debug, Deserialize)]
struct DockerItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// A requested platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(text: &str) -> Result<Platform, ImageError> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: normalize_arch(arch).to_string(),
                variant: parts.get(2).map(|v| v.to_string()),
            }),
            _ => Err(ImageError::BadPlatform(text.to_owned())),
        }
    }

    /// The platform this gpurun binary runs on.
    /// A warning when `platform` ("os/arch[/variant]", as recorded) is not the host's: its
    /// programs run only through binfmt_misc emulation, if at all.
    pub fn foreign_warning(platform: &str) -> Option<String> {
        let host = Platform::host();
        let mut parts = platform.split('/');
        let (os, arch) = (parts.next().unwrap_or(""), normalize_arch(parts.next().unwrap_or("")));
        (os != host.os || arch != host.arch).then(|| {
            format!(
                "the image is for {platform}, this host is {}/{}: its programs run only with binfmt_misc emulation (qemu-user-static)",
                host.os, host.arch
            )
        })
    }

    pub fn host() -> Platform {
        Platform { os: "linux".into(), arch: normalize_arch(std::env::consts::ARCH).into(), variant: None }
    }

    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.arch == normalize_arch(arch)
            && self.variant.as_deref().is_none_or(|v| variant == Some(v))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str) -> &str {
    match arch {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Picks the image in `source` that `sel` asks for and verifies its metadata.
pub fn resolve(source: &Source, sel: &Selection) -> Result<Resolved, ImageError> {
    let wanted = sel.platform.as_deref().map(Platform::parse).transpose()?;
    if source.has("oci-layout") || source.has("index.json") {
        let format = match source {
            Source::Layout { .. } => Format::OciLayout,
            Source::Archive { .. } if source.has("manifest.json") => Format::DockerOciArchive,
            Source::Archive { .. } => Format::OciArchive,
        };
        return resolve_oci(source, sel, wanted.as_ref(), format);
    }
    if source.has("manifest.json") {
        return resolve_docker(source, sel, wanted.as_ref());
    }
    Err(ImageError::NotAnImage(source.path().to_owned()))
}

fn parse_json<T: DeserializeOwned>(name: &str, data: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(data).map_err(|e| ImageError::Json { name: name.to_owned(), why: e.to_string() })
}

/// Reads a blob named by a descriptor: size first, then digest, before anything parses it.
fn read_blob(
    source: &dyn Blobs,
    desc: &Descriptor,
    what: &str,
    kind: DocKind,
) -> Result<(Digest, Vec<u8>), ImageError> {
    let digest = Digest::parse(&desc.digest)
        .map_err(|e| ImageError::Descriptor { what: what.into(), why: e.to_string() })?;
    let size = u64::try_from(desc.size).map_err(|_| ImageError::Descriptor {
        what: what.into(),
        why: format!("negative size {}", desc.size),
    })?;
    if size > MAX_JSON {
        return Err(ImageError::TooLarge { name: what.into(), size, limit: MAX_JSON });
    }
    let name = blob_path(&digest);
    let data = source.read_doc(&digest, kind, MAX_JSON)?;
    if data.len() as u64 != size {
        return Err(ImageError::SizeMismatch { name, expected: size, actual: data.len() as u64 });
    }
    let actual = Digest::of(digest.algorithm, &data);
    if actual != digest {
        return Err(ImageError::DigestMismatch { what: name, expected: digest, actual });
    }
    Ok((digest, data))
}

pub fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm.name(), d.hex)
}

fn ref_names(desc: &Descriptor) -> Vec<String> {
    let Some(ann) = &desc.annotations else { return Vec::new() };
    ["io.containerd.image.name", "org.opencontainers.image.ref.name"]
        .iter()
        .filter_map(|k| ann.get(*k).cloned())
        .collect()
}

/// `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` name the same image.
pub fn normalize_ref(r: &str) -> String {
    let r = r.strip_prefix("docker.io/").unwrap_or(r);
    let r = r.strip_prefix("library/").unwrap_or(r);
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') || last.contains('@') { r.to_owned() } else { format!("{r}:latest") }
}

fn ref_matches(wanted: &str, names: &[String]) -> bool {
    let w = normalize_ref(wanted);
    names.iter().any(|n| n == wanted || normalize_ref(n) == w)
}

fn is_attestation(desc: &Descriptor) -> bool {
    let unknown = desc.platform.as_ref().is_some_and(|p| p.os == "unknown" && p.architecture == "unknown");
    let tagged = desc.annotations.as_ref().is_some_and(|a| a.contains_key("vnd.docker.reference.type"));
    unknown || tagged
}

/// A runnable manifest reached from index.json, with the platform its index entry declares.
struct Leaf {
    desc: Descriptor,
    platform: Option<PlatformDoc>,
    reference: Option<String>,
}

fn resolve_oci(
    source: &Source,
    sel: &Selection,
    wanted: Option<&Platform>,
    format: Format,
) -> Result<Resolved, ImageError> {
    if source.has("oci-layout") {
        let layout: serde_json::Value =
            parse_json("oci-layout", &source.read_small("oci-layout", MAX_JSON)?)?;
        let version = layout.get("imageLayoutVersion").and_then(|v| v.as_str()).unwrap_or("");
        if version != "1.0.0" {
            return Err(ImageError::Json {
                name: "oci-layout".into(),
                why: format!("imageLayoutVersion {version:?} is not 1.0.0"),
            });
        }
    }
    let index: Document = parse_json("index.json", &source.read_small("index.json", MAX_JSON)?)?;
    check_document(&index, "index.json", true)?;
    let top: Vec<Descriptor> =
        index.manifests.unwrap_or_default().into_iter().filter(|d| !is_attestation(d)).collect();
    let top = choose_reference(top, sel.reference.as_deref())?;
    let mut walk = Walk::default();
    for desc in top {
        let reference = ref_names(&desc).into_iter().next();
        collect_leaves(source, desc, None, reference, 0, &mut walk)?;
    }
    let leaf = choose_platform(source, walk.leaves, wanted)?;
    finish_oci(source, leaf, format)
}

/// The image a registry's tag or digest names: `top` is the document the registry returned for
/// it (already fetched, size-capped and digest-checked by the caller), an index or a manifest.
/// The platform is chosen as for an archive; attestations are skipped.
pub fn resolve_top(
    source: &dyn Blobs,
    top: &TopDocument,
    reference: &str,
    wanted: Option<&Platform>,
) -> Result<Resolved, ImageError> {
    if SCHEMA1_TYPES.contains(&top.media_type.as_str()) {
        return Err(ImageError::NotRunnable(format!(
            "{reference} is a Docker schema 1 manifest ({}), which no current tool writes and gpurun does not read",
            top.media_type
        )));
    }
    if !INDEX_TYPES.contains(&top.media_type.as_str()) && !MANIFEST_TYPES.contains(&top.media_type.as_str()) {
        return Err(ImageError::NotRunnable(format!("{reference} has media type {:?}", top.media_type)));
    }
    let desc = Descriptor {
        media_type: Some(top.media_type.clone()),
        digest: top.digest.to_string(),
        size: i64::try_from(top.size).unwrap_or(i64::MAX),
        annotations: None,
        platform: None,
    };
    let mut walk = Walk::default();
    collect_leaves(source, desc, None, Some(reference.to_owned()), 0, &mut walk)?;
    let leaf = choose_platform(source, walk.leaves, wanted)?;
    finish_oci(source, leaf, Format::Registry)
}

/// A document fetched by tag or digest, as [`resolve_top`] starts from it.
#[derive(Debug, Clone)]
pub struct TopDocument {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

/// Keeps the index entries that `--ref` names; without `--ref`, insists on a single image.
fn choose_reference(top: Vec<Descriptor>, wanted: Option<&str>) -> Result<Vec<Descriptor>, ImageError> {
    let label = |d: &Descriptor| ref_names(d).into_iter().next().unwrap_or_else(|| d.digest.clone());
    if let Some(w) = wanted {
        let (hit, miss): (Vec<_>, Vec<_>) = top.into_iter().partition(|d| ref_matches(w, &ref_names(d)));
        if hit.is_empty() {
            return Err(ImageError::NoSuchRef {
                wanted: w.into(),
                choices: miss.iter().map(label).collect(),
            });
        }
        return Ok(hit);
    }
    let mut names: Vec<String> = top.iter().map(label).collect();
    names.dedup();
    let distinct_images = top.iter().filter(|d| !ref_names(d).is_empty()).count() > 1
        || (top.len() > 1 && top.iter().all(|d| d.platform.is_none()));
    if distinct_images {
        return Err(ImageError::Ambiguous { what: "images".into(), choices: names, flag: "--ref" });
    }
    Ok(top)
}

/// What walking the indexes found so far.
#[derive(Default)]
struct Walk {
    leaves: Vec<Leaf>,
    /// Nested indexes already expanded (with the platform and name they inherit): a second
    /// descriptor of the same one adds nothing.
    expanded: std::collections::HashSet<String>,
    visited: usize,
}

fn collect_leaves(
    source: &dyn Blobs,
    desc: Descriptor,
    platform: Option<PlatformDoc>,
    reference: Option<String>,
    depth: usize,
    walk: &mut Walk,
) -> Result<(), ImageError> {
    walk.visited += 1;
    if walk.visited > MAX_DESCRIPTORS {
        return Err(ImageError::Json {
            name: desc.digest,
            why: format!("the indexes list more than {MAX_DESCRIPTORS} descriptors"),
        });
    }
    let platform = desc.platform.clone().or(platform);
    let mt = desc.media_type.as_deref().unwrap_or("");
    if MANIFEST_TYPES.contains(&mt) {
        let known = walk.leaves.iter().any(|l| l.desc.digest == desc.digest && l.platform == platform);
        if !known {
            walk.leaves.push(Leaf { desc, platform, reference });
        }
        return Ok(());
    }
    if !INDEX_TYPES.contains(&mt) {
        return Ok(()); // The spec: an unknown media type in an index MUST NOT be an error.
    }
    if depth >= MAX_INDEX_DEPTH {
        return Err(ImageError::Json {
            name: desc.digest,
            why: format!("indexes nested more than {MAX_INDEX_DEPTH} deep"),
        });
    }
    if !walk.expanded.insert(format!("{} {platform:?} {reference:?}", desc.digest)) {
        return Ok(());
    }
    let (digest, data) = read_blob(source, &desc, "nested index", DocKind::Manifest)?;
    let doc: Document = parse_json(&digest.to_string(), &data)?;
    check_document(&doc, &digest.to_string(), true)?;
    check_media_type(&doc, mt, &digest)?;
    for child in doc.manifests.unwrap_or_default() {
        if !is_attestation(&child) {
            collect_leaves(source, child, platform.clone(), reference.clone(), depth + 1, walk)?;
        }
    }
    Ok(())
}

fn choose_platform(
    source: &dyn Blobs,
    leaves: Vec<Leaf>,
    wanted: Option<&Platform>,
) -> Result<Leaf, ImageError> {
    let target = wanted.cloned().unwrap_or_else(Platform::host);
    let describe = |l: &Leaf| match &l.platform {
        Some(p) => Platform { os: p.os.clone(), arch: p.architecture.clone(), variant: p.variant.clone() }
            .to_string(),
        None => "unspecified".into(),
    };
    let choices: Vec<String> = leaves.iter().map(describe).collect();
    let untagged = leaves.len() == 1 && leaves[0].platform.is_none();
    let matching = leaves.into_iter().find(|l| {
        untagged
            || l.platform
                .as_ref()
                .is_some_and(|p| target.matches(&p.os, &p.architecture, p.variant.as_deref()))
    });
    let Some(leaf) = matching else {
        return Err(ImageError::NoPlatform { wanted: target.to_string(), choices });
    };
    let present = Digest::parse(&leaf.desc.digest).ok().is_some_and(|d| source.has_blob(&d));
    if !present {
        return Err(ImageError::MissingPlatformBlobs(describe(&leaf)));
    }
    Ok(leaf)
}

/// A document must not be both an index and a manifest (CVE-2021-41190).
fn check_document(doc: &Document, name: &str, want_index: bool) -> Result<(), ImageError> {
    let bad = |why: String| ImageError::Json { name: name.to_owned(), why };
    if doc.manifests.is_some() && (doc.layers.is_some() || doc.config.is_some()) {
        return Err(bad("has both 'manifests' and 'layers'/'config' (ambiguous document)".into()));
    }
    if doc.schema_version != Some(2) {
        return Err(bad(format!("schemaVersion {:?} is not 2", doc.schema_version)));
    }
    if want_index && doc.manifests.is_none() && doc.layers.is_some() {
        return Err(bad("is a manifest where an index was expected".into()));
    }
    if !want_index && doc.manifests.is_some() {
        return Err(bad("is an index where a manifest was expected".into()));
    }
    Ok(())
}

fn check_media_type(doc: &Document, expected: &str, digest: &Digest) -> Result<(), ImageError> {
    match doc.media_type.as_deref() {
        Some(own) if own != expected => Err(ImageError::Json {
            name: digest.to_string(),
            why: format!("mediaType {own:?} differs from the descriptor's {expected:?}"),
        }),
        _ => Ok(()),
    }
}

fn finish_oci(source: &dyn Blobs, leaf: Leaf, format: Format) -> Result<Resolved, ImageError> {
    let mt = leaf.desc.media_type.clone().unwrap_or_default();
    let (digest, data) = read_blob(source, &leaf.desc, "manifest", DocKind::Manifest)?;
    let doc: Document = parse_json(&digest.to_string(), &data)?;
    check_document(&doc, &digest.to_string(), false)?;
    check_media_type(&doc, &mt, &digest)?;
    let config_desc =
        doc.config.ok_or_else(|| ImageError::Json { name: digest.to_string(), why: "no config".into() })?;
    let config_mt = config_desc.media_type.as_deref().unwrap_or("");
    if !CONFIG_TYPES.contains(&config_mt) {
        return Err(ImageError::NotRunnable(format!("its config has media type {config_mt:?}")));
    }
    require_blobs(source, &config_desc, doc.layers.as_deref().unwrap_or_default(), &leaf)?;
    let (id, config_bytes) = read_blob(source, &config_desc, "config", DocKind::Blob)?;
    let config = parse_config(&id, &config_bytes)?;
    let descs = doc.layers.unwrap_or_default();
    check_layer_count(descs.len(), &config)?;
    let mut layers = Vec::with_capacity(descs.len());
    for (i, (desc, diff_id)) in descs.iter().zip(&config.rootfs.diff_ids).enumerate() {
        layers.push(oci_layer(i, desc, diff_id)?);
    }
    let manifest = Some((digest, mt, data.len() as u64));
    let config_media_type = Some(config_mt.to_string());
    Ok(Resolved { format, reference: leaf.reference, id, config, layers, manifest, config_media_type })
}

/// containerd's `docker save` lists other platforms' manifests but may leave out their config
/// and layers; say so instead of reporting a missing file.
fn require_blobs(
    source: &dyn Blobs,
    config: &Descriptor,
    layers: &[Descriptor],
    leaf: &Leaf,
) -> Result<(), ImageError> {
    if leaf.platform.is_none() {
        return Ok(()); // not chosen from a platform list: the missing blob itself is reported
    }
    let missing = std::iter::once(config)
        .chain(layers)
        .any(|d| Digest::parse(&d.digest).is_ok_and(|dg| !source.has_blob(&dg)));
    if missing {
        let platform = leaf.platform.as_ref().map_or_else(
            || "this image".to_owned(),
            |p| {
                Platform { os: p.os.clone(), arch: p.architecture.clone(), variant: p.variant.clone() }
                    .to_string()
            },
        );
        return Err(ImageError::MissingPlatformBlobs(platform));
    }
    Ok(())
}

fn oci_layer(index: usize, desc: &Descriptor, diff_id: &str) -> Result<LayerRef, ImageError> {
    let what = format!("layer {}", index + 1);
    let digest = Digest::parse(&desc.digest)
        .map_err(|e| ImageError::Descriptor { what: what.clone(), why: e.to_string() })?;
    let size = u64::try_from(desc.size).map_err(|_| ImageError::Descriptor {
        what: what.clone(),
        why: format!("negative size {}", desc.size),
    })?;
    let media_type = desc.media_type.clone().unwrap_or_default();
    let compression = layer_compression(&media_type).ok_or_else(|| {
        ImageError::NotRunnable(format!("{what} has media type {media_type:?}, not a filesystem layer"))
    })?;
    let zstd_chunked = desc.annotations.as_ref().is_some_and(|a| {
        a.keys().any(|k| {
            k.starts_with("io.containers.zstd-chunked.")
                || k.starts_with("io.github.containers.zstd-chunked.")
        })
    });
    Ok(LayerRef {
        member: blob_path(&digest),
        media_type: Some(media_type),
        compression,
        digest: Some(digest),
        size,
        diff_id: parse_diff_id(index, diff_id)?,
        zstd_chunked,
    })
}

fn layer_compression(media_type: &str) -> Option<Compression> {
    let base = media_type
        .strip_prefix("application/vnd.oci.image.layer.nondistributable.v1.")
        .or_else(|| media_type.strip_prefix("application/vnd.oci.image.layer.v1."));
    match base {
        Some("tar") => return Some(Compression::None),
        Some("tar+gzip") => return Some(Compression::Gzip),
        Some("tar+zstd") => return Some(Compression::Zstd),
        _ => {}
    }
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Some(Compression::Gzip),
        "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::Sniff),
        _ => None,
    }
}

fn parse_diff_id(index: usize, text: &str) -> Result<Digest, ImageError> {
    Digest::parse(text).map_err(|e| ImageError::Descriptor {
        what: format!("diff_id of layer {}", index + 1),
        why: e.to_string(),
    })
}

fn parse_config(id: &Digest, data: &[u8]) -> Result<ConfigDoc, ImageError> {
    let config: ConfigDoc = parse_json(&format!("config {id}"), data)?;
    if config.rootfs.typ != "layers" {
        return Err(ImageError::Json {
            name: format!("config {id}"),
            why: format!("rootfs.type {:?} is not \"layers\"", config.rootfs.typ),
        });
    }
    Ok(config)
}

fn check_layer_count(layers: usize, config: &ConfigDoc) -> Result<(), ImageError> {
    if layers != config.rootfs.diff_ids.len() {
        return Err(ImageError::Json {
            name: "config".into(),
            why: format!("{} layers but {} rootfs.diff_ids", layers, config.rootfs.diff_ids.len()),
        });
    }
    if layers > MAX_LAYERS {
        return Err(ImageError::Json {
            name: "manifest".into(),
            why: format!("{layers} layers (at most {MAX_LAYERS})"),
        });
    }
    Ok(())
}

fn resolve_docker(
    source: &Source,
    sel: &Selection,
    wanted: Option<&Platform>,
) -> Result<Resolved, ImageError> {
    let items: Vec<DockerItem> = parse_json("manifest.json", &source.read_small("manifest.json", MAX_JSON)?)?;
    let tags = |i: &DockerItem| i.repo_tags.clone().unwrap_or_default();
    let label = |i: &DockerItem| tags(i).first().cloned().unwrap_or_else(|| i.config.clone());
    let item = match &sel.reference {
        Some(w) => items.iter().find(|i| ref_matches(w, &tags(i))).ok_or_else(|| ImageError::NoSuchRef {
            wanted: w.clone(),
            choices: items.iter().map(label).collect(),
        })?,
        None if items.len() == 1 => &items[0],
        None if items.is_empty() => return Err(ImageError::NotAnImage(source.path().to_owned())),
        None => {
            return Err(ImageError::Ambiguous {
                what: "images".into(),
                choices: items.iter().map(label).collect(),
                flag: "--ref",
            });
        }
    };
    let data = source.read_small(&item.config, MAX_JSON)?;
    let mut h = Hasher::new(Algorithm::Sha256);
    h.update(&data);
    let id = h.finish();
    let config = parse_config(&id, &data)?;
    check_layer_count(item.layers.len(), &config)?;
    if let Some(p) =
        wanted.filter(|p| !p.matches(&config.os, &config.architecture, config.variant.as_deref()))
    {
        return Err(ImageError::NoPlatform {
            wanted: p.to_string(),
            choices: vec![format!("{}/{}", config.os, config.architecture)],
        });
    }
    let mut layers = Vec::with_capacity(item.layers.len());
    for (i, (member, diff_id)) in item.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
        let (_, size) = source.open_member(member)?;
        layers.push(LayerRef {
            member: member.clone(),
            media_type: None,
            compression: Compression::Sniff,
            digest: None,
            size,
            diff_id: parse_diff_id(i, diff_id)?,
            zstd_chunked: false,
        });
    }
    let reference = sel.reference.clone().or_else(|| tags(item).first().cloned());
    Ok(Resolved {
        format: Format::DockerArchive,
        reference,
        id,
        config,
        layers,
        manifest: None,
        config_media_type: None,
    })
}

#[cfg(test)]
mod tests {

    /// What a registry's tag may name: schema 1 and unknown documents are refused by name,
    /// before anything else is fetched.
    #[test]
    fn registry_documents_schema1_refused() {
        struct Nothing;
        impl Blobs for Nothing {
            fn read_doc(&self, d: &Digest, _: DocKind, _: u64) -> Result<Vec<u8>, ImageError> {
                panic!("nothing may be fetched, asked for {d}")
            }
            fn has_blob(&self, _: &Digest) -> bool {
                true
            }
        }
        let digest = Digest::of(Algorithm::Sha256, b"x");
        let top = |mt: &str| TopDocument { digest: digest.clone(), media_type: mt.into(), size: 1 };
        let e = resolve_top(&Nothing, &top(SCHEMA1_TYPES[1]), "host/app:old", None).unwrap_err().to_string();
        assert!(e.contains("schema 1") && e.contains("host/app:old"), "{e}");
        let e = resolve_top(&Nothing, &top("text/html"), "host/app:x", None).unwrap_err().to_string();
        assert!(e.contains("text/html"), "{e}");
    }

    #[test]
    fn foreign_platforms_are_named() {
        let host = Platform::host();
        assert!(Platform::foreign_warning(&format!("linux/{}", host.arch)).is_none());
        let other = if host.arch == "arm64" { "linux/amd64" } else { "linux/arm64/v8" };
        let w = Platform::foreign_warning(other).expect("a foreign platform warns");
        assert!(w.contains(other) && w.contains("binfmt_misc"), "{w}");
        assert!(Platform::foreign_warning(&format!("windows/{}", host.arch)).is_some());
    }

    use super::*;

    #[test]
    fn refs_normalize() {
        assert_eq!(normalize_ref("busybox"), "busybox:latest");
        assert_eq!(normalize_ref("docker.io/library/busybox:1.36"), "busybox:1.36");
        assert_eq!(normalize_ref("localhost:5000/x"), "localhost:5000/x:latest");
        assert!(ref_matches("busybox", &["docker.io/library/busybox:latest".into()]));
        assert!(!ref_matches("alpine", &["busybox:latest".into()]));
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "arm64", None));
        assert!(Platform::parse("linux/x86_64").unwrap().matches("linux", "amd64", None));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("/amd64").is_err());
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"), Some(Compression::Zstd));
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(
            layer_compression("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(layer_compression("application/vnd.in-toto+json"), None);
    }

    #[test]
    fn ambiguous_documents_refused() {
        let doc: Document = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[],"layers":[],"config":{"mediaType":"x","digest":"sha256:00","size":1}}"#,
        )
        .unwrap();
        assert!(check_document(&doc, "x", true).is_err());
        assert!(check_document(&doc, "x", false).is_err());
    }
}
