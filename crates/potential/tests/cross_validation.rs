//! K-fold cross-validation on synthetic data with a known answer: a random linear SNAP
//! model labels random Cu cells, Gaussian noise of known size is added to the labels, and
//! the cross-validated RMSE of a fit at the same 2J must contain, within its stated 95%
//! confidence interval, the true generalisation error of the model fitted on all frames:
//! `sqrt(σ² + ε²)` on new data, where σ is the known noise and ε the model's own error
//! against the noiseless truth on 100 fresh frames (precise: no label noise in it).

use autopipe_atoms::{Element, Frame, Structure};
use autopipe_potential::{cross_validate, evaluate_errors, fit, FitOptions, SnapElement, SnapModel, SnapParams};

/// splitmix64, uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn cu() -> Element {
    Element::from_symbol("Cu").unwrap()
}

fn params(twojmax: usize, quadratic: bool) -> SnapParams {
    SnapParams {
        twojmax,
        rcutfac: 4.7,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: quadratic,
        elements: vec![SnapElement { element: cu(), radius: 0.5, weight: 1.0 }],
    }
}

/// 2x2x2 conventional fcc Cu (32 atoms), strained by up to `strain` (lower-triangular
/// cell) and rattled by up to `rattle` Å.
fn fcc_cu(rng: &mut Rng, scale: f64, strain: f64, rattle: f64) -> Structure {
    let a = 3.615 * scale;
    let mut cell = [[2.0 * a, 0.0, 0.0], [0.0, 2.0 * a, 0.0], [0.0, 0.0, 2.0 * a]];
    for r in 0..3 {
        for c in 0..=r {
            cell[r][c] += 2.0 * a * strain * rng.next();
        }
    }
    let mut pos = Vec::new();
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..2 {
                for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]] {
                    let f = [(i as f64 + b[0]) / 2.0, (j as f64 + b[1]) / 2.0, (k as f64 + b[2]) / 2.0];
                    let mut p = [0.0; 3];
                    for c in 0..3 {
                        for r in 0..3 {
                            p[c] += f[r] * cell[r][c];
                        }
                        p[c] += rattle * rng.next();
                    }
                    pos.push(p);
                }
            }
        }
    }
    let n = pos.len();
    Structure::new(cell, pos, vec![cu(); n], [true; 3]).unwrap()
}

fn random_model(p: SnapParams, seed: u64) -> SnapModel {
    let mut rng = Rng(seed);
    let mut m = SnapModel::zeros(p);
    let nl = m.params.n_linear();
    for b in m.beta.iter_mut() {
        b[0] = -3.5;
        for (k, x) in b[1..].iter_mut().enumerate() {
            // quadratic coefficients smaller
            *x = rng.next() * if k < nl { 0.05 } else { 0.002 };
        }
    }
    m
}

impl Rng {
    /// Standard normal (Box-Muller).
    fn gauss(&mut self) -> f64 {
        let u1 = (self.next() + 1.0) / 2.0;
        let u2 = (self.next() + 1.0) / 2.0;
        (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

const SIGMA_E_EV_PER_ATOM: f64 = 0.002;
const SIGMA_F_EV_PER_A: f64 = 0.1;

fn noisy_dataset(truth: &SnapModel, n: usize, seed: u64) -> Vec<Frame> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|k| {
            let s = fcc_cu(&mut rng, 1.0 + 0.03 * ((k % 5) as f64 - 2.0), 0.03, 0.12);
            let r = truth.evaluate(&s).unwrap();
            let na = s.len() as f64;
            let mut f = Frame::from_structure(s);
            f.energy_ev = Some(r.energy_ev + na * SIGMA_E_EV_PER_ATOM * rng.gauss());
            f.forces_ev_per_a =
                Some(r.forces_ev_per_a.iter().map(|v| v.map(|x| x + SIGMA_F_EV_PER_A * rng.gauss())).collect());
            f
        })
        .collect()
}

#[test]
fn kfold_estimate_contains_the_true_generalisation_error() {
    // weights matched to the noise (rows scaled to unit variance: generalised least squares)
    let opts = FitOptions {
        energy_weight: 1.0 / SIGMA_E_EV_PER_ATOM,
        force_weight: 1.0 / SIGMA_F_EV_PER_A,
        alpha: 0.0,
        test_fraction: 0.0,
        active_set: false,
        threads: 2,
        ..FitOptions::default()
    };
    for seed in [1u64, 2, 3] {
        let truth = random_model(params(6, false), 100 + seed);
        let frames = noisy_dataset(&truth, 40, 200 + seed);
        let cv = cross_validate(&frames, &truth.params, &opts, 5).unwrap();
        assert_eq!(cv.fold_sizes.iter().sum::<usize>(), 40, "every frame held out once");
        let model = fit(&frames, truth.params.clone(), &opts).unwrap().model;
        let fresh: Vec<Frame> = noisy_dataset(&truth, 100, 900 + seed)
            .into_iter()
            .map(|mut f| {
                let r = truth.evaluate(&f.structure).unwrap();
                f.energy_ev = Some(r.energy_ev);
                f.forces_ev_per_a = Some(r.forces_ev_per_a);
                f
            })
            .collect();
        let excess = evaluate_errors(&model, &fresh).unwrap();
        let (e, f) = (cv.all.energy_ev_per_atom.unwrap(), cv.all.forces_ev_per_a.unwrap());
        let (ee, ef) = (excess.energy_ev_per_atom.unwrap().rmse, excess.forces_ev_per_a.unwrap().rmse);
        let te = (SIGMA_E_EV_PER_ATOM.powi(2) + ee * ee).sqrt();
        let tf = (SIGMA_F_EV_PER_A.powi(2) + ef * ef).sqrt();
        println!(
            "seed {seed}: folds {:?}; forces CV {:.4} [{:.4}, {:.4}] true {tf:.4} eV/Å; energy CV {:.2} [{:.2}, {:.2}] true {:.2} meV/atom",
            cv.fold_sizes, f.rmse, f.ci95_low, f.ci95_high, e.rmse * 1e3, e.ci95_low * 1e3, e.ci95_high * 1e3, te * 1e3
        );
        assert!(f.ci95_low <= tf && tf <= f.ci95_high, "seed {seed}: true force error {tf} outside {f:?}");
        assert!(e.ci95_low <= te && te <= e.ci95_high, "seed {seed}: true energy error {te} outside {e:?}");
        // the interval is tight enough to mean something: ±5% on forces
        assert!(f.ci95_high / f.ci95_low < 1.1, "seed {seed}: force interval too wide: {f:?}");
        // and the noise is what the estimate sees (the model is exact up to estimation error)
        assert!((f.rmse / SIGMA_F_EV_PER_A - 1.0).abs() < 0.05, "{f:?}");
    }
    // too many folds for the frames: a clear error
    let truth = random_model(params(2, false), 5);
    let frames = noisy_dataset(&truth, 3, 6);
    let e = cross_validate(&frames, &truth.params, &opts, 4).unwrap_err().to_string();
    assert!(e.contains("4 folds for 3 labelled frames"), "{e}");
}
