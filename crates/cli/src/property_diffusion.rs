//! `autopipe property diffusion` (being written).

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct DiffusionArgs {}

pub fn run(_args: DiffusionArgs) -> Result<ExitCode> {
    bail!("autopipe property diffusion is not built yet")
}
