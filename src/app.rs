//! The one entry the binary calls: configuration onto the parsed command line, then the command.
//! The run pipeline's order lives here and nowhere else: validate the request (nothing forks,
//! nothing of the image is read), open the cache, prepare the image, execute. Every failure
//! becomes one [`Error`], which `main` prints once, with its hint.

use std::io::Write;

use crate::cache::{self, Cache, CacheError};
use crate::cli::{Cli, Command};
use crate::commands::{self, CommandError};
use crate::config::{self, ConfigError, Settings};
use crate::gpu::{self, HostPaths};
use crate::host::ProcessEnv;
use crate::image::ImageArg;
use crate::image::apply::Limits;
use crate::image::source::registry;
use crate::prepare::{self, PrepareError, Stage};
use crate::run::{self, RunError};
use crate::ui::Ui;

/// Why gpurun failed (it exits 125 for all of these).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("no IMAGE given")]
    NoImage,
    #[error("writing to standard output")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// How to fix it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => e.hint(),
            Error::Cache(e) => e.hint(),
            Error::Command(e) => e.hint(),
            Error::Prepare(e) => e.hint(),
            Error::Run(e) => e.hint(),
            Error::NoImage => {
                Some("usage: gpurun [OPTIONS] IMAGE [COMMAND [ARG...]]; see gpurun --help".into())
            }
            Error::Output(_) => None,
        }
    }
}

/// Runs the parsed command line `cli` in the process environment `env` (taken once, at start).
/// Returns the status to exit with.
pub fn main(mut cli: Cli, env: &ProcessEnv) -> Result<u8, Error> {
    let ui = Ui { quiet: cli.global.quiet, verbose: cli.global.verbose };
    // Configuration files and `GPURUN_*` variables fill what the command line left unset.
    if env.is_not_utf8("GPURUN_CACHE_DIR") {
        return Err(ConfigError::Env {
            name: "GPURUN_CACHE_DIR".into(),
            value: "(not UTF-8)".into(),
            reason: "gpurun's cache path must be UTF-8".into(),
        }
        .into());
    }
    let vars = config::expansion_env(env);
    let settings = config::load(&vars)?;
    config::apply(&mut cli, &settings, &vars)?;
    match &cli.command {
        Some(Command::Inspect(a)) => print(commands::inspect(a, &net(&settings, env))?),
        Some(Command::Unpack(a)) => {
            let (cache, net) = (open_cache(&cli, env)?, net(&settings, env));
            print(commands::unpack(a, &stage(&cache, &net, &cli, env, &ui))?)
        }
        Some(Command::Pull(a)) => {
            let (cache, net) = (open_cache(&cli, env)?, net(&settings, env));
            print(commands::pull(a, &stage(&cache, &net, &cli, env, &ui))?)
        }
        Some(Command::Login(a)) => print(commands::login(a, &net(&settings, env))?),
        Some(Command::Logout(a)) => print(commands::logout(a, env)?),
        Some(Command::Images(a)) => print(commands::images(a, &open_cache(&cli, env)?)?),
        Some(Command::Rm(a)) => print(commands::rm(a, &open_cache(&cli, env)?)?),
        Some(Command::Prune(a)) => print(commands::prune(a, &open_cache(&cli, env)?, &ui)?),
        Some(Command::Gpus(a)) => gpus(a.json),
        Some(Command::Doctor(a)) => {
            let checks = gpu::doctor::run(&HostPaths::default(), env, a.rocm, a.nv);
            let (text, failed) = gpu::doctor::render(&checks);
            print(text)?;
            // 1, like a failed check in other doctors; 125 stays reserved for gpurun's own errors.
            Ok(u8::from(failed))
        }
        // `cli::parse` has made exec/run/shell run mode already.
        Some(Command::Exec(_) | Command::Run(_) | Command::Shell(_)) | None => {
            run_image(&cli, &net(&settings, env), env, &ui)
        }
    }
}

/// The run pipeline.
fn run_image(cli: &Cli, net: &registry::Options, env: &ProcessEnv, ui: &Ui) -> Result<u8, Error> {
    let image =
        ImageArg::classify(cli.run.image.as_deref().ok_or(Error::NoImage)?).map_err(PrepareError::from)?;
    // Validation first: a typo in --env or a missing bind source must not cost an unpack.
    let (request, host) = run::validate(&cli.run, env)?;
    let cache = open_cache(cli, env)?;
    let sel = commands::selection(&cli.run.select);
    let prepared = prepare::prepare(&image, &sel, &stage(&cache, net, cli, env, ui))?;
    let secret = request.join.key.as_ref().and_then(|_| match cache.join_secret() {
        Ok(secret) => Some(secret),
        Err(e) => {
            let path = cache.root.join("join-secret");
            ui.warn(&format!(
                "{}: {e}; the ranks meet on a socket name other users could guess",
                path.display()
            ));
            None
        }
    });
    let code = run::execute(&request, &host, &cache.mount_dir(), secret, prepared, ui)?;
    // Exit statuses are 8 bits; the workload's code already is one.
    Ok((code & 0xff) as u8)
}

/// How to reach registries: the configuration's insecure registries and the environment.
fn net(settings: &Settings, env: &ProcessEnv) -> registry::Options {
    registry::Options {
        insecure: settings.insecure_registries.clone().unwrap_or_default(),
        mirrors: settings.registry_mirrors.clone().unwrap_or_default(),
        downloads: settings.registry_downloads.unwrap_or(4),
        blob_store: settings.registry_store.unwrap_or(true),
        env: env.clone(),
    }
}

fn stage<'a>(
    cache: &'a Cache,
    net: &'a registry::Options,
    cli: &Cli,
    env: &ProcessEnv,
    ui: &'a Ui,
) -> Stage<'a> {
    Stage { cache, limits: Limits::from_env(env), net, pull: cli.run.select.pull.unwrap_or_default(), ui }
}

fn open_cache(cli: &Cli, env: &ProcessEnv) -> Result<Cache, CacheError> {
    Cache::open(cache::default_location(cli.global.cache_dir.as_deref(), env)?)
}

fn gpus(json: bool) -> Result<u8, Error> {
    let rows = gpu::list::rows(&HostPaths::default());
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Error::Output(e.into()))?;
        print(text + "\n")
    } else {
        print(gpu::list::render_table(&rows))
    }
}

fn print(text: String) -> Result<u8, Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`gpurun images | head`) is not an error worth a message.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Output(e)),
        _ => Ok(0),
    }
}
