//! NVE and NVT Langevin with EMT Cu: physics checked against physics.
mod common;
use autopipe_build::rng_from_seed;
use autopipe_md::*;
use common::*;

struct Sample {
    etot: f64,
    epot: f64,
    t: f64,
    p: [f64; 3],
}

fn run(state: &mut MdState, settings: &MdSettings) -> (MdOutcome, Vec<Sample>) {
    let mut ff = EmtFf::new();
    let mut samples = Vec::new();
    let mut obs = FnObserver::new(1, |s: &MdState, e: &Evaluation| {
        samples.push(Sample {
            etot: e.energy_ev + s.kinetic_energy_ev(),
            epot: e.energy_ev,
            t: s.temperature_k(),
            p: s.momentum(),
        });
        Control::Continue
    });
    let out = run_md(state, &mut ff, settings, &mut [&mut obs]).unwrap();
    (out, samples)
}

fn rms_fluctuation(x: &[f64]) -> f64 {
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn nve_conserves_energy_with_dt_squared_error_and_momentum() {
    let s = cu_fcc(3.61, 2); // 32 atoms
    let n = s.len() as f64;
    let v = maxwell_boltzmann(&s, 500.0, &mut rng_from_seed(7));
    // Same physical time (2 ps) with dt = 2 fs and dt = 1 fs.
    let mut st2 = MdState::new(s.clone(), v.clone());
    let (out, e2) = run(&mut st2, &MdSettings::new(2.0, 1000, Ensemble::Nve, 0));
    assert_eq!(out, MdOutcome { steps_done: 1000, reason: StopReason::Completed });
    assert_eq!(st2.step, 1000);
    assert!((st2.time_fs - 2000.0).abs() < 1e-9);
    let mut st1 = MdState::new(s.clone(), v.clone());
    let (_, e1) = run(&mut st1, &MdSettings::new(1.0, 2000, Ensemble::Nve, 0));

    let etot2: Vec<f64> = e2.iter().map(|x| x.etot).collect();
    let etot1: Vec<f64> = e1.iter().map(|x| x.etot).collect();
    let max_dev2 = etot2.iter().map(|e| (e - etot2[0]).abs()).fold(0.0, f64::max) / n;
    let max_dev1 = etot1.iter().map(|e| (e - etot1[0]).abs()).fold(0.0, f64::max) / n;
    // Drift: mean of the last tenth minus mean of the first tenth.
    let tenth = |x: &[f64], last: bool| {
        let k = x.len() / 10;
        if last {
            mean(&x[x.len() - k..])
        } else {
            mean(&x[..k])
        }
    };
    let drift2 = (tenth(&etot2, true) - tenth(&etot2, false)).abs() / n;
    eprintln!("dt=2: max |dE| {max_dev2:.2e} eV/atom, drift {drift2:.2e}; dt=1: max |dE| {max_dev1:.2e}");
    assert!(max_dev2 < 1e-3, "energy not conserved: {max_dev2} eV/atom");
    assert!(drift2 < 2e-4, "energy drifts: {drift2} eV/atom");
    // Verlet's energy error is O(dt²): halving dt divides the fluctuation by ~4.
    let ratio = rms_fluctuation(&etot2) / rms_fluctuation(&etot1);
    eprintln!("rms fluctuation ratio dt=2 / dt=1: {ratio:.2}");
    assert!(ratio > 2.8 && ratio < 5.5, "fluctuation ratio {ratio} is not ~4");
    // The potential energy does move (the test would pass trivially otherwise).
    let epot: Vec<f64> = e2.iter().map(|x| x.epot).collect();
    assert!(rms_fluctuation(&epot) > 50.0 * rms_fluctuation(&etot2));
    // Momentum: zero at the start, zero at the end (forces sum to zero).
    for smp in e2.iter().chain(&e1) {
        assert!(smp.p.iter().all(|x| x.abs() < 1e-9), "momentum {:?}", smp.p);
    }
    // Equipartition in a (nearly harmonic) solid started at the perfect lattice:
    // the kinetic energy is shared with the potential energy, so <T> ~ T0/2.
    let t_mean = mean(&e2[500..].iter().map(|x| x.t).collect::<Vec<_>>());
    eprintln!("NVE mean T over the second half: {t_mean:.1} K (T0 = 500 K)");
    assert!((t_mean - 250.0).abs() < 30.0, "mean T {t_mean}");
}

#[test]
fn nvt_langevin_reaches_target_temperature_and_is_reproducible() {
    let s = cu_fcc(3.63, 3); // 108 atoms
    let v = maxwell_boltzmann(&s, 100.0, &mut rng_from_seed(3));
    let ens = Ensemble::Nvt { temperature_k: 600.0, friction_per_fs: 0.02 };
    let mut st = MdState::new(s.clone(), v.clone());
    let (_, samples) = run(&mut st, &MdSettings::new(2.0, 2000, ens.clone(), 11));
    let t2: Vec<f64> = samples[1000..].iter().map(|x| x.t).collect();
    let t_mean = mean(&t2);
    eprintln!("NVT 600 K: mean T over the second half {t_mean:.1} K");
    assert!((t_mean - 600.0).abs() < 0.04 * 600.0, "mean T {t_mean}");
    // The total momentum stays zero (fix_com).
    assert!(samples.iter().all(|x| x.p.iter().all(|p| p.abs() < 1e-9)));
    // Canonical kinetic-energy fluctuations: var(T)/T² = 2/(3N-3), here ~0.0062.
    let rel_var = rms_fluctuation(&t2).powi(2) / t_mean.powi(2);
    let expected = 2.0 / (3.0 * 108.0 - 3.0);
    eprintln!("relative variance of T: {rel_var:.5} (canonical {expected:.5})");
    assert!(rel_var > 0.6 * expected && rel_var < 1.5 * expected, "var {rel_var} vs {expected}");

    // Same seed: identical trajectory; another seed: a different one.
    let short = |seed: u64| {
        let mut st = MdState::new(s.clone(), v.clone());
        run(&mut st, &MdSettings::new(2.0, 100, ens.clone(), seed));
        st
    };
    let a = short(5);
    let b = short(5);
    let c = short(6);
    assert_eq!(a, b);
    assert_ne!(a.structure.positions_a, c.structure.positions_a);
    // A run split in two pieces is bit-for-bit the run done in one go.
    let mut split = MdState::new(s.clone(), v.clone());
    run(&mut split, &MdSettings::new(2.0, 40, ens.clone(), 5));
    run(&mut split, &MdSettings::new(2.0, 60, ens.clone(), 5));
    assert_eq!(split, a);
}
