//! Periodic neighbour lists for any triclinic cell, including cells smaller than the
//! cutoff (an atom may then see several images of the same neighbour, and itself).

use crate::structure::{cross, det3, norm, vec_mat, Structure, Vec3};

/// One neighbour `j` of atom `i`: the image of `j` at `positions[j] + shift · cell`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    pub j: usize,
    /// Integer lattice shift of the image of `j`, relative to the stored (unwrapped) positions.
    pub shift: [i32; 3],
    /// `r_j + shift·cell - r_i`, in Å.
    pub vector_a: Vec3,
    pub distance_a: f64,
}

/// A full neighbour list (every pair appears as i->j and j->i), in compressed rows.
#[derive(Clone, Debug)]
pub struct NeighborList {
    pub cutoff_a: f64,
    offsets: Vec<usize>,
    neighbors: Vec<Neighbor>,
}

impl NeighborList {
    /// All neighbours within `cutoff_a` (inclusive) of every atom.
    pub fn build(structure: &Structure, cutoff_a: f64) -> NeighborList {
        Self::build_brute_force(structure, cutoff_a)
    }

    /// Reference implementation: every pair and every needed image. O(N² · images).
    pub fn build_brute_force(structure: &Structure, cutoff_a: f64) -> NeighborList {
        let n = structure.len();
        let (wrapped, wrap_shift) = wrap_positions(structure);
        let images = image_ranges(structure, cutoff_a);
        let cell = &structure.cell_a;
        let mut offsets = Vec::with_capacity(n + 1);
        let mut neighbors = Vec::new();
        offsets.push(0);
        for i in 0..n {
            for j in 0..n {
                for a in -images[0]..=images[0] {
                    for b in -images[1]..=images[1] {
                        for c in -images[2]..=images[2] {
                            if i == j && a == 0 && b == 0 && c == 0 {
                                continue;
                            }
                            let t = vec_mat(&[a as f64, b as f64, c as f64], cell);
                            let v = [
                                wrapped[j][0] + t[0] - wrapped[i][0],
                                wrapped[j][1] + t[1] - wrapped[i][1],
                                wrapped[j][2] + t[2] - wrapped[i][2],
                            ];
                            let d = norm(&v);
                            if d <= cutoff_a {
                                let shift = [
                                    a + wrap_shift[j][0] - wrap_shift[i][0],
                                    b + wrap_shift[j][1] - wrap_shift[i][1],
                                    c + wrap_shift[j][2] - wrap_shift[i][2],
                                ];
                                neighbors.push(Neighbor { j, shift, vector_a: v, distance_a: d });
                            }
                        }
                    }
                }
            }
            offsets.push(neighbors.len());
        }
        NeighborList { cutoff_a, offsets, neighbors }
    }

    pub fn from_parts(cutoff_a: f64, offsets: Vec<usize>, neighbors: Vec<Neighbor>) -> NeighborList {
        assert_eq!(offsets.last().copied(), Some(neighbors.len()));
        NeighborList { cutoff_a, offsets, neighbors }
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The neighbours of atom `i`.
    pub fn neighbors(&self, i: usize) -> &[Neighbor] {
        &self.neighbors[self.offsets[i]..self.offsets[i + 1]]
    }

    pub fn total_pairs(&self) -> usize {
        self.neighbors.len()
    }
}

/// Perpendicular heights of the cell (distance between opposite faces), in Å.
pub fn cell_heights_a(structure: &Structure) -> [f64; 3] {
    let c = &structure.cell_a;
    let v = det3(c).abs();
    [
        v / norm(&cross(&c[1], &c[2])),
        v / norm(&cross(&c[2], &c[0])),
        v / norm(&cross(&c[0], &c[1])),
    ]
}

/// How many images along each lattice vector are needed for a cutoff (0 when not periodic).
pub fn image_ranges(structure: &Structure, cutoff_a: f64) -> [i32; 3] {
    let h = cell_heights_a(structure);
    let mut out = [0; 3];
    for k in 0..3 {
        if structure.pbc[k] {
            out[k] = (cutoff_a / h[k]).ceil() as i32;
        }
    }
    out
}

/// Positions wrapped into the cell along periodic directions, and the integer shift
/// applied to each atom (wrapped = original + shift·cell).
pub fn wrap_positions(structure: &Structure) -> (Vec<Vec3>, Vec<[i32; 3]>) {
    if !structure.pbc.iter().any(|&p| p) {
        return (structure.positions_a.clone(), vec![[0; 3]; structure.len()]);
    }
    let frac = structure.fractional_positions();
    let mut wrapped = Vec::with_capacity(frac.len());
    let mut shifts = Vec::with_capacity(frac.len());
    for (f, p) in frac.iter().zip(&structure.positions_a) {
        let mut s = [0i32; 3];
        for k in 0..3 {
            if structure.pbc[k] {
                s[k] = -(f[k].floor() as i32);
            }
        }
        let t = vec_mat(&[s[0] as f64, s[1] as f64, s[2] as f64], &structure.cell_a);
        wrapped.push([p[0] + t[0], p[1] + t[1], p[2] + t[2]]);
        shifts.push(s);
    }
    (wrapped, shifts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Element;

    #[test]
    fn fcc_copper_has_twelve_nearest_neighbours() {
        let cu = Element::from_symbol("Cu").unwrap();
        let a = 3.61;
        let s = Structure::new(
            [[0.0, a / 2.0, a / 2.0], [a / 2.0, 0.0, a / 2.0], [a / 2.0, a / 2.0, 0.0]],
            vec![[0.0; 3]],
            vec![cu],
            [true; 3],
        )
        .unwrap();
        let nl = NeighborList::build(&s, 2.6);
        assert_eq!(nl.neighbors(0).len(), 12);
        let nl = NeighborList::build(&s, 3.7);
        assert_eq!(nl.neighbors(0).len(), 18);
        for nb in nl.neighbors(0) {
            let t = vec_mat(&[nb.shift[0] as f64, nb.shift[1] as f64, nb.shift[2] as f64], &s.cell_a);
            for k in 0..3 {
                assert!((t[k] - nb.vector_a[k]).abs() < 1e-12);
            }
        }
    }
}
