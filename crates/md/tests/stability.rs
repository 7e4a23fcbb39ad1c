//! The stability guard: MD that blows up stops with `MdError::Unstable` at the step it
//! happened, before any observer sees the broken state; normal MD never trips it.
//! And the settings' physical limits.
mod common;
use autopipe_atoms::Structure;
use autopipe_build::rng_from_seed;
use autopipe_md::*;
use common::*;

fn nvt(t: f64) -> Ensemble {
    Ensemble::Nvt { temperature_k: t, friction_per_fs: 0.02 }
}

fn invalid(settings: &MdSettings) -> String {
    match settings.validate() {
        Err(MdError::InvalidSettings(m)) => m,
        other => panic!("{settings:?} gave {other:?}"),
    }
}

#[test]
fn settings_are_refused_outside_their_physical_limits_with_the_limit_in_the_message() {
    let ok = MdSettings::new(2.0, 1000, nvt(300.0), 1);
    ok.validate().unwrap();
    MdSettings::new(20.0, 1, nvt(0.0), 1).validate().unwrap();
    let npt = |p: f64, tau: f64, beta: f64| Ensemble::Npt {
        temperature_k: 300.0,
        friction_per_fs: 0.01,
        pressure_gpa: p,
        barostat_time_fs: tau,
        compressibility_per_gpa: beta,
        isotropic: true,
    };
    MdSettings::new(2.0, 10, npt(1000.0, 500.0, 0.01), 1).validate().unwrap();
    MdSettings::new(2.0, 10, npt(-50.0, 500.0, 0.01), 1).validate().unwrap();
    let cases = [
        (MdSettings::new(0.0, 10, nvt(300.0), 1), "timestep_fs must be > 0 and <= 20 fs, got 0 fs"),
        (MdSettings::new(100.0, 10, nvt(300.0), 1), "timestep_fs must be > 0 and <= 20 fs, got 100 fs"),
        (MdSettings::new(f64::NAN, 10, nvt(300.0), 1), "timestep_fs must be > 0 and <= 20 fs"),
        (MdSettings::new(2.0, 2_000_000_000, nvt(300.0), 1), "steps must be <= 1000000000"),
        (MdSettings::new(2.0, 10, nvt(1e6), 1), "temperature_k must be in 0 ..= 20000 K, got 1000000 K"),
        (MdSettings::new(2.0, 10, nvt(-1.0), 1), "temperature_k must be in 0 ..= 20000 K"),
        (
            MdSettings::new(2.0, 10, Ensemble::Nvt { temperature_k: 300.0, friction_per_fs: 100.0 }, 1),
            "friction_per_fs must be in 0 ..= 10 /fs, got 100 /fs",
        ),
        (MdSettings::new(2.0, 10, npt(-1000.0, 500.0, 0.01), 1), "pressure_gpa must be in -50 ..= 1000 GPa"),
        (MdSettings::new(2.0, 10, npt(f64::INFINITY, 500.0, 0.01), 1), "pressure_gpa must be in -50 ..= 1000 GPa"),
        (MdSettings::new(2.0, 10, npt(1.0, 0.0, 0.01), 1), "barostat_time_fs must be > 0 and <= 1000000 fs"),
        (MdSettings::new(2.0, 10, npt(1.0, 500.0, 0.0), 1), "compressibility_per_gpa must be > 0 and <= 10 /GPa"),
    ];
    for (settings, text) in cases {
        let m = invalid(&settings);
        assert!(m.contains(text), "{m:?} lacks {text:?}");
    }
    let mut bad_guard = ok.clone();
    bad_guard.stability = Some(StabilityGuard { min_distance_a: -1.0, ..StabilityGuard::default() });
    assert!(invalid(&bad_guard).contains("stability.min_distance_a must be >= 0 Å"));
    bad_guard.stability = Some(StabilityGuard { distance_check_every: 0, ..StabilityGuard::default() });
    assert!(invalid(&bad_guard).contains("distance_check_every"));
    bad_guard.stability = Some(StabilityGuard { max_temperature_k: Some(f64::NAN), ..StabilityGuard::default() });
    assert!(invalid(&bad_guard).contains("max_temperature_k"));
    // run_md refuses them before any work (the `autopipe md --timestep-fs 100` case).
    let mut st = MdState::at_rest(cu_fcc(3.61, 1));
    let r = run_md(&mut st, &mut EmtFf::new(), &MdSettings::new(100.0, 10, nvt(300.0), 1), &mut []);
    assert!(matches!(r, Err(MdError::InvalidSettings(_))), "{r:?}");
    assert_eq!(st.step, 0);
}

#[test]
fn the_guard_is_on_by_default_and_in_the_json_form() {
    let s = MdSettings::new(2.0, 10, Ensemble::Nve, 0);
    assert_eq!(s.stability, Some(StabilityGuard::default()));
    let json: MdSettings =
        serde_json::from_str(r#"{"timestep_fs": 1, "steps": 5, "ensemble": {"kind": "nve"}}"#).unwrap();
    assert_eq!(json.stability, Some(StabilityGuard::default()));
    let off: MdSettings =
        serde_json::from_str(r#"{"timestep_fs": 1, "steps": 5, "ensemble": {"kind": "nve"}, "stability": null}"#)
            .unwrap();
    assert_eq!(off.stability, None);
    let g = StabilityGuard::default();
    assert_eq!(g.temperature_bound_k(300.0), 5300.0);
    assert_eq!(g.temperature_bound_k(1500.0), 15000.0);
    assert_eq!(StabilityGuard { max_temperature_k: Some(900.0), ..g }.temperature_bound_k(300.0), 900.0);
}

/// (outcome, steps the observer saw, max temperature it saw)
fn emt_run(n: usize, t: f64, dt: f64, steps: u64, ensemble: Ensemble) -> (Result<MdOutcome, MdError>, Vec<u64>, f64) {
    let s = cu_fcc(3.61, n);
    let v = maxwell_boltzmann(&s, t, &mut rng_from_seed(1));
    let mut st = MdState::new(s, v);
    let mut seen = Vec::new();
    let mut t_max = 0.0f64;
    let mut obs = FnObserver::new(1, |s: &MdState, _: &Evaluation| {
        seen.push(s.step);
        t_max = t_max.max(s.temperature_k());
        // Every observed frame passes the frame check the loop applies before labelling.
        check_frame_sane(&s.structure, 0.5).unwrap();
        Control::Continue
    });
    let r = run_md(&mut st, &mut EmtFf::new(), &MdSettings::new(dt, steps, ensemble, 3), &mut [&mut obs]);
    (r, seen, t_max)
}

#[test]
fn emt_md_that_blows_up_stops_unstable_at_its_step_and_observers_never_see_it() {
    // 108 atoms of Cu at 3000 K with the largest allowed time step: the temperature runs away.
    let (r, seen, t_max) = emt_run(3, 3000.0, 20.0, 2000, nvt(3000.0));
    let err = r.unwrap_err();
    let step = err.unstable_step().expect("an instability");
    match &err {
        MdError::Unstable { reason, .. } => assert!(reason.contains("exceeds 30000 K"), "{reason}"),
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains(&format!("MD unstable at step {step}")), "{err}");
    assert!(step > 1 && step < 2000);
    // The observers saw steps 0 .. step-1, all below the bound.
    assert_eq!(seen, (0..step).collect::<Vec<_>>());
    assert!(t_max <= 30000.0);
    // The same in NVE: the bound is then relative to the starting temperature.
    let (r, _, _) = emt_run(3, 3000.0, 20.0, 2000, Ensemble::Nve);
    assert!(matches!(r, Err(MdError::Unstable { .. })), "{r:?}");
}

#[test]
fn normal_md_never_trips_the_guard() {
    for (t, dt) in [(300.0, 2.0), (1500.0, 2.0), (300.0, 10.0)] {
        let (r, seen, _) = emt_run(3, t, dt, 300, nvt(t));
        assert_eq!(r, Ok(MdOutcome { steps_done: 300, reason: StopReason::Completed }), "{t} K, {dt} fs");
        assert_eq!(seen.len(), 301);
    }
}

/// Zero forces and a prescribed energy: atoms fly straight (through each other).
struct Free {
    energy: Box<dyn FnMut(usize) -> f64>,
    force_ev_per_a: f64,
    calls: usize,
}

impl ForceField for Free {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let e = (self.energy)(self.calls);
        self.calls += 1;
        let mut forces = vec![[0.0; 3]; s.len()];
        if let Some(f) = forces.last_mut() {
            f[0] = self.force_ev_per_a;
        }
        Ok(Evaluation { energy_ev: e, forces_ev_per_a: forces, stress_ev_per_a3: None, gamma: None })
    }
}

fn free(energy: impl FnMut(usize) -> f64 + 'static) -> Free {
    Free { energy: Box::new(energy), force_ev_per_a: 0.0, calls: 0 }
}

fn dimer(d_a: f64) -> Structure {
    let cu = cu();
    Structure {
        cell_a: [[20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]],
        positions_a: vec![[5.0, 5.0, 5.0], [5.0 + d_a, 5.0, 5.0], [15.0, 15.0, 15.0]],
        species: vec![cu; 3],
        pbc: [true; 3],
    }
}

#[test]
fn atoms_closer_than_the_minimum_distance_stop_the_run_naming_them() {
    // Atoms 1 and 2 approach at 0.1 Å/fs each: 3 Å apart, below 0.5 Å after 13 steps of 1 fs.
    let mut st = MdState::new(dimer(3.0), vec![[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0], [0.0; 3]]);
    let mut settings = MdSettings::new(1.0, 100, Ensemble::Nve, 0);
    // Only the distance can fire here.
    settings.stability = Some(StabilityGuard { max_temperature_k: Some(1e12), ..StabilityGuard::default() });
    let r = run_md(&mut st, &mut free(|_| 0.0), &settings, &mut []);
    assert_eq!(
        r,
        Err(MdError::Unstable { step: 13, reason: "atoms 1 and 2 are 0.400 Å apart (minimum 0.5 Å)".into() })
    );
    // Checked every 5 steps: found at the first check after.
    let mut st = MdState::new(dimer(3.0), vec![[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0], [0.0; 3]]);
    settings.stability.as_mut().unwrap().distance_check_every = 5;
    let r = run_md(&mut st, &mut free(|_| 0.0), &settings, &mut []);
    assert_eq!(r.unwrap_err().unstable_step(), Some(15));
    // Without the guard the atoms fly through each other.
    let mut st = MdState::new(dimer(3.0), vec![[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0], [0.0; 3]]);
    settings.stability = None;
    assert!(run_md(&mut st, &mut free(|_| 0.0), &settings, &mut []).is_ok());
    // A start with atoms on top of each other is refused at step 0, before any observer.
    let mut st = MdState::at_rest(dimer(0.2));
    let r = run_md(&mut st, &mut free(|_| 0.0), &MdSettings::new(1.0, 10, Ensemble::Nve, 0), &mut []);
    assert_eq!(r.unwrap_err().unstable_step(), Some(0));
}

#[test]
fn an_energy_dive_or_a_huge_force_stops_the_run() {
    // A model extrapolating into a hole: -1 eV per atom per step.
    let mut st = MdState::at_rest(dimer(2.5));
    let r = run_md(&mut st, &mut free(|k| -3.0 * k as f64), &MdSettings::new(1.0, 100, Ensemble::Nve, 0), &mut []);
    match r {
        Err(MdError::Unstable { step: 11, reason }) => {
            assert!(reason.contains("changed by -11.00 eV/atom") && reason.contains("±10 eV/atom"), "{reason}")
        }
        r => panic!("{r:?}"),
    }
    let mut st = MdState::at_rest(dimer(2.5));
    let mut ff = free(|_| 0.0);
    ff.force_ev_per_a = 500.0;
    let r = run_md(&mut st, &mut ff, &MdSettings::new(1.0, 100, Ensemble::Nve, 0), &mut []);
    assert_eq!(r, Err(MdError::Unstable { step: 0, reason: "force on atom 3 is 500.0 eV/Å, above 100 eV/Å".into() }));
}

#[test]
fn min_pair_distance_over_images_and_in_vacuum() {
    let fcc = cu_fcc(3.61, 2);
    assert!((min_pair_distance_a(&fcc) - 3.61 / 2f64.sqrt()).abs() < 1e-12);
    // One atom in a periodic cell: its own image.
    let cu = cu();
    let one = Structure {
        cell_a: [[2.4, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]],
        positions_a: vec![[0.0; 3]],
        species: vec![cu],
        pbc: [true; 3],
    };
    assert!((min_pair_distance_a(&one) - 2.4).abs() < 1e-12);
    assert_eq!(check_frame_sane(&one, 3.0), Err("atom 1 is 2.400 Å from its own periodic image (minimum 3 Å)".into()));
    // A molecule: a dimer 7 Å apart (beyond the first search radius), and one atom alone.
    let mut mol = Structure {
        cell_a: [[0.0; 3]; 3],
        positions_a: vec![[0.0; 3], [7.0, 0.0, 0.0]],
        species: vec![cu; 2],
        pbc: [false; 3],
    };
    assert!((min_pair_distance_a(&mol) - 7.0).abs() < 1e-12);
    mol.positions_a.push([3.0, 0.5, 0.0]);
    mol.species.push(cu);
    assert!((min_pair_distance_a(&mol) - (9.25f64).sqrt()).abs() < 1e-12);
    mol.positions_a.truncate(1);
    mol.species.truncate(1);
    assert_eq!(min_pair_distance_a(&mol), f64::INFINITY);
    check_frame_sane(&mol, 0.5).unwrap();
    // Periodic images across the boundary.
    let s = dimer(3.0);
    let mut across = s.clone();
    across.positions_a[1] = [19.8, 5.0, 5.0];
    assert!((min_pair_distance_a(&across) - 5.2).abs() < 1e-9);
    across.positions_a[1] = [4.9 + 20.0 * 3.0, 5.0, 5.0]; // unwrapped, 0.1 Å from atom 1
    assert!((min_pair_distance_a(&across) - 0.1).abs() < 1e-9);
    assert_eq!(check_frame_sane(&across, 0.5), Err("atoms 1 and 2 are 0.100 Å apart (minimum 0.5 Å)".into()));
    // Not a valid structure: never a panic, distance 0.
    let mut broken = s.clone();
    broken.cell_a[2] = [0.0; 3];
    assert_eq!(min_pair_distance_a(&broken), 0.0);
    assert!(check_frame_sane(&broken, 0.5).is_err());
    broken = s.clone();
    broken.positions_a[0][1] = f64::NAN;
    assert_eq!(min_pair_distance_a(&broken), 0.0);
    assert!(check_frame_sane(&broken, 0.5).unwrap_err().contains("not finite"));
}
