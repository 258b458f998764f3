//! What a layer contained that gpurun did not apply, gathered so the user sees one line per
//! kind of thing (with a few examples) instead of one per entry.

use std::collections::BTreeSet;

use rustix::io::Errno;

/// Largest xattr value kept; bigger ones are skipped (they are never needed to run).
pub const MAX_XATTR_VALUE: usize = 64 << 10;
const EXAMPLES: usize = 3;
/// Most distinct attribute names kept for the warning lines.
const MAX_NAMES: usize = 16;

#[derive(Debug, Default)]
pub struct Warnings {
    devices: Vec<String>,
    device_count: usize,
    other_types: Vec<String>,
    xattrs_dropped: BTreeSet<String>,
    xattr_errors: BTreeSet<String>,
    pub aufs_meta: usize,
}

impl Warnings {
    pub fn device(&mut self, path: &[u8]) {
        self.device_count += 1;
        if self.devices.len() < EXAMPLES {
            self.devices.push(String::from_utf8_lossy(path).into_owned());
        }
    }

    pub fn other_type(&mut self, path: &[u8], flag: u8) {
        if self.other_types.len() < EXAMPLES {
            self.other_types.push(format!("{} (type {:?})", String::from_utf8_lossy(path), flag as char));
        }
    }

    /// Only small `user.*` attributes are applied; `user.overlay.*` would be read by overlayfs
    /// in user namespaces and `user.rootlesscontainers` would forge ownership for rootless tools.
    pub fn xattr_allowed(&mut self, name: &[u8], len: usize) -> bool {
        let ok = name.starts_with(b"user.")
            && !name.starts_with(b"user.overlay.")
            && name != b"user.rootlesscontainers"
            && len <= MAX_XATTR_VALUE;
        // A bounded set of examples: an image may name millions of distinct attributes.
        if !ok && self.xattrs_dropped.len() < MAX_NAMES {
            self.xattrs_dropped.insert(String::from_utf8_lossy(&name[..name.len().min(256)]).into_owned());
        }
        ok
    }

    pub fn xattr_failed(&mut self, name: &[u8], err: Errno) {
        if self.xattr_errors.len() >= MAX_NAMES {
            return;
        }
        self.xattr_errors.insert(format!(
            "{} ({})",
            String::from_utf8_lossy(name),
            std::io::Error::from(err)
        ));
    }

    /// One line per kind of skipped content.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.device_count > 0 {
            out.push(format!(
                "skipped {} device node(s) (an unprivileged container cannot create them; /dev is provided at run time), e.g. {}",
                self.device_count,
                self.devices.join(", ")
            ));
        }
        if !self.other_types.is_empty() {
            out.push(format!("skipped entries of unsupported types: {}", self.other_types.join(", ")));
        }
        if !self.xattrs_dropped.is_empty() {
            let names: Vec<&str> = self.xattrs_dropped.iter().map(String::as_str).collect();
            out.push(format!(
                "dropped extended attributes that an unprivileged unpack must not apply (only small user.* are kept): {}",
                names.join(", ")
            ));
        }
        if !self.xattr_errors.is_empty() {
            let names: Vec<&str> = self.xattr_errors.iter().map(String::as_str).collect();
            out.push(format!("could not set extended attributes: {}", names.join(", ")));
        }
        out
    }
}
