use clap::Parser;
fn main() {
    let cli = gpurun::cli::Cli::parse();
    println!("{cli:#?}");
}
