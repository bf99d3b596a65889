//! `oomguard why`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct WhyArgs {}

pub fn run(_args: WhyArgs) -> anyhow::Result<ExitCode> {
    super::not_built("why")
}
