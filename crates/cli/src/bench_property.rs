//! Figures of the property analyses: MSD over every time origin (frames x atoms per
//! second on a 10,000-frame, 500-atom trajectory) and the convex hull of 10,000
//! ternary entries (fewer of both with --quick and --smoke, under the same names); the
//! hull goal's candidates (Cu-Ni) relaxed with a SNAP model and their hull.

use crate::bench::{figure, Size};
use anyhow::Result;
use autopipe_atoms::Element;
use autopipe_property::diffusion::{fit_diffusion, FitWindow};
use autopipe_property::hull::{Entry, PhaseDiagram};
use rand::Rng;
use std::time::Instant;

pub fn run(size: Size) -> Result<()> {
    let (frames, atoms, entries): (usize, usize, usize) = match size {
        Size::Full => (10_000, 500, 10_000),
        Size::Quick => (2_000, 500, 2_000),
        Size::Smoke => (200, 20, 100),
    };
    let mut rng = autopipe_build::rng_from_seed(7);
    // A random walk (unwrapped positions), two species.
    let cu = Element::from_symbol("Cu").expect("Cu");
    let au = Element::from_symbol("Au").expect("Au");
    let species: Vec<Element> = (0..atoms).map(|i| if i % 4 == 0 { au } else { cu }).collect();
    let mut x: Vec<[f64; 3]> = (0..atoms).map(|_| [rng.gen::<f64>() * 20.0, 0.0, 0.0]).collect();
    let positions: Vec<Vec<[f64; 3]>> = (0..frames)
        .map(|_| {
            for p in x.iter_mut() {
                for v in p.iter_mut() {
                    *v += rng.gen::<f64>() - 0.5;
                }
            }
            x.clone()
        })
        .collect();
    let start = Instant::now();
    let d = fit_diffusion(&positions, &species, 10.0, &FitWindow::default())?;
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(d.len(), 2);
    figure("msd_frames_atoms_per_s", (frames * atoms) as f64 / elapsed, "1/s");

    // Random ternary entries: formation energies from -0.3 to 0.3 eV/atom.
    let entry = |name: &str, formula: &str, e: f64| Entry::new(name, formula, e).map_err(anyhow::Error::msg);
    let mut list = vec![entry("Cu", "Cu", -3.5)?, entry("Au", "Au", -3.8)?, entry("Ni", "Ni", -4.4)?];
    let mu = [-3.5, -3.8, -4.4];
    for i in 0..entries.saturating_sub(3) {
        let n = [rng.gen_range(0..9u32), rng.gen_range(0..9u32), rng.gen_range(1..9u32)];
        let atoms_n: u32 = n.iter().sum();
        let e = n.iter().zip(mu).map(|(k, m)| *k as f64 * m).sum::<f64>() + atoms_n as f64 * rng.gen_range(-0.3..0.3);
        let formula = format!("Cu{}Au{}Ni{}", n[0], n[1], n[2]);
        list.push(entry(&format!("e{i}"), &formula, e)?);
    }
    let start = Instant::now();
    let pd = PhaseDiagram::new(list)?;
    let results = pd.results()?;
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(results.len(), entries.max(3));
    figure("hull_10000_ternary_s", elapsed, "s");
    hull_goal(size)
}

/// The hull goal's computation on Cu-Ni (13 candidates, SQS included, relaxed with a
/// SNAP model fitted on EMT labels of random Cu-Ni alloys, through the guard).
fn hull_goal(size: Size) -> Result<()> {
    let (cu, ni) = (Element::from_symbol("Cu").expect("Cu"), Element::from_symbol("Ni").expect("Ni"));
    let recipe = autopipe_build::BulkRecipe {
        lattice: autopipe_build::Lattice::Fcc,
        elements: vec![cu, ni],
        lattice_constant_a: 3.565,
        supercell: [2, 2, 2],
        count: if size == Size::Smoke { 8 } else { 20 },
        max_strain: 0.05,
        rattle_a: 0.05,
        vacancy_fraction: 0.0,
        seed: 42,
    };
    let emt = autopipe_engines::emt::Emt::new();
    let frames = autopipe_build::generate_bulk(&recipe)
        .into_iter()
        .map(|s| {
            let mut f = autopipe_atoms::Frame::from_structure(s);
            autopipe_workflow::models::label_with_emt(&emt, &mut f)?;
            Ok(f)
        })
        .collect::<Result<Vec<_>>>()?;
    let params = autopipe_workflow::models::default_snap_params(&frames, 6, 5.0);
    let model = autopipe_potential::fit(&frames, params, &Default::default())
        .map_err(|e| anyhow::anyhow!("fitting the bench model: {e}"))?
        .model;
    let goal = autopipe_workflow::goals::HullGoal {
        elements: vec![cu, ni],
        seed: autopipe_workflow::goals::HULL_SEED,
        fmax_ev_per_a: autopipe_workflow::goals::HULL_FMAX_EV_PER_A,
        ordered: true,
        sqs: true,
    };
    let start = Instant::now();
    let candidates = goal.candidates()?;
    let evaluator = model.evaluator()?;
    let mut ff =
        autopipe_property::guard::Watched::new(autopipe_workflow::learn::ModelForceField { evaluator }, 2.0, 100_000);
    let hull = autopipe_workflow::goals::hull_of_candidates(&mut ff, &candidates, goal.fmax_ev_per_a, &mut |_| {})?;
    anyhow::ensure!(hull["entries"].as_array().map(Vec::len) == Some(13), "13 entries");
    figure("hull_goal_cu_ni_13_candidates_s", start.elapsed().as_secs_f64(), "s");
    Ok(())
}
