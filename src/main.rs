//! The `keygate` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    keygate::cli::main()
}
