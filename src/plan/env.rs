//! The one environment merge: every variable the workload sees, and which GPU selection reads.
//!
//! # Precedence
//!
//! Later rows win:
//!
//! | # | source                                      | notes                                         |
//! |---|---------------------------------------------|-----------------------------------------------|
//! | 1 | host environment                            | minus [`HOST_ONLY_VARS`], `GPURUN_*`, [`SET_PREFIXES`] and `--no-env` names; with `--cleanenv` only `TERM`, the proxy variables ([`CLEANENV_KEEP`]) and the GPU request variables ([`crate::gpu::REQUEST_VARS`]) |
//! | 2 | image `Env`                                 | the image wins over the host, except for the GPU request variables ([`crate::gpu::REQUEST_VARS`]): there a scheduler's or the caller's value is a choice, the image's (`NVIDIA_VISIBLE_DEVICES=all` in CUDA images) a default |
//! | 3 | gpurun: `PATH` (when the image sets none), `HOME`, `GPURUN_CONTAINER` | `HOME` is the caller's home directory (`--home`'s DST); `GPURUN_CONTAINER` the IMAGE, absolute |
//! | 4 | GPU settings (`NVIDIA_VISIBLE_DEVICES`, renumbered `ROCR_VISIBLE_DEVICES`, CDI `env`) | consistent with the bound GPUs |
//! | 5 | host `SINGULARITYENV_NAME`, `APPTAINERENV_NAME`, `GPURUN_ENV_NAME` (that order) | sets `NAME`, also with `--cleanenv` |
//! | 6 | `--env-file FILE` (files and lines in order) |                                              |
//! | 7 | `--env NAME=value` (in order)               | the last word                                 |
//! | 8 | GPU search paths: `/.gpurun/bin` appended to `PATH`, `/.gpurun/lib` to `LD_LIBRARY_PATH` | appended last, so the image's own tools and libraries keep priority and an `--env` value is extended, not lost |
//!
//! GPU selection reads the same merge without rows 4 and 8 ([`before_gpu`]): `--cleanenv`,
//! `--no-env`, `APPTAINERENV_*` and `--env` mean the same to it as to the workload. Slurm's
//! allocation is the exception: it describes the job, not the workload's environment, and
//! `gpu` reads it from the host.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::gpu::{EnvEdit, REQUEST_VARS};
use crate::host::{DEFAULT_PATH, HostFacts};
use crate::image::RunConfig;
use crate::request::RunRequest;

/// Host variables that never pass into the container, and why. The README cites this table.
pub const HOST_ONLY_VARS: &[(&str, &str)] = &[
    ("PATH", "names host directories; the image's PATH or the default applies"),
    ("LD_LIBRARY_PATH", "host libraries would be loaded against the image's libc"),
    ("LD_PRELOAD", "host libraries would be loaded against the image's libc"),
    ("LD_AUDIT", "host libraries would be loaded against the image's libc"),
    ("HOME", "gpurun sets it to the caller's home directory"),
    ("PWD", "describes the host working directory, not the container's"),
    ("OLDPWD", "describes the host shell's history"),
    ("PS1", "host prompts often call host-only commands"),
    ("PROMPT_COMMAND", "host prompts often call host-only commands"),
    ("BASH_ENV", "would make shells in the image source host startup files"),
    ("ENV", "would make shells in the image source host startup files"),
];

/// What `--cleanenv` still passes from the host.
pub const CLEANENV_KEEP: &[&str] = &[
    "TERM",
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// Host prefix for `NAME=value` pairs meant for the container.
pub const ENV_PREFIX: &str = "GPURUN_ENV_";

/// Host variables that set a container variable (row 5), lowest priority first: Apptainer's
/// (and Singularity's) spellings are honoured so that a user's existing job scripts work.
/// They never pass into the container as themselves.
pub const SET_PREFIXES: [&str; 3] = ["SINGULARITYENV_", "APPTAINERENV_", ENV_PREFIX];

/// The workload's environment before the GPU rows (4 and 8), as a map: what GPU selection
/// reads, with `HOME` the caller's home directory.
pub fn before_gpu(req: &RunRequest, host: &HostFacts, config: &RunConfig) -> BTreeMap<String, String> {
    layers(req, host, config, &host.home, &[])
}

/// Set in every container to the IMAGE it runs (row 3 of the environment table).
pub const CONTAINER_VAR: &str = "GPURUN_CONTAINER";

/// The workload's environment, `NAME=value` sorted by name.
pub(super) fn merge(
    req: &RunRequest,
    host: &HostFacts,
    config: &RunConfig,
    home: &Path,
    gpu: &[EnvEdit],
) -> Vec<String> {
    layers(req, host, config, home, gpu).into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The precedence table, row by row.
fn layers(
    req: &RunRequest,
    host: &HostFacts,
    config: &RunConfig,
    home: &Path,
    gpu: &[EnvEdit],
) -> BTreeMap<String, String> {
    layers_with_forced(req, host, config, home, gpu).0
}

/// [`layers`], and the names whose value must win over the image's: set by rows 3 to 7, or a
/// GPU request variable the host set (row 2's exception). An Apptainer image's env scripts run
/// after this merge, in the container; these are exported again after them.
fn layers_with_forced(
    req: &RunRequest,
    host: &HostFacts,
    config: &RunConfig,
    home: &Path,
    gpu: &[EnvEdit],
) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut env = host_rows(req, host);
    let mut forced: BTreeSet<String> =
        REQUEST_VARS.iter().filter(|v| env.contains_key(**v)).map(|v| v.to_string()).collect();
    for entry in &config.env {
        if let Some((name, value)) = entry.split_once('=')
            && !(REQUEST_VARS.contains(&name) && env.contains_key(name))
        {
            env.insert(name.into(), value.into());
        }
    }
    env.entry("PATH".into()).or_insert_with(|| DEFAULT_PATH.into());
    let mut set = |env: &mut BTreeMap<String, String>, name: &str, value: String| {
        forced.insert(name.to_string());
        env.insert(name.to_string(), value);
    };
    set(&mut env, "HOME", home.display().to_string());
    // The marker that a process runs in gpurun (as Apptainer sets APPTAINER_CONTAINER): the
    // image as given, made absolute against the caller's directory.
    let image = match &host.cwd {
        Some(cwd) if req.image.is_relative() => cwd.join(&req.image),
        _ => req.image.clone(),
    };
    set(&mut env, CONTAINER_VAR, image.display().to_string());
    if config.apptainer.is_some() {
        // What Apptainer sets, which images' scripts read.
        let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for (var, value) in [
            ("APPTAINER_CONTAINER", image.display().to_string()),
            ("SINGULARITY_CONTAINER", image.display().to_string()),
            ("APPTAINER_NAME", name.clone()),
            ("SINGULARITY_NAME", name),
        ] {
            set(&mut env, var, value);
        }
    }
    for edit in gpu {
        match edit {
            EnvEdit::Set { name, value } => set(&mut env, name, value.clone()),
            EnvEdit::Unset { name } => {
                env.remove(name);
            }
            EnvEdit::Append { .. } => {}
        }
    }
    // Lowest-priority prefix first, so that GPURUN_ENV_X wins over APPTAINERENV_X.
    for prefix in SET_PREFIXES {
        for (name, value) in &host.env {
            if let Some(inner) = name.strip_prefix(prefix).filter(|n| !n.is_empty()) {
                set(&mut env, inner, value.clone());
            }
        }
    }
    for (name, value) in req.env_file_vars.iter().chain(&req.env_vars) {
        set(&mut env, name, value.clone());
    }
    for edit in gpu {
        if let EnvEdit::Append { name, value } = edit {
            let list = env.entry(name.clone()).or_default();
            if !list.split(':').any(|p| p == value) {
                if !list.is_empty() {
                    list.push(':');
                }
                list.push_str(value);
            }
        }
    }
    (env, forced)
}

/// For an Apptainer image with env scripts and a shell: the argv that sources the scripts, then
/// exports again what wins over the image (rows 3 to 7 and the GPU request variables) and the
/// GPU search paths (row 8), then execs `argv`. Otherwise `argv` itself.
pub(super) fn apptainer_argv(
    argv: Vec<String>,
    req: &RunRequest,
    host: &HostFacts,
    config: &RunConfig,
    home: &Path,
    gpu: &[EnvEdit],
) -> Vec<String> {
    let Some(a) = &config.apptainer else { return argv };
    let Some(shell) = a.shell.as_ref().filter(|_| !a.env_scripts.is_empty()) else { return argv };
    // A command that looks like an option is a misplaced gpurun option: the sandbox says so.
    if argv.first().is_none_or(|c| c.starts_with('-')) {
        return argv;
    }
    let (env, forced) = layers_with_forced(req, host, config, home, gpu);
    // Only shell names can be exported (and quoted safely); a host APPTAINERENV_A.B sets a
    // variable no sh script can change anyway.
    let value = |n: &String| env.get(n).map(|v| (n.clone(), v.clone()));
    let host_names: Vec<(String, String)> = host_rows(req, host)
        .into_keys()
        .filter(|n| is_shell_name(n) && !forced.contains(n))
        .filter_map(|n| value(&n))
        .collect();
    let mut forced: Vec<(String, String)> =
        forced.iter().filter(|n| is_shell_name(n)).filter_map(value).collect();
    // Apptainer's PATH edits, applied after the scripts (not variables of their own).
    let mut take = |name: &str| forced.iter().position(|(n, _)| n == name).map(|i| forced.remove(i).1);
    let (prepend_path, append_path) = (take("PREPEND_PATH"), take("APPEND_PATH"));
    let appends: Vec<(String, String)> = gpu
        .iter()
        .filter_map(|e| match e {
            EnvEdit::Append { name, value } if is_shell_name(name) => Some((name.clone(), value.clone())),
            _ => None,
        })
        .collect();
    let wrapper = crate::image::apptainer::Wrapper {
        scripts: &a.env_scripts,
        host: host_names,
        forced,
        prepend_path,
        append_path,
        appends,
    };
    [shell.clone(), "-c".into(), wrapper.program(), "gpurun".into()].into_iter().chain(argv).collect()
}

/// Row 1: what passes from the host.
fn host_rows(req: &RunRequest, host: &HostFacts) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (name, value) in &host.env {
        let passes = if req.cleanenv {
            CLEANENV_KEEP.contains(&name.as_str()) || REQUEST_VARS.contains(&name.as_str())
        } else {
            !name.starts_with("GPURUN_")
                && !SET_PREFIXES.iter().any(|p| name.starts_with(p))
                && !HOST_ONLY_VARS.iter().any(|(n, _)| n == name)
        };
        let blocked = req.no_env.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        });
        if passes && !blocked {
            env.insert(name.clone(), value.clone());
        }
    }
    env
}

/// `[A-Za-z_][A-Za-z0-9_]*`: a name sh can assign.
fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
