//! Runs `report` until `socialgate report` is wired in main.rs:
//! `cargo run --release --example report -- --log FILE --format json`.
//! It only parses the arguments and calls `socialgate::report::run`.

use clap::Parser;

#[derive(Parser)]
#[command(name = "report", about = "socialgate report (stand-alone example)")]
struct Cli {
    #[command(flatten)]
    args: socialgate::report::ReportArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match socialgate::report::run(&cli.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
