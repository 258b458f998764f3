//! The caller's account on the host: user name, home and group name for a uid and gid. It reads
//! `/etc/passwd` and `/etc/group` directly when `/etc/nsswitch.conf` consults `files` first (the
//! usual case, and the answer glibc would give), and asks the C library's NSS otherwise or when
//! the id is not there (directory users: LDAP, SSSD). Skipping NSS for local accounts saves glibc's
//! nscd probes and configuration parsing on every start. It only reads; it decides nothing.

use std::path::{Path, PathBuf};

/// A passwd entry, as far as gpurun uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub home: PathBuf,
}

/// Where the account databases live; `/etc` in production, a temporary tree in tests.
pub struct Files<'a> {
    etc: &'a Path,
    /// nsswitch.conf, read once for both lookups.
    nsswitch: std::cell::OnceCell<String>,
}

impl Default for Files<'_> {
    fn default() -> Self {
        Files::at(Path::new("/etc"))
    }
}

impl<'a> Files<'a> {
    pub fn at(etc: &'a Path) -> Files<'a> {
        Files { etc, nsswitch: std::cell::OnceCell::new() }
    }

    /// The passwd entry of `uid`: from `passwd` when NSS consults files first, else from NSS.
    pub fn user(&self, uid: u32) -> Option<User> {
        self.local("passwd", |text| find_user(text, uid)).unwrap_or_else(|| {
            let user = nix::unistd::User::from_uid(uid.into()).ok().flatten()?;
            Some(User { name: user.name, home: user.dir })
        })
    }

    /// The name of group `gid`, with the same sources as [`Files::user`].
    pub fn group_name(&self, gid: u32) -> Option<String> {
        self.local("group", |text| find_group(text, gid))
            .unwrap_or_else(|| Some(nix::unistd::Group::from_gid(gid.into()).ok().flatten()?.name))
    }

    /// `Some(answer)` when `database` is answered by its file alone: NSS would consult `files`
    /// first and the file has the id. `None`: ask NSS.
    fn local<T>(&self, database: &str, find: impl Fn(&str) -> Option<T>) -> Option<Option<T>> {
        let nsswitch = self
            .nsswitch
            .get_or_init(|| std::fs::read_to_string(self.etc.join("nsswitch.conf")).unwrap_or_default());
        if !files_first(nsswitch, database) {
            return None;
        }
        let text = std::fs::read_to_string(self.etc.join(database)).ok()?;
        // NIS compat entries (`+`, `-`) mean the file alone does not answer.
        if text.lines().any(|l| l.starts_with('+') || l.starts_with('-')) {
            return None;
        }
        find(&text).map(Some)
    }
}

/// Whether nsswitch.conf's line for `database` starts with `files` (also when the file or the
/// line is missing: glibc's default is `files` first).
pub fn files_first(nsswitch: &str, database: &str) -> bool {
    let line = nsswitch.lines().map(|l| l.split('#').next().unwrap_or("")).find_map(|l| {
        let (name, sources) = l.split_once(':')?;
        (name.trim() == database).then_some(sources)
    });
    match line {
        None => true,
        Some(sources) => sources.split_whitespace().next().is_none_or(|first| first == "files"),
    }
}

/// The entry for `uid` in passwd text: `name:password:uid:gid:gecos:home:shell`.
pub fn find_user(text: &str, uid: u32) -> Option<User> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 7 || fields[2].parse::<u32>().ok()? != uid || fields[0].is_empty() {
            return None;
        }
        Some(User { name: fields[0].to_string(), home: PathBuf::from(fields[5]) })
    })
}

/// The name of `gid` in group text: `name:password:gid:members`.
pub fn find_group(text: &str, gid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || fields[2].parse::<u32>().ok()? != gid || fields[0].is_empty() {
            return None;
        }
        Some(fields[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsswitch_order() {
        assert!(files_first("", "passwd"));
        assert!(files_first("passwd: files systemd\ngroup: sss files\n", "passwd"));
        assert!(!files_first("passwd: files systemd\ngroup: sss files\n", "group"));
        assert!(!files_first("# passwd: files\npasswd:\tsss  files # comment\n", "passwd"));
        assert!(files_first("passwdx: sss\n", "passwd"));
    }

    #[test]
    fn passwd_and_group_lookup() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nbad line\nalice:x:1000:100:Alice:/home/alice:/bin/sh\n";
        assert_eq!(find_user(passwd, 1000), Some(User { name: "alice".into(), home: "/home/alice".into() }));
        assert_eq!(find_user(passwd, 1001), None);
        assert_eq!(find_user("x:x:01000:1::/h:/bin/sh\n", 1000).map(|u| u.name), Some("x".into()));
        assert_eq!(find_group("root:x:0:\nusers:x:100:alice,bob\n", 100), Some("users".into()));
        assert_eq!(find_group("users:x:100\n", 100), None);
    }

    #[test]
    fn local_files_answer_unless_nss_comes_first() {
        let dir = std::env::temp_dir().join(format!("gpurun-account-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("passwd"), "carol:x:4242:4242::/home/carol:/bin/sh\n").unwrap();
        std::fs::write(dir.join("group"), "carols:x:4242:\n").unwrap();
        std::fs::write(dir.join("nsswitch.conf"), "passwd: files\ngroup: files\n").unwrap();
        let files = Files::at(&dir);
        assert_eq!(files.user(4242).map(|u| u.name), Some("carol".into()));
        assert_eq!(files.group_name(4242), Some("carols".into()));
        assert_eq!(
            files.local("passwd", |t| find_user(t, 4242)).flatten().map(|u| u.name),
            Some("carol".into())
        );
        std::fs::write(dir.join("nsswitch.conf"), "passwd: sss files\n").unwrap();
        let files = Files::at(&dir);
        assert!(files.local("passwd", |t| find_user(t, 4242)).is_none(), "NSS must be asked");
        std::fs::write(dir.join("passwd"), "+::::::\n").unwrap();
        std::fs::write(dir.join("nsswitch.conf"), "passwd: files\n").unwrap();
        let files = Files::at(&dir);
        assert!(files.local("passwd", |t| find_user(t, 4242)).is_none(), "compat entries need NSS");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
