//! The atomic structure: cell, positions, species, periodicity.

use crate::elements::Element;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A 3x3 matrix stored as rows.
pub type Mat3 = [[f64; 3]; 3];
/// A Cartesian vector.
pub type Vec3 = [f64; 3];

/// An atomic structure.
///
/// * `cell_a`: the three lattice vectors as rows, in Å (ASE's convention).
/// * `positions_a`: Cartesian positions in Å.
/// * `species`: one element per atom.
/// * `pbc`: periodicity along each lattice vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Structure {
    pub cell_a: Mat3,
    pub positions_a: Vec<Vec3>,
    pub species: Vec<Element>,
    pub pbc: [bool; 3],
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StructureError {
    #[error("{positions} positions but {species} species")]
    LengthMismatch { positions: usize, species: usize },
    #[error("periodic but the cell is singular (no Lattice)")]
    SingularCell { volume_a3: f64 },
    #[error("position of atom {} is not finite", .index + 1)]
    NonFinite { index: usize },
}

impl Structure {
    /// A structure, checked for consistency.
    pub fn new(
        cell_a: Mat3,
        positions_a: Vec<Vec3>,
        species: Vec<Element>,
        pbc: [bool; 3],
    ) -> Result<Structure, StructureError> {
        let s = Structure { cell_a, positions_a, species, pbc };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), StructureError> {
        if self.positions_a.len() != self.species.len() {
            return Err(StructureError::LengthMismatch {
                positions: self.positions_a.len(),
                species: self.species.len(),
            });
        }
        if let Some(index) = self.positions_a.iter().position(|p| p.iter().any(|x| !x.is_finite())) {
            return Err(StructureError::NonFinite { index });
        }
        let volume_a3 = self.volume_a3();
        if self.pbc.iter().any(|&p| p) && volume_a3.abs() < 1e-12 {
            return Err(StructureError::SingularCell { volume_a3 });
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.positions_a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.positions_a.is_empty()
    }

    /// Signed cell volume in Å³ (determinant of the row matrix).
    pub fn volume_a3(&self) -> f64 {
        det3(&self.cell_a)
    }

    /// The chemical formula in Hill-like order of first appearance, e.g. "Cu3Au".
    pub fn formula(&self) -> String {
        let mut order: Vec<(Element, usize)> = Vec::new();
        for &e in &self.species {
            match order.iter_mut().find(|(x, _)| *x == e) {
                Some((_, n)) => *n += 1,
                None => order.push((e, 1)),
            }
        }
        order
            .iter()
            .map(|(e, n)| if *n == 1 { e.symbol().to_string() } else { format!("{}{}", e.symbol(), n) })
            .collect()
    }

    /// Fractional coordinates of every atom (positions = frac · cell).
    pub fn fractional_positions(&self) -> Vec<Vec3> {
        let inv = inverse3(&self.cell_a).expect("fractional positions need a non-singular cell");
        self.positions_a.iter().map(|p| mat_vec_t(&inv, p)).collect()
    }

    /// A content hash of the structure: species, positions, cell and pbc, with numbers
    /// rounded to 1e-8 Å so that a structure read back from a text file hashes the same.
    /// Used as the identity of a structure in the database.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        let q = |x: f64| -> i64 { (x * 1e8).round() as i64 };
        for row in &self.cell_a {
            for &x in row {
                h.update(q(x).to_le_bytes());
            }
        }
        for p in &self.pbc {
            h.update([*p as u8]);
        }
        for (e, p) in self.species.iter().zip(&self.positions_a) {
            h.update([e.z()]);
            for &x in p {
                h.update(q(x).to_le_bytes());
            }
        }
        hex(&h.finalize())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn det3(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Inverse of a 3x3 matrix, or None when singular.
pub fn inverse3(m: &Mat3) -> Option<Mat3> {
    let d = det3(m);
    if d.abs() < 1e-300 {
        return None;
    }
    let c = |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [c(1, 1, 2, 2) / d, -c(0, 1, 2, 2) / d, c(0, 1, 1, 2) / d],
        [-c(1, 0, 2, 2) / d, c(0, 0, 2, 2) / d, -c(0, 0, 1, 2) / d],
        [c(1, 0, 2, 1) / d, -c(0, 0, 2, 1) / d, c(0, 0, 1, 1) / d],
    ])
}

/// v · M (row vector times matrix), i.e. Σ_i v_i M_i: fractional -> Cartesian with a row cell.
pub fn vec_mat(v: &Vec3, m: &Mat3) -> Vec3 {
    [
        v[0] * m[0][0] + v[1] * m[1][0] + v[2] * m[2][0],
        v[0] * m[0][1] + v[1] * m[1][1] + v[2] * m[2][1],
        v[0] * m[0][2] + v[1] * m[1][2] + v[2] * m[2][2],
    ]
}

/// p · M where M is the inverse of the row cell: Cartesian -> fractional.
fn mat_vec_t(inv: &Mat3, p: &Vec3) -> Vec3 {
    vec_mat(p, inv)
}

pub fn cross(a: &Vec3, b: &Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub fn dot(a: &Vec3, b: &Vec3) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn norm(a: &Vec3) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cu2() -> Structure {
        let cu = Element::from_symbol("Cu").unwrap();
        Structure::new(
            [[3.6, 0.0, 0.0], [0.0, 3.6, 0.0], [0.0, 0.0, 3.6]],
            vec![[0.0, 0.0, 0.0], [1.8, 1.8, 0.0]],
            vec![cu, cu],
            [true; 3],
        )
        .unwrap()
    }

    #[test]
    fn inverse_and_volume() {
        let m = [[3.0, 0.1, 0.2], [0.5, 4.0, 0.3], [0.1, 0.7, 5.0]];
        let inv = inverse3(&m).unwrap();
        for i in 0..3 {
            let row = vec_mat(&m[i], &inv);
            for j in 0..3 {
                assert!((row[j] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!((cu2().volume_a3() - 3.6f64.powi(3)).abs() < 1e-9);
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = cu2();
        let mut b = cu2();
        assert_eq!(a.content_hash(), b.content_hash());
        b.positions_a[1][0] += 1e-6;
        assert_ne!(a.content_hash(), b.content_hash());
        assert_eq!(a.formula(), "Cu2");
    }

    #[test]
    fn rejects_inconsistent() {
        let mut s = cu2();
        s.species.pop();
        assert!(matches!(s.validate(), Err(StructureError::LengthMismatch { .. })));
    }
}
