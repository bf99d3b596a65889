//! `oomguard protect`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ProtectArgs {}

pub fn run(_args: ProtectArgs) -> anyhow::Result<ExitCode> {
    super::not_built("protect")
}
