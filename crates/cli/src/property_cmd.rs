//! `autopipe property elastic|diffusion|hull`: each subcommand's arguments and body live
//! in its own module (`property_elastic.rs`, `property_diffusion.rs`, `property_hull.rs`).

use anyhow::Result;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum PropertyCommand {
    /// Elastic constants C_ij (6x6, GPa), bulk and shear moduli, Born stability.
    Elastic(crate::property_elastic::ElasticArgs),
    /// Diffusion coefficients from a trajectory, or from MD at several temperatures
    /// (with the Arrhenius fit).
    Diffusion(crate::property_diffusion::DiffusionArgs),
    /// Formation energies, convex hull, energy above hull and decomposition products.
    Hull(crate::property_hull::HullArgs),
}

pub fn run(command: PropertyCommand) -> Result<ExitCode> {
    match command {
        PropertyCommand::Elastic(a) => crate::property_elastic::run(a),
        PropertyCommand::Diffusion(a) => crate::property_diffusion::run(a),
        PropertyCommand::Hull(a) => crate::property_hull::run(a),
    }
}
