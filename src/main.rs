//! The `socialgate` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    socialgate::cli::main()
}
