//! Point defects at symmetry-distinct sites: the space group and the orbits of the
//! sites (sets of symmetry-equivalent atoms) come from the `moyo` crate; one vacancy per
//! orbit, and one antisite per orbit and other species of the structure.

use autopipe_atoms::structure::inverse3;
use autopipe_atoms::{Element, Structure};
use moyo::base::{AngleTolerance, Cell, Lattice};
use moyo::data::Setting;
use moyo::MoyoDataset;
use nalgebra::{Matrix3, Vector3};

/// Why the symmetry of a structure could not be found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("symmetry: {0}")]
pub struct SymmetryError(pub String);

/// One orbit of symmetry-equivalent sites.
#[derive(Clone, Debug, PartialEq)]
pub struct Orbit {
    /// The first atom of the orbit (its representative).
    pub representative: usize,
    pub element: Element,
    /// Atoms in the orbit.
    pub multiplicity: usize,
    /// Wyckoff letter of the site in the standard setting.
    pub wyckoff: char,
}

/// The space group of a structure and its orbits of sites.
#[derive(Clone, Debug, PartialEq)]
pub struct Symmetry {
    pub number: i32,
    pub hm_symbol: String,
    pub orbits: Vec<Orbit>,
}

/// Space group and orbits with moyo, `symprec_a` the tolerance (Å).
pub fn symmetry(s: &Structure, symprec_a: f64) -> Result<Symmetry, SymmetryError> {
    if s.is_empty() || s.pbc != [true; 3] || inverse3(&s.cell_a).is_none() {
        return Err(SymmetryError("needs a non-empty structure periodic in 3 directions".into()));
    }
    let c = s.cell_a;
    let lattice =
        Lattice::new(Matrix3::new(c[0][0], c[0][1], c[0][2], c[1][0], c[1][1], c[1][2], c[2][0], c[2][1], c[2][2]));
    let positions: Vec<Vector3<f64>> =
        s.fractional_positions().iter().map(|f| Vector3::new(f[0], f[1], f[2])).collect();
    let numbers: Vec<i32> = s.species.iter().map(|e| e.z() as i32).collect();
    let cell = Cell::new(lattice, positions, numbers);
    let d = MoyoDataset::new(&cell, symprec_a, AngleTolerance::Default, Setting::Standard, false)
        .map_err(|e| SymmetryError(format!("{e:?}")))?;
    let mut orbits: Vec<Orbit> = Vec::new();
    for (i, &rep) in d.orbits.iter().enumerate() {
        match orbits.iter_mut().find(|o| o.representative == rep) {
            Some(o) => o.multiplicity += 1,
            None => orbits.push(Orbit {
                representative: rep,
                element: s.species[rep],
                multiplicity: 1,
                wyckoff: d.wyckoffs[i],
            }),
        }
    }
    Ok(Symmetry { number: d.number, hm_symbol: d.hm_symbol, orbits })
}

/// A defective structure and what it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Defect {
    pub structure: Structure,
    /// e.g. `vacancy Cl (Wyckoff b, 32 sites)` or `antisite Na on Cl (Wyckoff b, 32 sites)`.
    pub description: String,
    /// `vacancy` or `antisite`.
    pub kind: &'static str,
}

/// One vacancy per orbit.
pub fn vacancies(s: &Structure, sym: &Symmetry) -> Vec<Defect> {
    sym.orbits
        .iter()
        .map(|o| {
            let mut d = s.clone();
            d.positions_a.remove(o.representative);
            d.species.remove(o.representative);
            Defect {
                structure: d,
                description: format!("vacancy {} (Wyckoff {}, {} sites)", o.element, o.wyckoff, o.multiplicity),
                kind: "vacancy",
            }
        })
        .collect()
}

/// One antisite per orbit and per other species of the structure.
pub fn antisites(s: &Structure, sym: &Symmetry) -> Vec<Defect> {
    let mut species: Vec<Element> = Vec::new();
    for e in &s.species {
        if !species.contains(e) {
            species.push(*e);
        }
    }
    let mut out = Vec::new();
    for o in &sym.orbits {
        for &e in species.iter().filter(|&&e| e != o.element) {
            let mut d = s.clone();
            d.species[o.representative] = e;
            out.push(Defect {
                structure: d,
                description: format!("antisite {e} on {} (Wyckoff {}, {} sites)", o.element, o.wyckoff, o.multiplicity),
                kind: "antisite",
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prototype::Prototype;
    use crate::supercell;

    fn el(s: &str) -> Element {
        Element::from_symbol(s).unwrap()
    }

    #[test]
    fn space_groups_and_orbits_of_prototypes() {
        let cases = [
            (Prototype::Fcc, vec!["Cu"], 225, 1),
            (Prototype::Rocksalt, vec!["Na", "Cl"], 225, 2),
            (Prototype::Perovskite, vec!["Sr", "Ti", "O"], 221, 3),
            (Prototype::L12, vec!["Cu", "Au"], 221, 2),
            (Prototype::Wurtzite, vec!["Zn", "O"], 186, 2),
            (Prototype::Diamond, vec!["Si"], 227, 1),
            (Prototype::Hcp, vec!["Mg"], 194, 1),
        ];
        for (p, names, number, n_orbits) in cases {
            let e: Vec<Element> = names.iter().map(|s| el(s)).collect();
            let s = supercell(&p.build(&e, 3.9, None).unwrap(), [2, 2, 2]);
            let sym = symmetry(&s, 1e-4).unwrap();
            assert_eq!((sym.number, sym.orbits.len()), (number, n_orbits), "{p:?}");
            assert_eq!(sym.orbits.iter().map(|o| o.multiplicity).sum::<usize>(), s.len());
            let v = vacancies(&s, &sym);
            assert_eq!(v.len(), n_orbits);
            assert!(v.iter().all(|d| d.structure.len() == s.len() - 1));
            assert_eq!(antisites(&s, &sym).len(), n_orbits * (e.len() - 1));
        }
    }
}
