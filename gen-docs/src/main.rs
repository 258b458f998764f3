//! Writes gpurun's man pages (`man/gpurun.1`, `man/gpurun-SUBCOMMAND.1`) and shell completions
//! (`completions/gpurun.bash`, `completions/_gpurun` for zsh, `completions/gpurun.fish`) from the
//! clap definitions in `src/cli.rs`, under the directory given (the repository root to update
//! the checked-in copies: `cargo run -p gpurun-gen-docs -- .`). A package of its own, so that
//! gpurun's dependencies include neither clap_mangen, clap_complete nor roff. The output is
//! deterministic (no date), so `gen-docs/tests/docs.rs` can compare it with the checked-in files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use roff::{Roff, bold, roman};

use gpurun::cli::Cli;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!("usage: gpurun-gen-docs DIR   (writes DIR/man/*.1 and DIR/completions/*)");
        return ExitCode::from(2);
    };
    match generate(Path::new(out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gpurun-gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}

fn generate(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut written = Vec::new();

    let mut cmd = Cli::command();
    // Building propagates the global options (-q, -v, --cache-dir) into each subcommand's page.
    cmd.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    extra_sections().to_writer(&mut page)?;
    written.push(write(&man.join("gpurun.1"), &page)?);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        // clap names commands with `&'static str`; this process ends right after.
        let name: &'static str = Box::leak(format!("gpurun-{}", sub.get_name()).into_boxed_str());
        let sub = sub.clone().name(name).bin_name(format!("gpurun {}", sub.get_name()));
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        written.push(write(&man.join(format!("{name}.1")), &page)?);
    }
    for (shell, file) in [(Shell::Bash, "gpurun.bash"), (Shell::Zsh, "_gpurun"), (Shell::Fish, "gpurun.fish")]
    {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "gpurun", &mut text);
        written.push(write(&completions.join(file), &text)?);
    }
    Ok(written)
}

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    Ok(path.to_path_buf())
}

/// ENVIRONMENT and FILES: what clap cannot know about (configuration files, GPURUN_* variables).
fn extra_sections() -> Roff {
    let mut r = Roff::new();
    r.control("SH", ["ENVIRONMENT"]);
    let vars: &[(&str, &str)] = &[
        ("GPURUN_CONFIG", "one configuration file to read instead of the site and user files (empty: none)"),
        ("GPURUN_CACHE_DIR", "the cache directory (as --cache-dir)"),
        ("GPURUN_BIND", "comma-separated default binds, replacing the files' run.binds"),
        (
            "GPURUN_CONTAIN, GPURUN_NO_HOME, GPURUN_CLEANENV, GPURUN_WRITABLE_TMPFS",
            "defaults for the flags of those names (1/true/yes/on or 0/false/no/off), above the files",
        ),
        ("GPURUN_GPUS", "default --gpus for --rocm and --nv when no vendor visibility variable selects"),
        ("GPURUN_PID_NS", "default --pid-ns (auto, private or host), above the files"),
        ("GPURUN_ROOT_MODE", "default --root-mode (auto, overlay or bind), above the files"),
        (
            "GPURUN_NO_GFX_OVERRIDE",
            "1 acts as --no-gfx-override, 0 undoes the files' rocm.gfx_override = false",
        ),
        (
            "OMPI_COMM_WORLD_RANK, PMIX_RANK, PMI_RANK",
            "set by MPI launchers (mpirun, srun --mpi=pmix|pmi2, mpiexec); any of them makes --pid-ns auto \
             choose the host PID namespace",
        ),
        (
            "GPURUN_ROCM_LIBS, GPURUN_ROCM_BINS, GPURUN_NV_LIBS, GPURUN_NV_BINS",
            "extra GPU library soname prefixes and tool names (: or , separated), replacing the files' lists",
        ),
        (
            "GPURUN_MAX_LAYER_BYTES, GPURUN_MAX_IMAGE_BYTES, GPURUN_MAX_ENTRIES",
            "unpack limits: uncompressed bytes per layer and per image, entries per image",
        ),
        ("GPURUN_LOG", "a tracing filter for debug output (e.g. gpurun=debug)"),
    ];
    for (name, text) in vars {
        r.control("TP", []).text([bold(*name)]).text([roman(*text)]);
    }
    r.control("SH", ["FILES"]);
    let files: &[(&str, &str)] = &[
        ("/etc/gpurun/gpurun.toml", "the site configuration file"),
        (
            "$XDG_CONFIG_HOME/gpurun/config.toml, ~/.config/gpurun/config.toml",
            "the user configuration file; it overrides the site file key by key",
        ),
        ("$XDG_CACHE_HOME/gpurun, ~/.cache/gpurun", "the default cache directory"),
    ];
    for (name, text) in files {
        r.control("TP", []).text([bold(*name)]).text([roman(*text)]);
    }
    r.control("PP", []).text([roman(
        "Precedence: command-line flags, then GPURUN_* variables, then the user file, then the site file. \
         Every key is documented in examples/gpurun.toml.",
    )]);
    r
}
