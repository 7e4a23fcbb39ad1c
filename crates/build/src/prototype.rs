//! Crystal prototypes from element names and lattice constants, in the cells and
//! coordinates of ASE (`ase.build.bulk(..., cubic=True)` for the cubic ones, the
//! hexagonal cells of `bulk(...)` for hcp and wurtzite, `ase.spacegroup.crystal` for
//! the ordered alloys and the perovskite), so that a structure built here and one built
//! by ASE agree atom for atom up to ordering.
//!
//! Every site belongs to a sublattice: the species slot it takes its element from
//! (rocksalt: cation 0, anion 1). [`Prototype::sublattices`] says which, so that SQS
//! can mix species on one sublattice and keep another fixed.

use autopipe_atoms::structure::{vec_mat, Mat3, Vec3};
use autopipe_atoms::{Element, Structure};
use serde::{Deserialize, Serialize};

/// A crystal prototype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prototype {
    /// Simple cubic (1 atom).
    Sc,
    /// Body-centred cubic, conventional cubic cell (2 atoms).
    Bcc,
    /// Face-centred cubic, conventional cubic cell (4 atoms).
    Fcc,
    /// Hexagonal close-packed, hexagonal cell (2 atoms), c/a ideal unless given.
    Hcp,
    /// Diamond, conventional cubic cell (8 atoms).
    Diamond,
    /// NaCl (B1), conventional cubic cell: cation A at (0,0,0), anion B at (½,0,0) (8 atoms).
    Rocksalt,
    /// ZnS (B3), conventional cubic cell: A on the fcc sites, B shifted by (¼,¼,¼) (8 atoms).
    Zincblende,
    /// Wurtzite (B4), hexagonal cell (4 atoms), ideal u and c/a unless given.
    Wurtzite,
    /// Cubic perovskite ABX3: A at (0,0,0), B at (½,½,½), X at the face centres (5 atoms).
    Perovskite,
    /// L1_2 (Cu3Au): A3B, B at the cube corner, A at the face centres (4 atoms).
    L12,
    /// B2 (CsCl): A at (0,0,0), B at (½,½,½) (2 atoms).
    B2,
    /// L1_0 (CuAu): face-centred tetragonal cell, A at (0,0,0) and (½,½,0), B at
    /// (½,0,½) and (0,½,½) (4 atoms); c = a unless given.
    L10,
}

impl Prototype {
    pub const ALL: [Prototype; 12] = [
        Prototype::Sc,
        Prototype::Bcc,
        Prototype::Fcc,
        Prototype::Hcp,
        Prototype::Diamond,
        Prototype::Rocksalt,
        Prototype::Zincblende,
        Prototype::Wurtzite,
        Prototype::Perovskite,
        Prototype::L12,
        Prototype::B2,
        Prototype::L10,
    ];

    /// The name on the command line and in configurations.
    pub fn name(self) -> &'static str {
        match self {
            Prototype::Sc => "sc",
            Prototype::Bcc => "bcc",
            Prototype::Fcc => "fcc",
            Prototype::Hcp => "hcp",
            Prototype::Diamond => "diamond",
            Prototype::Rocksalt => "rocksalt",
            Prototype::Zincblende => "zincblende",
            Prototype::Wurtzite => "wurtzite",
            Prototype::Perovskite => "perovskite",
            Prototype::L12 => "l12",
            Prototype::B2 => "b2",
            Prototype::L10 => "l10",
        }
    }

    /// A name as [`Prototype::name`] gives it, case-insensitive; `L1_2`, `L1_0`, `CsCl`,
    /// `NaCl` and `ZnS` are accepted too.
    pub fn parse(s: &str) -> Option<Prototype> {
        let k = s.to_ascii_lowercase().replace(['_', '-'], "");
        let k = match k.as_str() {
            "nacl" | "b1" => "rocksalt",
            "zns" | "b3" | "sphalerite" => "zincblende",
            "cscl" | "cesiumchloride" => "b2",
            "cu3au" => "l12",
            "cuau" => "l10",
            "cubicperovskite" => "perovskite",
            other => other,
        };
        Prototype::ALL.into_iter().find(|p| p.name() == k)
    }

    /// The names, for error messages.
    pub fn names() -> String {
        Prototype::ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
    }

    /// Number of sublattices (species slots): 1 for the elemental lattices, 3 for the
    /// perovskite, 2 otherwise.
    pub fn n_sublattices(self) -> usize {
        match self {
            Prototype::Sc | Prototype::Bcc | Prototype::Fcc | Prototype::Hcp | Prototype::Diamond => 1,
            Prototype::Perovskite => 3,
            _ => 2,
        }
    }

    /// What the sublattices are, for messages (`"A (cation), B (anion)"`).
    pub fn sublattice_names(self) -> &'static str {
        match self {
            Prototype::Sc | Prototype::Bcc | Prototype::Fcc | Prototype::Hcp | Prototype::Diamond => "A",
            Prototype::Rocksalt | Prototype::Zincblende | Prototype::Wurtzite => "A (cation), B (anion)",
            Prototype::Perovskite => "A (corner), B (body centre), X (face centres)",
            Prototype::L12 => "A (face centres, 3 of 4), B (corner)",
            Prototype::B2 => "A (corner), B (body centre)",
            Prototype::L10 => "A (z = 0 layers), B (z = ½ layers)",
        }
    }

    /// Whether the prototype has a c axis of its own (`c_a` is used).
    pub fn has_c(self) -> bool {
        matches!(self, Prototype::Hcp | Prototype::Wurtzite | Prototype::L10)
    }

    /// Fractional basis and the sublattice of each basis site.
    fn basis(self, c_over_a: f64) -> Vec<(Vec3, usize)> {
        let h = 0.5;
        let q = 0.25;
        match self {
            Prototype::Sc => vec![([0.0; 3], 0)],
            Prototype::Bcc => vec![([0.0; 3], 0), ([h, h, h], 0)],
            Prototype::Fcc => vec![([0.0; 3], 0), ([0.0, h, h], 0), ([h, 0.0, h], 0), ([h, h, 0.0], 0)],
            Prototype::Hcp => vec![([0.0; 3], 0), ([1.0 / 3.0, 2.0 / 3.0, h], 0)],
            Prototype::Diamond | Prototype::Zincblende => {
                let b = if self == Prototype::Diamond { 0 } else { 1 };
                vec![
                    ([0.0, 0.0, 0.0], 0),
                    ([q, q, q], b),
                    ([0.0, h, h], 0),
                    ([q, 0.75, 0.75], b),
                    ([h, 0.0, h], 0),
                    ([0.75, q, 0.75], b),
                    ([h, h, 0.0], 0),
                    ([0.75, 0.75, q], b),
                ]
            }
            Prototype::Rocksalt => vec![
                ([0.0, 0.0, 0.0], 0),
                ([h, 0.0, 0.0], 1),
                ([0.0, h, h], 0),
                ([h, h, h], 1),
                ([h, 0.0, h], 0),
                ([0.0, 0.0, h], 1),
                ([h, h, 0.0], 0),
                ([0.0, h, 0.0], 1),
            ],
            Prototype::Wurtzite => {
                // ASE's default internal parameter: u = 1/4 + 1/(3 (c/a)^2) (3/8 when ideal).
                let u = 0.25 + 1.0 / 3.0 / (c_over_a * c_over_a);
                vec![
                    ([0.0, 0.0, 0.0], 0),
                    ([1.0 / 3.0, 2.0 / 3.0, h - u], 1),
                    ([1.0 / 3.0, 2.0 / 3.0, h], 0),
                    ([0.0, 0.0, 1.0 - u], 1),
                ]
            }
            Prototype::Perovskite => {
                vec![([0.0; 3], 0), ([h, h, h], 1), ([0.0, h, h], 2), ([h, 0.0, h], 2), ([h, h, 0.0], 2)]
            }
            Prototype::L12 => vec![([0.0; 3], 1), ([0.0, h, h], 0), ([h, 0.0, h], 0), ([h, h, 0.0], 0)],
            Prototype::B2 => vec![([0.0; 3], 0), ([h, h, h], 1)],
            Prototype::L10 => vec![([0.0; 3], 0), ([h, h, 0.0], 0), ([h, 0.0, h], 1), ([0.0, h, h], 1)],
        }
    }

    /// The ideal c/a: √(8/3) for hcp and wurtzite, 1 for L1_0 (the fcc geometry).
    pub fn ideal_c_over_a(self) -> f64 {
        match self {
            Prototype::Hcp | Prototype::Wurtzite => (8.0f64 / 3.0).sqrt(),
            _ => 1.0,
        }
    }

    fn cell(self, a_a: f64, c_a: f64) -> Mat3 {
        match self {
            Prototype::Hcp | Prototype::Wurtzite => {
                [[a_a, 0.0, 0.0], [-0.5 * a_a, 0.5 * 3f64.sqrt() * a_a, 0.0], [0.0, 0.0, c_a]]
            }
            Prototype::L10 => [[a_a, 0.0, 0.0], [0.0, a_a, 0.0], [0.0, 0.0, c_a]],
            _ => [[a_a, 0.0, 0.0], [0.0, a_a, 0.0], [0.0, 0.0, a_a]],
        }
    }

    /// The sublattice of every site of the cell [`Prototype::build`] makes, in its atom order.
    pub fn sublattices(self) -> Vec<usize> {
        self.basis(self.ideal_c_over_a()).into_iter().map(|(_, s)| s).collect()
    }

    /// The cell of the prototype with `elements[k]` on sublattice `k`, lattice constant
    /// `a_a` (Å) and, for hcp, wurtzite and L1_0, `c_a` (Å; `None`: the ideal c/a).
    pub fn build(self, elements: &[Element], a_a: f64, c_a: Option<f64>) -> Result<Structure, PrototypeError> {
        if elements.len() != self.n_sublattices() {
            return Err(PrototypeError {
                field: "elements",
                message: format!(
                    "{} takes {} element{} ({}), not {}",
                    self.name(),
                    self.n_sublattices(),
                    if self.n_sublattices() == 1 { "" } else { "s" },
                    self.sublattice_names(),
                    elements.len()
                ),
            });
        }
        let (lo, hi) = crate::limits::LATTICE_CONSTANT_A;
        if !(a_a.is_finite() && a_a > lo && a_a < hi) {
            return Err(PrototypeError {
                field: "lattice_constant_a",
                message: format!("{a_a} Å is outside the plausible range {lo} .. {hi} Å"),
            });
        }
        let c = match c_a {
            None => a_a * self.ideal_c_over_a(),
            Some(_) if !self.has_c() => {
                return Err(PrototypeError {
                    field: "lattice_constant_c",
                    message: format!("{} is cubic: it has no c of its own", self.name()),
                })
            }
            Some(c) if !(c.is_finite() && c > lo && c < hi) => {
                return Err(PrototypeError {
                    field: "lattice_constant_c",
                    message: format!("{c} Å is outside the plausible range {lo} .. {hi} Å"),
                })
            }
            Some(c) => c,
        };
        let cell = self.cell(a_a, c);
        let basis = self.basis(c / a_a);
        Ok(Structure {
            cell_a: cell,
            positions_a: basis.iter().map(|(f, _)| vec_mat(f, &cell)).collect(),
            species: basis.iter().map(|&(_, s)| elements[s]).collect(),
            pbc: [true; 3],
        })
    }
}

/// Why a prototype cannot be built: the field (`elements`, `lattice_constant_a`,
/// `lattice_constant_c`) and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PrototypeError {
    pub field: &'static str,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::NeighborList;

    fn el(s: &str) -> Element {
        Element::from_symbol(s).unwrap()
    }

    #[test]
    fn names_round_trip_and_aliases() {
        for p in Prototype::ALL {
            assert_eq!(Prototype::parse(p.name()), Some(p));
        }
        assert_eq!(Prototype::parse("L1_2"), Some(Prototype::L12));
        assert_eq!(Prototype::parse("CsCl"), Some(Prototype::B2));
        assert_eq!(Prototype::parse("bct"), None);
    }

    #[test]
    fn coordination_of_the_compounds() {
        // rocksalt: 6 unlike neighbours at a/2; zincblende: 4 unlike at a√3/4; B2: 8 unlike at a√3/2.
        for (p, d, z) in [
            (Prototype::Rocksalt, 0.5, 6),
            (Prototype::Zincblende, 0.75f64.sqrt() / 2.0, 4),
            (Prototype::B2, 0.75f64.sqrt(), 8),
        ] {
            let s = crate::supercell(&p.build(&[el("Na"), el("Cl")], 4.0, None).unwrap(), [2, 2, 2]);
            let nl = NeighborList::build(&s, 4.0 * d * 1.01);
            for i in 0..s.len() {
                assert_eq!(nl.neighbors(i).len(), z, "{p:?}");
                assert!(nl.neighbors(i).iter().all(|n| s.species[n.j] != s.species[i]), "{p:?}");
            }
        }
        // perovskite: B (Ti) in an octahedron of X (O) at a/2; A (Sr) with 12 O at a/√2.
        let s = Prototype::Perovskite.build(&[el("Sr"), el("Ti"), el("O")], 3.9, None).unwrap();
        let nl = NeighborList::build(&s, 3.9 * 0.5 * 1.01);
        let ti = s.species.iter().position(|e| *e == el("Ti")).unwrap();
        assert_eq!(nl.neighbors(ti).len(), 6);
        assert!(nl.neighbors(ti).iter().all(|n| s.species[n.j] == el("O")));
        let nl = NeighborList::build(&s, 3.9 * 0.5f64.sqrt() * 1.01);
        let sr = s.species.iter().position(|e| *e == el("Sr")).unwrap();
        assert_eq!(nl.neighbors(sr).iter().filter(|n| s.species[n.j] == el("O")).count(), 12);
        let w = Prototype::Wurtzite.build(&[el("Zn"), el("O")], 3.25, None).unwrap();
        let nl = NeighborList::build(&crate::supercell(&w, [3, 3, 2]), 3.25 * 0.62);
        assert!((0..nl.len()).all(|i| nl.neighbors(i).len() == 4));
    }

    #[test]
    fn wrong_element_count_and_c_are_refused() {
        let e = Prototype::Perovskite.build(&[el("Sr"), el("Ti")], 3.9, None).unwrap_err();
        assert_eq!(e.field, "elements");
        assert!(e.message.contains("3 elements"), "{e}");
        assert_eq!(Prototype::Fcc.build(&[el("Cu")], 3.6, Some(4.0)).unwrap_err().field, "lattice_constant_c");
        assert_eq!(Prototype::Fcc.build(&[el("Cu")], -1.0, None).unwrap_err().field, "lattice_constant_a");
    }
}
