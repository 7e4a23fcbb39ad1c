//! K-fold cross-validation on synthetic data with a known answer: a random linear SNAP
//! model labels random Cu cells, Gaussian noise of known size is added to the labels, and
//! the cross-validated RMSE of a fit at the same 2J must contain, within its stated 95%
//! confidence interval, the true generalisation error of the model fitted on all frames:
//! `sqrt(σ² + ε²)` on new data, where σ is the known noise and ε the model's own error
//! against the noiseless truth on 100 fresh frames (precise: no label noise in it).

use autopipe_atoms::Frame;
use autopipe_potential::{cross_validate, evaluate_errors, fit, FitOptions, SnapModel};

mod synthetic;
use synthetic::{fcc_cu, params, random_model, Rng};

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
