//! Supercells from an integer matrix, and the most nearly cubic supercell with a
//! given number of atoms.

use autopipe_atoms::structure::{det3, inverse3, vec_mat, Mat3};
use autopipe_atoms::Structure;

/// An integer 3x3 matrix (rows: new lattice vectors in the old basis).
pub type IntMatrix = [[i64; 3]; 3];

/// Why a supercell cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SupercellError {
    /// `matrix` or `atoms`.
    pub field: &'static str,
    pub message: String,
}

fn imat_det(m: &[[i64; 3]; 3]) -> i64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// The supercell whose lattice vectors are the rows of `m · cell` (as ASE's
/// `make_supercell(atoms, m)`): `|det m|` copies of every atom, in the order "copy
/// outer, atom inner", with the index of the source atom of each new atom. Positions
/// are the source positions plus lattice translations (not wrapped otherwise).
pub fn make_supercell(s: &Structure, m: [[i64; 3]; 3]) -> Result<(Structure, Vec<usize>), SupercellError> {
    let det = imat_det(&m);
    if det == 0 {
        return Err(SupercellError { field: "matrix", message: format!("{m:?} is singular (determinant 0)") });
    }
    let n = det.unsigned_abs() as usize;
    if n.saturating_mul(s.len()) > crate::limits::MAX_ATOMS {
        return Err(SupercellError {
            field: "matrix",
            message: format!(
                "determinant {det} makes {} atoms, more than {}",
                n.saturating_mul(s.len()),
                crate::limits::MAX_ATOMS
            ),
        });
    }
    let mf: Mat3 = m.map(|r| r.map(|x| x as f64));
    let inv = inverse3(&mf).expect("non-zero determinant");
    // The lattice translations t (integer, in the old basis) inside the new cell are those
    // with t · m^-1 in [0, 1)^3; they lie in the box spanned by the corners of m.
    let mut lo = [0i64; 3];
    let mut hi = [0i64; 3];
    for corner in 0..8 {
        let c = [(corner & 1) as i64, ((corner >> 1) & 1) as i64, ((corner >> 2) & 1) as i64];
        for k in 0..3 {
            let v = c[0] * m[0][k] + c[1] * m[1][k] + c[2] * m[2][k];
            lo[k] = lo[k].min(v);
            hi[k] = hi[k].max(v);
        }
    }
    let eps = 1e-9;
    let mut translations = Vec::with_capacity(n);
    for i in lo[0]..=hi[0] {
        for j in lo[1]..=hi[1] {
            for k in lo[2]..=hi[2] {
                let f = vec_mat(&[i as f64, j as f64, k as f64], &inv);
                if f.iter().all(|&x| x > -eps && x < 1.0 - eps) {
                    translations.push([i as f64, j as f64, k as f64]);
                }
            }
        }
    }
    debug_assert_eq!(translations.len(), n);
    let cell = [vec_mat(&mf[0], &s.cell_a), vec_mat(&mf[1], &s.cell_a), vec_mat(&mf[2], &s.cell_a)];
    let mut out = Structure {
        cell_a: cell,
        positions_a: Vec::with_capacity(n * s.len()),
        species: Vec::with_capacity(n * s.len()),
        pbc: s.pbc,
    };
    let mut origin = Vec::with_capacity(n * s.len());
    for t in &translations {
        let d = vec_mat(t, &s.cell_a);
        for (a, (p, e)) in s.positions_a.iter().zip(&s.species).enumerate() {
            out.positions_a.push([p[0] + d[0], p[1] + d[1], p[2] + d[2]]);
            out.species.push(*e);
            origin.push(a);
        }
    }
    Ok((out, origin))
}

/// How far a cell is from a cube of its volume: `‖h hᵀ / V^(2/3) − I‖²` (Frobenius),
/// ASE's `eval_shape_deviation(cell, 'sc')`; 0 for a cube, rotation-invariant.
pub fn cubic_deviation(cell: &Mat3) -> f64 {
    let v = det3(cell).abs();
    let l2 = v.powf(2.0 / 3.0);
    let mut score = 0.0;
    for i in 0..3 {
        for j in 0..3 {
            let g = (cell[i][0] * cell[j][0] + cell[i][1] * cell[j][1] + cell[i][2] * cell[j][2]) / l2;
            let d = g - if i == j { 1.0 } else { 0.0 };
            score += d * d;
        }
    }
    score
}

/// The integer matrix (entries in `-2 ..= 2`, `-3 ..= 3` from 9 cells on, or diagonal)
/// whose supercell of `s` has
/// `target_atoms` atoms (a positive determinant) and the smallest [`cubic_deviation`]
/// (ties: the one closest to diagonal, then with the fewest negative entries), and that
/// supercell.
pub fn nearly_cubic_supercell(
    s: &Structure,
    target_atoms: usize,
) -> Result<(IntMatrix, Structure, Vec<usize>), SupercellError> {
    if s.is_empty() || target_atoms % s.len() != 0 {
        return Err(SupercellError {
            field: "atoms",
            message: format!("{target_atoms} is not a multiple of the {} atoms of the cell", s.len()),
        });
    }
    let want = (target_atoms / s.len()) as i64;
    if want == 0 || want > 1000 {
        return Err(SupercellError {
            field: "atoms",
            message: format!(
                "{target_atoms} atoms are {want} cells; the search covers 1 ..= 1000 cells (use a matrix beyond that)"
            ),
        });
    }
    // Entries in -r ..= r (r = 2, or 3 from 9 cells on), ordered 0, 1, -1, 2, -2, ... so
    // that the first best is the simplest; and every diagonal matrix with determinant `want`.
    let r: i64 = if want <= 8 { 2 } else { 3 };
    let values: Vec<i64> = std::iter::once(0).chain((1..=r).flat_map(|v| [v, -v])).collect();
    let h = s.cell_a;
    let mut best: Option<(f64, IntMatrix, (i64, i64))> = None;
    let mut consider = |m: [[i64; 3]; 3], cell: Mat3| {
        let score = cubic_deviation(&cell);
        // Ties (to 1e-9): the matrix closest to diagonal, then with fewest negative entries.
        let off: i64 =
            (0..3).flat_map(|i| (0..3).map(move |j| (i, j))).filter(|(i, j)| i != j).map(|(i, j)| m[i][j].abs()).sum();
        let neg = m.iter().flatten().filter(|x| **x < 0).count() as i64;
        let key = (off, neg);
        let better = match best {
            None => true,
            Some((b, _, k)) => score < b - 1e-9 || (score < b + 1e-9 && key < k),
        };
        if better {
            best = Some((score, m, key));
        }
    };
    for a in 1..=want {
        if want % a != 0 {
            continue;
        }
        for b in 1..=want / a {
            if (want / a) % b != 0 {
                continue;
            }
            let c = want / a / b;
            let m = [[a, 0, 0], [0, b, 0], [0, 0, c]];
            let mf = m.map(|r| r.map(|x| x as f64));
            consider(m, [vec_mat(&mf[0], &h), vec_mat(&mf[1], &h), vec_mat(&mf[2], &h)]);
        }
    }
    let mut rows: Vec<([i64; 3], [f64; 3])> = Vec::new();
    for &a in &values {
        for &b in &values {
            for &c in &values {
                rows.push(([a, b, c], vec_mat(&[a as f64, b as f64, c as f64], &h)));
            }
        }
    }
    for r0 in &rows {
        for r1 in &rows {
            // det = r2 · (r0 x r1)
            let x = [
                r0.0[1] * r1.0[2] - r0.0[2] * r1.0[1],
                r0.0[2] * r1.0[0] - r0.0[0] * r1.0[2],
                r0.0[0] * r1.0[1] - r0.0[1] * r1.0[0],
            ];
            if x == [0, 0, 0] {
                continue;
            }
            for r2 in &rows {
                if r2.0[0] * x[0] + r2.0[1] * x[1] + r2.0[2] * x[2] != want {
                    continue;
                }
                consider([r0.0, r1.0, r2.0], [r0.1, r1.1, r2.1]);
            }
        }
    }
    let (_, m, _) = best.ok_or_else(|| SupercellError {
        field: "atoms",
        message: format!("no matrix with entries in -2 ..= 2 has determinant {want}"),
    })?;
    let (sc, origin) = make_supercell(s, m)?;
    Ok((m, sc, origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prototype::Prototype;
    use autopipe_atoms::Element;

    #[test]
    fn volume_is_det_times_cell_volume_and_no_atom_is_doubled() {
        let cu = Element::from_symbol("Cu").unwrap();
        let s = Prototype::Hcp.build(&[cu], 2.5, None).unwrap();
        for m in
            [[[2, 0, 0], [0, 2, 0], [0, 0, 1]], [[1, 1, 0], [-1, 1, 0], [0, 0, 2]], [[2, 1, 0], [0, 1, 1], [1, 0, 3]]]
        {
            let (sc, origin) = make_supercell(&s, m).unwrap();
            let det = imat_det(&m).abs() as f64;
            assert!((sc.volume_a3().abs() - det * s.volume_a3()).abs() < 1e-9);
            assert_eq!(sc.len(), s.len() * det as usize);
            assert_eq!(origin.len(), sc.len());
            // no two atoms on the same site (modulo the new lattice)
            let f = sc.fractional_positions();
            for i in 0..f.len() {
                for j in 0..i {
                    let d: f64 =
                        (0..3).map(|k| (f[i][k] - f[j][k] - (f[i][k] - f[j][k]).round()).abs()).fold(0.0, f64::max);
                    assert!(d > 1e-6, "{m:?}: atoms {i} and {j} coincide");
                }
            }
        }
        assert_eq!(make_supercell(&s, [[1, 0, 0], [1, 0, 0], [0, 0, 1]]).unwrap_err().field, "matrix");
    }

    #[test]
    fn fcc_primitive_to_cube() {
        let cu = Element::from_symbol("Cu").unwrap();
        let h = 1.8;
        let prim =
            Structure::new([[0.0, h, h], [h, 0.0, h], [h, h, 0.0]], vec![[0.0; 3]], vec![cu], [true; 3]).unwrap();
        for atoms in [4, 32, 108] {
            let (_, sc, _) = nearly_cubic_supercell(&prim, atoms).unwrap();
            assert_eq!(sc.len(), atoms);
            assert!(cubic_deviation(&sc.cell_a) < 1e-12, "{atoms}: {:?}", sc.cell_a);
        }
        assert_eq!(nearly_cubic_supercell(&prim, 0).unwrap_err().field, "atoms");
    }
}
