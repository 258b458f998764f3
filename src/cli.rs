//! Command-line definitions only (clap derive). Parsing into validated requests happens in
//! `request.rs` and the subcommand modules; this file must stay free of behaviour so that the man
//! page and shell completions generated from it describe exactly what the binary accepts.
//! [`parse`] tries a small fast path for the run-mode command line first (`fast.rs`, checked
//! against clap by its tests) and falls back to clap for everything else.

mod fast;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Run a command in a container image with the host's GPUs, as yourself, without a daemon.
#[derive(Debug, Parser)]
#[command(
    name = "gpurun",
    version,
    args_conflicts_with_subcommands = true,
    after_help = "IMAGE is a `docker save` archive, an OCI archive or layout directory, a \
                  docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST] registry reference, or a root \
                  filesystem directory. Exit status: the command's own; 128+N if it died of \
                  signal N; 125 when gpurun itself failed; 126 when the command cannot be \
                  executed; 127 when it is not found in the image."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,
}

/// Options every mode understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print nothing but errors (no progress bar, no warnings).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail on stderr; repeat for debug output.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Cache directory (default: $GPURUN_CACHE_DIR, else the configuration files' `cache.dir`,
    /// else $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun).
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// How to pick one image out of an archive that holds several.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// Image reference inside the archive (a RepoTag such as `busybox:latest`, or an OCI ref name).
    #[arg(long = "ref", value_name = "REF")]
    pub reference: Option<String>,

    /// Platform to select from a multi-platform image, as os/arch[/variant].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,

    /// When a docker:// image is fetched: `missing` (the default: a tag pulled before starts
    /// without any network), `newer` (when the tag names a new digest), `always`, `never`.
    #[arg(long, value_name = "POLICY", value_enum)]
    pub pull: Option<PullPolicy>,
}

/// `--pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull only what is not cached.
    #[default]
    Missing,
    /// Ask the registry for the tag's digest; pull when it changed.
    Newer,
    /// Fetch the manifest every time (layers only when not cached).
    Always,
    /// Never contact the registry; fail when the image is not cached.
    Never,
}

/// The default mode: run a command in an image.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,

    /// Bind the host's AMD GPUs (/dev/kfd, render nodes) and ROCm userspace.
    #[arg(long)]
    pub rocm: bool,

    /// Bind the host's NVIDIA GPUs and driver userspace.
    #[arg(long)]
    pub nv: bool,

    /// GPUs to expose: `all`, or a comma-separated list of indexes, PCI addresses or render nodes.
    #[arg(long, value_name = "all|LIST")]
    pub gpus: Option<String>,

    /// With --rocm, never set HSA_OVERRIDE_GFX_VERSION for a GPU whose gfx target the image has no
    /// code for (by default it runs as the nearest target of its family the image has).
    #[arg(long)]
    pub no_gfx_override: bool,

    /// CDI device to add (vendor.com/class=name); repeatable.
    #[arg(long = "device", value_name = "CDI-NAME")]
    pub devices: Vec<String>,

    /// Pass the arguments after IMAGE to the image's ENTRYPOINT in place of its CMD.
    #[arg(long)]
    pub run: bool,

    /// Working directory inside the container.
    #[arg(long, value_name = "DIR")]
    pub pwd: Option<PathBuf>,

    /// Map yourself to root inside the container (with subordinate ids when /etc/subuid allows).
    #[arg(long, short = 'f')]
    pub fakeroot: bool,

    /// Bind mount SRC[:DST[:ro|rw]]; repeatable and comma-separated.
    #[arg(short = 'B', long = "bind", value_name = "SRC[:DST[:ro|rw]]", value_delimiter = ',')]
    pub binds: Vec<String>,

    /// Do not bind $HOME, the current directory or /tmp from the host (empty tmpfs for $HOME and /tmp).
    #[arg(long, short = 'c')]
    pub contain: bool,

    /// Do not bind $HOME.
    #[arg(long)]
    pub no_home: bool,

    /// Home directory: bind SRC at DST (default: at SRC) and make it $HOME, also with --contain
    /// (Apptainer's --home).
    #[arg(long, short = 'H', value_name = "SRC[:DST]")]
    pub home: Option<String>,

    /// Apptainer's --containall: --contain, --cleanenv and a private PID namespace.
    #[arg(long, short = 'C')]
    pub containall: bool,

    /// Make the root filesystem writable through a tmpfs overlay whose changes vanish at exit.
    #[arg(long)]
    pub writable_tmpfs: bool,

    /// Set NAME=VALUE inside the container; repeatable and comma-separated (`--env A=1,B=2`; a
    /// piece without `=` continues the previous value: `--env LIST=a,b`).
    #[arg(long = "env", value_name = "NAME=VALUE[,...]")]
    pub env: Vec<String>,

    /// Do not pass these host variables into the container (`NAME`, or `PREFIX*`); repeatable and
    /// comma-separated.
    #[arg(long = "no-env", value_name = "NAME[,NAME...]", value_delimiter = ',')]
    pub no_env: Vec<String>,

    /// Read NAME=VALUE lines from FILE; repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,

    /// Pass nothing from the host environment but TERM and the proxy variables.
    #[arg(long, short = 'e')]
    pub cleanenv: bool,

    /// PID namespace: `private` (an init is PID 1), `host` (no init: gpurun execs the command in
    /// place, as it would run outside a container), or `auto` (the default): `host` when gpurun is
    /// started as an MPI rank (OMPI_COMM_WORLD_RANK, PMIX_RANK or PMI_RANK is set), else `private`.
    #[arg(long = "pid-ns", value_name = "MODE", value_enum)]
    pub pid_ns: Option<PidNsMode>,

    /// Share one container (user and mount namespaces) with the other runs on this node that
    /// give the same KEY: the first creates it, the others enter it, so MPI's single-copy
    /// transfers work between them. Ranks of `mpirun` and Slurm tasks in the host PID namespace
    /// join by themselves (keyed on the launcher's job, step and node); implies `--pid-ns host`.
    #[arg(long = "join", value_name = "KEY", conflicts_with = "no_join")]
    pub join: Option<String>,

    /// How many runs join on this node, this one included (default: the launcher's count of
    /// ranks on this node, where it says; else the first run serves joins until none came for
    /// 30 s).
    #[arg(long = "join-count", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub join_count: Option<u32>,

    /// Give this run a container of its own even where ranks would join by themselves.
    #[arg(long = "no-join", conflicts_with = "join_count")]
    pub no_join: bool,

    /// How the container root is made: `overlay` (overlayfs over the image, the default where
    /// the kernel allows it in a user namespace: Linux 5.11), `bind` (a tmpfs of read-only binds
    /// of the image's directories: older kernels, or a cache on a filesystem overlayfs refuses as
    /// a lower layer), or `auto` (the default: `bind` only where overlay cannot work).
    #[arg(long = "root-mode", value_name = "MODE", value_enum)]
    pub root_mode: Option<RootMode>,

    /// Apptainer's --pid: the same as --pid-ns private.
    #[arg(long = "pid", short = 'p', conflicts_with = "pid_ns")]
    pub pid: bool,

    /// Apptainer's --userns: accepted; gpurun always runs in a user namespace unless started by root.
    #[arg(long, short = 'u')]
    pub userns: bool,

    /// The shell of `gpurun shell` (default: $APPTAINER_SHELL, $SINGULARITY_SHELL, else /bin/sh).
    #[arg(long, short = 's', value_name = "PATH")]
    pub shell: Option<String>,

    /// Apptainer options gpurun does not have: refused with what to write instead.
    #[command(flatten)]
    pub foreign: ForeignArgs,

    /// Print the launch plan as JSON instead of running it.
    #[arg(long)]
    pub dry_run: bool,

    /// The image: a `docker save` or OCI archive, an OCI layout directory, docker://REF, a SIF or
    /// SquashFS file, or a rootfs directory.
    #[arg(value_name = "IMAGE")]
    pub image: Option<PathBuf>,

    /// Command and arguments (default: the image's ENTRYPOINT and CMD). Everything after IMAGE
    /// belongs to it, options included.
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,

    /// Extra GPU library and tool lists from the configuration files (not a command-line option).
    #[arg(skip)]
    pub gpu_lists: crate::gpu::edits::ListExtensions,

    /// Which verb chose run mode (`exec`, `run`, `shell`, or none for `gpurun IMAGE`).
    #[arg(skip)]
    pub verb: Option<Verb>,
}

/// Apptainer's verbs, which gpurun accepts beside its own `gpurun IMAGE COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Exec,
    Run,
    Shell,
}

/// Apptainer options that have no gpurun equivalent. Hidden: they exist only so that an
/// Apptainer user's command line fails with a message saying what to write instead, never with
/// a bare "unexpected argument" (see `request::foreign_option`).
#[derive(Debug, Clone, Default, Args)]
pub struct ForeignArgs {
    #[arg(long, hide = true)]
    pub nvccli: bool,
    #[arg(long, short = 'w', hide = true)]
    pub writable: bool,
    #[arg(long, short = 'o', hide = true, value_name = "PATH")]
    pub overlay: Vec<String>,
    #[arg(long, short = 'n', hide = true)]
    pub net: bool,
    #[arg(long, short = 'i', hide = true)]
    pub ipc: bool,
    #[arg(long, short = 'W', hide = true, value_name = "DIR")]
    pub workdir: Option<String>,
    #[arg(long, hide = true, value_name = "NAME")]
    pub hostname: Option<String>,
    #[arg(long, hide = true, value_name = "SPEC")]
    pub mount: Vec<String>,
}

/// `--pid-ns`, the `[run] pid_ns` key and `GPURUN_PID_NS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PidNsMode {
    /// `host` for an MPI rank, `private` otherwise.
    Auto,
    /// A new PID namespace with gpurun's init as PID 1.
    Private,
    /// The host's PID namespace; gpurun execs the command in place.
    Host,
}

/// `--root-mode`, the `[run] root_mode` key and `GPURUN_ROOT_MODE`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RootMode {
    /// `overlay` where the kernel allows it (as root; in a user namespace from Linux 5.11, or on an
    /// older kernel that says so when asked once per run), else `bind`.
    #[default]
    Auto,
    /// overlayfs with the image as its read-only lower layer.
    Overlay,
    /// A tmpfs of read-only binds of the image's directories.
    Bind,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apptainer's `exec`: run COMMAND in IMAGE (the same as `gpurun [OPTIONS] IMAGE COMMAND`).
    Exec(RunArgs),
    /// Apptainer's `run`: run the image's ENTRYPOINT, with ARGS in place of its CMD (`--run`).
    Run(RunArgs),
    /// Apptainer's `shell`: an interactive shell in IMAGE (--shell, $APPTAINER_SHELL, or /bin/sh);
    /// arguments after IMAGE go to the shell.
    Shell(RunArgs),
    /// Show an image's configuration and layers without unpacking it.
    Inspect(InspectArgs),
    /// Unpack an image into the cache (if needed) and print its rootfs directory.
    Unpack(UnpackArgs),
    /// Pull a docker:// image into the cache and print its id.
    Pull(PullArgs),
    /// Store credentials for a registry where podman and skopeo read them.
    Login(LoginArgs),
    /// Remove the stored credentials for a registry.
    Logout(LogoutArgs),
    /// List cached images with their size and source.
    #[command(alias = "ls")]
    Images(ImagesArgs),
    /// Remove cached images by id (or id prefix) or by source archive.
    Rm(RmArgs),
    /// Remove cached images whose source archive changed or vanished, and leftovers of killed unpacks.
    Prune(PruneArgs),
    /// List the host's GPUs: index, vendor, model, PCI address, kind, nodes, gfx target, access.
    Gpus(GpusArgs),
    /// Check what GPU runs need (user namespaces, drivers, device access, libraries) and say how to fix it.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct GpusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check only what --rocm needs.
    #[arg(long)]
    pub rocm: bool,
    /// Check only what --nv needs.
    #[arg(long)]
    pub nv: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The image archive or layout directory, or docker://REF.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// The image archive or layout directory, or docker://REF.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Write the image to FILE as an OCI archive (which every gpurun command, skopeo and podman
    /// accept) instead of the cache: pull once onto a shared filesystem, run it on every node.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The image, `[docker://][HOST[:PORT]/]NAME[:TAG][@DIGEST]`.
    #[arg(value_name = "REF")]
    pub image: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name (asked for when missing and standard input is a terminal).
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password from standard input (otherwise it is asked for, without echo).
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry, `HOST[:PORT]` (`docker.io` for Docker Hub).
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry, `HOST[:PORT]`.
    #[arg(value_name = "REGISTRY")]
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Image ids (a unique prefix is enough) or source archive paths.
    #[arg(value_name = "ID|IMAGE", required = true)]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every cached image that no running container uses.
    #[arg(long)]
    pub all: bool,
}

/// The command line of this process, parsed: by the fast path when it can, else by clap (which
/// exits with its usage message on errors, `--help` and `--version`).
pub fn parse(args: Vec<OsString>) -> Cli {
    fast::parse(&args).unwrap_or_else(|| into_run_mode(Cli::parse_from(normalize_args(args))))
}

/// `gpurun exec|run|shell [OPTIONS] IMAGE ...` is run mode: their options become `cli.run`, so
/// that configuration, validation and execution see one shape.
fn into_run_mode(mut cli: Cli) -> Cli {
    let (verb, args) = match cli.command.take() {
        Some(Command::Exec(a)) => (Verb::Exec, a),
        Some(Command::Run(a)) => (Verb::Run, a),
        Some(Command::Shell(a)) => (Verb::Shell, a),
        other => {
            cli.command = other;
            return cli;
        }
    };
    cli.run = RunArgs { verb: Some(verb), ..args };
    cli
}

/// Lets global options come before a subcommand (`gpurun -q images`) although run mode has a
/// positional IMAGE: when the first positional token names a subcommand, it is moved to the
/// front; the options before it are global and clap accepts them after it.
///
/// And ends gpurun's options at IMAGE: everything after it is the command line of the
/// workload, options included (`gpurun IMG python -c ...`, `gpurun IMG --help` for the image's
/// own help), as `docker run` and `apptainer exec` do; clap alone would take `-c` or `--help`
/// as gpurun's. A `--` right after IMAGE is still accepted.
pub fn normalize_args(args: Vec<OsString>) -> Vec<OsString> {
    use clap::CommandFactory;
    let is_subcommand_name = |tok: &str| fast::SUBCOMMANDS.contains(&tok);
    // The common case, `gpurun IMAGE ...` or `gpurun SUBCOMMAND ...`, needs no command tree;
    // only build clap's (a measurable part of a warm start) when options come first.
    if !args.get(1).is_some_and(|a| a.to_string_lossy().starts_with('-')) {
        return match args.get(1).map(|a| a.to_string_lossy().into_owned()) {
            Some(first) if VERBS.contains(&first.as_str()) => end_verb_options(args, &Cli::command()),
            Some(first) if !is_subcommand_name(&first) => end_options_after(args, 1),
            _ => args,
        };
    }
    let cmd = Cli::command();
    let is_subcommand = |tok: &str| {
        cmd.get_subcommands().any(|s| s.get_name() == tok || s.get_all_aliases().any(|a| a == tok))
    };
    let i = skip_options(&args, 1, &cmd);
    let first_positional = args.get(i).map(|t| t.to_string_lossy().into_owned());
    match first_positional {
        Some(tok) if i > 1 && (is_subcommand(&tok) || tok == "help") => {
            let mut out = args.clone();
            let sub = out.remove(i);
            out.insert(1, sub);
            if VERBS.contains(&tok.as_str()) { end_verb_options(out, &cmd) } else { out }
        }
        Some(tok) if tok != "--" => end_options_after(args, i),
        _ => args,
    }
}

/// Apptainer's verbs, whose options also end at IMAGE.
const VERBS: [&str; 3] = ["exec", "run", "shell"];

/// `gpurun VERB [OPTIONS] IMAGE ...` (the verb at position 1): `--` after IMAGE.
fn end_verb_options(args: Vec<OsString>, cmd: &clap::Command) -> Vec<OsString> {
    let image = skip_options(&args, 2, cmd);
    match args.get(image) {
        Some(tok) if tok != "--" => end_options_after(args, image),
        _ => args,
    }
}

/// The index of the first token from `start` on that is not an option or an option's value.
fn skip_options(args: &[OsString], start: usize, cmd: &clap::Command) -> usize {
    let takes_value = |tok: &str| {
        cmd.get_arguments().any(|a| {
            a.get_action().takes_values()
                && (a.get_long().is_some_and(|l| tok == format!("--{l}"))
                    || a.get_short().is_some_and(|s| tok == format!("-{s}")))
        })
    };
    let mut i = start;
    while i < args.len() {
        let tok = args[i].to_string_lossy();
        if tok == "--" || !tok.starts_with('-') {
            break;
        }
        i += if tok.starts_with("--") {
            if !tok.contains('=') && takes_value(&tok) { 2 } else { 1 }
        } else {
            1 + usize::from(bundle_wants_next(&tok, |c| takes_value(&format!("-{c}"))))
        };
    }
    i
}

/// Whether a short-option token (`-B`, `-cB`, `-cB/a:/b`) leaves its value to the next token:
/// the first option in it that takes a value takes the rest of the token, or the next one
/// when it is the last character.
fn bundle_wants_next(tok: &str, takes_value: impl Fn(char) -> bool) -> bool {
    let flags: Vec<char> = tok.chars().skip(1).collect();
    match flags.iter().position(|&c| takes_value(c)) {
        Some(k) => k + 1 == flags.len(),
        None => false,
    }
}

/// Inserts `--` after IMAGE (at `image`) when a command follows that does not start with one.
fn end_options_after(mut args: Vec<OsString>, image: usize) -> Vec<OsString> {
    if args.get(image + 1).is_some_and(|next| next != "--") {
        args.insert(image + 1, OsString::from("--"));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Vec<String> {
        let args = std::iter::once("gpurun").chain(s.split_whitespace()).map(OsString::from).collect();
        normalize_args(args).into_iter().skip(1).map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn options_end_at_the_image() {
        assert_eq!(norm("img.tar -c x"), ["img.tar", "--", "-c", "x"]);
        assert_eq!(norm("--nv img.tar --help"), ["--nv", "img.tar", "--", "--help"]);
        assert_eq!(norm("-B /a:/b img.tar -v"), ["-B", "/a:/b", "img.tar", "--", "-v"]);
        assert_eq!(norm("img.tar -- -v"), ["img.tar", "--", "-v"]);
        assert_eq!(norm("img.tar"), ["img.tar"]);
        assert_eq!(norm("images --json"), ["images", "--json"]);
        assert_eq!(norm("--help"), ["--help"]);
        // Bundled short options: the value-taking one takes the next token when it is last.
        assert_eq!(norm("-cB /a:/b --nv img cmd"), ["-cB", "/a:/b", "--nv", "img", "--", "cmd"]);
        assert_eq!(norm("-cB/a:/b img cmd"), ["-cB/a:/b", "img", "--", "cmd"]);
        // Apptainer's verbs: their options end at IMAGE too.
        assert_eq!(
            norm("exec --nv -B /a img python -c x"),
            ["exec", "--nv", "-B", "/a", "img", "--", "python", "-c", "x"]
        );
        assert_eq!(norm("-q shell -c img -l"), ["shell", "-q", "-c", "img", "--", "-l"]);
        assert_eq!(norm("run img"), ["run", "img"]);
        assert_eq!(norm("-qc img cmd"), ["-qc", "img", "--", "cmd"]);
        let cli = Cli::try_parse_from(normalize_args(
            ["gpurun", "img.tar", "sh", "-c", "--contain"].map(OsString::from).to_vec(),
        ))
        .unwrap();
        assert!(!cli.run.contain);
        assert_eq!(cli.run.command, ["sh", "-c", "--contain"]);
        let cli = Cli::try_parse_from(normalize_args(
            ["gpurun", "img.tar", "-c", "x"].map(OsString::from).to_vec(),
        ))
        .unwrap();
        assert!(!cli.run.contain, "-c after IMAGE is the workload's");
        assert_eq!(cli.run.command, ["-c", "x"]);
    }

    #[test]
    fn subcommands_after_global_options() {
        assert_eq!(norm("-q images"), ["images", "-q"]);
        assert_eq!(norm("--cache-dir /x ls --json"), ["ls", "--cache-dir", "/x", "--json"]);
        assert_eq!(norm("--cache-dir=/x prune"), ["prune", "--cache-dir=/x"]);
    }

    #[test]
    fn run_mode_commands_follow_a_double_dash() {
        assert_eq!(norm("img.tar ls -la"), ["img.tar", "--", "ls", "-la"]);
        assert_eq!(norm("-B /a:/b img.tar images"), ["-B", "/a:/b", "img.tar", "--", "images"]);
        assert_eq!(norm("--env A=b img.tar"), ["--env", "A=b", "img.tar"]);
        assert_eq!(norm("images"), ["images"]);
    }

    #[test]
    fn parses_after_normalizing() {
        let args = normalize_args(["gpurun", "-q", "images", "--json"].map(OsString::from).to_vec());
        let cli = Cli::try_parse_from(args).unwrap();
        assert!(cli.global.quiet);
        assert!(matches!(cli.command, Some(Command::Images(ImagesArgs { json: true }))));
    }
}
