//! `autopipe property diffusion`: D per species from a trajectory (any extended XYZ,
//! wrapped or not), or from MD at several temperatures with the Arrhenius fit.

use crate::property_calc::{default_bulk, read_structure, with_calculator, CalculatorArgs};
use anyhow::{bail, Context, Result};
use autopipe_atoms::Element;
use autopipe_property::diffusion::{
    diffusion_workflow, fit_diffusion, unwrap_frames, DiffusionMd, FitWindow, SpeciesDiffusion,
};
use clap::Args;
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DiffusionArgs {
    /// A trajectory (extended XYZ; positions wrapped into the cell or not) to analyse.
    #[arg(conflicts_with = "temperatures_k")]
    trajectory: Option<PathBuf>,
    /// Time between two frames of the trajectory, fs.
    #[arg(long)]
    frame_interval_fs: Option<f64>,
    /// Run MD at these temperatures (K) instead, with --emt, --model or --dir.
    #[arg(long, value_delimiter = ',')]
    temperatures_k: Vec<f64>,
    #[command(flatten)]
    calculator: CalculatorArgs,
    /// Starting structure of the MD (last frame of an extended XYZ file). Default: the
    /// first element's own lattice, about 108 atoms, with --vacancies vacancies.
    #[arg(long)]
    structure: Option<PathBuf>,
    /// The element of the default starting structure (default: the model's first).
    #[arg(long)]
    element: Option<String>,
    /// Vacancies in the default starting structure (they carry diffusion in a solid).
    #[arg(long, default_value_t = 1)]
    vacancies: usize,
    #[arg(long, default_value_t = 2.0)]
    timestep_fs: f64,
    /// NPT steps (zero pressure) that set the volume at each temperature.
    #[arg(long, default_value_t = 2000)]
    npt_steps: u64,
    /// NVT steps at that volume before production.
    #[arg(long, default_value_t = 1000)]
    nvt_steps: u64,
    #[arg(long, default_value_t = 10000)]
    production_steps: u64,
    /// Steps between two MSD samples of the production run.
    #[arg(long, default_value_t = 10)]
    sample_every: u64,
    #[arg(long, default_value_t = 0.0)]
    pressure_gpa: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The fitted lags start at this fraction of a block (skips the ballistic start).
    #[arg(long, default_value_t = 0.1)]
    fit_start: f64,
    /// ... and end at this fraction of a block.
    #[arg(long, default_value_t = 0.5)]
    fit_end: f64,
    /// Blocks for the standard error.
    #[arg(long, default_value_t = 5)]
    blocks: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn species_json(list: &[SpeciesDiffusion]) -> Value {
    let mut m = Map::new();
    for s in list {
        m.insert(
            s.element.symbol().to_string(),
            json!({
                "atoms": s.atoms,
                "diffusion_cm2_per_s": s.diffusion_cm2_per_s,
                "stderr_cm2_per_s": s.stderr_cm2_per_s,
                "r2": s.r2,
                "fit_from_fs": s.fit_from_fs,
                "fit_to_fs": s.fit_to_fs,
            }),
        );
    }
    Value::Object(m)
}

fn print_species(prefix: &str, list: &[SpeciesDiffusion]) {
    for s in list {
        println!(
            "{prefix}{} D = {:.4e} ± {} cm²/s ({} atoms, fit {:.0}..{:.0} fs, r² {:.4})",
            s.element,
            s.diffusion_cm2_per_s,
            s.stderr_cm2_per_s.map_or("-".into(), |e| format!("{e:.2e}")),
            s.atoms,
            s.fit_from_fs,
            s.fit_to_fs,
            s.r2
        );
    }
}

pub fn run(a: DiffusionArgs) -> Result<ExitCode> {
    let window = FitWindow { start: a.fit_start, end: a.fit_end, blocks: a.blocks };
    if let Some(path) = &a.trajectory {
        if a.calculator.given() || a.structure.is_some() {
            bail!("a trajectory is analysed as it is: --emt, --model, --dir and --structure are for --temperatures-k");
        }
        let Some(dt) = a.frame_interval_fs else {
            bail!("--frame-interval-fs is needed: the time between two frames of {}", path.display())
        };
        if !(dt.is_finite() && dt > 0.0) {
            bail!("--frame-interval-fs {dt} must be > 0");
        }
        let frames = crate::read_frames(path)?;
        let structures: Vec<_> = frames.into_iter().map(|f| f.structure).collect();
        let source = path.display().to_string();
        let positions = unwrap_frames(&structures).with_context(|| source.clone())?;
        let result = fit_diffusion(&positions, &structures[0].species, dt, &window).with_context(|| source.clone())?;
        if a.json {
            let out = json!({
                "trajectory": source,
                "frames": structures.len(),
                "frame_interval_fs": dt,
                "species": species_json(&result),
            });
            println!("{out}");
        } else {
            print_species("", &result);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.temperatures_k.is_empty() {
        bail!("give a trajectory (TRAJ.xyz --frame-interval-fs DT) or --temperatures-k T1,T2,... with a calculator");
    }
    if let Some(t) = a.temperatures_k.iter().find(|t| !(t.is_finite() && **t > 0.0 && **t <= 20000.0)) {
        bail!("--temperatures-k: {t} K is outside 0 .. 20000 K");
    }
    let md = DiffusionMd {
        timestep_fs: a.timestep_fs,
        npt_steps: a.npt_steps,
        nvt_steps: a.nvt_steps,
        production_steps: a.production_steps,
        sample_every: a.sample_every,
        pressure_gpa: a.pressure_gpa,
        friction_per_fs: 0.01,
        seed: a.seed,
        window,
    };
    let report = with_calculator(&a.calculator, "property:diffusion", |ff, known| {
        let start = match &a.structure {
            Some(p) => read_structure(p)?,
            None => {
                let element = match (&a.element, known.elements()) {
                    (Some(s), _) => s.parse::<Element>().map_err(anyhow::Error::msg).context("--element")?,
                    (None, Some(els)) => els[0],
                    (None, None) => bail!("--emt needs --element X or --structure FILE"),
                };
                let mut s = default_bulk(element, 100)?;
                if a.vacancies >= s.len() {
                    bail!("--vacancies {} leaves no atom of {}", a.vacancies, s.len());
                }
                // Vacancies spread over the cell: every (n/k)th site.
                let step = s.len() / a.vacancies.max(1);
                for k in (0..a.vacancies).rev() {
                    s.positions_a.remove(k * step);
                    s.species.remove(k * step);
                }
                s
            }
        };
        let what = a.structure.as_ref().map_or("the starting structure".into(), |p| p.display().to_string());
        known.check(&start, &what)?;
        eprintln!("diffusion: {} atoms ({}), {:?} K", start.len(), start.formula(), a.temperatures_k);
        let report = diffusion_workflow(ff, &start, &a.temperatures_k, &md, &mut |line| eprintln!("  {line}"))?;
        Ok(report)
    })?;
    if a.json {
        let temperatures: Vec<Value> = report
            .temperatures
            .iter()
            .map(|t| {
                json!({
                    "temperature_k": t.temperature_k,
                    "mean_temperature_k": t.mean_temperature_k,
                    "volume_a3": t.volume_a3,
                    "species": species_json(&t.species),
                })
            })
            .collect();
        let mut arrhenius = Map::new();
        for s in &report.arrhenius {
            arrhenius.insert(s.element.symbol().to_string(), serde_json::to_value(&s.fit)?);
        }
        let out = json!({
            "temperatures": temperatures,
            "arrhenius": arrhenius,
            "max_gamma": report.max_gamma,
            "uncertain": report.uncertain,
        });
        println!("{out}");
    } else {
        for t in &report.temperatures {
            println!("{} K (mean {:.1} K, {:.2} Å³):", t.temperature_k, t.mean_temperature_k, t.volume_a3);
            print_species("  ", &t.species);
        }
        for s in &report.arrhenius {
            let f = &s.fit;
            println!(
                "{} Arrhenius: D0 = {:.4e} ± {:.2e} cm²/s, Ea = {:.4} ± {:.4} eV ({} temperatures)",
                s.element, f.d0_cm2_per_s, f.d0_stderr_cm2_per_s, f.ea_ev, f.ea_stderr_ev, f.points
            );
        }
        println!(
            "max_gamma {} ({} uncertain structures)",
            report.max_gamma.map_or("-".into(), |g| format!("{g:.3}")),
            report.uncertain
        );
    }
    Ok(ExitCode::SUCCESS)
}
