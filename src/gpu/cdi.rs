//! Container Device Interface (CDI, cncf-tags/container-device-interface `SPEC.md`) for
//! `--device vendor.com/class=name`: specs from `/etc/cdi` and `/var/run/cdi` (`*.json`,
//! `*.yaml`; later directories win, a name defined twice in one directory is an error), whose
//! device nodes, mounts and environment become [`GpuEdits`]. Hooks cannot run unprivileged;
//! the two that `nvidia-ctk cdi generate` emits for libraries are emulated (`update-ldcache`
//! folders join `LD_LIBRARY_PATH`; `create-symlinks` links are created in the container root) and
//! every other hook is reported by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{EnvEdit, FileBind, GpuEdits, HostPaths};

/// Spec directories, lowest priority first.
pub const SPEC_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub devices: Vec<Device>,
    #[serde(default)]
    pub container_edits: Edits,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    pub name: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub container_edits: Edits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Edits {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    #[serde(default, rename = "additionalGIDs")]
    pub additional_gids: Vec<u32>,
    #[serde(default)]
    pub intel_rdt: Option<serde_json::Value>,
    #[serde(default)]
    pub net_devices: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceNode {
    pub path: String,
    pub host_path: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub file_mode: Option<u32>,
    pub permissions: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    #[error("--device {0:?}: expected a CDI name vendor.com/class=name")]
    BadName(String),
    #[error("--device {name}: no CDI spec for kind {kind} in {dirs}{problems}")]
    UnknownKind { name: String, kind: String, dirs: String, problems: String },
    #[error("--device {name}: kind {kind} has no device {device:?} (has: {known})")]
    UnknownDevice { name: String, kind: String, device: String, known: String },
    #[error("--device {name}: {file} and {other} both define it")]
    Conflict { name: String, file: PathBuf, other: PathBuf },
    #[error("--device {name}: device node {} does not exist on the host", path.display())]
    MissingNode { name: String, path: PathBuf },
}

impl CdiError {
    pub fn hint(&self) -> Option<String> {
        match self {
            CdiError::BadName(_) => Some("e.g. --device nvidia.com/gpu=0 or --device amd.com/gpu=all".into()),
            CdiError::UnknownKind { .. } | CdiError::UnknownDevice { .. } => Some(
                "generate specs on the host, e.g. `sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` \
                 or `sudo amd-ctk cdi generate`"
                    .into(),
            ),
            CdiError::Conflict { .. } => Some("remove one of the two spec files".into()),
            CdiError::MissingNode { .. } => Some("the spec is stale: regenerate it".into()),
        }
    }
}

/// Splits `vendor.com/class=name` into (kind, device name).
pub fn parse_name(name: &str) -> Result<(&str, &str), CdiError> {
    let bad = || CdiError::BadName(name.into());
    let (kind, device) = name.split_once('=').ok_or_else(bad)?;
    let (vendor, class) = kind.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c) || extra.contains(&c))
    };
    if !vendor.contains('.')
        || !ok(vendor, &[])
        || !ok(class, &[])
        || !ok(device, &[':'])
        || device.len() > 63
    {
        return Err(bad());
    }
    Ok((kind, device))
}

/// Parses one spec file's text; YAML for `.yaml`/`.yml`, JSON otherwise.
pub fn parse_spec(path: &Path, text: &str) -> Result<Spec, String> {
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    if yaml {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

/// Every parsable spec file, with the problems of the others: (directory rank, path, spec).
fn load_specs(host: &HostPaths) -> (Vec<(usize, PathBuf, Spec)>, Vec<String>) {
    let mut specs = Vec::new();
    let mut problems = Vec::new();
    for (rank, dir) in SPEC_DIRS.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(host.path(dir)) else { continue };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for file in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json" || e == "yaml" || e == "yml"))
        {
            match std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| parse_spec(&file, &t))
            {
                Ok(spec) => specs.push((rank, host.strip(&file), spec)),
                Err(e) => problems.push(format!("{}: {e}", host.strip(&file).display())),
            }
        }
    }
    (specs, problems)
}

/// Adds the edits of CDI device `name`.
pub fn apply(host: &HostPaths, name: &str, edits: &mut GpuEdits) -> Result<(), CdiError> {
    let (kind, device) = parse_name(name)?;
    let (specs, problems) = load_specs(host);
    let candidates: Vec<&(usize, PathBuf, Spec)> = specs.iter().filter(|(_, _, s)| s.kind == kind).collect();
    if candidates.is_empty() {
        let problems = if problems.is_empty() {
            String::new()
        } else {
            format!(" (unreadable: {})", problems.join("; "))
        };
        return Err(CdiError::UnknownKind {
            name: name.into(),
            kind: kind.into(),
            dirs: SPEC_DIRS.join(", "),
            problems,
        });
    }
    let with_device: Vec<&&(usize, PathBuf, Spec)> =
        candidates.iter().filter(|(_, _, s)| s.devices.iter().any(|d| d.name == device)).collect();
    let Some(best_rank) = with_device.iter().map(|(r, _, _)| *r).max() else {
        let mut known: Vec<&str> =
            candidates.iter().flat_map(|(_, _, s)| s.devices.iter().map(|d| d.name.as_str())).collect();
        known.sort();
        known.dedup();
        return Err(CdiError::UnknownDevice {
            name: name.into(),
            kind: kind.into(),
            device: device.into(),
            known: known.join(", "),
        });
    };
    let best: Vec<&&&(usize, PathBuf, Spec)> =
        with_device.iter().filter(|(r, _, _)| *r == best_rank).collect();
    if best.len() > 1 {
        return Err(CdiError::Conflict {
            name: name.into(),
            file: best[0].1.clone(),
            other: best[1].1.clone(),
        });
    }
    let (_, file, spec) = &***best[0];
    tracing::debug!(name, file = %file.display(), "CDI spec");
    let dev = spec.devices.iter().find(|d| d.name == device).expect("checked above");
    apply_edits(host, name, &spec.container_edits, edits)?;
    apply_edits(host, name, &dev.container_edits, edits)
}

fn apply_edits(host: &HostPaths, name: &str, spec: &Edits, edits: &mut GpuEdits) -> Result<(), CdiError> {
    for entry in &spec.env {
        if let Some((k, v)) = entry.split_once('=') {
            edits.env.push(EnvEdit::Set { name: k.into(), value: v.into() });
        }
    }
    for node in &spec.device_nodes {
        let source = node.host_path.clone().unwrap_or_else(|| node.path.clone());
        let Ok(meta) = std::fs::metadata(host.path(&source)) else {
            return Err(CdiError::MissingNode { name: name.into(), path: source.into() });
        };
        let bind = FileBind {
            host: source.into(),
            container: node.path.clone().into(),
            dir: meta.is_dir(),
            read_only: false,
        };
        if !edits.devices.contains(&bind) {
            edits.devices.push(bind);
        }
    }
    for m in &spec.mounts {
        let is_bind = m.kind.as_deref().is_none_or(|t| t == "bind" || t == "rbind")
            || m.options.iter().any(|o| o == "bind" || o == "rbind");
        let dir = host.path(&m.host_path).is_dir();
        if !is_bind || !host.path(&m.host_path).exists() {
            edits.warnings.push(format!(
                "--device {name}: mount {} -> {} skipped (not a bind of an existing path)",
                m.host_path, m.container_path
            ));
            continue;
        }
        let read_only = m.options.iter().any(|o| o == "ro");
        edits.files.push(FileBind {
            host: m.host_path.clone().into(),
            container: m.container_path.clone().into(),
            dir,
            read_only,
        });
    }
    for hook in &spec.hooks {
        emulate_hook(name, hook, edits);
    }
    if !spec.additional_gids.is_empty() {
        edits.warnings.push(format!(
            "--device {name}: additionalGIDs {:?} not applied (an unprivileged user namespace cannot add groups; your own supplementary groups still apply)",
            spec.additional_gids
        ));
    }
    Ok(())
}

/// `nvidia-cdi-hook update-ldcache --folder DIR` and `create-symlinks --link TARGET::LINK` are
/// reproduced without running anything; other hooks are reported.
fn emulate_hook(name: &str, hook: &Hook, edits: &mut GpuEdits) {
    let sub = hook.args.iter().find(|a| a.as_str() == "update-ldcache" || a.as_str() == "create-symlinks");
    let values = |flag: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut it = hook.args.iter();
        while let Some(a) = it.next() {
            if a == flag {
                out.extend(it.next().cloned());
            } else if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
                out.push(v.to_string());
            }
        }
        out
    };
    match sub.map(String::as_str) {
        Some("update-ldcache") => {
            for folder in values("--folder") {
                edits.env.push(EnvEdit::Append { name: "LD_LIBRARY_PATH".into(), value: folder });
            }
        }
        Some("create-symlinks") => {
            for link in values("--link") {
                if let Some((target, path)) = link.split_once("::") {
                    edits.symlinks.push((target.into(), path.into()));
                }
            }
        }
        _ => edits.warnings.push(format!(
            "--device {name}: {} hook {} {} not run (gpurun runs no hooks: it has no privilege to give them)",
            hook.hook_name,
            hook.path,
            hook.args.join(" ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD_JSON: &str = r#"{"cdiVersion":"0.6.0","kind":"amd.com/gpu","devices":[
        {"name":"0","containerEdits":{"deviceNodes":[{"path":"/dev/dri/card1","type":"c","major":226,"minor":1,"gid":44},
        {"path":"/dev/dri/renderD128"},{"path":"/dev/kfd"}]}}]}"#;

    const NV_YAML: &str = "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n  containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\ncontainerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  mounts:\n  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535\n    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535\n    options: [ro, nosuid, nodev, bind]\n  hooks:\n  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, create-symlinks, --link, libcuda.so.535::/usr/lib/x86_64-linux-gnu/libcuda.so.1]\n  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]\n  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n    args: [nvidia-cdi-hook, chmod, --mode, '755']\n";

    #[test]
    fn names() {
        assert_eq!(parse_name("nvidia.com/gpu=0").unwrap(), ("nvidia.com/gpu", "0"));
        assert_eq!(parse_name("nvidia.com/gpu=mig1:0").unwrap().1, "mig1:0");
        for bad in
            ["gpu=0", "nvidia.com/gpu", "nvidia/gpu=0", "nvidia.com/=0", "nvidia.com/gpu=", "a.b/c=d e"]
        {
            assert!(parse_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_yaml_and_unknown_fields() {
        let amd = parse_spec(Path::new("amd.json"), AMD_JSON).unwrap();
        assert_eq!(amd.devices[0].container_edits.device_nodes.len(), 3);
        let nv = parse_spec(Path::new("nv.yaml"), NV_YAML).unwrap();
        assert_eq!(nv.container_edits.hooks.len(), 3);
        let err = parse_spec(
            Path::new("x.json"),
            r#"{"cdiVersion":"0.6.0","kind":"a.com/b","devices":[],"bogus":1}"#,
        );
        assert!(err.unwrap_err().contains("bogus"));
    }

    #[test]
    fn applies_a_spec_tree() {
        let root = std::env::temp_dir().join(format!("gpurun-cdi-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (p, text) in [
            ("etc/cdi/nv.yaml", NV_YAML),
            ("etc/cdi/broken.json", "{"),
            ("dev/nvidia0", ""),
            ("usr/lib/x86_64-linux-gnu/libcuda.so.535", ""),
        ] {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), text).unwrap();
        }
        let host = HostPaths { root: root.clone() };
        let mut edits = GpuEdits::default();
        apply(&host, "nvidia.com/gpu=0", &mut edits).unwrap();
        assert_eq!(edits.devices[0].container, Path::new("/dev/nvidia0"));
        assert!(edits.files[0].read_only);
        assert_eq!(
            edits.symlinks,
            [("libcuda.so.535".into(), "/usr/lib/x86_64-linux-gnu/libcuda.so.1".into())]
        );
        assert!(edits.env.contains(&EnvEdit::Append {
            name: "LD_LIBRARY_PATH".into(),
            value: "/usr/lib/x86_64-linux-gnu".into()
        }));
        assert!(edits.warnings.iter().any(|w| w.contains("chmod")), "{:?}", edits.warnings);
        assert!(matches!(apply(&host, "nvidia.com/gpu=7", &mut edits), Err(CdiError::UnknownDevice { .. })));
        let err = apply(&host, "amd.com/gpu=0", &mut edits).unwrap_err();
        assert!(err.to_string().contains("broken.json"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
