//! `autopipe bench` figures of fitting on real DFT data: FitSNAP's tantalum set (363
//! configurations, `AUTOPIPE_TA_FITSNAP` or `shared/data/ta-fitsnap` beside the workspace),
//! fitted with FitSNAP's Ta06A settings (2J = 6, ZBL 4.0-4.8, its `[GROUPS]` weights):
//! the time of the fit and its errors; then, on held-out frames (a fifth of every group,
//! by structure hash), the Ta06A settings against cross-validated weights (`--search`) and
//! against quadratic SNAP. The table goes to stderr; figures to stdout. Skipped (one line
//! on stderr) when the data set is absent.

use anyhow::{Context, Result};
use autopipe_atoms::Frame;
use autopipe_potential::{
    evaluate_errors_by_group, fit, search_weights, EvalOptions, FitOptions, GroupWeights, SearchGrid, SnapElement,
    SnapParams, ZblReference,
};
use std::path::PathBuf;
use std::time::Instant;

use crate::bench::figure;

fn data_dir() -> PathBuf {
    std::env::var_os("AUTOPIPE_TA_FITSNAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ta-fitsnap"))
}

/// `[GROUPS]` of a FitSNAP input as group weights (eweight, fweight, vweight).
fn fitsnap_groups(input: &str) -> Vec<(String, GroupWeights)> {
    let mut out = Vec::new();
    let mut in_groups = false;
    for line in input.lines().map(str::trim) {
        if line.starts_with('[') {
            in_groups = line == "[GROUPS]";
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| in_groups && !line.starts_with('#')) else { continue };
        let v: Vec<f64> = v.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        if v.len() == 5 {
            out.push((
                k.trim().to_string(),
                GroupWeights {
                    energy_weight: Some(v[2]),
                    force_weight: Some(v[3]),
                    stress_weight: Some(v[4]),
                    test_fraction: None,
                },
            ));
        }
    }
    out
}

fn ta06a() -> Result<(SnapParams, FitOptions)> {
    let input = std::fs::read_to_string(data_dir().join("Ta-example.in")).context("Ta-example.in")?;
    let params = SnapParams {
        twojmax: 6,
        rcutfac: 4.67637,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: false,
        quadraticflag: false,
        elements: vec![SnapElement { element: "Ta".parse().map_err(anyhow::Error::msg)?, radius: 0.5, weight: 1.0 }],
    };
    let opts = FitOptions {
        groups: fitsnap_groups(&input).into_iter().collect(),
        reference: Some(ZblReference { inner_a: 4.0, outer_a: 4.8 }),
        alpha: 0.0,
        test_fraction: 0.0,
        active_set: false,
        rank_rtol: 1e-13,
        ..FitOptions::default()
    };
    Ok((params, opts))
}

/// Held-out (energy meV/atom, force eV/Å) of a fit on `train`.
fn heldout(train: &[Frame], test: &[Frame], params: &SnapParams, opts: &FitOptions) -> Result<(f64, f64)> {
    let model = fit(train, params.clone(), opts)?.model;
    let (m, _) = evaluate_errors_by_group(&model, test, &EvalOptions::default())?;
    Ok((m.energy_ev_per_atom.map_or(f64::NAN, |s| s.rmse * 1e3), m.forces_ev_per_a.map_or(f64::NAN, |s| s.rmse)))
}

/// The Ta figures; `every` > 1 takes every `every`-th frame only (smoke runs).
pub fn run(every: usize) -> Result<()> {
    let path = data_dir().join("ta.xyz");
    if !path.exists() {
        eprintln!("bench: {} is absent; the Ta fitting figures are skipped", path.display());
        return Ok(());
    }
    let frames: Vec<Frame> =
        autopipe_atoms::extxyz::read_extxyz_file(&path)?.into_iter().step_by(every.max(1)).collect();
    let (params, opts) = ta06a()?;
    let start = Instant::now();
    let rep = fit(&frames, params.clone(), &opts)?;
    figure("ta_fit_s", start.elapsed().as_secs_f64(), "s");
    figure("ta_fit_configurations", frames.len() as f64, "1");
    figure("ta_train_force_rmse", rep.train.forces_ev_per_a.map_or(0.0, |s| s.rmse), "eV/Å");
    figure("ta_train_energy_rmse", rep.train.energy_ev_per_atom.map_or(0.0, |s| s.rmse * 1e3), "meV/atom");

    // held out: a fifth of every group
    let split = FitOptions { test_fraction: 0.2, ..opts.clone() };
    let sp = autopipe_potential::split_frames(&frames, &split);
    let train: Vec<Frame> = sp.train.iter().map(|&k| frames[k].clone()).collect();
    let test: Vec<Frame> = sp.test.iter().map(|&k| frames[k].clone()).collect();
    let (e0, f0) = heldout(&train, &test, &params, &opts)?;
    let start = Instant::now();
    let folds = 5.min(train.len());
    let search = search_weights(&train, &params, &opts, folds, &SearchGrid::default())?;
    figure("ta_search_s", start.elapsed().as_secs_f64(), "s");
    let (e1, f1) = heldout(&train, &test, &params, &search.options)?;
    eprintln!(
        "Ta, {} training and {} held-out configurations (held-out RMSE):\n{:<40} {:>12} {:>10}\n\
         {:<40} {e0:>12.3} {f0:>10.4}\n{:<40} {e1:>12.3} {f1:>10.4}\n\
         search: alpha {}, energy weights x{}, stress weights x{} ({} candidates, {folds} folds)",
        train.len(),
        test.len(),
        "fit",
        "E meV/atom",
        "F eV/Å",
        "linear, Ta06A weights",
        "linear, cross-validated weights",
        search.best.alpha,
        search.best.energy_scale,
        search.best.stress_scale,
        search.points.len(),
    );
    figure("ta_heldout_force_rmse_ta06a", f0, "eV/Å");
    figure("ta_heldout_energy_rmse_ta06a", e0, "meV/atom");
    figure("ta_heldout_force_rmse_searched", f1, "eV/Å");
    figure("ta_heldout_energy_rmse_searched", e1, "meV/atom");
    // 2J = 8 with Ta06A's weights: what beats Ta06A on held-out frames (test ta_fitsnap)
    let (e8, f8) = heldout(&train, &test, &SnapParams { twojmax: 8, ..params.clone() }, &opts)?;
    eprintln!("{:<40} {e8:>12.3} {f8:>10.4}", "linear 2J=8, Ta06A weights");
    figure("ta_heldout_force_rmse_2j8", f8, "eV/Å");
    figure("ta_heldout_energy_rmse_2j8", e8, "meV/atom");
    if every > 1 {
        return Ok(()); // smoke: the quadratic fits (496 coefficients) take a minute
    }
    let quad = SnapParams { quadraticflag: true, ..params.clone() };
    let (e2, f2) = heldout(&train, &test, &quad, &opts)?;
    // quadratic: the ridge and the energy weights searched, energies no worse in
    // cross-validation than the linear Ta06A fit's (the stress weights are tiny)
    let start = Instant::now();
    let qgrid = SearchGrid {
        alphas: vec![1e-8, 1e-6, 1e-4, 1e-2],
        energy_scales: vec![1.0, 10.0, 100.0],
        stress_scales: vec![1.0],
        max_cv_energy_ev_per_atom: Some(search.start.cv_energy_ev_per_atom),
    };
    let qsearch = search_weights(&train, &quad, &opts, folds, &qgrid)?;
    figure("ta_search_quadratic_s", start.elapsed().as_secs_f64(), "s");
    let (e3, f3) = heldout(&train, &test, &quad, &qsearch.options)?;
    eprintln!(
        "{:<40} {e2:>12.3} {f2:>10.4}\n{:<40} {e3:>12.3} {f3:>10.4}\nquadratic search: alpha {}, energy weights x{}",
        "quadratic, Ta06A weights", "quadratic, cross-validated weights", qsearch.best.alpha, qsearch.best.energy_scale
    );
    figure("ta_heldout_force_rmse_quadratic", f2, "eV/Å");
    figure("ta_heldout_energy_rmse_quadratic", e2, "meV/atom");
    figure("ta_heldout_force_rmse_quadratic_searched", f3, "eV/Å");
    figure("ta_heldout_energy_rmse_quadratic_searched", e3, "meV/atom");
    Ok(())
}
