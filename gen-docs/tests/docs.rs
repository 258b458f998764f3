//! The checked-in man pages (`man/`) and shell completions (`completions/`) must be what
//! `gpurun-gen-docs` makes from the current clap definitions: regenerate into a temporary
//! directory and compare, both ways (a stale, missing or extra file fails).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const UPDATE: &str = "cargo run -p gpurun-gen-docs -- .";

/// The repository root (this package lives in its `gen-docs/`).
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("gen-docs/ has a parent")
}

/// A fresh directory under the temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!("gpurun-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("could not start {cmd:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for sub in ["man", "completions"] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        for e in entries {
            let e = e.unwrap();
            out.insert(
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let tmp = TempDir::new("docs");
    let out = output(Command::new(env!("CARGO_BIN_EXE_gpurun-gen-docs")).arg(tmp.path()));
    assert!(out.status.success(), "{}", describe(&out));
    let fresh = files(tmp.path());
    let checked_in = files(repo());
    for name in ["man/gpurun.1", "man/gpurun-inspect.1", "completions/gpurun.bash", "completions/_gpurun"] {
        assert!(fresh.contains_key(name), "the generator no longer writes {name}");
    }
    let mut stale = Vec::new();
    for name in fresh.keys().chain(checked_in.keys()) {
        if fresh.get(name) != checked_in.get(name) && !stale.contains(name) {
            stale.push(name.clone());
        }
    }
    assert!(stale.is_empty(), "out of date: {stale:?}; run `{UPDATE}` and commit man/ and completions/");
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let script = repo().join("completions/gpurun.bash");
    let probe = format!(
        "source {}; COMP_WORDS=(gpurun ins); COMP_CWORD=1; COMP_LINE='gpurun ins'; COMP_POINT=10; \
         _gpurun gpurun ins gpurun; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = output(Command::new("bash").arg("-c").arg(probe));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "inspect"), "{}", describe(&out));
}
