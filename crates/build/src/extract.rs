//! Local-environment extraction: a small periodic cell around one atom of a large frame,
//! holding that atom's environment exactly within the cutoff, for a DFT code to label.
//!
//! The cell is a cube of side `L = 2 (cutoff + buffer)` centred on the atom (the core,
//! atom 0 of the new cell). It holds every atom (every periodic image) of the frame whose
//! displacement from the core lies inside the cube, at the same displacement: the core's
//! neighbours within the cutoff are exactly those of the frame, at the same vectors, and
//! their images in the new cell are at least `L - cutoff > cutoff` away. Across the new
//! cell's faces, atoms that were far apart in the frame meet; a buffer atom closer than
//! `min_distance_a` to another is removed (the one farther from the core; core-shell
//! atoms, within the cutoff, are never removed). The forces of the buffer atoms are not
//! those of the frame: the cell carries per-atom force weights (1 for the core, 0 for the
//! buffer) for the fit.
//!
//! Pure computation.

use autopipe_atoms::neighbors::CellList;
use autopipe_atoms::{Frame, Structure};
use serde::{Deserialize, Serialize};

/// The extxyz per-atom column of the force weights (1 core, 0 buffer).
pub const FORCE_WEIGHT_COLUMN: &str = "force_weight";

/// An extracted cell and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtractedCell {
    /// Cubic, periodic; the core atom is atom 0, at the centre.
    pub structure: Structure,
    /// Index of the core atom in the source frame.
    pub source_atom: usize,
    /// Atoms of the source frame within the cutoff of the core (in the new cell they are
    /// atoms `1 ..= n_shell`).
    pub n_shell: usize,
    /// Buffer atoms removed for being too close to another across the new faces.
    pub n_removed: usize,
}

impl ExtractedCell {
    /// Per-atom force weights: 1 for the core atom, 0 for every other atom.
    pub fn force_weights(&self) -> Vec<f64> {
        let mut w = vec![0.0; self.structure.len()];
        w[0] = 1.0;
        w
    }

    /// The cell as an extxyz frame with the force-weight column and its origin
    /// (`source_atom`, plus whatever the caller adds to `info`).
    pub fn frame(&self) -> Frame {
        let mut f = Frame::from_structure(self.structure.clone());
        f.arrays.insert(
            FORCE_WEIGHT_COLUMN.into(),
            autopipe_atoms::frame::ArrayValue::Real { columns: 1, values: self.force_weights() },
        );
        f.info.insert("source_atom".into(), autopipe_atoms::InfoValue::Int(self.source_atom as i64));
        f
    }
}

/// Bins a frame once for several extractions with the same sizes.
pub struct Extractor<'a> {
    frame: &'a Structure,
    cells: CellList,
    cutoff_a: f64,
    half_a: f64,
    min_distance_a: f64,
}

impl<'a> Extractor<'a> {
    /// `cutoff_a`: the environment kept exactly; `buffer_a`: the shell around it;
    /// `min_distance_a`: the closest approach allowed across the new cell's faces.
    pub fn new(
        frame: &'a Structure,
        cutoff_a: f64,
        buffer_a: f64,
        min_distance_a: f64,
    ) -> Result<Extractor<'a>, String> {
        if !(cutoff_a.is_finite() && cutoff_a > 0.0 && buffer_a.is_finite() && buffer_a >= 0.0) {
            return Err(format!("cutoff {cutoff_a} Å and buffer {buffer_a} Å: need cutoff > 0 and buffer >= 0"));
        }
        if !(min_distance_a.is_finite() && min_distance_a >= 0.0 && min_distance_a < cutoff_a) {
            return Err(format!("minimum distance {min_distance_a} Å: must be in 0 .. cutoff"));
        }
        if frame.pbc != [true; 3] {
            return Err("extraction needs a frame periodic in all three directions".into());
        }
        let half_a = cutoff_a + buffer_a;
        let h = autopipe_atoms::neighbors::cell_heights_a(frame);
        if h.iter().any(|&x| x < 2.0 * half_a) {
            return Err(format!(
                "the frame (cell heights {:.2} {:.2} {:.2} Å) is not larger than the extracted cell ({:.2} Å): label it whole",
                h[0],
                h[1],
                h[2],
                2.0 * half_a
            ));
        }
        // every image inside the cube is within its circumscribed sphere
        let cells = CellList::new(frame, half_a * 3f64.sqrt());
        Ok(Extractor { frame, cells, cutoff_a, half_a, min_distance_a })
    }

    /// The cell around atom `i`.
    pub fn extract(&self, i: usize) -> Result<ExtractedCell, String> {
        let s = self.frame;
        if i >= s.len() {
            return Err(format!("atom {i} is not in the frame ({} atoms)", s.len()));
        }
        let (h, c) = (self.half_a, self.cutoff_a);
        let mut shell = Vec::new();
        let mut buffer = Vec::new();
        self.cells.for_each_neighbor(i, |j, _, d, r| {
            if d.iter().all(|x| x.abs() < h) {
                if r <= c {
                    shell.push((r, j, d));
                } else {
                    buffer.push((r, j, d));
                }
            }
        });
        let by_distance =
            |a: &(f64, usize, [f64; 3]), b: &(f64, usize, [f64; 3])| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        shell.sort_by(by_distance);
        buffer.sort_by(by_distance);
        let l = 2.0 * h;
        // buffer atoms too close to a kept atom across a face: the farther from the core goes
        let mut kept: Vec<[f64; 3]> = std::iter::once([0.0; 3]).chain(shell.iter().map(|x| x.2)).collect();
        let mut kept_buffer = Vec::with_capacity(buffer.len());
        let min2 = self.min_distance_a * self.min_distance_a;
        let mut n_removed = 0;
        for b in &buffer {
            let clash = kept.iter().any(|k| {
                let mut d2 = 0.0;
                let mut crosses = false;
                for a in 0..3 {
                    let mut x = b.2[a] - k[a];
                    if x.abs() > h {
                        x -= l * x.signum();
                        crosses = true;
                    }
                    d2 += x * x;
                }
                crosses && d2 < min2
            });
            if clash {
                n_removed += 1;
            } else {
                kept.push(b.2);
                kept_buffer.push(b);
            }
        }
        let mut species = vec![s.species[i]];
        species.extend(shell.iter().map(|x| s.species[x.1]));
        species.extend(kept_buffer.iter().map(|x| s.species[x.1]));
        let positions: Vec<[f64; 3]> = kept.iter().map(|d| [d[0] + h, d[1] + h, d[2] + h]).collect();
        let cell = [[l, 0.0, 0.0], [0.0, l, 0.0], [0.0, 0.0, l]];
        let structure = Structure::new(cell, positions, species, [true; 3]).map_err(|e| e.to_string())?;
        Ok(ExtractedCell { structure, source_atom: i, n_shell: shell.len(), n_removed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bulk, supercell, Lattice};
    use autopipe_atoms::Element;

    #[test]
    fn core_shell_is_kept_and_face_clashes_removed() {
        let cu = Element::from_symbol("Cu").unwrap();
        let mut big = supercell(&bulk(Lattice::Fcc, cu, 3.6), [5, 5, 5]);
        // shift so the face of the new cube cuts through atoms
        for (k, p) in big.positions_a.iter_mut().enumerate() {
            p[0] += 0.37 + 0.01 * (k % 7) as f64;
        }
        let ex = Extractor::new(&big, 4.0, 1.3, 1.5).unwrap();
        let cell = ex.extract(17).unwrap();
        assert!(cell.n_shell >= 12, "{}", cell.n_shell);
        let s = &cell.structure;
        let h = s.cell_a[0][0] / 2.0;
        assert_eq!(s.positions_a[0], [h, h, h]);
        assert_eq!(cell.force_weights().iter().sum::<f64>(), 1.0);
        // no two atoms closer than 1.5 Å in the periodic new cell
        let nl = autopipe_atoms::neighbors::NeighborList::build(s, 1.5);
        assert_eq!(nl.total_pairs(), 0);
        assert!(Extractor::new(&big, 9.0, 1.0, 1.0).err().unwrap().contains("label it whole"));
    }
}
