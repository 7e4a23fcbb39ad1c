//! Surface slabs for a Miller index (hkl): the in-plane basis and the cut of ASE's
//! `ase.build.surface` (so the first termination is ASE's slab atom for atom), `layers`
//! repetitions of the oriented cell, c perpendicular to the surface, `vacuum_a` Å of
//! vacuum on each side; and every other termination: the cut moved to each distinct
//! atomic plane of the oriented cell, terminations with the same sequence of planes
//! (composition and spacing) kept once.
//!
//! The slab is periodic in all three directions (a slab in a box, as plane-wave codes
//! want it); the vacuum separates it from its images along c.

use autopipe_atoms::structure::{cross, dot, inverse3, norm, vec_mat, Mat3, Vec3};
use autopipe_atoms::{Element, Structure};

/// Why a slab cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SlabError {
    /// `miller`, `layers`, `vacuum_a`, `structure`.
    pub field: &'static str,
    pub message: String,
}

/// One termination of a slab.
#[derive(Clone, Debug, PartialEq)]
pub struct Slab {
    pub structure: Structure,
    /// 0 is ASE's cut.
    pub termination: usize,
    /// The chemical formula of the bottom atomic plane, e.g. `Na2Cl2` or `Cl`.
    pub bottom_plane: String,
    /// The chemical formula of the top atomic plane.
    pub top_plane: String,
}

fn floor_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if a % b != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn py_mod(a: i64, b: i64) -> i64 {
    a - b * floor_div(a, b)
}

/// ASE's `ext_gcd` (Python integer semantics).
fn ext_gcd(a: i64, b: i64) -> (i64, i64) {
    if b == 0 {
        (1, 0)
    } else if py_mod(a, b) == 0 {
        (0, 1)
    } else {
        let (x, y) = ext_gcd(b, py_mod(a, b));
        (y, x - y * floor_div(a, b))
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    let (mut a, mut b) = (a.abs(), b.abs());
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn scale(v: &Vec3, s: f64) -> Vec3 {
    [v[0] * s, v[1] * s, v[2] * s]
}

fn lin(a: i64, x: &Vec3, b: i64, y: &Vec3) -> Vec3 {
    [a as f64 * x[0] - b as f64 * y[0], a as f64 * x[1] - b as f64 * y[1], a as f64 * x[2] - b as f64 * y[2]]
}

fn add(x: &Vec3, y: &Vec3) -> Vec3 {
    [x[0] + y[0], x[1] + y[1], x[2] + y[2]]
}

/// The integer basis of the oriented cell (rows c1, c2 in the surface, c3 out of it),
/// as `ase.build.surface` chooses it.
pub fn surface_basis(cell: &Mat3, hkl: [i64; 3]) -> [[i64; 3]; 3] {
    let [h, k, l] = hkl;
    let zero = [h == 0, k == 0, l == 0];
    let tol = 1e-10;
    if zero.iter().filter(|z| **z).count() == 2 {
        if !zero[0] {
            return [[0, 1, 0], [0, 0, 1], [1, 0, 0]];
        }
        if !zero[1] {
            return [[0, 0, 1], [1, 0, 0], [0, 1, 0]];
        }
        return [[1, 0, 0], [0, 1, 0], [0, 0, 1]];
    }
    let (mut p, mut q) = ext_gcd(k, l);
    let [a1, a2, a3] = cell;
    let ka1_ha2 = lin(k, a1, h, a2);
    let la1_ha3 = lin(l, a1, h, a3);
    let la2_ka3 = lin(l, a2, k, a3);
    let k1 = dot(&add(&scale(&ka1_ha2, p as f64), &scale(&la1_ha3, q as f64)), &la2_ka3);
    let k2 = dot(&add(&scale(&ka1_ha2, l as f64), &scale(&la1_ha3, -(k as f64))), &la2_ka3);
    if k2.abs() > tol {
        let i = -((k1 / k2).round_ties_even() as i64);
        p += i * l;
        q -= i * k;
    }
    let (a, b) = ext_gcd(p * k + q * l, h);
    let g = gcd(l, k);
    [[p * k + q * l, -p * h, -q * h], [0, floor_div(l, g), floor_div(-k, g)], [b, a * p, a * q]]
}

/// The atomic planes of fractional heights `z` (sorted, periodic in [0, 1)): the
/// representative height of each plane, ascending. `tol` in fractional units.
fn planes(z: &[f64], tol: f64) -> Vec<f64> {
    let mut v: Vec<f64> = z.to_vec();
    v.sort_by(f64::total_cmp);
    let mut out: Vec<f64> = Vec::new();
    for x in v {
        if out.last().is_none_or(|&p| x - p > tol) {
            out.push(x);
        }
    }
    // The last plane may be the first one seen from the other side of 1.
    if out.len() > 1 && out[0] + 1.0 - out[out.len() - 1] <= tol {
        out.pop();
    }
    out
}

fn formula(species: &[Element]) -> String {
    Structure { species: species.to_vec(), ..Default::default() }.formula()
}

/// Every termination of the (hkl) slab of `bulk` (a conventional cell: the Miller
/// indices refer to its vectors) with `layers` repetitions of the oriented cell and
/// `vacuum_a` Å of vacuum on each side.
pub fn slabs(bulk: &Structure, hkl: [i64; 3], layers: usize, vacuum_a: f64) -> Result<Vec<Slab>, SlabError> {
    if hkl == [0, 0, 0] || hkl.iter().any(|x| x.abs() > 20) {
        return Err(SlabError {
            field: "miller",
            message: format!("{hkl:?}: give three integers, not all zero, |h| <= 20"),
        });
    }
    if layers == 0 || layers > 100 {
        return Err(SlabError { field: "layers", message: format!("{layers}: must be between 1 and 100") });
    }
    if !(vacuum_a.is_finite() && (0.0..=100.0).contains(&vacuum_a)) {
        return Err(SlabError { field: "vacuum_a", message: format!("{vacuum_a} Å is outside 0 ..= 100 Å") });
    }
    if bulk.is_empty() || bulk.pbc != [true; 3] {
        return Err(SlabError {
            field: "structure",
            message: "a slab needs a bulk cell periodic in 3 directions".into(),
        });
    }
    let basis = surface_basis(&bulk.cell_a, hkl);
    let bf: Mat3 = basis.map(|r| r.map(|x| x as f64));
    let binv = inverse3(&bf)
        .ok_or_else(|| SlabError { field: "miller", message: format!("{hkl:?} gives a singular basis") })?;
    let tol = 1e-10;
    // Fractional positions in the bulk cell (wrapped, as ASE's get_scaled_positions), then
    // in the oriented cell.
    let frac: Vec<Vec3> = bulk
        .fractional_positions()
        .into_iter()
        .map(|f| {
            let w = f.map(|x| x - x.floor());
            let mut s = vec_mat(&w, &binv);
            for x in &mut s {
                *x -= (*x + tol).floor();
                if x.abs() < tol {
                    *x = 0.0;
                }
            }
            s
        })
        .collect();
    let oriented: Mat3 = [vec_mat(&bf[0], &bulk.cell_a), vec_mat(&bf[1], &bulk.cell_a), vec_mat(&bf[2], &bulk.cell_a)];
    let height_a = {
        let n = cross(&oriented[0], &oriented[1]);
        dot(&oriented[2], &n).abs() / norm(&n)
    };
    let z: Vec<f64> = frac.iter().map(|f| f[2]).collect();
    let plane_z = planes(&z, 1e-3 / height_a);
    let plane_of = |x: f64| -> usize {
        plane_z
            .iter()
            .position(|&p| {
                let d = x - p;
                (d - d.round()).abs() <= 1e-3 / height_a
            })
            .expect("every atom is on a plane")
    };
    // Per plane: its species; the cyclic sequence of (composition, gap) identifies a termination.
    let nplanes = plane_z.len();
    let mut plane_species: Vec<Vec<Element>> = vec![Vec::new(); nplanes];
    for (f, e) in frac.iter().zip(&bulk.species) {
        plane_species[plane_of(f[2])].push(*e);
    }
    let gap = |i: usize| -> i64 {
        let next = if i + 1 < nplanes { plane_z[i + 1] } else { plane_z[0] + 1.0 };
        ((next - plane_z[i]) * height_a * 1e3).round() as i64
    };
    let mut seen: Vec<Vec<(Vec<u8>, i64)>> = Vec::new();
    let mut out = Vec::new();
    for t in 0..nplanes {
        let signature: Vec<(Vec<u8>, i64)> = (0..nplanes)
            .map(|k| {
                let i = (t + k) % nplanes;
                let mut z: Vec<u8> = plane_species[i].iter().map(|e| e.z()).collect();
                z.sort_unstable();
                (z, gap(i))
            })
            .collect();
        if seen.contains(&signature) {
            continue;
        }
        seen.push(signature);
        // Cut below plane t (t = 0: ASE's cut, unchanged).
        let shift = if t == 0 { 0.0 } else { plane_z[t] };
        let mut cut: Vec<Vec3> = frac.clone();
        if t > 0 {
            for f in &mut cut {
                f[2] -= shift;
                // Atoms of plane t land on 0 exactly; the rest wrap into [0, 1).
                if (f[2] - f[2].round()).abs() <= 1e-3 / height_a {
                    f[2] = 0.0;
                }
                f[2] -= f[2].floor();
            }
        }
        let structure = build_slab(&cut, &bulk.species, &oriented, layers, vacuum_a);
        let top_plane = (t + nplanes - 1) % nplanes;
        out.push(Slab {
            structure,
            termination: out.len(),
            bottom_plane: formula(&plane_species[t]),
            top_plane: formula(&plane_species[top_plane]),
        });
    }
    Ok(out)
}

/// ASE's `build` and `center(vacuum, axis=2)` on fractional positions in the oriented cell.
fn build_slab(frac: &[Vec3], species: &[Element], oriented: &Mat3, layers: usize, vacuum_a: f64) -> Structure {
    let mut positions = Vec::with_capacity(frac.len() * layers);
    let mut sp = Vec::with_capacity(frac.len() * layers);
    for m in 0..layers {
        for (f, e) in frac.iter().zip(species) {
            positions.push(vec_mat(&[f[0], f[1], f[2] + m as f64], oriented));
            sp.push(*e);
        }
    }
    let a1 = oriented[0];
    let a2 = oriented[1];
    let a3 = scale(&oriented[2], layers as f64);
    let n = cross(&a1, &a2);
    let c = scale(&n, dot(&a3, &n) / dot(&n, &n));
    let old: Mat3 = [a1, a2, c];
    let inv = inverse3(&old).expect("a non-singular oriented cell");
    let x = dot(&a1, &a2) / norm(&a1);
    let new: Mat3 = [[norm(&a1), 0.0, 0.0], [x, (dot(&a2, &a2) - x * x).sqrt(), 0.0], [0.0, 0.0, norm(&c)]];
    let mut frac_new: Vec<Vec3> = positions.iter().map(|p| vec_mat(p, &inv)).collect();
    for f in &mut frac_new {
        for x in f.iter_mut().take(2) {
            *x -= x.floor();
        }
    }
    let mut pos: Vec<Vec3> = frac_new.iter().map(|f| vec_mat(f, &new)).collect();
    let zmin = pos.iter().map(|p| p[2]).fold(f64::INFINITY, f64::min);
    let zmax = pos.iter().map(|p| p[2]).fold(f64::NEG_INFINITY, f64::max);
    for p in &mut pos {
        p[2] += vacuum_a - zmin;
    }
    let mut cell = new;
    cell[2] = [0.0, 0.0, zmax - zmin + 2.0 * vacuum_a];
    Structure { cell_a: cell, positions_a: pos, species: sp, pbc: [true; 3] }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prototype::Prototype;

    fn el(s: &str) -> Element {
        Element::from_symbol(s).unwrap()
    }

    #[test]
    fn python_integer_semantics() {
        assert_eq!(floor_div(-7, 2), -4);
        assert_eq!(py_mod(-7, 2), 1);
        assert_eq!(py_mod(7, -2), -1);
        assert_eq!(ext_gcd(1, 1), (0, 1));
        assert_eq!(ext_gcd(2, 3), (-1, 1));
    }

    #[test]
    fn terminations_of_known_surfaces() {
        let fcc = Prototype::Fcc.build(&[el("Cu")], 3.6, None).unwrap();
        assert_eq!(slabs(&fcc, [1, 1, 1], 3, 10.0).unwrap().len(), 1);
        let nacl = Prototype::Rocksalt.build(&[el("Na"), el("Cl")], 5.64, None).unwrap();
        let t = slabs(&nacl, [1, 1, 1], 2, 10.0).unwrap();
        assert_eq!(t.len(), 2, "Na- and Cl-terminated");
        assert_ne!(t[0].bottom_plane, t[1].bottom_plane);
        assert_eq!(slabs(&nacl, [1, 0, 0], 2, 10.0).unwrap().len(), 1, "NaCl(100) planes are all alike");
        let perov = Prototype::Perovskite.build(&[el("Sr"), el("Ti"), el("O")], 3.9, None).unwrap();
        let t = slabs(&perov, [0, 0, 1], 2, 10.0).unwrap();
        let mut bottoms: Vec<_> = t.iter().map(|s| s.bottom_plane.clone()).collect();
        bottoms.sort();
        assert_eq!(bottoms, vec!["SrO", "TiO2"], "SrO and TiO2 terminations");
        for s in &t {
            assert_eq!(s.structure.len(), 10);
        }
    }

    #[test]
    fn bad_slab_options_are_refused() {
        let fcc = Prototype::Fcc.build(&[el("Cu")], 3.6, None).unwrap();
        assert_eq!(slabs(&fcc, [0, 0, 0], 3, 10.0).unwrap_err().field, "miller");
        assert_eq!(slabs(&fcc, [1, 1, 1], 0, 10.0).unwrap_err().field, "layers");
        assert_eq!(slabs(&fcc, [1, 1, 1], 3, -1.0).unwrap_err().field, "vacuum_a");
    }
}
