//! Maxwell-Boltzmann velocities, observers (watchdog, MSD, trajectory, thermo log,
//! closures) and error paths, with fake force fields.
mod common;
use autopipe_atoms::extxyz::read_extxyz;
use autopipe_atoms::{Element, InfoValue, Structure};
use autopipe_build::{random_alloy, rng_from_seed};
use autopipe_md::units::{AMU_A2_PER_FS2_IN_EV, BOLTZMANN_EV_PER_K};
use autopipe_md::*;
use common::*;
use rand::Rng;
use rand_distr::StandardNormal;

/// Zero forces; a per-atom gamma that grows by `rate` per evaluation on atom 0.
struct Fake {
    calls: usize,
    rate: f64,
    stress: bool,
}

impl ForceField for Fake {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let mut gamma = vec![0.5; s.len()];
        gamma[0] = self.rate * self.calls as f64;
        self.calls += 1;
        Ok(Evaluation {
            energy_ev: 0.0,
            forces_ev_per_a: vec![[0.0; 3]; s.len()],
            stress_ev_per_a3: if self.stress { Some([0.0; 6]) } else { None },
            gamma: Some(gamma),
        })
    }
}

fn fake() -> Fake {
    Fake { calls: 0, rate: 0.5, stress: false }
}

fn eval_zero(n: usize) -> Evaluation {
    Evaluation { energy_ev: 0.0, forces_ev_per_a: vec![[0.0; 3]; n], stress_ev_per_a3: None, gamma: None }
}

#[test]
fn maxwell_boltzmann_has_zero_momentum_exact_temperature_and_kt_over_m_variance() {
    let cu = cu();
    let au = Element::from_symbol("Au").unwrap();
    // 4000 atoms, half Cu half Au: the variance must follow each mass.
    let s = random_alloy(&cu_fcc(3.7, 10), &[cu, au], &mut rng_from_seed(1));
    let t = 450.0;
    let v = maxwell_boltzmann(&s, t, &mut rng_from_seed(2));
    let st = MdState::new(s.clone(), v.clone());
    assert!(st.momentum().iter().all(|p| p.abs() < 1e-9), "{:?}", st.momentum());
    assert!((st.temperature_k() - t).abs() < 1e-9 * t);
    for e in [cu, au] {
        let comps: Vec<f64> =
            v.iter().zip(&s.species).filter(|(_, x)| **x == e).flat_map(|(u, _)| u.iter().copied()).collect();
        let n = comps.len() as f64;
        let var = comps.iter().map(|x| x * x).sum::<f64>() / n;
        let expected = BOLTZMANN_EV_PER_K * t / (e.mass_amu() * AMU_A2_PER_FS2_IN_EV);
        let sigma = (2.0 / n).sqrt(); // relative standard error of a Gaussian variance
        eprintln!(
            "{}: var {var:.4e} vs kT/m {expected:.4e} (rel. err. {:.4}, σ {sigma:.4})",
            e.symbol(),
            var / expected - 1.0
        );
        assert!((var / expected - 1.0).abs() < 4.0 * sigma);
        // Gaussian, not uniform: the fourth moment is 3 var².
        let m4 = comps.iter().map(|x| x.powi(4)).sum::<f64>() / n;
        assert!((m4 / (3.0 * var * var) - 1.0).abs() < 0.1, "kurtosis {}", m4 / (var * var));
    }
    // Reproducible from the seed.
    assert_eq!(v, maxwell_boltzmann(&s, t, &mut rng_from_seed(2)));
    assert_ne!(v, maxwell_boltzmann(&s, t, &mut rng_from_seed(3)));
}

#[test]
fn watchdog_collects_frames_above_select_and_stops_at_break() {
    let s = cu_fcc(3.6, 1);
    let mut st = MdState::at_rest(s);
    let mut ff = fake(); // max gamma at step k = 0.5 k (atom 0), others 0.5
    let mut wd = GammaWatchdog::new(2.0, 5.0).with_min_separation(4);
    let out = run_md(&mut st, &mut ff, &MdSettings::new(1.0, 100, Ensemble::Nve, 0), &mut [&mut wd]).unwrap();
    // gamma > 5 first at step 11 (5.5).
    assert_eq!(out.steps_done, 11);
    match &out.reason {
        StopReason::Observer(r) => assert!(r.contains("exceeds break") && r.contains("step 11"), "{r}"),
        r => panic!("not stopped by the watchdog: {r:?}"),
    }
    assert!(wd.broke());
    // Above select (> 2) from step 5; one per 4 steps: 5, 9; then the break frame 11.
    let steps: Vec<i64> = wd
        .collected()
        .iter()
        .map(|f| match f.info["md_step"] {
            InfoValue::Int(k) => k,
            _ => panic!(),
        })
        .collect();
    assert_eq!(steps, vec![5, 9, 11]);
    assert_eq!(wd.collected()[2].info.get("gamma_break"), Some(&InfoValue::Bool(true)));
    assert!(!wd.collected()[0].info.contains_key("gamma_break"));
    assert_eq!(wd.max_gamma_seen(), Some(5.5));
    assert_eq!(wd.stats().len(), 12); // steps 0..=11
    assert_eq!(wd.stats()[4].max, 2.0);
    assert!((wd.stats()[4].mean - (2.0 + 3.0 * 0.5) / 4.0).abs() < 1e-12);
    assert!((wd.fraction_above_select() - 7.0 / 12.0).abs() < 1e-12);
    // Collected frames are written and read back as extxyz, with their gamma.
    let text = autopipe_atoms::extxyz::write_extxyz(wd.collected());
    let back = read_extxyz(&text, "collected").unwrap();
    assert_eq!(back.len(), 3);
    // A model without gamma: the watchdog sees nothing and never stops the run.
    struct NoGamma;
    impl ForceField for NoGamma {
        fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
            Ok(eval_zero(s.len()))
        }
    }
    let mut wd = GammaWatchdog::new(2.0, 5.0);
    let mut st = MdState::at_rest(cu_fcc(3.6, 1));
    let out = run_md(&mut st, &mut NoGamma, &MdSettings::new(1.0, 20, Ensemble::Nve, 0), &mut [&mut wd]).unwrap();
    assert_eq!(out.reason, StopReason::Completed);
    assert!(wd.collected().is_empty() && wd.max_gamma_seen().is_none());
}

#[test]
fn msd_of_ballistic_free_particles_is_v2_t2_per_element() {
    let cu = cu();
    let au = Element::from_symbol("Au").unwrap();
    let s = random_alloy(&cu_fcc(3.6, 2), &[cu, au], &mut rng_from_seed(4));
    let v = maxwell_boltzmann(&s, 1000.0, &mut rng_from_seed(5));
    let mut st = MdState::new(s.clone(), v.clone());
    let mut msd = MsdAccumulator::new(10);
    let mut ff = fake();
    run_md(&mut st, &mut ff, &MdSettings::new(1.5, 200, Ensemble::Nve, 0), &mut [&mut msd]).unwrap();
    assert_eq!(msd.series().len(), 21);
    // Positions are never wrapped: they moved far past the cell for fast atoms.
    for e in [cu, au] {
        let v2 = mean(
            &v.iter()
                .zip(&s.species)
                .filter(|(_, x)| **x == e)
                .map(|(u, _)| u.iter().map(|c| c * c).sum())
                .collect::<Vec<f64>>(),
        );
        for (t, m) in msd.msd_of(e) {
            assert!(
                (m - v2 * t * t).abs() <= 1e-9 * (1.0 + v2 * t * t),
                "{}: MSD {m} vs v²t² {}",
                e.symbol(),
                v2 * t * t
            );
        }
    }
    assert!((msd.msd_of(cu).last().unwrap().0 - 300.0).abs() < 1e-9);
    // Ballistic: MSD ∝ t², so the straight-line "D" is not constant; the lighter Cu
    // (same kT) is faster than Au.
    assert!(msd.msd_of(cu).last().unwrap().1 > msd.msd_of(au).last().unwrap().1);
}

#[test]
fn msd_diffusion_coefficient_of_a_random_walk() {
    // 8000 walkers (slope error ~1.1%), Gaussian steps of σ per component every dt: D = σ²/(2 dt).
    let (sigma, dt) = (0.05, 2.0);
    let d_true = sigma * sigma / (2.0 * dt);
    let n = 8000;
    let cu = cu();
    let s = Structure::new(
        [[50.0, 0.0, 0.0], [0.0, 50.0, 0.0], [0.0, 0.0, 50.0]],
        vec![[0.0; 3]; n],
        vec![cu; n],
        [true; 3],
    )
    .unwrap();
    let mut st = MdState::at_rest(s);
    let mut msd = MsdAccumulator::new(5).with_com_correction(true);
    let mut rng = rng_from_seed(9);
    let ev = eval_zero(n);
    for _ in 0..=1000 {
        assert_eq!(msd.observe(&st, &ev), Control::Continue);
        for x in st.structure.positions_a.iter_mut() {
            for c in x.iter_mut() {
                *c += sigma * rng.sample::<f64, _>(StandardNormal);
            }
        }
        st.step += 1;
        st.time_fs += dt;
    }
    let d = msd.diffusion_coefficient(cu, 0.1).unwrap();
    eprintln!(
        "random walk: D = {:.4e} Å²/fs (true {d_true:.4e}), {:.3e} cm²/s, r² {:.4}",
        d.d_a2_per_fs, d.d_cm2_per_s, d.r2
    );
    assert!((d.d_a2_per_fs / d_true - 1.0).abs() < 0.05);
    assert!((d.d_cm2_per_s - 0.1 * d.d_a2_per_fs).abs() < 1e-18);
    assert!(d.r2 > 0.99);
    assert_eq!(msd.series().len(), 201);
}

#[test]
fn trajectory_thermo_log_and_closure_observer() {
    let s = cu_fcc(3.61, 2);
    let v = maxwell_boltzmann(&s, 300.0, &mut rng_from_seed(1));
    let mut st = MdState::new(s, v);
    let mut traj = ExtxyzTrajectory::new(Vec::new(), 5);
    let mut log = ThermoLog::new(Vec::new(), 2);
    let mut seen = Vec::new();
    let mut stopper = FnObserver::new(1, |s: &MdState, _e: &Evaluation| {
        seen.push(s.step);
        if s.step == 23 {
            Control::Stop("enough".into())
        } else {
            Control::Continue
        }
    });
    let settings = MdSettings::new(1.0, 100, Ensemble::Nvt { temperature_k: 300.0, friction_per_fs: 0.01 }, 3);
    let out = run_md(&mut st, &mut EmtFf::new(), &settings, &mut [&mut traj, &mut log, &mut stopper]).unwrap();
    assert_eq!(out, MdOutcome { steps_done: 23, reason: StopReason::Observer("enough".into()) });
    assert_eq!(seen, (0..=23).collect::<Vec<u64>>());
    assert_eq!(traj.frames_written, 5); // steps 0, 5, 10, 15, 20
    let text = String::from_utf8(traj.into_inner()).unwrap();
    let frames = read_extxyz(&text, "traj").unwrap();
    assert_eq!(frames.len(), 5);
    let f = &frames[4];
    assert_eq!(f.info["step"], InfoValue::Int(20));
    assert!(matches!(f.info["time_fs"], InfoValue::Float(t) if (t - 20.0).abs() < 1e-9));
    assert!(matches!(f.info["temperature_k"], InfoValue::Float(t) if t > 50.0 && t < 600.0));
    // The frame's energy is the force field's energy of the frame's structure.
    let e = EmtFf::new().evaluate(&f.structure).unwrap().energy_ev;
    assert!((f.energy_ev.unwrap() - e).abs() < 1e-6, "{:?} vs {e}", f.energy_ev);
    assert_eq!(f.forces_ev_per_a.as_ref().unwrap().len(), 32);
    assert!(f.stress_ev_per_a3.is_some());
    let log = String::from_utf8(log.into_inner()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("# step time_fs epot_ev"));
    assert_eq!(lines.len(), 1 + 12); // steps 0, 2, ..., 22
    let cols: Vec<f64> = lines[12].split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(cols.len(), 8);
    assert_eq!(cols[0], 22.0);
    assert!((cols[2] + cols[3] - cols[4]).abs() < 1e-6, "etot = epot + ekin");
    assert!((cols[7] - 32.0 / 4.0 * 3.61f64.powi(3)).abs() < 1e-3, "volume");
}

#[test]
fn errors_and_settings() {
    let s = cu_fcc(3.6, 1);
    // NPT without a stress.
    let npt = Ensemble::Npt {
        temperature_k: 300.0,
        friction_per_fs: 0.01,
        pressure_gpa: 0.0,
        barostat_time_fs: 100.0,
        compressibility_per_gpa: 0.01,
        isotropic: true,
    };
    let mut st = MdState::at_rest(s.clone());
    let r = run_md(&mut st, &mut fake(), &MdSettings::new(1.0, 10, npt.clone(), 0), &mut []);
    assert_eq!(r, Err(MdError::MissingStress));
    // A failing force field: the error names the step.
    struct FailsAt(u64, u64);
    impl ForceField for FailsAt {
        fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
            self.1 += 1;
            if self.1 > self.0 {
                Err("SCF exploded".into())
            } else {
                Ok(eval_zero(s.len()))
            }
        }
    }
    let mut st = MdState::at_rest(s.clone());
    let r = run_md(&mut st, &mut FailsAt(3, 0), &MdSettings::new(1.0, 10, Ensemble::Nve, 0), &mut []);
    assert_eq!(r, Err(MdError::ForceField { step: 3, message: "SCF exploded".into() }));
    // Bad settings and state.
    let mut st = MdState::at_rest(s.clone());
    assert!(matches!(
        run_md(&mut st, &mut fake(), &MdSettings::new(0.0, 1, Ensemble::Nve, 0), &mut []),
        Err(MdError::InvalidSettings(_))
    ));
    st.velocities_a_per_fs.pop();
    assert!(matches!(
        run_md(&mut st, &mut fake(), &MdSettings::new(1.0, 1, Ensemble::Nve, 0), &mut []),
        Err(MdError::InvalidState(_))
    ));
    // Settings as JSON, with defaults filled in.
    let json = r#"{"timestep_fs": 2.0, "steps": 1000, "seed": 5,
                   "ensemble": {"kind": "npt", "temperature_k": 300, "pressure_gpa": 1.5, "isotropic": false}}"#;
    let set: MdSettings = serde_json::from_str(json).unwrap();
    assert!(set.fix_com && set.observe_initial);
    match &set.ensemble {
        Ensemble::Npt { friction_per_fs, barostat_time_fs, isotropic, .. } => {
            assert_eq!((*friction_per_fs, *barostat_time_fs, *isotropic), (0.01, 200.0, false));
        }
        e => panic!("{e:?}"),
    }
    let back: MdSettings = serde_json::from_str(&serde_json::to_string(&set).unwrap()).unwrap();
    assert_eq!(back, set);
    let nve: MdSettings =
        serde_json::from_str(r#"{"timestep_fs": 1, "steps": 5, "ensemble": {"kind": "nve"}}"#).unwrap();
    assert_eq!(nve.ensemble, Ensemble::Nve);
}
