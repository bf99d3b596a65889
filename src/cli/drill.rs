//! `oomguard drill`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DrillArgs {}

pub fn run(_args: DrillArgs) -> anyhow::Result<ExitCode> {
    super::not_built("drill")
}
