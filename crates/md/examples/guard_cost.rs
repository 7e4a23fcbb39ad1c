//! What the stability guard costs: a 108-atom Cu EMT NVT run timed with and without it.
//! `cargo run --release -p autopipe-md --example guard_cost [steps]`
use autopipe_atoms::Element;
use autopipe_build::{bulk, rng_from_seed, supercell, Lattice};
use autopipe_md::{maxwell_boltzmann, run_md, Ensemble, MdSettings, MdState, StabilityGuard};
use std::time::Instant;

#[path = "../tests/common/mod.rs"]
mod common;
use common::EmtFf;

fn main() {
    let steps: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let s = supercell(&bulk(Lattice::Fcc, Element::from_symbol("Cu").unwrap(), 3.61), [3, 3, 3]);
    let v = maxwell_boltzmann(&s, 600.0, &mut rng_from_seed(1));
    let guards = [
        ("no guard", None),
        ("guard, distances every step", Some(StabilityGuard::default())),
        ("guard, distances every 10 steps", Some(StabilityGuard { distance_check_every: 10, ..Default::default() })),
    ];
    for round in 0..2 {
        for (name, guard) in &guards {
            let mut settings =
                MdSettings::new(2.0, steps, Ensemble::Nvt { temperature_k: 600.0, friction_per_fs: 0.02 }, 7);
            settings.stability = guard.clone();
            let mut state = MdState::new(s.clone(), v.clone());
            let t0 = Instant::now();
            run_md(&mut state, &mut EmtFf::new(), &settings, &mut []).expect("stable MD");
            let us = t0.elapsed().as_secs_f64() * 1e6 / steps as f64;
            if round == 1 {
                println!("{name:34} {us:8.1} µs/step ({} atoms, {steps} steps)", s.len());
            }
        }
    }
    // The distance check alone.
    let t0 = Instant::now();
    let mut d = 0.0;
    for _ in 0..steps {
        d += autopipe_md::stability::closest_pair_within(&s, 0.5).map_or(0.0, |p| p.2);
    }
    println!(
        "closest_pair_within(0.5 Å) alone     {:8.1} µs/call ({d})",
        t0.elapsed().as_secs_f64() * 1e6 / steps as f64
    );
}
