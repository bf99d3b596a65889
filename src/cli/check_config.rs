//! `oomguard check-config FILE`: validate a config file; exit 2 naming the line of an error.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;
use crate::sense::Root;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  oomguard check-config /etc/oomguard/oomguard.toml\n\nExit codes: 0 valid, 1 unreadable, 2 invalid (the message names the line)."
)]
pub struct CheckConfigArgs {
    /// The config file to validate.
    pub file: PathBuf,
}

pub fn run(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let users = crate::config::passwd_lookup(Root::default().as_path());
    let cfg = Config::load(Some(&args.file), &users).context("config check failed")?;
    println!("{}: ok ({} rules)", args.file.display(), cfg.rules.len());
    for w in cfg.rules.iter().flat_map(|r| r.warnings()) {
        eprintln!("oomguard: warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}
