//! Figures of structure generation: SQS trial swaps per second and the time to a good
//! SQS (64-atom fcc binary, three shells); farthest-point selection at scale; the ASE
//! bridge against the built-in EMT; screening throughput.

use crate::bench::{figure, Size};
use anyhow::Result;
use autopipe_atoms::Element;
use autopipe_build::sqs::{SqsProblem, Sublattice};
use autopipe_build::{supercell, Prototype};
use std::time::Instant;

pub fn run(size: Size) -> Result<()> {
    // Trial swaps of the timed annealing run.
    let swaps: u64 = match size {
        Size::Full => 5_000_000,
        Size::Quick => 1_000_000,
        Size::Smoke => 10_000,
    };
    let cu = Element::from_symbol("Cu").expect("Cu");
    let au = Element::from_symbol("Au").expect("Au");
    let parent = supercell(&Prototype::Fcc.build(&[cu], 3.8, None)?, [2, 2, 4]);
    let sub = Sublattice { sites: (0..parent.len()).collect(), species: vec![cu, au], fractions: vec![0.5, 0.5] };
    let problem = SqsProblem::new(&parent, &[sub], 3)?;
    // Every trial swap, no early stop at a perfect objective.
    let start = Instant::now();
    let r = problem.anneal_with(swaps, 1, false);
    let elapsed_s = start.elapsed().as_secs_f64();
    figure("sqs_trial_swaps_per_s", r.steps as f64 / elapsed_s, "1/s");
    // The time to an objective within 0.01 of the best found: the step where the run
    // first got there, timed by running exactly that many steps (median of 5 seeds).
    let mut times = Vec::new();
    for seed in 1..=5u64 {
        let full = problem.anneal(swaps.max(10_000), seed);
        let best = full.objective;
        let step = full.improvements.iter().find(|(_, o)| *o <= best + 0.01).map_or(0, |(s, _)| *s);
        let start = Instant::now();
        let _ = problem.anneal_with(step, seed, true);
        times.push(start.elapsed().as_secs_f64().max(1e-9));
    }
    times.sort_by(f64::total_cmp);
    figure("sqs_s_to_within_0_01_of_best", times[times.len() / 2], "s");
    fps(size)?;
    ase_bridge(size)?;
    screening(size)
}

/// 32-atom rattled fcc Cu cells, distinct.
fn cu_cells(n: usize) -> Vec<autopipe_atoms::Structure> {
    let cu = Element::from_symbol("Cu").expect("Cu");
    let base = supercell(&Prototype::Fcc.build(&[cu], 3.61, None).expect("fcc Cu"), [2, 2, 2]);
    let mut rng = autopipe_build::rng_from_seed(3);
    (0..n).map(|_| autopipe_build::rattle(&base, 0.1, &mut rng)).collect()
}

/// `ase_bridge_structures_per_s`: ASE's EMT through the bridge (one Python process, the
/// start included), 32-atom cells; `emt_builtin_structures_per_s`: the same cells with
/// the built-in EMT. Skipped (said on stderr) without a Python with ASE (`python3`, or
/// `AUTOPIPE_LAMMPS_PYTHON`).
fn ase_bridge(size: Size) -> Result<()> {
    use autopipe_engines::ase_bridge::{AseBridge, DEFAULT_PYTHON};
    let n = if size == Size::Smoke { 5 } else { 300 };
    let cells = cu_cells(n);
    let start = Instant::now();
    // python3 on PATH, else the Python the LAMMPS figures use
    let start_with = |python: &str| AseBridge::start(python, "ase.calculators.emt.EMT", &Default::default(), &[]);
    let mut bridge = match start_with(DEFAULT_PYTHON).or_else(|e| match std::env::var("AUTOPIPE_LAMMPS_PYTHON") {
        Ok(p) => start_with(&p),
        Err(_) => Err(e),
    }) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ase_bridge_structures_per_s: skipped ({e})");
            return Ok(());
        }
    };
    for s in &cells {
        std::hint::black_box(bridge.evaluate(s)?);
    }
    figure("ase_bridge_structures_per_s", n as f64 / start.elapsed().as_secs_f64(), "1/s");
    let emt = autopipe_engines::emt::Emt::new();
    let start = Instant::now();
    for s in &cells {
        std::hint::black_box(emt.calculate(s)?);
    }
    figure("emt_builtin_structures_per_s", n as f64 / start.elapsed().as_secs_f64(), "1/s");
    Ok(())
}

/// `screen_structures_per_s`: the covalent-radius distance screen of 32-atom cells.
fn screening(size: Size) -> Result<()> {
    let n = if size == Size::Smoke { 50 } else { 5_000 };
    let cells = cu_cells(n);
    let start = Instant::now();
    let rejected = cells.iter().filter(|s| autopipe_build::screen::closest_contact(s, 0.6).is_some()).count();
    figure("screen_structures_per_s", n as f64 / start.elapsed().as_secs_f64(), "1/s");
    anyhow::ensure!(rejected == 0, "{rejected} of {n} ideal-ish cells rejected");
    Ok(())
}

/// Farthest-point selection of 1,000 of 100,000 descriptor vectors of length 56.
/// `fps_s`: vectors of a 4-parameter family (each component a sum of sines of the
/// parameters), as the descriptors of strained, rattled variants of a few structures
/// are; `fps_s_uniform_random`: uniform random vectors, the worst case (all distances
/// alike, so the triangle-inequality pruning saves nothing).
fn fps(size: Size) -> Result<()> {
    let (n, k) = if size == Size::Smoke { (2_000, 20) } else { (100_000, 1_000) };
    let dim = 56;
    // splitmix64 values in [0, 1)
    let mut state = 5u64;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
    };
    let w: Vec<f32> = (0..dim * 4).map(|_| uniform() * 6.0).collect();
    let mut family = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let t: Vec<f32> = (0..4).map(|_| uniform()).collect();
        for j in 0..dim {
            family.push((0..4).map(|m| (w[j * 4 + m] * t[m]).sin()).sum::<f32>());
        }
    }
    let random: Vec<f32> = (0..n * dim).map(|_| uniform()).collect();
    for (name, data) in [("fps_s", &family), ("fps_s_uniform_random", &random)] {
        let start = Instant::now();
        let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
        let picks = autopipe_build::select::select_fps(data, dim, k, &[], threads)?;
        let elapsed_s = start.elapsed().as_secs_f64();
        anyhow::ensure!(picks.len() == k, "FPS picked {} of {k}", picks.len());
        figure(name, elapsed_s, "s");
    }
    Ok(())
}
