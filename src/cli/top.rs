//! `oomguard top`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct TopArgs {}

pub fn run(_args: TopArgs) -> anyhow::Result<ExitCode> {
    super::not_built("top")
}
