//! FIRE with the cell filter against ASE: the EMT Cu lattice constant our relaxation
//! finds is ASE's (FrechetCellFilter + FIRE, an independent implementation of both the
//! force field and the minimiser); a rattled, sheared cell relaxes below fmax and the
//! stress tolerance, back to the fcc energy, and its energy only goes down.

mod common;

use autopipe_property::relax::{relax, CellMode, RelaxSettings};
use common::{ase, cu_cubic, cu_primitive, emt};

#[test]
fn emt_cu_lattice_constant_matches_ase() {
    let reference = ase(serde_json::json!({"task": "relax_cu", "a": 3.7}));
    let a_ase = reference["a"].as_f64().unwrap();
    let start = cu_primitive(3.7);
    let r = relax(&mut emt(), &start, &RelaxSettings::full(1e-6, 1e-7)).unwrap();
    assert!(r.converged, "{r:?}");
    // The primitive cell's first vector is (0, a/2, a/2).
    let v = r.structure.cell_a[0];
    let a = 2f64.sqrt() * (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    assert!((a - a_ase).abs() < 1e-5, "a = {a} Å, ASE {a_ase} Å");
    let e_ase = reference["energy_ev"].as_f64().unwrap();
    assert!((r.evaluation.energy_ev - e_ase).abs() < 1e-8, "{} vs ASE {e_ase}", r.evaluation.energy_ev);
    // The same with the shape kept: a cubic cell only changes its volume.
    let mut fixed_shape = RelaxSettings::full(1e-6, 1e-7);
    fixed_shape.cell = CellMode::FixedShape;
    let r = relax(&mut emt(), &cu_cubic(3.5, 1), &fixed_shape).unwrap();
    assert!(r.converged);
    let c = r.structure.cell_a;
    assert!((c[0][0] - a_ase).abs() < 1e-5 && c[0][1].abs() < 1e-12 && (c[0][0] - c[2][2]).abs() < 1e-12, "{c:?}");
}

#[test]
fn rattled_sheared_cell_relaxes_below_fmax_and_energy_goes_down() {
    let mut s = cu_cubic(3.62, 2);
    let mut seed = 7u64;
    let mut uniform = || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    for p in &mut s.positions_a {
        for x in p.iter_mut() {
            *x += 0.2 * uniform();
        }
    }
    s.cell_a[0][1] += 0.15;
    s.cell_a[2][0] -= 0.1;
    let settings = RelaxSettings::full(1e-3, 1e-5);
    let r = relax(&mut emt(), &s, &settings).unwrap();
    assert!(r.converged, "{r:?}");
    assert!(r.fmax_ev_per_a < 1e-3 && r.max_stress_ev_per_a3 < 1e-5);
    assert!(r.evaluation.max_force_ev_per_a() < 1e-3);
    assert!(r.enthalpy_ev < r.initial_enthalpy_ev - 0.1, "{} -> {}", r.initial_enthalpy_ev, r.enthalpy_ev);
    // Back to fcc: the energy per atom of the relaxed primitive cell.
    let fcc = relax(&mut emt(), &cu_primitive(3.6), &RelaxSettings::full(1e-6, 1e-7)).unwrap();
    let per_atom = r.evaluation.energy_ev / 32.0;
    assert!((per_atom - fcc.evaluation.energy_ev).abs() < 1e-4, "{per_atom} vs fcc {}", fcc.evaluation.energy_ev);
    // Positions only: the cell is untouched, the forces still go below fmax.
    let r = relax(&mut emt(), &s, &RelaxSettings::positions(1e-3)).unwrap();
    assert!(r.converged && r.fmax_ev_per_a < 1e-3);
    assert_eq!(r.structure.cell_a, s.cell_a);
    assert!(r.evaluation.energy_ev < r.initial_energy_ev);
}
