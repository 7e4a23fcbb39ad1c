//! Elastic constants with the built-in EMT against ASE's EMT: C11, C12, C44 of Cu within
//! 1% of an independent central-finite-difference calculation done by ASE in the test;
//! the Born criteria flag a sheared, unstable cell.

mod common;

use autopipe_atoms::units::EV_PER_A3_IN_GPA;
use autopipe_property::elastic::{elastic_constants, strained, voigt_strain, ElasticSettings};
use common::{ase, ase_atoms, cu_cubic, emt};

#[test]
fn emt_cu_constants_match_ase_finite_differences() {
    let (e, relaxed) = elastic_constants(&mut emt(), &cu_cubic(3.6, 1), &ElasticSettings::default()).unwrap();
    let mut task = ase_atoms(&relaxed);
    task["task"] = "elastic_fd".into();
    task["delta"] = 1e-4.into();
    let reference = ase(task);
    let c_ase: Vec<Vec<f64>> = serde_json::from_value(reference["c_ev_per_a3"].clone()).unwrap();
    let c_ase_gpa = |i: usize, j: usize| c_ase[i][j] * EV_PER_A3_IN_GPA;
    for (name, i, j) in [("C11", 0, 0), ("C12", 0, 1), ("C44", 3, 3), ("C22", 1, 1), ("C13", 0, 2), ("C66", 5, 5)] {
        let (ours, theirs) = (e.c_ij_gpa[i][j], c_ase_gpa(i, j));
        eprintln!("{name}: ours {ours:.3} GPa, ASE finite differences {theirs:.3} GPa");
        assert!((ours - theirs).abs() < 0.01 * theirs.abs(), "{name}: {ours} vs ASE {theirs}");
    }
    // Cubic: no coupling between normal and shear strains.
    assert!(e.c_ij_gpa[0][3].abs() < 1e-3 * e.c_ij_gpa[0][0], "{:?}", e.c_ij_gpa);
    assert!(e.born_stable);
    assert!(e.fit_rms_residual_gpa < 0.5, "{}", e.fit_rms_residual_gpa);
    let k = (e.c_ij_gpa[0][0] + 2.0 * e.c_ij_gpa[0][1]) / 3.0;
    assert!((e.bulk_modulus_gpa.hill.unwrap() - k).abs() < 1e-6 * k);
}

#[test]
fn born_criteria_flag_a_sheared_unstable_cell() {
    let unrelaxed = ElasticSettings::unrelaxed();
    let fcc = cu_cubic(3.59, 1);
    let (e, _) = elastic_constants(&mut emt(), &fcc, &unrelaxed).unwrap();
    assert!(e.born_stable && e.eigenvalues_gpa[0] > 50.0, "{:?}", e.eigenvalues_gpa);
    // Sheared by γ = 0.3 (past EMT Cu's ideal shear strain), the cell is unstable.
    let sheared = strained(&fcc, &voigt_strain(5, 0.3));
    let (e, _) = elastic_constants(&mut emt(), &sheared, &unrelaxed).unwrap();
    assert!(!e.born_stable && e.eigenvalues_gpa[0] < -10.0, "{:?}", e.eigenvalues_gpa);
    // And so is bcc Cu: C11 < C12, the Bain path's instability.
    let bcc = autopipe_build::bulk(autopipe_build::Lattice::Bcc, common::cu(), 2.87);
    let (e, _) = elastic_constants(&mut emt(), &bcc, &unrelaxed).unwrap();
    assert!(!e.born_stable && e.c_ij_gpa[0][0] < e.c_ij_gpa[0][1], "{:?}", e.c_ij_gpa);
}

/// The cells the driver returns, evaluated again by a calculator and fitted by the pure
/// fit, give the driver's own constants (what `--with-oracle` does with the oracle's
/// stresses): one unstrained cell first, then each component at ± each amplitude, with
/// the relaxed reference's cell strained as said.
#[test]
fn the_returned_cells_refitted_give_the_same_constants() {
    use autopipe_md::ForceField;
    use autopipe_property::elastic::{elastic_constants_with_cells, elastic_from_stresses};
    let settings = ElasticSettings::default();
    let (e, reference, cells) = elastic_constants_with_cells(&mut emt(), &cu_cubic(3.6, 1), &settings).unwrap();
    assert_eq!(cells.len(), 1 + 6 * 2 * settings.amplitudes.len());
    assert_eq!(cells[0].strain, [0.0; 6]);
    for c in &cells {
        let j = c.strain.iter().position(|x| *x != 0.0);
        let expected = match j {
            Some(j) => strained(&reference, &voigt_strain(j, c.strain[j])).cell_a,
            None => reference.cell_a,
        };
        for (a, b) in c.structure.cell_a.iter().flatten().zip(expected.iter().flatten()) {
            assert!((a - b).abs() < 1e-12, "{:?}", c.strain);
        }
    }
    let mut ff = emt();
    let samples: Vec<([f64; 6], [f64; 6])> =
        cells.iter().map(|c| (c.strain, ff.evaluate(&c.structure).unwrap().stress_ev_per_a3.unwrap())).collect();
    let again = elastic_from_stresses(&samples, &settings.amplitudes, true);
    for i in 0..6 {
        for j in 0..6 {
            assert!((again.c_ij_gpa[i][j] - e.c_ij_gpa[i][j]).abs() < 1e-9, "C{i}{j}");
        }
    }
    assert_eq!(again.born_stable, e.born_stable);
}
