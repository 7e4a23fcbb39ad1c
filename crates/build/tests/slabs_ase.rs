//! Slabs against ASE's `ase.build.surface(bulk(..., cubic=True), hkl, layers, vacuum)`:
//! our first termination is ASE's slab (cell and atoms, up to ordering) for (100),
//! (110), (111) and high indices; the other terminations have the same cell and atoms.
mod common;

use autopipe_atoms::Element;
use autopipe_build::slab::slabs;
use autopipe_build::Prototype;

#[test]
#[allow(clippy::type_complexity)]
fn slabs_equal_ase_surface() {
    let cases: Vec<(&str, &str, Prototype, Vec<&str>, f64, [i64; 3])> = vec![
        ("Cu", "fcc", Prototype::Fcc, vec!["Cu"], 3.6, [1, 0, 0]),
        ("Cu", "fcc", Prototype::Fcc, vec!["Cu"], 3.6, [1, 1, 0]),
        ("Cu", "fcc", Prototype::Fcc, vec!["Cu"], 3.6, [1, 1, 1]),
        ("Cu", "fcc", Prototype::Fcc, vec!["Cu"], 3.6, [2, 1, 1]),
        ("Cu", "fcc", Prototype::Fcc, vec!["Cu"], 3.6, [3, 2, 1]),
        ("Fe", "bcc", Prototype::Bcc, vec!["Fe"], 2.87, [1, 1, 0]),
        ("Fe", "bcc", Prototype::Bcc, vec!["Fe"], 2.87, [3, 1, 0]),
        ("Si", "diamond", Prototype::Diamond, vec!["Si"], 5.43, [1, 1, 1]),
        ("NaCl", "rocksalt", Prototype::Rocksalt, vec!["Na", "Cl"], 5.64, [1, 1, 1]),
        ("NaCl", "rocksalt", Prototype::Rocksalt, vec!["Na", "Cl"], 5.64, [0, 0, 1]),
    ];
    for (symbol, lattice, p, elements, a, hkl) in cases {
        let ctx = format!("{symbol} {lattice} {hkl:?}");
        let elements: Vec<Element> = elements.iter().map(|s| Element::from_symbol(s).unwrap()).collect();
        let bulk = p.build(&elements, a, None).unwrap();
        let ours = slabs(&bulk, hkl, 3, 7.5).unwrap();
        let miller = format!("{},{},{}", hkl[0], hkl[1], hkl[2]);
        let ase = common::ase(&["surface", symbol, lattice, &a.to_string(), &miller, "3", "7.5"]);
        common::assert_same_structure(&ours[0].structure, &ase, 1e-8, &ctx);
        for t in &ours[1..] {
            assert_eq!(t.structure.len(), ours[0].structure.len(), "{ctx}");
            for k in 0..2 {
                assert_eq!(t.structure.cell_a[k], ours[0].structure.cell_a[k], "{ctx}: in-plane cell");
            }
            // vacuum on both sides
            let z: Vec<f64> = t.structure.positions_a.iter().map(|p| p[2]).collect();
            let lo = z.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert!((lo - 7.5).abs() < 1e-9 && (t.structure.cell_a[2][2] - hi - 7.5).abs() < 1e-9, "{ctx}");
        }
    }
}
