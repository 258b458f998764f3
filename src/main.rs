//! The thin binary: parse, set up logging, call the library, print the error chain once with
//! its hint, and exit with the documented code.

use std::io::Write;
use std::process::ExitCode;

use gpurun::cache::Cache;
use gpurun::cli::{Cli, Command};
use gpurun::commands::{self, CommandError};
use gpurun::ui::Ui;

/// gpurun's own failures (bad image, cache, sandbox setup), as `docker run` uses it.
const EXIT_GPURUN: u8 = 125;

fn init_logging(verbose: u8) {
    // gpurun emits only debug and trace events: without GPURUN_LOG or -vv there is nothing to
    // print, so skip building a subscriber (its filter parsing is measurable on every start).
    if verbose < 2 && std::env::var_os("GPURUN_LOG").is_none() {
        return;
    }
    let default = match verbose {
        0 | 1 => "warn",
        2 => "gpurun=debug",
        _ => "gpurun=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GPURUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

fn main() -> ExitCode {
    let mut cli = gpurun::cli::parse(std::env::args_os().collect());
    init_logging(cli.global.verbose);
    let ui = Ui { quiet: cli.global.quiet, verbose: cli.global.verbose };
    match configure(&mut cli).and_then(|()| dispatch(&cli, &ui)) {
        Ok(code) => ExitCode::from(code),
        Err((message, hint)) => {
            eprintln!("gpurun: error: {message}");
            if let Some(h) = hint {
                eprintln!("gpurun: hint: {h}");
            }
            ExitCode::from(EXIT_GPURUN)
        }
    }
}

type Failure = (String, Option<String>);

fn fail(e: CommandError) -> Failure {
    (gpurun::error_chain(&e), e.hint())
}

/// Configuration files and `GPURUN_*` variables fill what the command line left unset.
fn configure(cli: &mut Cli) -> Result<(), Failure> {
    use gpurun::config;
    let env = config::process_env();
    let settings = config::load(&env).map_err(|e| (gpurun::error_chain(&e), e.hint()))?;
    config::apply(cli, &settings, &env).map_err(|e| (gpurun::error_chain(&e), e.hint()))
}

fn open_cache(cli: &Cli) -> Result<Cache, Failure> {
    let root = gpurun::cache::default_location(cli.global.cache_dir.as_deref())
        .map_err(|e| (gpurun::error_chain(&e), e.hint()))?;
    Cache::open(root).map_err(|e| (gpurun::error_chain(&e), e.hint()))
}

fn print(text: String) -> Result<u8, Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`gpurun images | head`) is not an error worth a message.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err((format!("writing to standard output: {e}"), None))
        }
        _ => Ok(0),
    }
}

fn dispatch(cli: &Cli, ui: &Ui) -> Result<u8, Failure> {
    match &cli.command {
        Some(Command::Inspect(a)) => print(commands::inspect(a).map_err(fail)?),
        Some(Command::Unpack(a)) => print(commands::unpack(a, &open_cache(cli)?, ui).map_err(fail)?),
        Some(Command::Images(a)) => print(commands::images(a, &open_cache(cli)?).map_err(fail)?),
        Some(Command::Rm(a)) => print(commands::rm(a, &open_cache(cli)?).map_err(fail)?),
        Some(Command::Prune(a)) => print(commands::prune(a, &open_cache(cli)?, ui).map_err(fail)?),
        Some(Command::Gpus(a)) => gpus(a.json),
        Some(Command::Doctor(a)) => {
            let checks = gpurun::gpu::doctor::run(&gpurun::gpu::HostPaths::default(), a.rocm, a.nv);
            let (text, failed) = gpurun::gpu::doctor::render(&checks);
            print(text)?;
            // 1, like a failed check in other doctors; 125 stays reserved for gpurun's own errors.
            Ok(u8::from(failed))
        }
        // `cli::parse` has made exec/run/shell run mode already.
        Some(Command::Exec(_) | Command::Run(_) | Command::Shell(_)) | None => run(cli, ui),
    }
}

fn gpus(json: bool) -> Result<u8, Failure> {
    let rows = gpurun::gpu::list::rows(&gpurun::gpu::HostPaths::default());
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| (e.to_string(), None))?;
        print(text + "\n")
    } else {
        print(gpurun::gpu::list::render_table(&rows))
    }
}

fn run(cli: &Cli, ui: &Ui) -> Result<u8, Failure> {
    let Some(image) = &cli.run.image else {
        return Err((
            "no IMAGE given".into(),
            Some("usage: gpurun [OPTIONS] IMAGE [COMMAND [ARG...]]; see gpurun --help".into()),
        ));
    };
    // Validation first: a typo in --env or a missing bind source must not cost an unpack.
    let (request, mut host) =
        gpurun::run::validate(&cli.run).map_err(|e| (gpurun::error_chain(&e), e.hint()))?;
    let cache = open_cache(cli)?;
    host.staging = cache.mount_dir();
    let sel = commands::selection(&cli.run.select);
    let prepared = gpurun::image::prepare(image, &sel, &cache, ui).map_err(|e| fail(e.into()))?;
    match gpurun::run::execute(&request, &host, prepared, ui) {
        // Exit statuses are 8 bits; the workload's code already is one.
        Ok(code) => Ok((code & 0xff) as u8),
        Err(e) => Err((gpurun::error_chain(&e), e.hint())),
    }
}
