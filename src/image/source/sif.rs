//! Apptainer/Singularity SIF files: a 128-byte header, a descriptor table and data objects
//! (the SIF reference implementation, github.com/sylabs/sif, defines them). gpurun runs the
//! primary system partition, which must be SquashFS, and reports the rest in `inspect`.
//! Every offset and count is checked against the file before anything is read by it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

const HEADER: usize = 128;
const DESCRIPTOR: usize = 585;
const MAGIC: &[u8] = b"SIF_MAGIC\0";
/// Apptainer makes 48 descriptors; nothing real has thousands.
const MAX_DESCRIPTORS: i64 = 4096;
/// Small objects (definition file, labels, environment, JSON) read for `inspect`.
const MAX_SMALL_OBJECT: i64 = 1 << 20;

const DATA_DEFFILE: i32 = 0x4001;
const DATA_ENVVAR: i32 = 0x4002;
const DATA_LABELS: i32 = 0x4003;
const DATA_PARTITION: i32 = 0x4004;
const DATA_SIGNATURE: i32 = 0x4005;
const DATA_GENERIC_JSON: i32 = 0x4006;
const DATA_CRYPTO_MESSAGE: i32 = 0x4008;
const DATA_SBOM: i32 = 0x4009;

const FS_SQUASH: i32 = 1;
const FS_ENCRYPTED_SQUASH: i32 = 5;
const PART_PRIMARY_SYSTEM: i32 = 2;

/// Why a SIF file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct SifError {
    pub path: PathBuf,
    pub why: String,
}

/// One data object, as `inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Object {
    pub id: u32,
    pub group: Option<u32>,
    pub kind: String,
    pub name: String,
    pub offset: u64,
    pub size: u64,
    pub created: i64,
    /// Partitions: filesystem, partition type and architecture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    /// Signatures: hash, signing entity (key fingerprint) and what is signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    /// SBOMs: the format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom_format: Option<String>,
    #[serde(skip)]
    raw_type: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Partition {
    pub fs: String,
    pub kind: String,
    pub arch: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Signature {
    pub hash: String,
    pub entity: String,
    /// The object or group (`group N`) the signature covers.
    pub signs: String,
    /// Legacy PGP clear-sign, or DSSE (Apptainer ≥ 1.1).
    pub format: String,
}

/// A SIF file's header and descriptors.
#[derive(Debug, Serialize)]
pub struct Sif {
    #[serde(skip)]
    pub path: PathBuf,
    pub version: String,
    pub arch: String,
    pub uuid: String,
    pub created: i64,
    pub modified: i64,
    pub objects: Vec<Object>,
    #[serde(skip)]
    file_len: u64,
}

fn le_i32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le_i64(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// True when the file starts like a SIF (the magic after the 32-byte launch script).
pub fn is_sif(head: &[u8]) -> bool {
    head.len() >= 42 && &head[32..42] == MAGIC
}

impl Sif {
    pub fn read(file: &File, path: &Path) -> Result<Sif, SifError> {
        let bad = |why: String| SifError { path: path.to_owned(), why };
        let file_len = file.metadata().map_err(|e| bad(format!("stat: {e}")))?.len();
        let mut h = [0u8; HEADER];
        file.read_exact_at(&mut h, 0).map_err(|e| bad(format!("reading the header: {e}")))?;
        if !is_sif(&h) {
            return Err(bad("not a SIF file (no SIF_MAGIC)".into()));
        }
        let (total, off, size) = (le_i64(&h, 88), le_i64(&h, 96), le_i64(&h, 104));
        if !(0..=MAX_DESCRIPTORS).contains(&total) {
            return Err(bad(format!("the header claims {total} descriptors")));
        }
        let table = total as usize * DESCRIPTOR;
        if off < HEADER as i64 || size < table as i64 || in_file(off, table as i64, file_len).is_none() {
            return Err(bad(format!(
                "the descriptor table ({total} at offset {off}) is not inside the file"
            )));
        }
        let mut raw = vec![0u8; table];
        file.read_exact_at(&mut raw, off as u64).map_err(|e| bad(format!("reading descriptors: {e}")))?;
        let mut objects = Vec::new();
        for d in raw.chunks_exact(DESCRIPTOR) {
            if d[4] == 0 {
                continue; // unused slot
            }
            let o = object(d).map_err(|why| bad(format!("descriptor {}: {why}", le_u32(d, 5))))?;
            if in_file(o.offset as i64, o.size as i64, file_len).is_none()
                || o.offset < (off as u64 + table as u64) && o.offset + o.size > off as u64
            {
                return Err(bad(format!(
                    "object {} ({} bytes at {}) is not inside the file's data",
                    o.id, o.size, o.offset
                )));
            }
            objects.push(o);
        }
        check_overlaps(&objects).map_err(bad)?;
        Ok(Sif {
            path: path.to_owned(),
            version: cstr(&h[42..45]),
            arch: arch(&h[45..48]).into(),
            uuid: uuid(&h[48..64]),
            created: le_i64(&h, 64),
            modified: le_i64(&h, 72),
            objects,
            file_len,
        })
    }

    /// The primary system partition: (offset, size). Refuses what gpurun cannot run, saying why.
    pub fn system_partition(&self) -> Result<(u64, u64), SifError> {
        let bad = |why: String| SifError { path: self.path.clone(), why };
        let parts = || self.objects.iter().filter_map(|o| o.partition.as_ref().map(|p| (o, p)));
        let Some((o, p)) = parts().find(|(_, p)| p.kind == "primary system") else {
            let kinds: Vec<String> =
                parts().map(|(o, p)| format!("{} ({}, {})", o.id, p.fs, p.kind)).collect();
            return Err(bad(if kinds.is_empty() {
                "the SIF has no partition to run".into()
            } else {
                format!(
                    "the SIF has no primary system partition to run (its partitions: {})",
                    kinds.join(", ")
                )
            }));
        };
        match p.fs.as_str() {
            "squashfs" => Ok((o.offset, o.size)),
            "encrypted squashfs" => Err(bad(
                "its system partition is encrypted, which gpurun does not decrypt: run it with `apptainer run --pem-path ...`, or build an unencrypted SIF".into(),
            )),
            other => Err(bad(format!("its system partition is {other}, not SquashFS; gpurun runs SquashFS partitions only"))),
        }
    }

    /// A small object's bytes (definition file, labels, ...), for `inspect`.
    pub fn small_object(&self, file: &File, o: &Object) -> Option<Vec<u8>> {
        if o.size as i64 > MAX_SMALL_OBJECT || o.offset + o.size > self.file_len {
            return None;
        }
        let mut buf = vec![0u8; o.size as usize];
        file.read_exact_at(&mut buf, o.offset).ok()?;
        Some(buf)
    }

    /// Fills in each signature's format from its bytes: PGP clear-signed (legacy ones, from
    /// SingularityCE before 3.6, sign a "SIFHASH" text; newer ones a JSON metadata document),
    /// or a DSSE envelope (JSON).
    pub fn describe_signatures(&mut self, file: &File) {
        let formats: Vec<String> = self
            .objects
            .iter()
            .map(|o| match o.raw_type {
                DATA_SIGNATURE => match self.small_object(file, o) {
                    Some(b) if b.starts_with(b"-----BEGIN PGP SIGNED MESSAGE") => {
                        if b.windows(7).any(|w| w == b"SIFHASH") { "pgp (legacy)" } else { "pgp" }.into()
                    }
                    Some(b) if b.trim_ascii_start().starts_with(b"{") => "dsse".into(),
                    _ => "unknown".into(),
                },
                _ => String::new(),
            })
            .collect();
        for (o, f) in self.objects.iter_mut().zip(formats) {
            if let Some(s) = &mut o.signature {
                s.format = f;
            }
        }
    }

    pub fn of_type(&self, kind: &str) -> impl Iterator<Item = &Object> {
        let want = match kind {
            "deffile" => DATA_DEFFILE,
            "labels" => DATA_LABELS,
            "sbom" => DATA_SBOM,
            "env" => DATA_ENVVAR,
            _ => 0,
        };
        self.objects.iter().filter(move |o| o.raw_type == want)
    }
}

fn in_file(off: i64, size: i64, file_len: u64) -> Option<()> {
    let end = off.checked_add(size)?;
    (off >= 0 && size >= 0 && end as u64 <= file_len).then_some(())
}

fn check_overlaps(objects: &[Object]) -> Result<(), String> {
    let mut spans: Vec<(u64, u64, u32)> =
        objects.iter().filter(|o| o.size > 0).map(|o| (o.offset, o.offset + o.size, o.id)).collect();
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!("objects {} and {} overlap", w[0].2, w[1].2));
        }
    }
    Ok(())
}

fn object(d: &[u8]) -> Result<Object, String> {
    let raw_type = le_i32(d, 0);
    let (id, group, linked) = (le_u32(d, 5), le_u32(d, 9), le_u32(d, 13));
    let (offset, size) = (le_i64(d, 17), le_i64(d, 25));
    if offset < 0 || size < 0 {
        return Err(format!("negative offset {offset} or size {size}"));
    }
    let extra = &d[201..585];
    let kind = match raw_type {
        DATA_DEFFILE => "definition file",
        DATA_ENVVAR => "environment",
        DATA_LABELS => "labels",
        DATA_PARTITION => "partition",
        DATA_SIGNATURE => "signature",
        DATA_GENERIC_JSON => "generic JSON",
        0x4007 => "generic",
        DATA_CRYPTO_MESSAGE => "cryptographic message",
        DATA_SBOM => "SBOM",
        0x400a => "OCI root index",
        0x400b => "OCI blob",
        _ => "unknown",
    };
    let partition = (raw_type == DATA_PARTITION).then(|| Partition {
        fs: match le_i32(extra, 0) {
            FS_SQUASH => "squashfs",
            2 => "ext3",
            3 => "immutable object",
            4 => "raw",
            FS_ENCRYPTED_SQUASH => "encrypted squashfs",
            _ => "unknown",
        }
        .into(),
        kind: match le_i32(extra, 4) {
            1 => "system",
            PART_PRIMARY_SYSTEM => "primary system",
            3 => "data",
            4 => "overlay",
            _ => "unknown",
        }
        .into(),
        arch: arch(&extra[8..11]).into(),
    });
    let signature = (raw_type == DATA_SIGNATURE).then(|| Signature {
        hash: match le_i32(extra, 0) {
            1 => "sha256",
            2 => "sha384",
            3 => "sha512",
            4 => "blake2s",
            5 => "blake2b",
            _ => "unknown",
        }
        .into(),
        entity: extra[4..24].iter().map(|b| format!("{b:02X}")).collect(),
        signs: if linked & 0xf000_0000 != 0 {
            format!("group {}", linked & 0x0fff_ffff)
        } else {
            format!("object {linked}")
        },
        format: String::new(),
    });
    let sbom_format = (raw_type == DATA_SBOM).then(|| {
        match le_i32(extra, 0) {
            1 => "cyclonedx-json",
            2 => "cyclonedx-xml",
            3 => "github-json",
            4 => "spdx-json",
            5 => "spdx-rdf",
            6 => "spdx-tag-value",
            7 => "spdx-yaml",
            8 => "syft-json",
            _ => "unknown",
        }
        .to_string()
    });
    Ok(Object {
        id,
        group: (group & 0xf000_0000 != 0).then_some(group & 0x0fff_ffff),
        kind: kind.into(),
        name: cstr(&d[73..201]),
        offset: offset as u64,
        size: size as u64,
        created: le_i64(d, 41),
        partition,
        signature,
        sbom_format,
        raw_type,
    })
}

fn arch(b: &[u8]) -> &'static str {
    match &b[..2] {
        b"01" => "386",
        b"02" => "amd64",
        b"03" => "arm",
        b"04" => "arm64",
        b"05" => "ppc64",
        b"06" => "ppc64le",
        b"07" => "mips",
        b"08" => "mipsle",
        b"09" => "mips64",
        b"10" => "mips64le",
        b"11" => "s390x",
        b"12" => "riscv64",
        _ => "unknown",
    }
}

fn uuid(b: &[u8]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}
