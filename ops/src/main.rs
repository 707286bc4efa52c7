//! `ransomeye-ops`: parse arguments, run, exit with a sysexits code. Everything else is in the library.

fn main() -> std::process::ExitCode {
    ransomeye_ops::main_entry()
}
