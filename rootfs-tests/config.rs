//! Configuration files through the built binary: `GPURUN_CONFIG`, the user file under
//! `XDG_CONFIG_HOME`, precedence against `GPURUN_*` variables and flags (seen in the
//! `--dry-run` launch plan, so no namespace is needed), and errors naming the file and line.

mod support;

use std::path::Path;
use std::process::Command;

use support::{TempDir, describe, output};

/// gpurun with no inherited configuration: only what the test sets is read.
fn gpurun(dir: &Path) -> Command {
    let mut cmd = Command::new(support::gpurun_bin());
    cmd.env_remove("GPURUN_CACHE_DIR")
        .env_remove("RUST_LOG")
        .env("XDG_CONFIG_HOME", dir.join("xdg"))
        .env("XDG_CACHE_HOME", dir.join("xdg-cache"));
    for var in ["GPURUN_CONFIG", "GPURUN_CONTAIN", "GPURUN_BIND", "GPURUN_CLEANENV", "GPURUN_NO_HOME"] {
        cmd.env_remove(var);
    }
    for var in support::PID_NS_VARS {
        cmd.env_remove(var);
    }
    cmd
}

fn plan(cmd: &mut Command, root: &Path) -> String {
    let out = output(cmd.arg("--dry-run").arg(root).arg("true"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn user_file_gpurun_config_and_precedence() {
    let tmp = TempDir::new("config");
    let dir = tmp.path();
    let root = dir.join("root");
    for d in ["root/bin", "data", "other", "xdg/gpurun"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let data = dir.join("data").canonicalize().unwrap();
    let other = dir.join("other").canonicalize().unwrap();
    std::fs::write(
        dir.join("xdg/gpurun/config.toml"),
        format!(
            "[run]\nbinds = [\"{}:/data:ro\"]\n[cache]\ndir = \"{}/c-$USER\"\n",
            data.display(),
            dir.display()
        ),
    )
    .unwrap();
    let p = plan(&mut gpurun(dir), &root);
    assert!(p.contains(&format!("\"source\": \"{}\"", data.display())) && p.contains("/newroot/data"), "{p}");
    assert!(
        std::fs::read_dir(dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with("c-"))
    );

    // -B onto the same destination replaces the default bind; GPURUN_BIND replaces the file's.
    let p = plan(gpurun(dir).arg("-B").arg(format!("{}:/data", other.display())), &root);
    assert!(
        !p.contains(&format!("\"source\": \"{}\"", data.display())) && p.contains("/newroot/data"),
        "{p}"
    );
    let p = plan(gpurun(dir).env("GPURUN_BIND", format!("{}:/elsewhere", other.display())), &root);
    assert!(p.contains("/newroot/elsewhere") && !p.contains("/newroot/data"), "{p}");

    // GPURUN_CONFIG replaces the user file; contain there is overridden by GPURUN_CONTAIN=0.
    let cfg = dir.join("explicit.toml");
    std::fs::write(&cfg, "[run]\ncontain = true\n").unwrap();
    let contained = plan(gpurun(dir).env("GPURUN_CONFIG", &cfg), &root);
    assert!(!contained.contains("/newroot/data"), "{contained}");
    let loose = plan(gpurun(dir).env("GPURUN_CONFIG", &cfg).env("GPURUN_CONTAIN", "0"), &root);
    assert_ne!(contained, loose, "GPURUN_CONTAIN=0 must override contain = true");
}

#[test]
fn pid_ns_from_file_variable_and_flag() {
    let tmp = TempDir::new("config-pidns");
    let dir = tmp.path();
    let root = dir.join("root");
    std::fs::create_dir_all(dir.join("root/bin")).unwrap();
    let cfg = dir.join("pid.toml");
    std::fs::write(&cfg, "[run]\npid_ns = \"host\"\n").unwrap();
    let mode = |cmd: &mut Command| {
        let p: serde_json::Value = serde_json::from_str(&plan(cmd, &root)).unwrap();
        p["pid_ns"]["mode"].as_str().unwrap().to_string()
    };
    assert_eq!(mode(&mut gpurun(dir)), "private", "the default outside MPI");
    assert_eq!(mode(gpurun(dir).env("PMI_RANK", "3")), "host", "auto in an MPI rank");
    assert_eq!(mode(gpurun(dir).env("GPURUN_CONFIG", &cfg)), "host", "the file");
    let env_over_file = mode(gpurun(dir).env("GPURUN_CONFIG", &cfg).env("GPURUN_PID_NS", "private"));
    assert_eq!(env_over_file, "private");
    let flag = mode(gpurun(dir).env("GPURUN_PID_NS", "private").arg("--pid-ns=host"));
    assert_eq!(flag, "host", "the flag over the variable");
    let out = output(gpurun(dir).env("GPURUN_PID_NS", "shared").arg("images"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(125) && err.contains("GPURUN_PID_NS"), "{}", describe(&out));
}

#[test]
fn errors_name_the_file_and_line() {
    let tmp = TempDir::new("config-err");
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "# site settings\n[run]\ncontain = true\nwritable_tmfps = true\n").unwrap();
    let out = output(gpurun(tmp.path()).env("GPURUN_CONFIG", &cfg).arg("images"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        err.contains(&format!(
            "configuration file {}, line 4, column 1: unknown field `writable_tmfps`",
            cfg.display()
        )),
        "{err}"
    );
    std::fs::write(&cfg, "[run]\ncleanenv = 1\n").unwrap();
    let out = output(gpurun(tmp.path()).env("GPURUN_CONFIG", &cfg).arg("images"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(125) && err.contains("line 2, column 12"), "{}", describe(&out));
    let out = output(gpurun(tmp.path()).env("GPURUN_CONFIG", tmp.path().join("missing.toml")).arg("images"));
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    let out = output(gpurun(tmp.path()).env("GPURUN_CONTAIN", "perhaps").arg("images"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(125) && err.contains("GPURUN_CONTAIN"), "{}", describe(&out));
}

#[test]
fn example_file_is_accepted_by_the_binary() {
    let tmp = TempDir::new("config-example");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gpurun.toml");
    let out = output(gpurun(tmp.path()).env("GPURUN_CONFIG", example).arg("images"));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}
