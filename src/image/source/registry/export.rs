//! `gpurun pull REF -o FILE.tar`: the image as an OCI archive (an OCI layout in a tar, as
//! `skopeo copy ... oci-archive:` writes), which every gpurun command and skopeo and podman
//! accept: pulled once onto a shared filesystem, run by every node without the registry. The
//! registry's own manifest and config bytes are kept (their digests are the image's identity);
//! each layer streams from the registry into the tar, hashed on the way and refused on a size or
//! digest mismatch. The archive is written to a temporary name beside FILE and renamed over it
//! only when complete: FILE is never left half-written.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::RegistrySource;
use crate::image::digest::{Digest, Hasher};
use crate::image::select::{Blobs, DocKind, Resolved};
use crate::image::source::MAX_JSON;
use crate::image::{ImageError, ImageSource};

/// Why the archive could not be written.
fn io_error(path: &Path, e: io::Error) -> ImageError {
    ImageError::Archive { path: path.to_owned(), why: format!("writing: {e}") }
}

/// Writes `resolved` (from `source`) to `out` as an OCI archive tagged `tag`.
pub fn write_archive(
    source: &RegistrySource,
    resolved: &Resolved,
    out: &Path,
    tag: &str,
) -> Result<u64, ImageError> {
    let (manifest, media_type, _) = resolved.manifest.clone().ok_or_else(|| {
        ImageError::NotRunnable("no manifest to write (only registry and OCI images can be exported)".into())
    })?;
    let tmp = temp_name(out);
    // Ctrl-C, SIGTERM or SIGHUP stop the copy at its next chunk; the partial file goes, then
    // gpurun dies of the signal.
    let catch = crate::interrupt::catch();
    let result = write_to(source, resolved, &tmp, &manifest, &media_type, tag);
    match result.and_then(|size| std::fs::rename(&tmp, out).map(|()| size).map_err(|e| io_error(out, e))) {
        Ok(size) => Ok(size),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            if let Some(sig) = crate::interrupt::pending() {
                drop(catch);
                crate::interrupt::die_of(sig);
            }
            Err(e)
        }
    }
}

fn temp_name(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!(".{name}.gpurun-{}", std::process::id()))
}

fn write_to(
    source: &RegistrySource,
    resolved: &Resolved,
    tmp: &Path,
    manifest: &Digest,
    media_type: &str,
    tag: &str,
) -> Result<u64, ImageError> {
    let file = File::options().write(true).create_new(true).open(tmp).map_err(|e| io_error(tmp, e))?;
    let mut tar = Tar { out: BufWriter::with_capacity(1 << 20, file), path: tmp.to_owned(), written: 0 };
    let manifest_bytes = source.read_doc(manifest, DocKind::Manifest, MAX_JSON)?;
    let config_bytes = source.read_doc(&resolved.id, DocKind::Blob, MAX_JSON)?;
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": media_type,
            "digest": manifest.to_string(),
            "size": manifest_bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    tar.file("index.json", &serde_json::to_vec(&index).expect("a JSON value"))?;
    tar.dir("blobs/")?;
    tar.dir(&format!("blobs/{}/", manifest.algorithm.name()))?;
    tar.file(&blob_name(manifest), &manifest_bytes)?;
    tar.file(&blob_name(&resolved.id), &config_bytes)?;
    for layer in &resolved.layers {
        let digest = layer
            .digest
            .as_ref()
            .ok_or_else(|| ImageError::NotRunnable("a layer without a digest".into()))?;
        let mut blob = source.open_layer(layer)?;
        tar.stream(&blob_name(digest), layer.size, digest, &mut blob)?;
    }
    tar.finish()
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm.name(), d.hex)
}

/// A ustar writer for the few entries an OCI layout has.
struct Tar {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
}

impl Tar {
    fn header(&mut self, name: &str, size: u64, kind: u8, mode: u32) -> Result<(), ImageError> {
        // `blobs/sha512/` + 128 hex digits does not fit ustar's 100 bytes: a PAX `path` record
        // before the entry carries the whole name (readers that know PAX use it).
        if name.len() > 100 {
            let record = pax_record("path", name);
            self.raw_header("././@PaxHeader", record.len() as u64, b'x', 0o644)?;
            self.write(record.as_bytes())?;
            self.pad(record.len() as u64)?;
        }
        self.raw_header(&name[..name.len().min(100)], size, kind, mode)
    }

    fn raw_header(&mut self, name: &str, size: u64, kind: u8, mode: u32) -> Result<(), ImageError> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        size_field(&mut h[124..136], size);
        octal(&mut h[136..148], 0);
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        octal(&mut h[148..155], u64::from(sum));
        h[155] = b' ';
        self.write(&h)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.out.write_all(bytes).map_err(|e| io_error(&self.path, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> Result<(), ImageError> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.write(&vec![0u8; 512 - rem])?;
        }
        Ok(())
    }

    fn dir(&mut self, name: &str) -> Result<(), ImageError> {
        self.header(name, 0, b'5', 0o755)
    }

    fn file(&mut self, name: &str, data: &[u8]) -> Result<(), ImageError> {
        self.header(name, data.len() as u64, b'0', 0o644)?;
        self.write(data)?;
        self.pad(data.len() as u64)
    }

    /// `size` bytes from `from`, which must hash to `digest`.
    fn stream(
        &mut self,
        name: &str,
        size: u64,
        digest: &Digest,
        from: &mut dyn Read,
    ) -> Result<(), ImageError> {
        self.header(name, size, b'0', 0o644)?;
        let mut hasher = Hasher::new(digest.algorithm);
        let mut buf = vec![0u8; 1 << 20];
        let mut left = size;
        let read_err = |e: io::Error| ImageError::Read { name: name.to_string(), source: e };
        while left > 0 {
            if crate::interrupt::pending().is_some() {
                return Err(read_err(io::Error::new(io::ErrorKind::Interrupted, "interrupted")));
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = from.read(&mut buf[..want]).map_err(read_err)?;
            if n == 0 {
                return Err(ImageError::SizeMismatch {
                    name: name.to_string(),
                    expected: size,
                    actual: size - left,
                });
            }
            hasher.update(&buf[..n]);
            self.write(&buf[..n])?;
            left -= n as u64;
        }
        if from.read(&mut [0u8; 1]).map_err(read_err)? != 0 {
            return Err(ImageError::SizeMismatch {
                name: name.to_string(),
                expected: size,
                actual: size + 1,
            });
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(ImageError::DigestMismatch {
                what: name.to_string(),
                expected: digest.clone(),
                actual,
            });
        }
        self.pad(size)
    }

    /// Two zero blocks end the archive; the data reaches the disk before the rename.
    fn finish(mut self) -> Result<u64, ImageError> {
        self.write(&[0u8; 1024])?;
        let file = self.out.into_inner().map_err(|e| io_error(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| io_error(&self.path, e))?;
        Ok(self.written)
    }
}

/// One PAX record, `LEN KEY=VALUE\n`, where LEN counts the whole record, its own digits too.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len = len.to_string().len() + body.len();
    }
    format!("{len}{body}")
}

/// `value` in octal, NUL-terminated, right-aligned with leading zeros.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// A size: octal when it fits in 11 digits, else GNU's base-256 (a layer over 8 GiB).
fn size_field(field: &mut [u8], size: u64) {
    if size < 1 << 33 {
        octal(field, size);
    } else {
        field.fill(0);
        field[0] = 0x80;
        field[4..].copy_from_slice(&size.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_with_gpurun_reader() {
        let dir = std::env::temp_dir().join(format!("gpurun-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.tar");
        let file = File::create(&path).unwrap();
        let mut tar = Tar { out: BufWriter::new(file), path: path.clone(), written: 0 };
        tar.dir("blobs/").unwrap();
        tar.file("index.json", b"{}").unwrap();
        let long = format!("blobs/sha512/{}", "a".repeat(128));
        tar.file(&long, b"x").unwrap();
        assert_eq!(pax_record("path", "abc"), "12 path=abc\n");
        let data = vec![7u8; 1000];
        let digest = Digest::of(crate::image::digest::Algorithm::Sha256, &data);
        tar.stream("blobs/x", 1000, &digest, &mut &data[..]).unwrap();
        tar.finish().unwrap();
        let scrap = dir.join("scrap.tar");
        let mut bad = Tar { out: BufWriter::new(File::create(&scrap).unwrap()), path: scrap, written: 0 };
        let wrong = bad.stream("blobs/y", 999, &digest, &mut &data[..999]).unwrap_err();
        assert!(matches!(wrong, ImageError::DigestMismatch { .. }), "{wrong}");
        assert!(matches!(
            bad.stream("blobs/z", 1001, &digest, &mut &data[..]),
            Err(ImageError::SizeMismatch { .. })
        ));
        assert!(matches!(
            bad.stream("blobs/w", 999, &digest, &mut &data[..]),
            Err(ImageError::SizeMismatch { .. })
        ));
        let out = std::process::Command::new("tar").arg("-tvf").arg(&path).output().unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            listing.contains("blobs/") && listing.contains("index.json") && listing.contains("1000"),
            "{listing}"
        );
        let mut big = [0u8; 12];
        size_field(&mut big, 10 << 30);
        assert_eq!(big[0], 0x80);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
