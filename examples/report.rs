//! `socialgate report` as a stand-alone program, for embedding the report
//! in other tools: `cargo run --release --example report -- --log FILE
//! --format json` does what `socialgate report --log FILE --format json`
//! does. It only parses the arguments and calls `socialgate::report::run`.

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
