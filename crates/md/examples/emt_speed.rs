//! MD speed with the built-in EMT: `cargo run --release -p autopipe-md --example emt_speed [n_cells] [steps]`.
use autopipe_atoms::{Element, Structure};
use autopipe_build::{bulk, rng_from_seed, supercell, Lattice};
use autopipe_engines::emt::Emt;
use autopipe_md::*;
use std::time::Instant;

struct EmtFf(Emt);
impl ForceField for EmtFf {
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let l = self.0.calculate(s).map_err(|e| e.to_string())?;
        Ok(Evaluation {
            energy_ev: l.energy_ev,
            forces_ev_per_a: l.forces_ev_per_a,
            stress_ev_per_a3: l.stress_ev_per_a3,
            gamma: None,
        })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let steps: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let cu = Element::from_symbol("Cu").unwrap();
    let s = supercell(&bulk(Lattice::Fcc, cu, 3.6), [n, n, n]);
    let atoms = s.len();
    let v = maxwell_boltzmann(&s, 300.0, &mut rng_from_seed(1));
    let mut ff = EmtFf(Emt::new());
    // The force field alone, for the MD overhead.
    let t = Instant::now();
    for _ in 0..steps {
        ff.evaluate(&s).unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "EMT alone: {atoms} atoms, {steps} evaluations in {secs:.3} s: {:.0} atom-evaluations/s",
        atoms as f64 * steps as f64 / secs
    );
    for (name, ens) in [
        ("NVE", Ensemble::Nve),
        ("NVT", Ensemble::Nvt { temperature_k: 300.0, friction_per_fs: 0.01 }),
        (
            "NPT",
            Ensemble::Npt {
                temperature_k: 300.0,
                friction_per_fs: 0.01,
                pressure_gpa: 0.0,
                barostat_time_fs: 200.0,
                compressibility_per_gpa: 0.01,
                isotropic: true,
            },
        ),
    ] {
        let mut state = MdState::new(s.clone(), v.clone());
        let settings = MdSettings::new(2.0, steps, ens, 1);
        let t = Instant::now();
        run_md(&mut state, &mut ff, &settings, &mut []).unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{name}: {atoms} atoms, {steps} steps in {secs:.3} s: {:.0} atom-steps/s, T = {:.1} K",
            atoms as f64 * steps as f64 / secs,
            state.temperature_k()
        );
    }
}
