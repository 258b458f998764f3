//! Apptainer's runtime conventions, read from an image's `/.singularity.d` (in-root: the image
//! is untrusted). They become ordinary run settings:
//!
//! - `runscript` is the ENTRYPOINT (no CMD), so `gpurun run IMG ARGS`, `--run` and a bare
//!   `gpurun IMG` run it with ARGS, as `apptainer run` and `./IMG.sif` do;
//! - `labels.json` gives the labels;
//! - `env/*.sh` are sourced, in name order, by the image's own `/bin/sh` just before the command
//!   (the plan wraps the argv; `plan::env` re-exports what must win over them). Sourcing, not
//!   evaluating their common forms, because `%environment` sections are shell: `source` of
//!   conda's activation scripts, conditionals and `$VAR` expansions of the runtime environment
//!   are common in them. The limit: an image without `/bin/sh` cannot source them (`prepare`
//!   warns);
//!   Apptainer evaluates them with an embedded interpreter instead.

use std::collections::BTreeMap;

use rustix::fs::FileType;

use super::RunConfig;
use super::runconfig::Apptainer;
use crate::inroot::Root;

const DIR: &str = "/.singularity.d";
pub const RUNSCRIPT: &str = "/.singularity.d/runscript";
/// labels.json larger than this is ignored (Apptainer's are a few hundred bytes).
const MAX_LABELS: u64 = 1 << 20;
/// More env scripts than this are not sourced (Apptainer images have about five).
const MAX_SCRIPTS: usize = 256;

/// Fills `config` from the image's `/.singularity.d`; leaves it alone when there is none.
pub fn apply(root: &Root, config: &mut RunConfig) {
    if root.file_type(DIR) != Some(FileType::Directory) {
        return;
    }
    if root.file_type(RUNSCRIPT) == Some(FileType::RegularFile) {
        config.entrypoint = vec![RUNSCRIPT.into()];
        config.cmd.clear();
    }
    if let Ok(bytes) = root.read("/.singularity.d/labels.json", MAX_LABELS)
        && let Ok(labels) = serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(&bytes)
    {
        for (k, v) in labels {
            let v = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            config.labels.insert(k, v);
        }
    }
    let shell =
        ["/bin/sh"].into_iter().find(|s| root.file_type(s) == Some(FileType::RegularFile)).map(String::from);
    config.apptainer = Some(Apptainer { env_scripts: env_scripts(root), shell });
}

/// `/.singularity.d/env/*.sh`, regular files only, sorted by name.
fn env_scripts(root: &Root) -> Vec<String> {
    let Some(dir) = root.open_dir("/.singularity.d/env") else { return Vec::new() };
    let Ok(names) = crate::fsutil::read_names(std::os::fd::AsFd::as_fd(&dir)) else { return Vec::new() };
    let mut scripts: Vec<String> = names
        .into_iter()
        .filter_map(|n| String::from_utf8(n).ok())
        .filter(|n| n.ends_with(".sh") && !n.contains(['\'', '\n']))
        .map(|n| format!("/.singularity.d/env/{n}"))
        .collect();
    scripts.sort();
    scripts.retain(|p| root.file_type(p) == Some(FileType::RegularFile));
    scripts.truncate(MAX_SCRIPTS);
    scripts
}

/// The shell program that sources `scripts`, then sets `forced` (the values that win over the
/// image's, `NAME=value`), appends `appends` (`NAME`, directory) where missing, and execs its
/// arguments: run as `SHELL -c PROGRAM gpurun ARGV...`.
pub fn wrapper(scripts: &[String], forced: &[(String, String)], appends: &[(String, String)]) -> String {
    let mut s = String::new();
    for script in scripts {
        s.push_str(&format!(". {}\n", quote(script)));
    }
    for (name, value) in forced {
        s.push_str(&format!("export {name}={}\n", quote(value)));
    }
    for (name, dir) in appends {
        let d = quote(dir);
        s.push_str(&format!(
            "case \":${{{name}}}:\" in *:{d}:*) ;; *) export {name}=\"${{{name}:+${{{name}}}:}}\"{d} ;; esac\n"
        ));
    }
    s.push_str("exec \"$@\"\n");
    s
}

/// Single-quoted for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapper_quotes_values_and_keeps_order() {
        let w = wrapper(
            &[
                "/.singularity.d/env/10-docker2singularity.sh".into(),
                "/.singularity.d/env/90-environment.sh".into(),
            ],
            &[("FOO".into(), "it's $HOME".into())],
            &[("PATH".into(), "/.gpurun/bin".into())],
        );
        let lines: Vec<&str> = w.lines().collect();
        assert_eq!(lines[0], ". '/.singularity.d/env/10-docker2singularity.sh'");
        assert_eq!(lines[1], ". '/.singularity.d/env/90-environment.sh'");
        assert_eq!(lines[2], "export FOO='it'\\''s $HOME'");
        assert!(lines[3].starts_with("case \":${PATH}:\" in *:'/.gpurun/bin':*)"));
        assert_eq!(lines[4], "exec \"$@\"");
    }
}
