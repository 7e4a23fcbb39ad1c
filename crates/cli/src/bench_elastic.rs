//! Figures of the elastic constants: the time to C_ij of fcc Cu with a SNAP potential
//! (relaxation of the cell and internal relaxation at each strain included), with the
//! built-in EMT doing the same, and ASE's EMT computing the stresses of the same strained
//! cells (when `python3` has ASE; no line otherwise); and the oracle part of
//! `property elastic --with-oracle`: the cells labelled by EMT as jobs.

use crate::bench::{figure, Size};
use anyhow::{Context, Result};
use autopipe_atoms::Element;
use autopipe_build::{bulk, Lattice};
use autopipe_property::elastic::ElasticSettings;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

const ASE_REFERENCE: &str = include_str!("../../property/tests/ase_reference.py");

pub fn run(size: Size) -> Result<()> {
    let training_cells = if size == Size::Smoke { 8 } else { 40 };
    let frames = crate::bench::emt_labelled_cu(training_cells, 11)?;
    let params = autopipe_workflow::models::default_snap_params(&frames, 8, 4.7);
    let model = autopipe_potential::fit(&frames, params, &Default::default())
        .map_err(|e| anyhow::anyhow!("fitting the bench model: {e}"))?
        .model;
    let cu = bulk(Lattice::Fcc, Element::from_symbol("Cu").expect("Cu"), 3.61);
    let settings = ElasticSettings::default();
    let start = Instant::now();
    let guarded = autopipe_workflow::goals::elastic_with_model(&model, &cu, &settings, 2.0, 0)?;
    figure("elastic_cu_model_s", start.elapsed().as_secs_f64(), "s");
    with_oracle(&guarded)?;
    let start = Instant::now();
    let mut emt = autopipe_workflow::models::EmtForceField(autopipe_engines::emt::Emt::new());
    autopipe_property::elastic::elastic_constants(&mut emt, &cu, &settings)?;
    figure("elastic_cu_emt_s", start.elapsed().as_secs_f64(), "s");
    if let Some(s) = ase_time(&cu, &settings.amplitudes) {
        figure("elastic_cu_ase_emt_s", s, "s");
    }
    Ok(())
}

/// `property elastic --with-oracle`'s oracle part on a cu-emt run directory: the 25 cells
/// of the fit labelled by EMT as `autopipe job-exec` jobs of the local backend (2 workers).
fn with_oracle(guarded: &autopipe_workflow::goals::GuardedElastic) -> Result<()> {
    let text = autopipe_workflow::examples::example("cu-emt").context("the cu-emt example")?;
    let config = autopipe_workflow::parse_config(text, std::path::Path::new("cu-emt.toml"))?;
    let dir = crate::bench::tempfile_dir("elastic-oracle")?;
    autopipe_store::JobStore::open_or_create(&dir)?;
    let cells: Vec<_> = guarded.cells.iter().map(|c| c.structure.clone()).collect();
    let start = Instant::now();
    let labels = autopipe_workflow::property_runs::label_with_run_oracle(
        &config,
        &dir,
        cells,
        "property:elastic",
        &crate::launcher()?,
        &mut |_: &autopipe_exec::ExecEvent| {},
    )?;
    let elapsed = start.elapsed().as_secs_f64();
    anyhow::ensure!(labels.executed == guarded.cells.len(), "{} jobs ran", labels.executed);
    figure("elastic_with_oracle_cu_emt_jobs_s", elapsed, "s");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// ASE's EMT: the stresses of the 6 x 2 x amplitudes strained cells, timed by Python.
fn ase_time(s: &autopipe_atoms::Structure, amplitudes: &[f64]) -> Option<f64> {
    let strains: Vec<f64> = amplitudes.iter().flat_map(|a| [*a, -*a]).collect();
    let task = serde_json::json!({
        "task": "elastic_time", "cell": s.cell_a, "positions": s.positions_a,
        "symbols": s.species.iter().map(|e| e.symbol()).collect::<Vec<_>>(), "strains": strains,
    });
    let run = || -> Result<f64> {
        let mut child = Command::new("python3")
            .args(["-c", ASE_REFERENCE])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        child.stdin.take().context("stdin")?.write_all(task.to_string().as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "python3 with ASE failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v["seconds"].as_f64().context("no seconds")
    };
    run().ok()
}
