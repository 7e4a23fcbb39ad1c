//! `autopipe property hull` (being written).

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct HullArgs {}

pub fn run(_args: HullArgs) -> Result<ExitCode> {
    bail!("autopipe property hull is not built yet")
}
