//! `oomguard events`.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct EventsArgs {}

pub fn run(_args: EventsArgs) -> anyhow::Result<ExitCode> {
    super::not_built("events")
}
