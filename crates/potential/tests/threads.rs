//! The threaded adjoint path gives the single-threaded energy, forces and virial.

use autopipe_atoms::{Element, Structure};
use autopipe_potential::{Snap, SnapElement, SnapParams};

#[test]
fn threaded_energy_forces_virial_match_one_thread() {
    let cu = Element::from_symbol("Cu").unwrap();
    let ni = Element::from_symbol("Ni").unwrap();
    let a = 3.6;
    let mut positions = Vec::new();
    let mut species = Vec::new();
    for i in 0..3 {
        for j in 0..3 {
            for k in 0..3 {
                for (n, b) in [[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]].iter().enumerate() {
                    let jitter = 0.05 * (((i * 9 + j * 3 + k) * 4 + n) as f64 * 1.7).sin();
                    positions.push([
                        (i as f64 + b[0]) * a + jitter,
                        (j as f64 + b[1]) * a - jitter,
                        (k as f64 + b[2]) * a,
                    ]);
                    species.push(if (i + j + k + n) % 3 == 0 { ni } else { cu });
                }
            }
        }
    }
    let l = 3.0 * a;
    let s = Structure::new([[l, 0.0, 0.0], [0.3, l, 0.0], [0.0, 0.2, l]], positions, species, [true; 3]).unwrap();
    let params = SnapParams {
        twojmax: 6,
        rcutfac: 4.5,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![
            SnapElement { element: cu, radius: 0.5, weight: 1.0 },
            SnapElement { element: ni, radius: 0.48, weight: 0.9 },
        ],
    };
    let snap = Snap::new(&params).unwrap();
    let beta: Vec<Vec<f64>> =
        (0..2).map(|e| (0..params.n_columns()).map(|k| 1e-3 * ((k + 7 * e) as f64).cos()).collect()).collect();
    let one = snap.energy_forces_virial(&s, &beta).unwrap();
    for threads in [2, 3, 7] {
        let many = snap.energy_forces_virial_threads(&s, &beta, threads).unwrap();
        assert!((one.energy - many.energy).abs() < 1e-10 * one.energy.abs().max(1.0), "{threads} threads");
        for (a, b) in one.forces.iter().zip(&many.forces) {
            for c in 0..3 {
                assert!((a[c] - b[c]).abs() < 1e-11, "{threads} threads: {a:?} vs {b:?}");
            }
        }
        for c in 0..6 {
            assert!((one.virial[c] - many.virial[c]).abs() < 1e-10 * one.virial[c].abs().max(1.0));
        }
        assert_eq!(one.atom_energies, many.atom_energies, "each atom's energy is computed by one thread");
    }
}
