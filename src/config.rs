//! Configuration files: the site file (`/etc/gpurun/gpurun.toml`) and the user's
//! (`$XDG_CONFIG_HOME/gpurun/config.toml`, else `~/.config/gpurun/config.toml`), or the one file
//! `$GPURUN_CONFIG` names instead of both. They set the cache location, default binds, defaults
//! for run flags and extra GPU library and tool lists; every key is documented in
//! `examples/gpurun.toml`.
//!
//! Precedence, highest first: command-line flags, `GPURUN_*` environment variables, the user
//! file, the site file. A key set in a higher source replaces the lower one's value whole (lists
//! too: to extend the site's `binds`, repeat them). `-B` binds are added to the default binds
//! and replace a default bind onto the same destination.
//!
//! [`parse`] is pure (text in, [`Settings`] out, errors naming the file, line and column from
//! the TOML spans); [`load`] reads the files; [`apply`] folds settings and the environment into
//! the parsed command line. This module never touches the cache or the image.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::cli::{Cli, PidNsMode, RootMode};
use crate::gpu::edits::ListExtensions;
use crate::host::ProcessEnv;

/// The site-wide file.
pub const SITE_FILE: &str = "/etc/gpurun/gpurun.toml";
/// Names one file to read instead of the site and user files (empty: read none).
pub const CONFIG_VAR: &str = "GPURUN_CONFIG";

/// Why configuration could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {}, line {line}, column {column}: {message}", file.display())]
    Syntax { file: PathBuf, line: usize, column: usize, message: String },
    #[error("cannot read configuration file {}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable {name}={value:?}: {reason}")]
    Env { name: String, value: String, reason: String },
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Syntax { .. } => Some(
                "every key and its allowed values are documented in examples/gpurun.toml \
                 (and `man gpurun`, FILES)"
                    .into(),
            ),
            ConfigError::Env { .. } => Some("unset the variable or give it a valid value".into()),
            ConfigError::Read { .. } => None,
        }
    }
}

/// One file as written. `deny_unknown_fields` makes a misspelt key an error at its line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    cache: CacheSection,
    #[serde(default)]
    run: RunSection,
    #[serde(default)]
    rocm: RocmSection,
    #[serde(default)]
    nv: ListSection,
    #[serde(default)]
    registry: RegistrySection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrySection {
    /// Registries (`host[:port]`) spoken to over plain HTTP.
    insecure: Option<Vec<Spanned<String>>>,
    /// Registry -> mirrors tried before it.
    mirrors: Option<BTreeMap<String, Vec<Spanned<String>>>>,
    /// Layers downloaded at once.
    downloads: Option<Spanned<i64>>,
    /// The blob store on or off.
    store: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheSection {
    dir: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSection {
    binds: Option<Vec<Spanned<String>>>,
    contain: Option<bool>,
    no_home: Option<bool>,
    cleanenv: Option<bool>,
    writable_tmpfs: Option<bool>,
    gpus: Option<Spanned<String>>,
    pid_ns: Option<PidNsMode>,
    root_mode: Option<RootMode>,
}

/// `[rocm]`: the list keys plus the gfx override switch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RocmSection {
    libs: Option<Vec<Spanned<String>>>,
    bins: Option<Vec<Spanned<String>>>,
    gfx_override: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListSection {
    libs: Option<Vec<Spanned<String>>>,
    bins: Option<Vec<Spanned<String>>>,
}

/// What the files say, validated and with variables expanded; `None` where no file sets a key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub cache_dir: Option<PathBuf>,
    pub binds: Option<Vec<String>>,
    pub contain: Option<bool>,
    pub no_home: Option<bool>,
    pub cleanenv: Option<bool>,
    pub writable_tmpfs: Option<bool>,
    pub gpus: Option<String>,
    pub pid_ns: Option<PidNsMode>,
    pub root_mode: Option<RootMode>,
    pub rocm_libs: Option<Vec<String>>,
    pub rocm_bins: Option<Vec<String>>,
    pub gfx_override: Option<bool>,
    pub nv_libs: Option<Vec<String>>,
    pub nv_bins: Option<Vec<String>>,
    pub insecure_registries: Option<Vec<String>>,
    pub registry_mirrors: Option<BTreeMap<String, Vec<String>>>,
    pub registry_downloads: Option<usize>,
    pub registry_store: Option<bool>,
}

impl Settings {
    /// `over`'s keys replace ours where it sets them.
    pub fn overlay(self, over: Settings) -> Settings {
        Settings {
            cache_dir: over.cache_dir.or(self.cache_dir),
            binds: over.binds.or(self.binds),
            contain: over.contain.or(self.contain),
            no_home: over.no_home.or(self.no_home),
            cleanenv: over.cleanenv.or(self.cleanenv),
            writable_tmpfs: over.writable_tmpfs.or(self.writable_tmpfs),
            gpus: over.gpus.or(self.gpus),
            pid_ns: over.pid_ns.or(self.pid_ns),
            root_mode: over.root_mode.or(self.root_mode),
            rocm_libs: over.rocm_libs.or(self.rocm_libs),
            rocm_bins: over.rocm_bins.or(self.rocm_bins),
            gfx_override: over.gfx_override.or(self.gfx_override),
            nv_libs: over.nv_libs.or(self.nv_libs),
            nv_bins: over.nv_bins.or(self.nv_bins),
            insecure_registries: over.insecure_registries.or(self.insecure_registries),
            registry_mirrors: over.registry_mirrors.or(self.registry_mirrors),
            registry_downloads: over.registry_downloads.or(self.registry_downloads),
            registry_store: over.registry_store.or(self.registry_store),
        }
    }
}

/// Parses one file's text. `file` only names it in errors; `env` expands `$VAR` and `${VAR}` in
/// `cache.dir` and `run.binds` (and a leading `~/` to `$HOME`).
pub fn parse(file: &Path, text: &str, env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    let at = |span: Option<Range<usize>>, message: String| {
        let (line, column) = position(text, span.map_or(0, |s| s.start));
        ConfigError::Syntax { file: file.to_path_buf(), line, column, message }
    };
    let doc: FileDoc = toml::from_str(text).map_err(|e| at(e.span(), e.message().trim().to_string()))?;
    let expand_at = |s: &Spanned<String>| expand(s.get_ref(), env).map_err(|m| at(Some(s.span()), m));
    let cache_dir = doc.cache.dir.as_ref().map(expand_at).transpose()?.map(PathBuf::from);
    if let (Some(dir), Some(raw)) = (&cache_dir, &doc.cache.dir)
        && !dir.is_absolute()
    {
        return Err(at(Some(raw.span()), format!("cache.dir {dir:?} must be an absolute path")));
    }
    let binds = match &doc.run.binds {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|b| {
                    let value = expand_at(b)?;
                    check_bind(&value).map_err(|m| at(Some(b.span()), m))?;
                    Ok(value)
                })
                .collect::<Result<Vec<_>, ConfigError>>()?,
        ),
    };
    if let Some(gpus) = &doc.run.gpus {
        crate::gpu::select::parse_gpus_flag(gpus.get_ref())
            .map_err(|e| at(Some(gpus.span()), format!("run.gpus: {}", crate::error_chain(&e))))?;
    }
    let names = |list: &Option<Vec<Spanned<String>>>, what: &str| -> Result<_, ConfigError> {
        let Some(list) = list else { return Ok(None) };
        for item in list {
            let v = item.get_ref();
            if v.is_empty() || v.contains(['/', ':', ',']) || v.chars().any(char::is_whitespace) {
                return Err(at(Some(item.span()), format!("{what}: {v:?} must be a bare name")));
            }
        }
        Ok(Some(list.iter().map(|s| s.get_ref().clone()).collect()))
    };
    let host = |h: &Spanned<String>, what: &str| -> Result<String, ConfigError> {
        let v = h.get_ref();
        crate::image::source::registry::Reference::parse(&format!("{v}/x"))
            .ok()
            .filter(|r| r.registry == *v)
            .map(|_| v.clone())
            .ok_or_else(|| at(Some(h.span()), format!("{what}: {v:?} is not HOST[:PORT]")))
    };
    let insecure_registries = match &doc.registry.insecure {
        None => None,
        Some(list) => Some(list.iter().map(|h| host(h, "registry.insecure")).collect::<Result<Vec<_>, _>>()?),
    };
    let registry_mirrors = match &doc.registry.mirrors {
        None => None,
        Some(map) => Some(
            map.iter()
                .map(|(registry, list)| {
                    let mirrors =
                        list.iter().map(|h| host(h, "registry.mirrors")).collect::<Result<Vec<_>, _>>()?;
                    Ok((registry.clone(), mirrors))
                })
                .collect::<Result<BTreeMap<_, _>, ConfigError>>()?,
        ),
    };
    let registry_downloads = match &doc.registry.downloads {
        None => None,
        Some(n) if (1..=32).contains(n.get_ref()) => Some(*n.get_ref() as usize),
        Some(n) => {
            return Err(at(Some(n.span()), format!("registry.downloads: {} is not 1 to 32", n.get_ref())));
        }
    };
    Ok(Settings {
        insecure_registries,
        registry_mirrors,
        registry_downloads,
        registry_store: doc.registry.store,
        cache_dir,
        binds,
        contain: doc.run.contain,
        no_home: doc.run.no_home,
        cleanenv: doc.run.cleanenv,
        writable_tmpfs: doc.run.writable_tmpfs,
        gpus: doc.run.gpus.map(|g| g.into_inner()),
        pid_ns: doc.run.pid_ns,
        root_mode: doc.run.root_mode,
        rocm_libs: names(&doc.rocm.libs, "rocm.libs")?,
        rocm_bins: names(&doc.rocm.bins, "rocm.bins")?,
        gfx_override: doc.rocm.gfx_override,
        nv_libs: names(&doc.nv.libs, "nv.libs")?,
        nv_bins: names(&doc.nv.bins, "nv.bins")?,
    })
}

/// 1-based line and column (in characters) of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// `$NAME`, `${NAME}` and a leading `~/`, from `env`; an unset variable is an error (a site file
/// with `/scratch/$USER` must not silently become `/scratch/`).
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let var = |name: &str| env.get(name).cloned().ok_or_else(|| format!("${name} is not set (in {text:?})"));
    let mut out = String::new();
    let mut rest = text;
    if let Some(tail) = rest.strip_prefix("~/") {
        out.push_str(&var("HOME")?);
        out.push('/');
        rest = tail;
    }
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            return Err(format!("a lone '$' in {text:?}"));
        }
        out.push_str(&var(name)?);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

/// The syntax of `SRC[:DST[:ro|rw]]` (sources are checked when a run uses them).
fn check_bind(spec: &str) -> Result<(), String> {
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.len() > 3 || parts[0].is_empty() || !parts[0].starts_with('/') {
        return Err(format!("run.binds: {spec:?} is not /SRC[:DST[:ro|rw]] with an absolute SRC"));
    }
    if parts.get(1).is_some_and(|d| !d.is_empty() && !d.starts_with('/')) {
        return Err(format!("run.binds: {spec:?}: DST must be absolute"));
    }
    if parts.get(2).is_some_and(|o| *o != "ro" && *o != "rw") {
        return Err(format!("run.binds: {spec:?}: the only options are ro and rw"));
    }
    Ok(())
}

/// The files to read, lowest precedence first: `$GPURUN_CONFIG` alone when set (empty: none),
/// else the site file and the user file. The flag says whether a missing file is an error.
pub fn files(env: &BTreeMap<String, String>) -> Vec<(PathBuf, bool)> {
    if let Some(explicit) = env.get(CONFIG_VAR) {
        return if explicit.is_empty() { vec![] } else { vec![(PathBuf::from(explicit), true)] };
    }
    let mut out = vec![(PathBuf::from(SITE_FILE), false)];
    let base = match env.get("XDG_CONFIG_HOME").filter(|v| v.starts_with('/')) {
        Some(x) => Some(PathBuf::from(x)),
        None => env.get("HOME").filter(|h| !h.is_empty()).map(|h| Path::new(h).join(".config")),
    };
    if let Some(base) = base {
        out.push((base.join("gpurun/config.toml"), false));
    }
    out
}

/// Reads and merges the configuration files for `env`.
pub fn load(env: &BTreeMap<String, String>) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    for (file, required) in files(env) {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
            Err(source) => return Err(ConfigError::Read { file, source }),
        };
        settings = settings.overlay(parse(&file, &text, env)?);
    }
    Ok(settings)
}

/// A `GPURUN_*` boolean: 1/true/yes/on or 0/false/no/off (any case); unset is `None`.
fn env_bool(env: &BTreeMap<String, String>, name: &str) -> Result<Option<bool>, ConfigError> {
    let Some(value) = env.get(name) else { return Ok(None) };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" | "" => Ok(Some(false)),
        _ => Err(ConfigError::Env {
            name: name.into(),
            value: value.clone(),
            reason: "expected 1, true, yes, on or 0, false, no, off".into(),
        }),
    }
}

/// A `GPURUN_ROOT_MODE` value: auto, overlay or bind (any case); unset or empty is `None`.
fn env_root_mode(env: &BTreeMap<String, String>) -> Result<Option<RootMode>, ConfigError> {
    let Some(value) = env.get("GPURUN_ROOT_MODE").filter(|v| !v.trim().is_empty()) else { return Ok(None) };
    match value.trim().to_ascii_lowercase().as_str() {
        "auto" => Ok(Some(RootMode::Auto)),
        "overlay" => Ok(Some(RootMode::Overlay)),
        "bind" => Ok(Some(RootMode::Bind)),
        _ => Err(ConfigError::Env {
            name: "GPURUN_ROOT_MODE".into(),
            value: value.clone(),
            reason: "expected auto, overlay or bind".into(),
        }),
    }
}

/// A `GPURUN_PID_NS` value: auto, private or host (any case); unset or empty is `None`.
fn env_pid_ns(env: &BTreeMap<String, String>) -> Result<Option<PidNsMode>, ConfigError> {
    let Some(value) = env.get("GPURUN_PID_NS").filter(|v| !v.trim().is_empty()) else { return Ok(None) };
    <PidNsMode as clap::ValueEnum>::from_str(value.trim(), true).map(Some).map_err(|_| ConfigError::Env {
        name: "GPURUN_PID_NS".into(),
        value: value.clone(),
        reason: "expected auto, private or host".into(),
    })
}

/// Folds the environment and `settings` into `cli` where the command line left a value unset.
/// Environment: `GPURUN_CONTAIN`, `GPURUN_NO_HOME`, `GPURUN_CLEANENV`, `GPURUN_WRITABLE_TMPFS`
/// (booleans), `GPURUN_BIND` (comma-separated default binds) and Apptainer's `APPTAINER_BIND`/
/// `SINGULARITY_BIND` (added to them), `GPURUN_GPUS`, `GPURUN_PID_NS`;
/// `GPURUN_CACHE_DIR` (which must not be empty: an unset `$SCRATCH` in a job script must not
/// put the cache somewhere else quietly). The `GPURUN_{ROCM,NV}_{LIBS,BINS}` lists are read
/// by the run stage, from the process environment.
pub fn apply(cli: &mut Cli, settings: &Settings, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if cli.global.cache_dir.is_none() {
        let from_env = match env.get("GPURUN_CACHE_DIR") {
            Some(v) if v.is_empty() => {
                return Err(ConfigError::Env {
                    name: "GPURUN_CACHE_DIR".into(),
                    value: v.clone(),
                    reason: "empty: unset it or name a directory".into(),
                });
            }
            v => v.map(PathBuf::from),
        };
        cli.global.cache_dir = from_env.or(settings.cache_dir.clone());
    }
    let run = &mut cli.run;
    for (flag, name, file) in [
        (&mut run.contain, "GPURUN_CONTAIN", settings.contain),
        (&mut run.no_home, "GPURUN_NO_HOME", settings.no_home),
        (&mut run.cleanenv, "GPURUN_CLEANENV", settings.cleanenv),
        (&mut run.writable_tmpfs, "GPURUN_WRITABLE_TMPFS", settings.writable_tmpfs),
        (&mut run.no_gfx_override, "GPURUN_NO_GFX_OVERRIDE", settings.gfx_override.map(|on| !on)),
    ] {
        if !*flag {
            *flag = env_bool(env, name)?.or(file).unwrap_or(false);
        }
    }
    // -p and -C (Apptainer's) ask for a private PID namespace on the command line.
    if run.pid_ns.is_none() && !run.pid && !run.containall {
        run.pid_ns = env_pid_ns(env)?.or(settings.pid_ns);
    }
    if run.root_mode.is_none() {
        run.root_mode = env_root_mode(env)?.or(settings.root_mode);
    }
    let list = |v: &String| v.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
    let mut defaults = match env.get("GPURUN_BIND") {
        Some(v) => list(v),
        None => settings.binds.clone().unwrap_or_default(),
    };
    // An Apptainer user's binds (APPTAINER_BIND, else the older SINGULARITY_BIND) apply as in
    // Apptainer, where they add to the command line's -B.
    if let Some(v) = env.get("APPTAINER_BIND").or_else(|| env.get("SINGULARITY_BIND")) {
        defaults = merge_binds(&defaults, &list(v));
    }
    run.binds = merge_binds(&defaults, &run.binds);
    if run.gpus.is_none() && (run.rocm || run.nv) && !vendor_variable_set(run.rocm, run.nv, env) {
        run.gpus = env.get("GPURUN_GPUS").filter(|v| !v.is_empty()).cloned().or(settings.gpus.clone());
    }
    run.gpu_lists = ListExtensions {
        rocm_libs: settings.rocm_libs.clone().unwrap_or_default(),
        rocm_bins: settings.rocm_bins.clone().unwrap_or_default(),
        nv_libs: settings.nv_libs.clone().unwrap_or_default(),
        nv_bins: settings.nv_bins.clone().unwrap_or_default(),
    };
    Ok(())
}

/// A default `gpus` is a fallback: a job's own allocation (Slurm's `SLURM_STEP_GPUS`/
/// `SLURM_JOB_GPUS`, `NVIDIA_VISIBLE_DEVICES` for `--nv`, `AMD_VISIBLE_DEVICES`/
/// `ROCR_VISIBLE_DEVICES` for `--rocm`), as a scheduler sets it, wins.
fn vendor_variable_set(rocm: bool, nv: bool, env: &BTreeMap<String, String>) -> bool {
    crate::gpu::edits::SLURM_GPU_VARS.iter().any(|v| env.contains_key(*v))
        || (nv && env.contains_key("NVIDIA_VISIBLE_DEVICES"))
        || (rocm && (env.contains_key("AMD_VISIBLE_DEVICES") || env.contains_key("ROCR_VISIBLE_DEVICES")))
}

/// Default binds first, then the command line's; a default bind onto a destination the command
/// line also binds is dropped.
pub fn merge_binds(defaults: &[String], cli: &[String]) -> Vec<String> {
    let dest = |spec: &str| {
        let mut parts = spec.split(':');
        let src = parts.next().unwrap_or("");
        let dst = parts.next().filter(|d| !d.is_empty()).unwrap_or(src);
        dst.trim_end_matches('/').to_string()
    };
    let taken: Vec<String> = cli.iter().map(|s| dest(s)).collect();
    defaults.iter().filter(|d| !taken.contains(&dest(d))).chain(cli).cloned().collect()
}

/// The process environment as configuration files see it: `USER` filled from the passwd entry
/// when unset, so `$USER` works in batch jobs that clear it.
pub fn expansion_env(env: &ProcessEnv) -> BTreeMap<String, String> {
    let mut vars = env.vars().clone();
    if !vars.contains_key("USER") {
        let uid = nix::unistd::geteuid();
        if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
            vars.insert("USER".into(), user.name);
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse_ok(text: &str) -> Settings {
        parse(Path::new("t.toml"), text, &env(&[("USER", "ana"), ("HOME", "/home/ana")])).unwrap()
    }

    fn parse_err(text: &str) -> String {
        let e = parse(Path::new("/etc/x.toml"), text, &env(&[])).unwrap_err();
        e.to_string()
    }

    #[test]
    fn example_file_parses_and_documents_every_key() {
        let text = include_str!("../examples/gpurun.toml");
        let e = env(&[("USER", "ana"), ("HOME", "/home/ana")]);
        parse(Path::new("examples/gpurun.toml"), text, &e).unwrap();
        // Uncommenting every `# key = value` line (it replaces an earlier line setting that key)
        // must still parse and set every key.
        let mut lines: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let t = line.trim_start_matches("# ");
            let key = t
                .split_once(" = ")
                .map(|(k, _)| k)
                .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            match key {
                Some(k) => {
                    let section =
                        lines.iter().rev().find(|(_, l)| l.starts_with('[')).map(|(_, l)| l.clone());
                    let id = format!("{section:?}.{k}");
                    lines.retain(|(i, _)| *i != id);
                    lines.push((id, t.to_string()));
                }
                None => lines.push((String::new(), line.to_string())),
            }
        }
        let uncommented: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        let all = parse(Path::new("examples/gpurun.toml"), &uncommented, &e).unwrap();
        let debug = format!("{all:?}");
        assert!(!debug.contains("None"), "a key is missing from examples/gpurun.toml: {debug}");
    }

    #[test]
    fn values_and_expansion() {
        let s = parse_ok(
            "[cache]\ndir = \"/scratch/${USER}/gpurun\"\n[run]\nbinds = [\"~/data:/data:ro\", \"/opt\"]\n\
             contain = true\ngpus = \"0-1\"\n[nv]\nbins = [\"nvidia-smi\"]\n",
        );
        assert_eq!(s.cache_dir, Some(PathBuf::from("/scratch/ana/gpurun")));
        assert_eq!(s.binds, Some(vec!["/home/ana/data:/data:ro".into(), "/opt".into()]));
        assert_eq!((s.contain, s.cleanenv, s.gpus.as_deref()), (Some(true), None, Some("0-1")));
        assert_eq!(s.nv_bins, Some(vec!["nvidia-smi".into()]));
        assert_eq!(expand("$HOME/x$USER", &env(&[("HOME", "/h"), ("USER", "u")])), Ok("/h/xu".into()));
        assert!(expand("/s/$NOPE", &env(&[])).unwrap_err().contains("$NOPE is not set"));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = parse_err("[run]\ncontain = true\ncontian = false\n");
        assert!(
            e.starts_with("configuration file /etc/x.toml, line 3, column 1: unknown field `contian`"),
            "{e}"
        );
        let e = parse_err("[run]\n\ncleanenv = \"yes\"\n");
        assert!(e.contains("line 3, column 12") && e.contains("boolean"), "{e}");
        let e = parse_err("[cache]\ndir = \"relative\"\n");
        assert!(e.contains("line 2, column 7") && e.contains("absolute"), "{e}");
        let e = parse_err("[run]\nbinds = [\"/a\",\n  \"/b:/c:rx\"]\n");
        assert!(e.contains("line 3, column 3") && e.contains("ro and rw"), "{e}");
        let e = parse_err("[run]\ngpus = \"zero\"\n");
        assert!(e.contains("line 2") && e.contains("\"zero\""), "{e}");
        let e = parse_err("[rocm]\nlibs = [\"/usr/lib/libx.so\"]\n");
        assert!(e.contains("line 2") && e.contains("bare name"), "{e}");
        let e = parse_err("[cache]\ndir = \"/s/$USER\"\n");
        assert!(e.contains("line 2") && e.contains("$USER is not set"), "{e}");
        let e = parse_err("[gpu]\n");
        assert!(e.contains("line 1") && e.contains("unknown field `gpu`"), "{e}");
        let e = parse_err("contain = true\n");
        assert!(e.contains("unknown field `contain`"), "{e}");
    }

    #[test]
    fn file_locations() {
        let f = |pairs| files(&env(pairs)).into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        assert_eq!(f(&[("HOME", "/h")]), [PathBuf::from(SITE_FILE), "/h/.config/gpurun/config.toml".into()]);
        assert_eq!(
            f(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")])[1],
            PathBuf::from("/x/gpurun/config.toml")
        );
        assert_eq!(f(&[("GPURUN_CONFIG", "/c.toml"), ("HOME", "/h")]), [PathBuf::from("/c.toml")]);
        assert!(f(&[("GPURUN_CONFIG", "")]).is_empty());
    }

    /// Parses a command line, with no --cache-dir unless `args` gives one.
    fn cli(args: &str) -> Cli {
        let mut c = Cli::try_parse_from(std::iter::once("gpurun").chain(args.split_whitespace())).unwrap();
        if !args.contains("--cache-dir") {
            c.global.cache_dir = None;
        }
        c
    }

    /// GPURUN_CACHE_DIR outranks the files; set but empty (an unset `$SCRATCH` in a job
    /// script) it is an error, not a quiet fallback to another place.
    #[test]
    fn cache_dir_variable() {
        let files = parse_ok("[cache]\ndir = \"/from-file\"\n");
        let mut c = cli("IMG true");
        apply(&mut c, &files, &env(&[("GPURUN_CACHE_DIR", "/from-env")])).unwrap();
        assert_eq!(c.global.cache_dir, Some(PathBuf::from("/from-env")));
        let mut c = cli("--cache-dir /flag IMG true");
        apply(&mut c, &files, &env(&[("GPURUN_CACHE_DIR", "/from-env")])).unwrap();
        assert_eq!(c.global.cache_dir, Some(PathBuf::from("/flag")));
        let mut c = cli("IMG true");
        apply(&mut c, &files, &env(&[])).unwrap();
        assert_eq!(c.global.cache_dir, Some(PathBuf::from("/from-file")));
        let e = apply(&mut cli("IMG true"), &files, &env(&[("GPURUN_CACHE_DIR", "")])).unwrap_err();
        assert!(e.to_string().contains("GPURUN_CACHE_DIR") && e.to_string().contains("empty"), "{e}");
    }

    #[test]
    fn precedence_flags_env_user_site() {
        let site =
            parse_ok("[run]\ncontain = true\ncleanenv = true\nbinds = [\"/site\"]\n[cache]\ndir = \"/s\"\n");
        let user = parse_ok("[run]\ncleanenv = false\nbinds = [\"/user\", \"/u2:/data\"]\n");
        let merged = site.overlay(user);
        assert_eq!((merged.contain, merged.cleanenv), (Some(true), Some(false)));

        let mut c = cli("img");
        apply(&mut c, &merged, &env(&[])).unwrap();
        assert!(c.run.contain && !c.run.cleanenv);
        assert_eq!(c.run.binds, ["/user", "/u2:/data"]);
        assert_eq!(c.global.cache_dir, Some(PathBuf::from("/s")));

        let mut c = cli("--cache-dir /flag -B /mine:/data --cleanenv img");
        let e = env(&[("GPURUN_CONTAIN", "0"), ("GPURUN_WRITABLE_TMPFS", "yes")]);
        apply(&mut c, &merged, &e).unwrap();
        assert!(!c.run.contain && c.run.cleanenv && c.run.writable_tmpfs);
        assert_eq!(c.run.binds, ["/user", "/mine:/data"]);
        assert_eq!(c.global.cache_dir, Some(PathBuf::from("/flag")));

        let mut c = cli("img");
        apply(&mut c, &merged, &env(&[("GPURUN_BIND", "/e1,/e2")])).unwrap();
        assert_eq!(c.run.binds, ["/e1", "/e2"]);
        // Apptainer's bind variable adds to the defaults (APPTAINER_ wins over SINGULARITY_),
        // and the command line's -B onto the same destination wins over it.
        let mut c = cli("-B /mine:/a img");
        let e = env(&[("GPURUN_BIND", "/e1"), ("APPTAINER_BIND", "/x:/a,/y"), ("SINGULARITY_BIND", "/old")]);
        apply(&mut c, &merged, &e).unwrap();
        assert_eq!(c.run.binds, ["/e1", "/y", "/mine:/a"]);
        let mut c = cli("img");
        apply(&mut c, &merged, &env(&[("SINGULARITY_BIND", "/old")])).unwrap();
        assert_eq!(c.run.binds, ["/user", "/u2:/data", "/old"]);

        let err = apply(&mut cli("img"), &merged, &env(&[("GPURUN_CONTAIN", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("GPURUN_CONTAIN=\"maybe\""), "{err}");
    }

    #[test]
    fn pid_ns_precedence() {
        let site = parse_ok("[run]\npid_ns = \"private\"\n");
        let user = parse_ok("[run]\npid_ns = \"host\"\n");
        let pid_ns = |args: &str, settings: &Settings, pairs: &[(&str, &str)]| {
            let mut c = cli(args);
            apply(&mut c, settings, &env(pairs)).map(|()| c.run.pid_ns)
        };
        let none = Settings::default();
        assert_eq!(pid_ns("img", &none, &[]).unwrap(), None, "unset everywhere: auto, decided later");
        assert_eq!(pid_ns("img", &site, &[]).unwrap(), Some(PidNsMode::Private));
        assert_eq!(pid_ns("img", &site.clone().overlay(user.clone()), &[]).unwrap(), Some(PidNsMode::Host));
        let e = [("GPURUN_PID_NS", "Auto")];
        assert_eq!(pid_ns("img", &user, &e).unwrap(), Some(PidNsMode::Auto), "variable beats file");
        assert_eq!(pid_ns("img", &user, &[("GPURUN_PID_NS", "")]).unwrap(), Some(PidNsMode::Host));
        let e = [("GPURUN_PID_NS", "host")];
        assert_eq!(pid_ns("--pid-ns private img", &user, &e).unwrap(), Some(PidNsMode::Private), "flag wins");
        let err = pid_ns("img", &none, &[("GPURUN_PID_NS", "shared")]).unwrap_err().to_string();
        assert!(err.contains("GPURUN_PID_NS=\"shared\"") && err.contains("auto, private or host"), "{err}");
        let err = parse_err("[run]\npid_ns = \"hots\"\n");
        assert!(err.contains("line 2, column 10") && err.contains("`host`"), "{err}");
    }

    #[test]
    fn default_gpus_is_a_fallback() {
        let s = parse_ok("[run]\ngpus = \"1\"\n[rocm]\nlibs = [\"libfoo.so\"]\n");
        let mut c = cli("img");
        apply(&mut c, &s, &env(&[])).unwrap();
        assert_eq!(c.run.gpus, None, "no vendor flag: no --gpus");
        let mut c = cli("--rocm img");
        apply(&mut c, &s, &env(&[])).unwrap();
        assert_eq!(c.run.gpus.as_deref(), Some("1"));
        assert_eq!(c.run.gpu_lists.rocm_libs, ["libfoo.so"]);
        let mut c = cli("--rocm img");
        apply(&mut c, &s, &env(&[("ROCR_VISIBLE_DEVICES", "0")])).unwrap();
        assert_eq!(c.run.gpus, None);
        let mut c = cli("--nv img");
        apply(&mut c, &s, &env(&[("SLURM_STEP_GPUS", "2")])).unwrap();
        assert_eq!(c.run.gpus, None, "Slurm's allocation wins over the default");
        let mut c = cli("--nv img");
        apply(&mut c, &s, &env(&[("GPURUN_GPUS", "all")])).unwrap();
        assert_eq!(c.run.gpus.as_deref(), Some("all"));
        let mut c = cli("--nv --gpus 0 img");
        apply(&mut c, &s, &env(&[("GPURUN_GPUS", "all")])).unwrap();
        assert_eq!(c.run.gpus.as_deref(), Some("0"));
    }

    #[test]
    fn gfx_override_switch() {
        let off = parse_ok("[rocm]\ngfx_override = false\n");
        let mut c = cli("--rocm img");
        apply(&mut c, &off, &env(&[])).unwrap();
        assert!(c.run.no_gfx_override, "the file turns it off");
        let mut c = cli("--rocm img");
        apply(&mut c, &off, &env(&[("GPURUN_NO_GFX_OVERRIDE", "0")])).unwrap();
        assert!(!c.run.no_gfx_override, "the variable outranks the file");
        let mut c = cli("--rocm img");
        apply(&mut c, &Settings::default(), &env(&[("GPURUN_NO_GFX_OVERRIDE", "1")])).unwrap();
        assert!(c.run.no_gfx_override);
        let mut c = cli("--rocm --no-gfx-override img");
        apply(&mut c, &parse_ok("[rocm]\ngfx_override = true\n"), &env(&[])).unwrap();
        assert!(c.run.no_gfx_override, "the flag outranks both");
        let e = parse_err("[rocm]\ngfx_override = \"no\"\n");
        assert!(e.contains("line 2"), "{e}");
    }
}
