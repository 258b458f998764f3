//! Command-line definitions only (clap derive). Parsing into validated requests happens in
//! `request.rs` and the subcommand modules; this file must stay free of behaviour so that the man
//! page and shell completions generated from it describe exactly what the binary accepts.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// Run a command in a container image with the host's GPUs, as yourself, without a daemon.
#[derive(Debug, Parser)]
#[command(
    name = "gpurun",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_precedence_over_arg = false,
    after_help = "IMAGE is a `docker save` archive, an OCI archive or layout directory, or a root \
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

    /// Cache directory (default: $XDG_CACHE_HOME/gpurun, else ~/.cache/gpurun).
    #[arg(long, global = true, env = "GPURUN_CACHE_DIR", value_name = "DIR")]
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
    #[arg(long)]
    pub fakeroot: bool,

    /// Bind mount SRC[:DST[:ro|rw]]; repeatable and comma-separated.
    #[arg(short = 'B', long = "bind", value_name = "SRC[:DST[:ro|rw]]", value_delimiter = ',')]
    pub binds: Vec<String>,

    /// Do not bind $HOME, the current directory or /tmp from the host.
    #[arg(long, short = 'c')]
    pub contain: bool,

    /// Do not bind $HOME.
    #[arg(long)]
    pub no_home: bool,

    /// Make the root filesystem writable through a tmpfs overlay whose changes vanish at exit.
    #[arg(long)]
    pub writable_tmpfs: bool,

    /// Set NAME=VALUE inside the container; repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,

    /// Read NAME=VALUE lines from FILE; repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,

    /// Pass nothing from the host environment but TERM and the proxy variables.
    #[arg(long, short = 'C')]
    pub cleanenv: bool,

    /// Print the launch plan as JSON instead of running it.
    #[arg(long)]
    pub dry_run: bool,

    /// The image: a `docker save` or OCI archive, an OCI layout directory, or a rootfs directory.
    #[arg(value_name = "IMAGE")]
    pub image: Option<PathBuf>,

    /// Command and arguments (default: the image's ENTRYPOINT and CMD).
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show an image's configuration and layers without unpacking it.
    Inspect(InspectArgs),
    /// Unpack an image into the cache (if needed) and print its rootfs directory.
    Unpack(UnpackArgs),
    /// List cached images with their size and source.
    #[command(alias = "ls")]
    Images(ImagesArgs),
    /// Remove cached images by id (or id prefix) or by source archive.
    Rm(RmArgs),
    /// Remove cached images whose source archive changed or vanished, and leftovers of killed unpacks.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The image archive or layout directory.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// The image archive or layout directory.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
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
