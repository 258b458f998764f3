//! The checked-in man pages (`man/`) and shell completions (`completions/`) must be what
//! `gpurun-gen-docs` makes from the current clap definitions: regenerate into a temporary
//! directory and compare, both ways (a stale, missing or extra file fails).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use support::{TempDir, describe, output};

const UPDATE: &str = "cargo run --bin gpurun-gen-docs -- .";

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
    let checked_in = files(Path::new(env!("CARGO_MANIFEST_DIR")));
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
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions/gpurun.bash");
    let probe = format!(
        "source {}; COMP_WORDS=(gpurun ins); COMP_CWORD=1; COMP_LINE='gpurun ins'; COMP_POINT=10; \
         _gpurun gpurun ins gpurun; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = output(Command::new("bash").arg("-c").arg(probe));
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "inspect"), "{}", describe(&out));
}
