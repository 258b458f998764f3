//! The thin binary: take the process environment once, parse, set up logging, call the library,
//! print the error chain once with its hint, and exit with the documented code.

use std::process::ExitCode;

use gpurun::host::ProcessEnv;

/// gpurun's own failures (bad image, cache, sandbox setup), as `docker run` uses it.
const EXIT_GPURUN: u8 = 125;

fn init_logging(verbose: u8, env: &ProcessEnv) {
    // gpurun emits only debug and trace events: without GPURUN_LOG or -vv there is nothing to
    // print, so skip building a subscriber (its filter parsing is measurable on every start).
    let from_env = env.get("GPURUN_LOG");
    if verbose < 2 && from_env.is_none() {
        return;
    }
    let default = match verbose {
        0 | 1 => "warn",
        2 => "gpurun=debug",
        _ => "gpurun=trace",
    };
    let filter = from_env
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

fn main() -> ExitCode {
    let env = ProcessEnv::capture();
    let cli = gpurun::cli::parse(std::env::args_os().collect());
    init_logging(cli.global.verbose, &env);
    match gpurun::app::main(cli, &env) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("gpurun: error: {}", gpurun::error_chain(&e));
            if let Some(hint) = e.hint() {
                eprintln!("gpurun: hint: {hint}");
            }
            ExitCode::from(EXIT_GPURUN)
        }
    }
}
