//! The ASE bridge against real Python: ASE's own EMT through the bridge gives our
//! built-in EMT's numbers (to 1e-10, as `emt_vs_ase.rs` found for ASE's EMT directly);
//! a missing interpreter, module or name gives a clear error before any structure; a
//! calculator that raises on one structure fails that structure only, and one that kills
//! its process is restarted. The failing calculator is a small real Python module
//! written by the test (not a mock). Needs `python3` with ASE on PATH (scripts/test.sh).

use autopipe_atoms::{Element, Structure};
use autopipe_engines::ase_bridge::{AseBridge, AseBridgeError, AseSettings, DEFAULT_PYTHON};
use autopipe_engines::emt::Emt;
use autopipe_engines::{EngineOutcome, EngineSpec};

const TOLERANCE: f64 = 1e-10;

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

/// splitmix64, for deterministic rattles.
struct Rng(u64);
impl Rng {
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        lo + (hi - lo) * (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A rattled fcc supercell with species cycling through `symbols`.
fn fcc(symbols: &[&str], a: f64, reps: usize, rattle_a: f64, rng: &mut Rng) -> Structure {
    let mut positions = Vec::new();
    let mut species = Vec::new();
    for x in 0..reps {
        for y in 0..reps {
            for z in 0..reps {
                for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]] {
                    let p = [(x as f64 + b[0]) * a, (y as f64 + b[1]) * a, (z as f64 + b[2]) * a];
                    positions.push(p.map(|c| c + rng.uniform(-rattle_a, rattle_a)));
                    species.push(el(symbols[species.len() % symbols.len()]));
                }
            }
        }
    }
    let l = reps as f64 * a;
    Structure::new([[l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l]], positions, species, [true; 3]).unwrap()
}

/// A small cluster of `n` Cu atoms in a non-periodic box.
fn cluster(n: usize) -> Structure {
    let positions = (0..n).map(|i| [2.5 * i as f64, 0.3 * (i % 2) as f64, 0.0]).collect();
    Structure::new([[0.0; 3]; 3], positions, vec![el("Cu"); n], [false; 3]).unwrap()
}

fn structures() -> Vec<Structure> {
    let mut rng = Rng(11);
    let mut out = vec![
        fcc(&["Cu"], 3.61, 2, 0.1, &mut rng),
        fcc(&["Cu", "Au", "Ni"], 3.8, 2, 0.15, &mut rng),
        fcc(&["Al", "Pd"], 4.0, 3, 0.05, &mut rng),
        cluster(4),
    ];
    // a sheared triclinic primitive cell, smaller than the cutoff
    let h = 3.61 / 2.0;
    out.push(
        Structure::new(
            [[0.05, h, h + 0.1], [h, 0.0, h], [h - 0.08, h, 0.02]],
            vec![[0.0; 3]],
            vec![el("Pt")],
            [true; 3],
        )
        .unwrap(),
    );
    out
}

fn close(what: &str, a: f64, b: f64) {
    assert!((a - b).abs() <= TOLERANCE, "{what}: bridge {a} vs built-in {b} (|diff| {:e})", (a - b).abs());
}

#[test]
fn ase_emt_through_the_bridge_equals_the_builtin_emt() {
    let energies_key = vec!["energies".to_string()];
    let mut bridge =
        AseBridge::start(DEFAULT_PYTHON, "ase.calculators.emt.EMT", &Default::default(), &energies_key).unwrap();
    for (k, s) in structures().iter().enumerate() {
        let got = bridge.evaluate(s).unwrap_or_else(|e| panic!("structure {k}: {e}"));
        let want = Emt::new().calculate(s).unwrap();
        close(&format!("#{k} energy"), got.labels.energy_ev, want.energy_ev);
        for (i, (f, g)) in got.labels.forces_ev_per_a.iter().zip(&want.forces_ev_per_a).enumerate() {
            for c in 0..3 {
                close(&format!("#{k} force {i}.{c}"), f[c], g[c]);
            }
        }
        match (got.labels.stress_ev_per_a3, want.stress_ev_per_a3) {
            (Some(a), Some(b)) => (0..6).for_each(|c| close(&format!("#{k} stress {c}"), a[c], b[c])),
            (None, None) => assert!(s.pbc.iter().all(|p| !p), "#{k}: periodic but no stress"),
            (a, b) => panic!("#{k}: stress {a:?} vs {b:?}"),
        }
        // an extra result: EMT's per-atom energies, which sum to the energy
        let per_atom = &got.extra["energies"];
        assert_eq!(per_atom.len(), s.len());
        close(&format!("#{k} sum of energies"), per_atom.iter().sum(), got.labels.energy_ev);
    }
}

#[test]
fn a_missing_interpreter_module_or_name_is_a_clear_error() {
    let none = &Default::default();
    let e = AseBridge::start("/nonexistent/python3", "ase.calculators.emt.EMT", none, &[]).err().unwrap();
    assert!(matches!(e, AseBridgeError::NoPython { .. }), "{e:?}");
    assert!(e.to_string().contains("/nonexistent/python3"), "{e}");

    let e = AseBridge::start(DEFAULT_PYTHON, "no_such_package.calculators.Calc", none, &[]).err().unwrap();
    assert!(matches!(e, AseBridgeError::NoCalculator { .. }), "{e:?}");
    let m = e.to_string();
    assert!(m.contains("no_such_package.calculators") && m.contains("cannot import"), "{m}");

    let e = AseBridge::start(DEFAULT_PYTHON, "ase.calculators.emt.NoSuchCalculator", none, &[]).err().unwrap();
    assert!(e.to_string().contains("has no `NoSuchCalculator`"), "{e}");

    // a constructor that raises on its keyword arguments, and a function that returns no calculator
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("no_such_keyword".into(), 1.into());
    let e = AseBridge::start(DEFAULT_PYTHON, "json.loads", &kwargs, &[]).err().unwrap();
    assert!(matches!(e, AseBridgeError::Construct { .. }), "{e:?}");
    assert!(e.to_string().contains("`json.loads(**kwargs)` raised TypeError"), "{e}");
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("name".into(), "Cu".into());
    let e = AseBridge::start(DEFAULT_PYTHON, "ase.build.bulk", &kwargs, &[]).err().unwrap();
    assert!(e.to_string().contains("returned a Atoms, not an ASE calculator"), "{e}");

    // the same through the engine: an error outcome, not a panic
    let spec = EngineSpec::Ase(AseSettings {
        calculator: "no_such_package.Calc".into(),
        kwargs: Default::default(),
        python: None,
    });
    let dir = tempfile::tempdir().unwrap();
    match spec.run(dir.path(), &cluster(2)) {
        EngineOutcome::Error { message } => assert!(message.contains("no_such_package"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// A real calculator module: EMT, except that it raises on 3-atom structures, raises a
/// `KohnShamConvergenceError` on 6-atom ones, kills its own process on 5-atom ones, and
/// prints to stdout on every call (which must not disturb the protocol).
const PICKY: &str = r#"
import os
from ase.calculators.emt import EMT

class KohnShamConvergenceError(Exception):
    pass

class Picky(EMT):
    def __init__(self, refuse=3, **kwargs):
        super().__init__(**kwargs)
        self.refuse = refuse

    def calculate(self, atoms=None, *args, **kwargs):
        print("picky: computing", len(atoms), "atoms")
        if len(atoms) == self.refuse:
            raise ValueError(f"{self.refuse} atoms are refused")
        if len(atoms) == 5:
            os._exit(7)
        if len(atoms) == 6:
            raise KohnShamConvergenceError("SCF not converged")
        super().calculate(atoms, *args, **kwargs)
"#;

#[test]
fn a_calculator_failing_on_one_structure_fails_that_structure_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("picky_calc.py"), PICKY).unwrap();
    // the module is found through PYTHONPATH; other tests' interpreters ignore it
    let path = match std::env::var("PYTHONPATH") {
        Ok(p) if !p.is_empty() => format!("{}:{p}", dir.path().display()),
        _ => dir.path().display().to_string(),
    };
    std::env::set_var("PYTHONPATH", path);
    let mut kwargs = serde_json::Map::new();
    kwargs.insert("refuse".into(), 3.into());
    let mut bridge = AseBridge::start(DEFAULT_PYTHON, "picky_calc.Picky", &kwargs, &[]).unwrap();

    let ok = bridge.evaluate(&cluster(2)).unwrap();
    close("2 atoms", ok.labels.energy_ev, Emt::new().calculate(&cluster(2)).unwrap().energy_ev);
    match bridge.evaluate(&cluster(3)) {
        Err(AseBridgeError::Structure { error_type, message, .. }) => {
            assert_eq!(error_type, "ValueError");
            assert!(message.contains("3 atoms are refused"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // the same bridge goes on
    let four = bridge.evaluate(&cluster(4)).unwrap();
    close("4 atoms", four.labels.energy_ev, Emt::new().calculate(&cluster(4)).unwrap().energy_ev);
    // a crash of the process fails this structure, and the next call restarts the bridge
    match bridge.evaluate(&cluster(5)) {
        Err(e @ AseBridgeError::Died { .. }) => {
            let m = e.to_string();
            assert!(m.contains("ended unexpectedly") && m.contains("picky: computing 5 atoms"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let again = bridge.evaluate(&cluster(4)).unwrap();
    assert_eq!(again.labels, four.labels);

    // as an engine: a convergence error is a physics failure, any other exception an error
    let spec = EngineSpec::Ase(AseSettings { calculator: "picky_calc.Picky".into(), kwargs, python: None });
    let job = tempfile::tempdir().unwrap();
    assert!(matches!(spec.run(job.path(), &cluster(6)), EngineOutcome::PhysicsFailure { .. }));
    assert!(matches!(spec.run(job.path(), &cluster(3)), EngineOutcome::Error { .. }));
    match spec.run(job.path(), &cluster(2)) {
        EngineOutcome::Labels { labels, .. } => assert_eq!(labels, ok.labels),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ase_engine_settings_are_validated_and_label_defining() {
    let spec: EngineSpec =
        serde_json::from_str(r#"{"engine": "ase", "calculator": "ase.calculators.emt.EMT", "kwargs": {"a": 1}}"#)
            .unwrap();
    assert_eq!(spec.name(), "ase");
    assert_eq!(serde_json::from_str::<EngineSpec>(&serde_json::to_string(&spec).unwrap()).unwrap(), spec);
    let other: EngineSpec =
        serde_json::from_str(r#"{"engine": "ase", "calculator": "ase.calculators.emt.EMT", "kwargs": {"a": 2}}"#)
            .unwrap();
    assert_ne!(spec.label_params(), other.label_params());
    let e = serde_json::from_str::<EngineSpec>(r#"{"engine": "ase", "calculator": "x.Y", "kwarg": {}}"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `kwarg`"), "{e}");
}
