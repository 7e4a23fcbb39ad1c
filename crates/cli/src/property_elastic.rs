//! `autopipe property elastic` (being written).

use anyhow::{bail, Result};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct ElasticArgs {}

pub fn run(_args: ElasticArgs) -> Result<ExitCode> {
    bail!("autopipe property elastic is not built yet")
}
