//! Apptainer's runtime conventions, read from an image's `/.singularity.d` (in-root: the image
//! is untrusted). They become ordinary run settings:
//!
//! - `runscript` is the ENTRYPOINT (no CMD), so `gpurun run IMG ARGS`, `--run` and a bare
//!   `gpurun IMG` run it with ARGS, as `apptainer run` and `./IMG.sif` do;
//! - `labels.json` gives the labels;
//! - `env/*.sh` are sourced, in name order, by the image's own `/bin/bash` (else `/bin/sh`) just
//!   before the command
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
    // Without an executable runscript, `apptainer run` runs a shell.
    let runscript = root.open_regular(RUNSCRIPT).is_ok_and(|(f, _)| {
        use std::os::unix::fs::PermissionsExt;
        f.metadata().is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
    });
    config.entrypoint = vec![if runscript { RUNSCRIPT } else { "/bin/sh" }.into()];
    config.cmd.clear();
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
    // bash where the image has it: Apptainer evaluates the scripts in bash's dialect (`source`,
    // `[[ ]]`, arrays), which Debian's dash rejects.
    let shell = ["/bin/bash", "/bin/sh"]
        .into_iter()
        .find(|s| root.file_type(s) == Some(FileType::RegularFile))
        .map(String::from);
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

/// What the wrapper does around the image's env scripts.
#[derive(Debug, Default)]
pub struct Wrapper<'a> {
    pub scripts: &'a [String],
    /// Host variables (row 1 of the environment table): unset while the scripts run, then set
    /// again where the scripts left them unset, as Apptainer gives the image's values priority.
    pub host: Vec<(String, String)>,
    /// Values that win over the scripts, exported after them.
    pub forced: Vec<(String, String)>,
    /// `APPTAINERENV_PREPEND_PATH` and `APPTAINERENV_APPEND_PATH` (their values).
    pub prepend_path: Option<String>,
    pub append_path: Option<String>,
    /// (`NAME`, directory): appended to a list variable where missing (the GPU search paths).
    pub appends: Vec<(String, String)>,
}

impl Wrapper<'_> {
    /// The shell program: run as `SHELL -c PROGRAM gpurun ARGV...`. A command name the scripts'
    /// PATH does not find gets gpurun's own message and status (127); a path is left to `exec`
    /// (126 for a file that is not executable, as without the scripts).
    pub fn program(&self) -> String {
        let mut s = String::new();
        if !self.host.is_empty() {
            let names: Vec<&str> = self.host.iter().map(|(n, _)| n.as_str()).collect();
            s.push_str(&format!("unset {}\n", names.join(" ")));
        }
        for script in self.scripts {
            s.push_str(&format!(". {}\n", quote(script)));
        }
        for (name, value) in &self.host {
            s.push_str(&format!("[ -n \"${{{name}+x}}\" ] || export {name}={}\n", quote(value)));
        }
        for (name, value) in &self.forced {
            s.push_str(&format!("export {name}={}\n", quote(value)));
        }
        if let Some(p) = &self.prepend_path {
            s.push_str(&format!("export PATH={}\"${{PATH:+:$PATH}}\"; unset PREPEND_PATH\n", quote(p)));
        }
        if let Some(p) = &self.append_path {
            s.push_str(&format!("export PATH=\"${{PATH:+$PATH:}}\"{}; unset APPEND_PATH\n", quote(p)));
        }
        for (name, dir) in &self.appends {
            let d = quote(dir);
            s.push_str(&format!(
                "case \":${{{name}}}:\" in *:{d}:*) ;; *) export {name}=\"${{{name}:+${{{name}}}:}}\"{d} ;; esac\n"
            ));
        }
        s.push_str(
            "case $1 in */*) ;; *) command -v \"$1\" >/dev/null 2>&1 || { printf 'gpurun: %s: command not found in the container (PATH=%s)\\n' \"$1\" \"$PATH\" >&2; exit 127; } ;; esac\n",
        );
        s.push_str("exec \"$@\"\n");
        s
    }
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
        let scripts = [
            "/.singularity.d/env/10-docker2singularity.sh".into(),
            "/.singularity.d/env/90-environment.sh".into(),
        ];
        let w = Wrapper {
            scripts: &scripts,
            host: vec![("LANG".into(), "C.UTF-8".into())],
            forced: vec![("FOO".into(), "it's $HOME".into())],
            prepend_path: Some("/pre".into()),
            append_path: None,
            appends: vec![("PATH".into(), "/.gpurun/bin".into())],
        };
        let program = w.program();
        let lines: Vec<&str> = program.lines().collect();
        assert_eq!(lines[0], "unset LANG");
        assert_eq!(lines[1], ". '/.singularity.d/env/10-docker2singularity.sh'");
        assert_eq!(lines[2], ". '/.singularity.d/env/90-environment.sh'");
        assert_eq!(lines[3], "[ -n \"${LANG+x}\" ] || export LANG='C.UTF-8'");
        assert_eq!(lines[4], "export FOO='it'\\''s $HOME'");
        assert_eq!(lines[5], "export PATH='/pre'\"${PATH:+:$PATH}\"; unset PREPEND_PATH");
        assert!(lines[6].starts_with("case \":${PATH}:\" in *:'/.gpurun/bin':*)"));
        assert!(lines[7].starts_with("case $1 in */*) ;; *) command -v \"$1\""));
        assert_eq!(lines[8], "exec \"$@\"");
    }

    #[test]
    fn the_wrapper_runs_as_apptainer_orders_it() {
        let dir = std::env::temp_dir().join(format!("gpurun-wrapper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("10.sh");
        std::fs::write(&script, "export FROM_IMAGE=image\nexport KEEP=\"${KEEP:-image}\"\n").unwrap();
        let scripts = [script.display().to_string()];
        let w = Wrapper {
            scripts: &scripts,
            host: vec![("KEEP".into(), "host".into()), ("HOST_ONLY".into(), "h".into())],
            forced: vec![("FORCED".into(), "f".into())],
            ..Wrapper::default()
        };
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &w.program(), "gpurun", "sh", "-c", "echo $FROM_IMAGE $KEEP $HOST_ONLY $FORCED"])
            .env("KEEP", "host")
            .env("HOST_ONLY", "h")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "image image h f", "{out:?}");
        let missing = std::process::Command::new("/bin/sh")
            .args(["-c", &w.program(), "gpurun", "no-such-cmd"])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(missing.status.code(), Some(127), "{missing:?}");
        assert!(
            String::from_utf8_lossy(&missing.stderr)
                .starts_with("gpurun: no-such-cmd: command not found in the container")
        );
    }
}
