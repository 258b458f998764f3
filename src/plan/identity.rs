//! Who the workload is: the user namespace's id maps and the identity inside it (the caller, or
//! root or the image's `User` under `--fakeroot`).

use std::path::PathBuf;

use crate::host::HostFacts;
use crate::request::RunRequest;

use super::{IdMap, ImageInfo, MapWriter, PlanError, UserNamespace};

/// The identity the workload gets, and its home directory.
///
/// As Apptainer does, gpurun runs the workload as the caller and ignores the image's `User`.
/// Under `--fakeroot` it runs as root with `HOME=/root` (the caller's home bound there), unless
/// the image names another `User`: then that user, resolved in the image's own `/etc/passwd`
/// and `/etc/group`, with `HOME` from its passwd entry; it must be mapped in the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) home: PathBuf,
    /// Set when the workload must change to it before exec.
    pub(super) switch: bool,
}

/// A uid or gid written as a number: ASCII digits only (no sign, no spaces), 0..=2^31-1, the
/// range every tool agrees on (CVE-2024-40635: a larger value must not wrap to root).
pub fn parse_id(text: &str) -> Option<Option<u32>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u32>().ok().filter(|&n| n <= i32::MAX as u32))
}

/// Resolves an OCI `User` (`user`, `uid`, `user:group`, `uid:gid`) against the image's account
/// files. Returns uid, gid and the passwd entry's home (if any).
pub fn resolve_user(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32, Option<PathBuf>), PlanError> {
    let bad = |why: &str| PlanError::BadUser { spec: spec.into(), why: why.into() };
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let fields = |line: &str| line.split(':').map(str::to_string).collect::<Vec<_>>();
    let passwd_entry = |pred: &dyn Fn(&[String]) -> bool| {
        passwd.unwrap_or("").lines().map(fields).find(|f| f.len() >= 6 && pred(f))
    };
    let (uid, mut gid, home) = match parse_id(user) {
        Some(None) => return Err(bad("the uid is larger than 2147483647")),
        Some(Some(uid)) => {
            let entry = passwd_entry(&|f| parse_id(&f[2]) == Some(Some(uid)));
            let gid = entry.as_ref().and_then(|f| parse_id(&f[3]).flatten()).unwrap_or(0);
            (uid, gid, entry.map(|f| PathBuf::from(&f[5])))
        }
        None => {
            let entry = passwd_entry(&|f| f[0] == user).ok_or_else(|| bad("no such user in the image"))?;
            let uid = parse_id(&entry[2]).flatten().ok_or_else(|| bad("its passwd entry has a bad uid"))?;
            let gid = parse_id(&entry[3]).flatten().ok_or_else(|| bad("its passwd entry has a bad gid"))?;
            (uid, gid, Some(PathBuf::from(&entry[5])))
        }
    };
    if let Some(g) = grp.filter(|g| !g.is_empty()) {
        gid = match parse_id(g) {
            Some(Some(n)) => n,
            Some(None) => return Err(bad("the gid is larger than 2147483647")),
            None => group
                .unwrap_or("")
                .lines()
                .map(fields)
                .find(|f| f.len() >= 3 && f[0] == g)
                .and_then(|f| parse_id(&f[2]).flatten())
                .ok_or_else(|| bad("no such group in the image"))?,
        };
    }
    let home = home.filter(|h| h.is_absolute());
    Ok((uid, gid, home))
}

fn mapped(map: &[IdMap], id: u32) -> bool {
    map.iter().any(|m| id >= m.inside && id - m.inside < m.count)
}

pub(super) fn identity(
    req: &RunRequest,
    host: &HostFacts,
    image: &ImageInfo,
    userns: Option<&UserNamespace>,
) -> Result<Identity, PlanError> {
    let chosen_home = req.home.as_ref().map(|h| h.dest.clone());
    if !req.fakeroot {
        let home = chosen_home.unwrap_or_else(|| host.home.clone());
        return Ok(Identity { uid: host.uid, gid: host.gid, home, switch: false });
    }
    let root = Identity {
        uid: 0,
        gid: 0,
        home: chosen_home.clone().unwrap_or_else(|| "/root".into()),
        switch: false,
    };
    let Some(spec) = image.config.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(root);
    };
    let (uid, gid, home) = resolve_user(spec, image.passwd.as_deref(), image.group.as_deref())?;
    if (uid, gid) == (0, 0) {
        return Ok(root);
    }
    if let Some(ns) = userns
        && (!mapped(&ns.uid_map, uid) || !mapped(&ns.gid_map, gid))
    {
        return Err(PlanError::UserNotMapped { spec: spec.into(), uid, gid });
    }
    let home = chosen_home.or(home).unwrap_or_else(|| if uid == 0 { "/root".into() } else { "/".into() });
    Ok(Identity { uid, gid, home, switch: true })
}

pub(super) fn user_namespace(req: &RunRequest, host: &HostFacts) -> Option<UserNamespace> {
    if host.uid == 0 {
        return None;
    }
    let single = |inside, outside| vec![IdMap { inside, outside, count: 1 }];
    if !req.fakeroot {
        return Some(UserNamespace {
            uid_map: single(host.uid, host.uid),
            gid_map: single(host.gid, host.gid),
            writer: MapWriter::Direct,
        });
    }
    match &host.subids {
        Some(s) => Some(UserNamespace {
            uid_map: vec![
                IdMap { inside: 0, outside: host.uid, count: 1 },
                IdMap { inside: 1, outside: s.uid_start, count: s.uid_count },
            ],
            gid_map: vec![
                IdMap { inside: 0, outside: host.gid, count: 1 },
                IdMap { inside: 1, outside: s.gid_start, count: s.gid_count },
            ],
            writer: MapWriter::Helpers { newuidmap: s.newuidmap.clone(), newgidmap: s.newgidmap.clone() },
        }),
        None => Some(UserNamespace {
            uid_map: single(0, host.uid),
            gid_map: single(0, host.gid),
            writer: MapWriter::Direct,
        }),
    }
}
