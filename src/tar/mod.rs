//! A small, bounded tar reader. We parse tar ourselves rather than through the `tar` crate
//! because layer archives are hostile input: GNU long names and PAX records must be capped
//! before allocation (the crate reads them whole), PAX `size` must win over the ustar size
//! (CVE-2026-33055), PAX sparse files must be refused rather than misread, and the reader must
//! stream from a `BufRead` without copying file data. This module knows nothing about
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
    #[error("reading tar stream")]
    Io(#[source] std::io::Error),
}
