//! The SNAP model, its fit and its extrapolation grade, on synthetic data where the
//! answer is known: a random linear SNAP labels random Cu cells, and the fit must give
//! its coefficients back.

use autopipe_atoms::{Element, Frame, Structure};
use autopipe_potential::{evaluate_errors, fit, is_test_structure, FitOptions, SnapElement, SnapModel};

mod synthetic;
use synthetic::{cu, fcc_cu, params, random_model, Rng};

fn label(model: &SnapModel, s: Structure) -> Frame {
    let r = model.evaluate(&s).unwrap();
    let mut f = Frame::from_structure(s);
    f.energy_ev = Some(r.energy_ev);
    f.forces_ev_per_a = Some(r.forces_ev_per_a);
    f.stress_ev_per_a3 = r.stress_ev_per_a3;
    f
}

fn dataset(truth: &SnapModel, n: usize, seed: u64) -> Vec<Frame> {
    let mut rng = Rng(seed);
    (0..n).map(|k| label(truth, fcc_cu(&mut rng, 1.0 + 0.03 * ((k % 5) as f64 - 2.0), 0.03, 0.12))).collect()
}

fn exact_opts() -> FitOptions {
    FitOptions { alpha: 0.0, test_fraction: 0.0, threads: 2, ..FitOptions::default() }
}

#[test]
fn fit_recovers_known_coefficients() {
    let truth = random_model(params(6, false), 11);
    let frames = dataset(&truth, 20, 1);
    let rep = fit(&frames, truth.params.clone(), &exact_opts()).unwrap();
    assert_eq!(rep.rank, rep.n_coefficients, "warnings: {:?}", rep.warnings);
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut worst_rel = 0.0f64;
    for (a, b) in rep.model.beta[0].iter().zip(&truth.beta[0]) {
        num += (a - b).powi(2);
        den += b * b;
        worst_rel = worst_rel.max((a - b).abs() / b.abs());
    }
    let rel = (num / den).sqrt();
    println!(
        "beta recovered: |Δβ|/|β| = {rel:.2e}, worst component {worst_rel:.2e}; condition estimate {:.2e}; \
         train RMSE E {:.2e} eV/atom, F {:.2e} eV/Å, S {:.2e} GPa",
        rep.condition_estimate,
        rep.train.energy_ev_per_atom.unwrap().rmse,
        rep.train.forces_ev_per_a.unwrap().rmse,
        rep.train.stress_gpa.unwrap().rmse
    );
    assert!(rel < 1e-8, "coefficients not recovered: relative error {rel:e}");
    assert!(rep.train.energy_ev_per_atom.unwrap().rmse < 1e-9);
    assert!(rep.train.forces_ev_per_a.unwrap().rmse < 1e-9);
    assert!(rep.train.stress_ev_per_a3.unwrap().rmse < 1e-10);
    assert_eq!(rep.train.forces_ev_per_a.unwrap().n, 20 * 32 * 3);
    assert_eq!(rep.train.stress_ev_per_a3.unwrap().n, 20 * 6);
    assert_eq!(rep.n_energy_rows, 20);
    assert!(rep.test_frames.is_empty() && rep.train_frames.len() == 20);

    // gamma: <= 1 on every training environment, > 1 far outside
    let ev = rep.model.evaluator().unwrap();
    let mut gmax = 0.0f64;
    for f in &frames {
        let g = ev.evaluate(&f.structure).unwrap().gamma.unwrap();
        assert_eq!(g.len(), f.len());
        gmax = gmax.max(g.iter().copied().fold(0.0, f64::max));
    }
    println!("max gamma over training environments {gmax:.12}, active set {:?}", rep.model.active_sets[0].note);
    assert!(gmax <= 1.0 + 1e-9, "training gamma {gmax}");
    assert!(gmax > 0.99, "some active environment must have gamma 1, got {gmax}");
    let mut rng = Rng(99);
    let compressed = fcc_cu(&mut rng, 0.85, 0.0, 0.02);
    let gc = ev.evaluate(&compressed).unwrap().max_gamma().unwrap();
    let rattled = fcc_cu(&mut rng, 1.0, 0.0, 0.45);
    let gr = ev.evaluate(&rattled).unwrap().max_gamma().unwrap();
    println!("max gamma: compressed by 15 % {gc:.3}, rattled by 0.45 Å {gr:.3}");
    assert!(gc > 2.0, "compressed cell gamma {gc}");
    assert!(gr > 1.0, "rattled cell gamma {gr}");

    // the model survives JSON
    let json = serde_json::to_string(&rep.model).unwrap();
    let back: SnapModel = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rep.model);
    assert_eq!(back.evaluate(&compressed).unwrap(), ev.evaluate(&compressed).unwrap());

    // evaluate_errors agrees with the report
    let m = evaluate_errors(&rep.model, &frames).unwrap();
    assert_eq!(m.forces_ev_per_a.unwrap().n, 20 * 96);
    assert!(m.max_gamma.unwrap() <= 1.0 + 1e-9);
}

fn finite_difference_check(model: &SnapModel, s: &Structure) {
    let ev = model.evaluator().unwrap();
    let r = ev.evaluate(s).unwrap();
    let e = |st: &Structure| ev.evaluate(st).unwrap().energy_ev;
    let h = 1e-5;
    let fscale = r.forces_ev_per_a.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    for &i in &[0usize, 7, 31] {
        for c in 0..3 {
            let mut p = s.clone();
            p.positions_a[i][c] += h;
            let ep = e(&p);
            p.positions_a[i][c] -= 2.0 * h;
            let em = e(&p);
            let fd = -(ep - em) / (2.0 * h);
            let an = r.forces_ev_per_a[i][c];
            assert!((fd - an).abs() < 1e-6 * fscale.max(1e-3), "force {i},{c}: analytic {an}, FD {fd}");
        }
    }
    let stress = r.stress_ev_per_a3.unwrap();
    let sscale = stress.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let v = s.volume_a3();
    for (t, (a, b)) in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)].into_iter().enumerate() {
        let strained = |eps: f64| {
            let mut d = [[0.0; 3]; 3];
            for k in 0..3 {
                d[k][k] = 1.0;
            }
            if a == b {
                d[a][a] += eps;
            } else {
                d[a][b] += 0.5 * eps;
                d[b][a] += 0.5 * eps;
            }
            let tr = |x: &[f64; 3]| [0, 1, 2].map(|c| (0..3).map(|k| x[k] * d[k][c]).sum::<f64>());
            let mut p = s.clone();
            p.cell_a = [tr(&s.cell_a[0]), tr(&s.cell_a[1]), tr(&s.cell_a[2])];
            p.positions_a = s.positions_a.iter().map(tr).collect();
            e(&p)
        };
        let fd = (strained(h) - strained(-h)) / (2.0 * h) / v;
        assert!((fd - stress[t]).abs() < 1e-6 * sscale.max(1e-4), "stress {t}: analytic {}, FD {fd}", stress[t]);
    }
}

#[test]
fn forces_and_stress_are_derivatives_of_the_energy() {
    let mut rng = Rng(5);
    let s = fcc_cu(&mut rng, 1.0, 0.04, 0.15);
    finite_difference_check(&random_model(params(6, false), 3), &s);
    finite_difference_check(&random_model(params(4, true), 4), &s);
    // non-periodic: no stress
    let mut cluster = s.clone();
    cluster.pbc = [false; 3];
    assert!(random_model(params(4, false), 1).evaluate(&cluster).unwrap().stress_ev_per_a3.is_none());
}

#[test]
fn the_split_is_deterministic() {
    let mut rng = Rng(8);
    let structures: Vec<Structure> = (0..200).map(|_| fcc_cu(&mut rng, 1.0, 0.02, 0.1)).collect();
    let a: Vec<bool> = structures.iter().map(|s| is_test_structure(s, 0.2, 0)).collect();
    let b: Vec<bool> = structures.iter().map(|s| is_test_structure(&s.clone(), 0.2, 0)).collect();
    assert_eq!(a, b);
    let n = a.iter().filter(|&&x| x).count();
    assert!((20..=60).contains(&n), "{n} of 200 held out for a fraction of 0.2");
    let c: Vec<bool> = structures.iter().map(|s| is_test_structure(s, 0.2, 1)).collect();
    assert_ne!(a, c, "the salt changes the split");
    assert!(structures.iter().all(|s| !is_test_structure(s, 0.0, 0)));

    // in a fit: the held-out frames are exactly those, whatever the order of the frames
    let truth = random_model(params(4, false), 2);
    let frames = dataset(&truth, 24, 3);
    let opts = FitOptions { test_fraction: 0.25, alpha: 0.0, threads: 2, ..FitOptions::default() };
    let rep = fit(&frames, truth.params.clone(), &opts).unwrap();
    let expect: Vec<usize> = (0..24).filter(|&k| is_test_structure(&frames[k].structure, 0.25, 0)).collect();
    assert_eq!(rep.test_frames, expect);
    assert!(!rep.test_frames.is_empty() && rep.train_frames.len() + rep.test_frames.len() == 24);
    let mut reversed = frames.clone();
    reversed.reverse();
    let rep2 = fit(&reversed, truth.params.clone(), &opts).unwrap();
    let mut back: Vec<usize> = rep2.test_frames.iter().map(|k| 23 - k).collect();
    back.sort();
    assert_eq!(back, expect);
    // noise-free data: the held-out frames are predicted as well
    assert!(rep.test.forces_ev_per_a.unwrap().rmse < 1e-8, "{:?}", rep.test);
    assert_eq!(rep.test.n_frames, expect.len());
}

fn finite_model(m: &SnapModel) -> bool {
    m.beta.iter().flatten().all(|x| x.is_finite())
}

#[test]
fn ill_conditioned_data_gives_no_nan() {
    let truth = random_model(params(4, false), 6);
    // every frame twice
    let mut frames = dataset(&truth, 6, 4);
    frames.extend(frames.clone());
    let f_rms =
        (frames.iter().flat_map(|f| f.forces_ev_per_a.as_ref().unwrap().iter().flatten()).map(|x| x * x).sum::<f64>()
            / (frames.len() * 96) as f64)
            .sqrt();
    for (alpha, tol) in [(0.0, 1e-9), (1e-8, 1e-2)] {
        let rep =
            fit(&frames, truth.params.clone(), &FitOptions { alpha, test_fraction: 0.0, ..FitOptions::default() })
                .unwrap();
        assert!(finite_model(&rep.model));
        let rmse = rep.train.forces_ev_per_a.unwrap().rmse;
        println!("duplicated frames, alpha {alpha}: force RMSE {rmse:.2e} eV/Å of RMS {f_rms:.3} eV/Å");
        assert!(rmse < tol * f_rms, "alpha {alpha}: {:?}", rep.train);
    }
    // perfect crystals only: all environments alike, no forces, heavily rank-deficient
    let mut rng = Rng(1);
    let perfect: Vec<Frame> =
        [0.98, 1.0, 1.02].iter().map(|&sc| label(&truth, fcc_cu(&mut rng, sc, 0.0, 0.0))).collect();
    for alpha in [0.0, 1e-8] {
        let rep =
            fit(&perfect, truth.params.clone(), &FitOptions { alpha, test_fraction: 0.0, ..FitOptions::default() })
                .unwrap();
        assert!(finite_model(&rep.model), "alpha {alpha}");
        if alpha == 0.0 {
            assert!(rep.rank < rep.n_coefficients, "alpha {alpha}: rank {}", rep.rank);
            assert!(rep.warnings.iter().any(|w| w.contains("rank-deficient design")), "{:?}", rep.warnings);
        }
        assert!(
            rep.warnings.iter().any(|w| w.contains("rank-deficient: the 96 training environments")),
            "{:?}",
            rep.warnings
        );
        let set = &rep.model.active_sets[0];
        assert!(set.rank_deficient && set.rank <= 3, "active set rank {}", set.rank);
        let ev = rep.model.evaluator().unwrap();
        for f in &perfect {
            let r = ev.evaluate(&f.structure).unwrap();
            assert!(r.energy_ev.is_finite() && r.forces_ev_per_a.iter().flatten().all(|x| x.is_finite()));
            let g = r.max_gamma().unwrap();
            assert!(g.is_finite() && g <= 1.0 + 1e-6, "gamma on a training crystal {g}");
            // the energies of the training crystals are reproduced
            let de = (r.energy_ev - f.energy_ev.unwrap()).abs() / 32.0;
            println!("perfect crystals, alpha {alpha}: energy error {de:.2e} eV/atom, gamma {g}");
            assert!(de < if alpha == 0.0 { 1e-9 } else { 1e-3 }, "alpha {alpha}: energy error {de} eV/atom");
        }
        let g = ev.evaluate(&fcc_cu(&mut rng, 1.0, 0.0, 0.1)).unwrap().max_gamma().unwrap();
        assert!(g.is_finite() && g > 2.0, "a rattled crystal must look new: gamma {g}");
    }
    // a single frame, and frames without labels
    let mut unl = perfect.clone();
    unl[1].energy_ev = None;
    unl[1].forces_ev_per_a = None;
    unl[1].stress_ev_per_a3 = None;
    let rep =
        fit(&unl[..2], truth.params.clone(), &FitOptions { test_fraction: 0.0, ..FitOptions::default() }).unwrap();
    assert_eq!(rep.skipped_frames, vec![1]);
    assert!(finite_model(&rep.model));
}

/// Timing of a realistic fit: 300 labelled 32-atom Cu cells with forces and stress at
/// 2J = 8. Run with `cargo test --release -p autopipe-potential --test model_fit -- --ignored --nocapture`.
#[test]
#[ignore]
fn fit_timing_300_cells_2j8() {
    let truth = random_model(params(8, false), 31);
    let t0 = std::time::Instant::now();
    let mut frames = dataset(&truth, 300, 12);
    // a little label noise, as real data have
    let mut rng = Rng(4);
    for f in frames.iter_mut() {
        *f.energy_ev.as_mut().unwrap() += 0.002 * 32.0 * rng.next();
        for x in f.forces_ev_per_a.as_mut().unwrap().iter_mut().flatten() {
            *x += 0.05 * rng.next();
        }
    }
    let t_label = t0.elapsed();
    for threads in [1, 2] {
        let t1 = std::time::Instant::now();
        let rep = fit(&frames, truth.params.clone(), &FitOptions { threads, ..FitOptions::default() }).unwrap();
        let dt = t1.elapsed();
        println!(
            "fit of 300 x 32-atom Cu cells, 2J=8, {threads} thread(s): {:.2} s (labelling {:.2} s); {} train / {} test frames; \
             rank {}/{}; train RMSE E {:.2e} eV/atom F {:.3} eV/Å S {:.3} GPa; test RMSE E {:.2e} F {:.3} S {:.3}; \
             active set swaps {}, max training gamma {:.3e}",
            dt.as_secs_f64(),
            t_label.as_secs_f64(),
            rep.train_frames.len(),
            rep.test_frames.len(),
            rep.rank,
            rep.n_coefficients,
            rep.train.energy_ev_per_atom.unwrap().rmse,
            rep.train.forces_ev_per_a.unwrap().rmse,
            rep.train.stress_gpa.unwrap().rmse,
            rep.test.energy_ev_per_atom.unwrap().rmse,
            rep.test.forces_ev_per_a.unwrap().rmse,
            rep.test.stress_gpa.unwrap().rmse,
            rep.model.active_sets[0].n_swaps,
            rep.model.active_sets[0].max_training_gamma,
        );
        let t2 = std::time::Instant::now();
        evaluate_errors(&rep.model, &frames).unwrap();
        let with_gamma = t2.elapsed().as_secs_f64();
        let mut plain = rep.model.clone();
        plain.active_sets.clear();
        let t3 = std::time::Instant::now();
        evaluate_errors(&plain, &frames).unwrap();
        println!(
            "  evaluate_errors on the 300 frames: {with_gamma:.2} s with gamma, {:.2} s without",
            t3.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn training_metrics_from_rows_equal_those_of_evaluate() {
    let truth = random_model(params(4, false), 12);
    let mut frames = dataset(&truth, 10, 9);
    let mut rng = Rng(2);
    for f in frames.iter_mut() {
        *f.energy_ev.as_mut().unwrap() += 0.05 * rng.next();
        for x in f.forces_ev_per_a.as_mut().unwrap().iter_mut().flatten() {
            *x += 0.05 * rng.next();
        }
        for x in f.stress_ev_per_a3.as_mut().unwrap().iter_mut() {
            *x += 0.001 * rng.next();
        }
    }
    let rep = fit(&frames, truth.params.clone(), &FitOptions { test_fraction: 0.0, ..FitOptions::default() }).unwrap();
    let direct = evaluate_errors(&rep.model, &frames).unwrap();
    for (a, b) in [
        (rep.train.energy_ev_per_atom, direct.energy_ev_per_atom),
        (rep.train.forces_ev_per_a, direct.forces_ev_per_a),
        (rep.train.stress_gpa, direct.stress_gpa),
    ] {
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.n, b.n);
        assert!((a.rmse - b.rmse).abs() < 1e-9 * b.rmse && (a.mae - b.mae).abs() < 1e-9 * b.mae, "{a:?} vs {b:?}");
        assert!(a.rmse > 0.0);
    }
    assert!((rep.train.max_gamma.unwrap() - direct.max_gamma.unwrap()).abs() < 1e-9);
}

#[test]
fn an_element_without_training_data_is_maximally_uncertain() {
    let truth = random_model(params(4, false), 12);
    let frames = dataset(&truth, 4, 9);
    let mut p = params(4, false);
    p.elements.push(SnapElement { element: Element::from_symbol("Ni").unwrap(), radius: 0.47, weight: 0.9 });
    let rep = fit(&frames, p, &FitOptions { test_fraction: 0.0, ..FitOptions::default() }).unwrap();
    assert!(finite_model(&rep.model));
    assert!(rep.model.beta[1].iter().all(|&x| x == 0.0), "Ni coefficients must stay zero");
    assert!(rep.warnings.iter().any(|w| w.contains("no training environment of Ni")), "{:?}", rep.warnings);
    let mut s = frames[0].structure.clone();
    s.species[3] = Element::from_symbol("Ni").unwrap();
    let g = rep.model.evaluate(&s).unwrap().gamma.unwrap();
    assert_eq!(g[3], f64::MAX);
    assert!(g[0] < 2.0);
    // reports survive JSON
    let json = serde_json::to_string(&rep).unwrap();
    let back: autopipe_potential::FitReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rep);
}

/// Isolated-atom energies given: the constant term is fixed to them (with bzeroflag the
/// constant is the energy of the isolated atom), not fitted: the right value gives the
/// truth back; any value is what the model then says of an isolated atom (bulk data alone
/// cannot tell that energy: the descriptors absorb the difference).
#[test]
fn given_isolated_atom_energy_fixes_the_constant_term() {
    let truth = random_model(params(4, false), 31);
    let frames = dataset(&truth, 10, 32);
    let mut opts = exact_opts();
    opts.reference_energies_ev.insert("Cu".into(), truth.beta[0][0]);
    let rep = fit(&frames, truth.params.clone(), &opts).unwrap();
    assert_eq!(rep.model.beta[0][0], truth.beta[0][0]);
    for (a, b) in rep.model.beta[0].iter().zip(&truth.beta[0]) {
        assert!((a - b).abs() < 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
    }
    assert!(rep.warnings.iter().all(|w| !w.contains("rank-deficient")), "{:?}", rep.warnings);
    opts.reference_energies_ev.insert("Cu".into(), truth.beta[0][0] + 0.5);
    let rep = fit(&frames, truth.params.clone(), &opts).unwrap();
    assert_eq!(rep.model.beta[0][0], truth.beta[0][0] + 0.5);
    let atom =
        Structure::new([[20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]], vec![[1.0; 3]], vec![cu()], [true; 3])
            .unwrap();
    let e = rep.model.evaluate(&atom).unwrap().energy_ev;
    assert!((e - (truth.beta[0][0] + 0.5)).abs() < 1e-12, "isolated atom: {e} eV");
    // an element the model does not have: refused
    opts.reference_energies_ev.insert("Ni".into(), -1.0);
    let err = fit(&frames, truth.params.clone(), &opts).unwrap_err().to_string();
    assert!(err.contains("Ni"), "{err}");
}

/// Per-atom force weights (the `force_weight` column of extracted cells): the force rows
/// of zero-weight atoms are dropped, so junk forces on them change nothing, while the
/// same junk without the column ruins the fit.
#[test]
fn zero_force_weights_drop_the_rows_of_buffer_atoms() {
    let truth = random_model(params(6, false), 11);
    let mut frames = dataset(&truth, 20, 1);
    for f in &mut frames {
        let n = f.len();
        // atoms 0..8 are the core; the others get junk forces
        for (i, fi) in f.forces_ev_per_a.as_mut().unwrap().iter_mut().enumerate().skip(8) {
            fi[0] += 5.0 + i as f64 * 0.1;
        }
        let values = (0..n).map(|i| if i < 8 { 1.0 } else { 0.0 }).collect();
        f.arrays.insert("force_weight".into(), autopipe_atoms::frame::ArrayValue::Real { columns: 1, values });
    }
    let rel_error = |m: &SnapModel| {
        let num: f64 = m.beta[0].iter().zip(&truth.beta[0]).map(|(a, b)| (a - b).powi(2)).sum();
        let den: f64 = truth.beta[0].iter().map(|b| b * b).sum();
        (num / den).sqrt()
    };
    let rep = fit(&frames, truth.params.clone(), &exact_opts()).unwrap();
    assert!(rel_error(&rep.model) < 1e-8, "{:e}", rel_error(&rep.model));
    assert_eq!(rep.n_force_rows, 20 * 8 * 3);
    for f in &mut frames {
        f.arrays.clear();
    }
    let junk = fit(&frames, truth.params.clone(), &exact_opts()).unwrap();
    assert!(rel_error(&junk.model) > 1e-3, "{:e}", rel_error(&junk.model));
}
