//! The generated `/etc/passwd` and `/etc/group`: the image's files with the caller's entries in
//! place of any that share their name or id.

use std::path::{Path, PathBuf};

use crate::host::HostFacts;

use super::identity::Identity;

/// The caller's identity inside, for the generated `/etc/passwd` and `/etc/group`.
pub(super) struct Accounts {
    pub(super) user: String,
    pub(super) group: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) home: PathBuf,
    /// The identity is the image's own User: its account files are used unchanged.
    pub(super) image_user: bool,
}

impl Accounts {
    pub(super) fn new(host: &HostFacts, who: &Identity) -> Accounts {
        let (user, group) = if who.uid == 0 {
            ("root".into(), "root".into())
        } else {
            (host.user_name.clone(), host.group_name.clone())
        };
        Accounts { user, group, uid: who.uid, gid: who.gid, home: who.home.clone(), image_user: who.switch }
    }
}

/// Name and numeric id (third field) of a passwd or group line.
fn entry(line: &str) -> (&str, Option<u32>) {
    let mut fields = line.split(':');
    let name = fields.next().unwrap_or("");
    (name, fields.nth(1).and_then(|id| id.parse().ok()))
}

/// The image's passwd with the caller's entry in place of any that shares its name or uid, so
/// `id`, `whoami` and `ls -l` name the caller. Root keeps the image's own root entry.
pub fn passwd_with_caller(image: Option<&str>, user: &str, uid: u32, gid: u32, home: &Path) -> String {
    with_entry(image, user, uid, || format!("{user}:x:{uid}:{gid}:{user}:{}:/bin/sh", home.display()))
}

/// The image's group file with the caller's primary group in place of any sharing its name or gid.
pub fn group_with_caller(image: Option<&str>, group: &str, gid: u32) -> String {
    with_entry(image, group, gid, || format!("{group}:x:{gid}:"))
}

/// `image` (a passwd or group file) unchanged when it has an entry named `name` with id `id`;
/// otherwise without every entry sharing the name or the id, and with `line()` appended.
fn with_entry(image: Option<&str>, name: &str, id: u32, line: impl FnOnce() -> String) -> String {
    let image = image.unwrap_or("");
    let already = image.lines().any(|l| entry(l) == (name, Some(id)));
    let mut out: String = image
        .lines()
        .filter(|l| {
            already || {
                let (n, i) = entry(l);
                n != name && i != Some(id)
            }
        })
        .flat_map(|l| [l, "\n"])
        .collect();
    if !already {
        out.push_str(&line());
        out.push('\n');
    }
    out
}
