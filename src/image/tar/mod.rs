//! A small, bounded tar reader. Layer archives are hostile input, and two reasons to parse tar
//! here rather than through the `tar` crate still hold:
//!
//! * metadata is capped before it is allocated: the crate reads a GNU long name or a PAX record
//!   whole, whatever size its header declares (corpus H23 declares 2 GiB; here the record is
//!   refused at [`MAX_META_RECORD`]);
//! * PAX (GNU 1.0) sparse files are refused as unsupported: the crate extracts them as plain
//!   files whose content begins with the sparse map (corpus H28).
//!
//! The PAX-size flaw that first motivated it (CVE-2026-33055: the ustar size winning over PAX
//! `size`) was fixed in the crate's 0.4.45; this reader gets it right too (corpus H24, X1). It
//! streams from a `BufRead` without copying file data. This module knows nothing about
//! filesystems; `image::apply` decides what an entry may do.

mod header;
mod stream;

pub use header::{BLOCK, Entry, Kind, MAX_META_RECORD, SparseSegment, padded};
pub use stream::{TarSource, TarStream};

/// A malformed or unsupported archive.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("malformed tar: {0}")]
    Invalid(String),
    #[error("unsupported tar feature: {0}")]
    Unsupported(String),
    #[error("tar metadata record of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("tar archive is truncated (ends inside {0})")]
    Truncated(&'static str),
    #[error("entry {entry:?}: {source}")]
    AtEntry { entry: String, source: Box<TarError> },
    #[error("reading tar stream")]
    Io(#[source] std::io::Error),
}
