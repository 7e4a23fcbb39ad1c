//! FitSNAP's Ta06A fit reproduced: the 363 DFT configurations of FitSNAP's tantalum set
//! (`shared/data/ta-fitsnap/ta.xyz`, groups in `config_type`), the hyperparameters, the ZBL
//! reference and the `[GROUPS]` weights of FitSNAP's own input (`Ta-example.in`, read here
//! and carried over unchanged into `FitOptions::groups`), fitted on every configuration
//! like FitSNAP (training_size 1.0, SVD solver: no ridge). The energy and force RMSE, per
//! group and overall, must equal the ones FitSNAP reports for that fit (`Ta_metrics.md`)
//! within 2% (asserted: 0.5%; measured: 1e-5); then the exported files, run by LAMMPS (`pair_style hybrid/overlay zbl 4 4.8
//! snap`), must give our model's numbers on a sample of the configurations.
//!
//! The data directory: `AUTOPIPE_TA_FITSNAP` or `<workspace>/../shared/data/ta-fitsnap`.

mod common;
use autopipe_atoms::extxyz::read_extxyz_file;
use autopipe_atoms::{Element, Frame};
use autopipe_potential::{
    fit, frame_group, pair_coeff_snippet, to_snapcoeff, to_snapparam, FitOptions, GroupWeights, SnapElement,
    SnapParams, ZblReference,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Relative agreement asserted with FitSNAP's figures (the issue asks for 2%).
const TOLERANCE: f64 = 0.005;

fn data_dir() -> PathBuf {
    std::env::var_os("AUTOPIPE_TA_FITSNAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ta-fitsnap"))
}

/// `[GROUPS]` of a FitSNAP input: name -> (eweight, fweight, vweight).
fn fitsnap_groups(input: &str) -> BTreeMap<String, (f64, f64, f64)> {
    let mut out = BTreeMap::new();
    let mut in_groups = false;
    for line in input.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_groups = l == "[GROUPS]";
            continue;
        }
        if !in_groups || l.starts_with('#') || !l.contains('=') {
            continue;
        }
        let (k, v) = l.split_once('=').unwrap();
        let k = k.trim();
        if ["group_sections", "group_types", "smartweights", "random_sampling"].contains(&k) {
            continue;
        }
        let v: Vec<f64> = v.split_whitespace().map(|x| x.parse().unwrap()).collect();
        // name = training_size testing_size eweight fweight vweight
        assert_eq!(v.len(), 5, "{line}");
        out.insert(k.to_string(), (v[2], v[3], v[4]));
    }
    out
}

/// `Ta_metrics.md`: (group, Unweighted, Energy|Force) -> rmse.
fn fitsnap_metrics(md: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in md.lines().filter(|l| l.starts_with("| ('")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let key: Vec<String> = cells[1]
            .trim_matches(|c| c == '(' || c == ')')
            .split(',')
            .map(|s| s.trim().trim_matches('\'').to_string())
            .collect();
        if key[1] == "Unweighted" {
            out.insert((key[0].clone(), key[2].clone()), cells[4].parse::<f64>().unwrap());
        }
    }
    out
}

fn ta06a_options() -> (SnapParams, FitOptions) {
    let dir = data_dir();
    let input = std::fs::read_to_string(dir.join("Ta-example.in")).unwrap();
    let groups = fitsnap_groups(&input);
    assert_eq!(groups.len(), 12);
    let params = SnapParams {
        twojmax: 6,
        rcutfac: 4.67637,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: false,
        quadraticflag: false,
        elements: vec![SnapElement { element: Element::from_symbol("Ta").unwrap(), radius: 0.5, weight: 1.0 }],
    };
    let opts = FitOptions {
        groups: groups
            .into_iter()
            .map(|(k, (e, f, v))| {
                (
                    k,
                    GroupWeights {
                        energy_weight: Some(e),
                        force_weight: Some(f),
                        stress_weight: Some(v),
                        test_fraction: None,
                    },
                )
            })
            .collect(),
        reference: Some(ZblReference { inner_a: 4.0, outer_a: 4.8 }),
        alpha: 0.0,
        test_fraction: 0.0,
        active_set: false,
        rank_rtol: 1e-13,
        ..FitOptions::default()
    };
    (params, opts)
}

fn ta_frames() -> Vec<Frame> {
    let frames = read_extxyz_file(&data_dir().join("ta.xyz")).unwrap();
    assert_eq!(frames.len(), 363);
    frames
}

#[test]
fn ta06a_reproduced_per_group_within_2_percent_and_in_lammps() {
    let frames = ta_frames();
    let (params, opts) = ta06a_options();
    let t0 = std::time::Instant::now();
    let rep = fit(&frames, params, &opts).unwrap();
    println!(
        "fit of {} configurations: {:.2} s; warnings {:?}",
        frames.len(),
        t0.elapsed().as_secs_f64(),
        rep.warnings
    );
    assert_eq!(rep.train_frames.len(), 363);
    let reference = fitsnap_metrics(&std::fs::read_to_string(data_dir().join("Ta_metrics.md")).unwrap());
    let mut rows = vec![("*ALL".to_string(), rep.train.clone())];
    rows.extend(rep.train_groups.iter().map(|(g, m)| (g.clone(), m.clone())));
    println!(
        "{:<14} {:>14} {:>14} {:>8}   {:>12} {:>12} {:>8}",
        "group", "E ours meV/at", "E Ta06A", "ratio", "F ours eV/Å", "F Ta06A", "ratio"
    );
    let mut failures = Vec::new();
    for (g, m) in &rows {
        let e = m.energy_ev_per_atom.unwrap().rmse;
        let f = m.forces_ev_per_a.unwrap().rmse;
        let e_ref = reference[&(g.clone(), "Energy".to_string())];
        let f_ref = reference[&(g.clone(), "Force".to_string())];
        println!(
            "{g:<14} {:>14.4} {:>14.4} {:>8.4}   {f:>12.3e} {f_ref:>12.3e} {:>8.4}",
            e * 1e3,
            e_ref * 1e3,
            e / e_ref,
            f / f_ref
        );
        if (e / e_ref - 1.0).abs() > TOLERANCE {
            failures.push(format!("{g} energy {e} vs {e_ref}"));
        }
        // forces that vanish by symmetry (FitSNAP: 1e-14 eV/Å) are compared absolutely
        if f_ref > 1e-6 && (f / f_ref - 1.0).abs() > TOLERANCE || f_ref <= 1e-6 && f > 1e-6 {
            failures.push(format!("{g} forces {f} vs {f_ref}"));
        }
    }
    assert!(failures.is_empty(), "not within 0.5% of FitSNAP's Ta06A: {failures:?}");

    // LAMMPS on the exported files: one configuration of every group
    let model = &rep.model;
    let mut seen = BTreeMap::new();
    for (k, f) in frames.iter().enumerate() {
        seen.entry(frame_group(f).to_string()).or_insert(k);
    }
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<Value> = seen
        .iter()
        .map(|(g, &k)| {
            let s = &frames[k].structure;
            assert!(
                s.cell_a[0][1] == 0.0 && s.cell_a[0][2] == 0.0 && s.cell_a[1][2] == 0.0,
                "{g}: not lower-triangular"
            );
            json!({"name": g, "cell": s.cell_a, "positions": s.positions_a, "types": vec![1; s.len()],
                   "snapcoeff": to_snapcoeff(model), "snapparam": to_snapparam(model),
                   "pair_coeff": pair_coeff_snippet(model, "COEFF", "PARAM")})
        })
        .collect();
    let input = dir.path().join("cases.json");
    let output = dir.path().join("lammps.json");
    std::fs::write(&input, serde_json::to_string(&json!({ "cases": cases })).unwrap()).unwrap();
    let out = common::run_lammps_script("lammps_pair_snap.py", &input, &output, &[dir.path()]);
    let ev = model.evaluator().unwrap();
    for (r, (g, &k)) in out["cases"].as_array().unwrap().iter().zip(&seen) {
        let s = &frames[k].structure;
        let ours = ev.evaluate(s).unwrap();
        let de = (ours.energy_ev - r["energy"].as_f64().unwrap()).abs() / s.len() as f64;
        let mut df = 0.0f64;
        for (a, b) in ours.forces_ev_per_a.iter().zip(r["forces"].as_array().unwrap()) {
            for c in 0..3 {
                df = df.max((a[c] - b[c].as_f64().unwrap()).abs());
            }
        }
        println!("LAMMPS {g}: |ΔE|/N {de:.1e} eV/atom, max |ΔF| {df:.1e} eV/Å");
        assert!(de < 1e-9 && df < 1e-9, "{g}: LAMMPS disagrees with our model: {de} eV/atom, {df} eV/Å");
    }
}

/// Held-out errors of a fit on `train`: overall and per group.
fn heldout_table(
    train: &[Frame],
    test: &[Frame],
    params: &SnapParams,
    opts: &FitOptions,
) -> (autopipe_potential::ErrorMetrics, BTreeMap<String, autopipe_potential::ErrorMetrics>) {
    let model = fit(train, params.clone(), opts).unwrap().model;
    autopipe_potential::evaluate_errors_by_group(&model, test, &Default::default()).unwrap()
}

/// The "beat it" check: on held-out frames (a fifth of every group, by structure
/// hash; the fits see the other four fifths), SNAP with 2J = 8 and Ta06A's own weights,
/// ZBL and settings has a lower force RMSE than the Ta06A settings (2J = 6) and energies no
/// worse, overall. The table per group is printed (`--nocapture`). Measured: forces 0.168
/// vs 0.197 eV/Å, energies 142 vs 299 meV/atom. (Cross-validated weights, `--search`,
/// lower the held-out energy error at 2J = 6 but not the force error; see `autopipe bench`.)
#[test]
fn ta06a_beaten_on_held_out_frames() {
    let frames = ta_frames();
    let (params, opts) = ta06a_options();
    let sp = autopipe_potential::split_frames(&frames, &FitOptions { test_fraction: 0.2, ..opts.clone() });
    let pick = |idx: &[usize]| -> Vec<Frame> { idx.iter().map(|&k| frames[k].clone()).collect() };
    let (train, test) = (pick(&sp.train), pick(&sp.test));
    assert!(test.len() > 50 && train.len() > 250, "{} / {}", train.len(), test.len());
    let (base, base_g) = heldout_table(&train, &test, &params, &opts);
    let ours_params = SnapParams { twojmax: 8, ..params.clone() };
    let (ours, ours_g) = heldout_table(&train, &test, &ours_params, &opts);
    let e = |m: &autopipe_potential::ErrorMetrics| m.energy_ev_per_atom.map_or(f64::NAN, |s| s.rmse * 1e3);
    let f = |m: &autopipe_potential::ErrorMetrics| m.forces_ev_per_a.map_or(f64::NAN, |s| s.rmse);
    println!("held out: {} configurations (fits on {})", test.len(), train.len());
    println!("{:<16} {:>12} {:>12} {:>10} {:>10}", "group", "E 2J=8", "E Ta06A", "F 2J=8", "F Ta06A");
    let mut rows = vec![("*ALL".to_string(), (&ours, &base))];
    rows.extend(ours_g.iter().map(|(g, m)| (g.clone(), (m, &base_g[g]))));
    for (g, (o, b)) in &rows {
        println!("{g:<16} {:>12.3} {:>12.3} {:>10.4} {:>10.4}", e(o), e(b), f(o), f(b));
    }
    assert!(f(&ours) < 0.95 * f(&base), "held-out forces: 2J=8 {} vs Ta06A {} eV/Å", f(&ours), f(&base));
    assert!(e(&ours) <= e(&base), "held-out energies: 2J=8 {} vs Ta06A {} meV/atom", e(&ours), e(&base));
}
