//! Writes oomguard's man pages and shell completions into DIR (for packaging; not shipped):
//! `cargo run --release --example assets -- target/assets`.
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: assets DIR");
        return ExitCode::from(2);
    };
    let dir = std::path::PathBuf::from(dir);
    match oomguard::cli::assets::write_all(&dir) {
        Ok(()) => {
            println!("wrote man pages and completions to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => oomguard::cli::report_error(&e),
    }
}
