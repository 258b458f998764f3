use clap::Parser;
fn main() {
    let cli = gpurun::cli::Cli::parse();
    if cli.command.is_some() {
        println!("{cli:#?}");
        return;
    }
    // Minimal wiring for the sandbox branch: IMAGE must be a rootfs directory here.
    let dir = cli.run.image.clone().unwrap_or_default();
    let prepared = gpurun::image::Prepared::from_directory(&dir);
    match gpurun::run::execute(&cli.run, prepared) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            let mut text = format!("gpurun: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            eprintln!("{text}");
            if let Some(hint) = err.hint() {
                eprintln!("hint: {hint}");
            }
            std::process::exit(125);
        }
    }
}
