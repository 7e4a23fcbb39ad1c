//! Internal relaxation matters for diamond: C44 of diamond Si with the atoms relaxed at
//! each strain differs from the clamped-ion C44, while C11 and C12 (no internal strain
//! by symmetry) do not change.
//!
//! The force field is Stillinger-Weber Si (PRB 31, 5262 (1985)), written out here with
//! forces and stress by central finite differences of its energy: the classic model in
//! which Kleinman's internal strain is large, with published constants to check against
//! (C11 151.4, C12 76.4, C44 56.4 GPa relaxed, as LAMMPS's `examples/ELASTIC` prints for
//! `Si.sw`). EMT has no Si and no covalent angle term, so
//! it cannot stand in here.

use autopipe_atoms::{Element, Structure};
use autopipe_build::{bulk, Lattice};
use autopipe_md::forcefield::{Evaluation, ForceField};
use autopipe_property::elastic::{elastic_constants, strained, voigt_strain, ElasticSettings};
use autopipe_property::relax::RelaxSettings;

struct StillingerWeber;

const EPS_EV: f64 = 2.1683;
const SIGMA_A: f64 = 2.0951;
const A_CUT: f64 = 1.80;
const LAMBDA: f64 = 21.0;
const GAMMA: f64 = 1.20;
const A_2: f64 = 7.049556277;
const B_2: f64 = 0.6022245584;

impl StillingerWeber {
    #[allow(clippy::needless_range_loop)]
    fn energy_ev(s: &Structure) -> f64 {
        let rc = A_CUT * SIGMA_A;
        let n = s.len();
        // Neighbours (vector, distance) of every atom, over the 27 nearest images (the
        // cells used here are larger than the cutoff).
        let mut neighbours: Vec<Vec<([f64; 3], f64)>> = vec![Vec::new(); n];
        for i in 0..n {
            for j in 0..n {
                for a in -1..=1 {
                    for b in -1..=1 {
                        for c in -1..=1 {
                            if i == j && a == 0 && b == 0 && c == 0 {
                                continue;
                            }
                            let t: [f64; 3] = std::array::from_fn(|k| {
                                a as f64 * s.cell_a[0][k] + b as f64 * s.cell_a[1][k] + c as f64 * s.cell_a[2][k]
                            });
                            let d: [f64; 3] = std::array::from_fn(|k| s.positions_a[j][k] + t[k] - s.positions_a[i][k]);
                            let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
                            if r < rc {
                                neighbours[i].push((d, r));
                            }
                        }
                    }
                }
            }
        }
        let mut e = 0.0;
        for list in &neighbours {
            for (k, &(dj, rj)) in list.iter().enumerate() {
                let x = SIGMA_A / rj;
                e += 0.5 * A_2 * EPS_EV * (B_2 * x.powi(4) - 1.0) * (SIGMA_A / (rj - rc)).exp();
                for &(dk, rk) in &list[k + 1..] {
                    let cos = (dj[0] * dk[0] + dj[1] * dk[1] + dj[2] * dk[2]) / (rj * rk);
                    e += LAMBDA
                        * EPS_EV
                        * (cos + 1.0 / 3.0).powi(2)
                        * (GAMMA * SIGMA_A / (rj - rc)).exp()
                        * (GAMMA * SIGMA_A / (rk - rc)).exp();
                }
            }
        }
        e
    }
}

impl ForceField for StillingerWeber {
    #[allow(clippy::needless_range_loop)]
    fn evaluate(&mut self, s: &Structure) -> Result<Evaluation, String> {
        let h = 1e-5;
        let mut forces = vec![[0.0; 3]; s.len()];
        for i in 0..s.len() {
            for k in 0..3 {
                let mut p = s.clone();
                p.positions_a[i][k] += h;
                let ep = Self::energy_ev(&p);
                p.positions_a[i][k] -= 2.0 * h;
                forces[i][k] = -(ep - Self::energy_ev(&p)) / (2.0 * h);
            }
        }
        let v = s.volume_a3();
        let stress = std::array::from_fn(|j| {
            let ep = Self::energy_ev(&strained(s, &voigt_strain(j, h)));
            let em = Self::energy_ev(&strained(s, &voigt_strain(j, -h)));
            (ep - em) / (2.0 * h * v)
        });
        Ok(Evaluation {
            energy_ev: Self::energy_ev(s),
            forces_ev_per_a: forces,
            stress_ev_per_a3: Some(stress),
            gamma: None,
        })
    }
}

#[test]
fn diamond_si_c44_needs_internal_relaxation() {
    let si = bulk(Lattice::Diamond, Element::from_symbol("Si").unwrap(), 5.40);
    let relaxed_settings = ElasticSettings {
        internal: Some(RelaxSettings::positions(1e-5)),
        relax: Some(RelaxSettings::full(1e-5, 1e-7)),
        ..ElasticSettings::default()
    };
    let (relaxed, cell) = elastic_constants(&mut StillingerWeber, &si, &relaxed_settings).unwrap();
    let a = cell.cell_a[0][0];
    assert!((a - 5.4310).abs() < 2e-3, "SW Si lattice constant {a} Å");
    let clamped_settings = ElasticSettings { internal: None, ..relaxed_settings };
    let (clamped, _) = elastic_constants(&mut StillingerWeber, &si, &clamped_settings).unwrap();
    let c = |e: &autopipe_property::elastic::Elastic, i: usize, j: usize| e.c_ij_gpa[i][j];
    eprintln!(
        "relaxed: C11 {:.1} C12 {:.1} C44 {:.1}; clamped: C11 {:.1} C12 {:.1} C44 {:.1} GPa",
        c(&relaxed, 0, 0),
        c(&relaxed, 0, 1),
        c(&relaxed, 3, 3),
        c(&clamped, 0, 0),
        c(&clamped, 0, 1),
        c(&clamped, 3, 3)
    );
    for (name, i, j, published) in [("C11", 0, 0, 151.4), ("C12", 0, 1, 76.4), ("C44", 3, 3, 56.4)] {
        let x = c(&relaxed, i, j);
        assert!((x - published).abs() < 0.03 * published, "{name} {x} GPa, published {published}");
    }
    // Normal strains of a cube leave every atom at a symmetric site: no change ...
    assert!((c(&relaxed, 0, 0) - c(&clamped, 0, 0)).abs() < 0.005 * c(&clamped, 0, 0));
    assert!((c(&relaxed, 0, 1) - c(&clamped, 0, 1)).abs() < 0.005 * c(&clamped, 0, 1));
    // ... a shear moves the two fcc sublattices against each other, and C44 drops.
    assert!(
        c(&clamped, 3, 3) > 1.5 * c(&relaxed, 3, 3),
        "clamped C44 {} vs relaxed {}",
        c(&clamped, 3, 3),
        c(&relaxed, 3, 3)
    );
    assert!(relaxed.internal_relaxation && !clamped.internal_relaxation);
    assert_eq!(relaxed.internal_unconverged, 0);
}
