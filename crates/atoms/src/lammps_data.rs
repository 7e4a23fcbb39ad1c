//! LAMMPS data files (`read_data`, atom_style atomic) and LAMMPS's frame: LAMMPS keeps
//! the cell lower-triangular (`a` along x, `b` in the xy plane); [`to_lammps_frame`]
//! rotates a structure there and returns the rotation.

use crate::{Element, Structure};
use std::fmt::Write as _;

type Mat3 = [[f64; 3]; 3];

/// `s` rotated into LAMMPS's frame (lower-triangular cell, same fractional coordinates)
/// and the rotation `q` (rows are the new axes in old coordinates: `x_new = q · x_old`).
/// Fails on a left-handed cell (LAMMPS needs a positive `c_z`).
pub fn to_lammps_frame(s: &Structure) -> Result<(Structure, Mat3), String> {
    let [a, b, _] = s.cell_a;
    let dot = |u: &[f64; 3], v: &[f64; 3]| u[0] * v[0] + u[1] * v[1] + u[2] * v[2];
    let na = dot(&a, &a).sqrt();
    let e1 = a.map(|x| x / na);
    let bx = dot(&b, &e1);
    let t = [b[0] - bx * e1[0], b[1] - bx * e1[1], b[2] - bx * e1[2]];
    let nt = dot(&t, &t).sqrt();
    let e2 = t.map(|x| x / nt);
    let e3 = [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
    let q = [e1, e2, e3];
    let rot = |v: &[f64; 3]| [dot(&q[0], v), dot(&q[1], v), dot(&q[2], v)];
    let mut r = s.clone();
    r.cell_a = [rot(&s.cell_a[0]), rot(&s.cell_a[1]), rot(&s.cell_a[2])];
    r.cell_a[0][1] = 0.0;
    r.cell_a[0][2] = 0.0;
    r.cell_a[1][2] = 0.0;
    r.positions_a = s.positions_a.iter().map(rot).collect();
    if !(r.cell_a[2][2] > 0.0) || !(nt > 0.0) {
        return Err("the cell is left-handed or degenerate: LAMMPS needs a right-handed cell".into());
    }
    Ok((r, q))
}

/// A `read_data` file (atom_style atomic, units metal) of `s`, whose cell must be
/// lower-triangular (see [`to_lammps_frame`]). Atom `i` gets id `i + 1` and the type of
/// its element's position in `types` (1-based); `masses_amu[t]` is type `t + 1`'s mass.
/// Velocities (Å/ps, LAMMPS metal) are written when given.
pub fn data_file(
    s: &Structure,
    types: &[Element],
    masses_amu: &[f64],
    velocities_a_per_ps: Option<&[[f64; 3]]>,
) -> Result<String, String> {
    let c = &s.cell_a;
    if c[0][1] != 0.0 || c[0][2] != 0.0 || c[1][2] != 0.0 {
        return Err("the cell is not lower-triangular (LAMMPS's frame)".into());
    }
    if s.pbc != [true; 3] {
        return Err("LAMMPS exploration needs a cell periodic in all three directions".into());
    }
    let mut type_of = Vec::with_capacity(s.len());
    for (i, e) in s.species.iter().enumerate() {
        match types.iter().position(|t| t == e) {
            Some(t) => type_of.push(t + 1),
            None => return Err(format!("atom {} is {e}, which the model does not know", i + 1)),
        }
    }
    let f = |x: f64| format!("{x:.17e}");
    let mut o = String::new();
    let _ = writeln!(o, "# written by MLIP-AutoPipe ({})\n", s.formula());
    let _ = writeln!(o, "{} atoms\n{} atom types\n", s.len(), types.len());
    let _ = writeln!(o, "0 {} xlo xhi", f(c[0][0]));
    let _ = writeln!(o, "0 {} ylo yhi", f(c[1][1]));
    let _ = writeln!(o, "0 {} zlo zhi", f(c[2][2]));
    let _ = writeln!(o, "{} {} {} xy xz yz\n", f(c[1][0]), f(c[2][0]), f(c[2][1]));
    let _ = writeln!(o, "Masses\n");
    for (t, (e, m)) in types.iter().zip(masses_amu).enumerate() {
        let _ = writeln!(o, "{} {} # {e}", t + 1, f(*m));
    }
    let _ = writeln!(o, "\nAtoms # atomic\n");
    for (i, (p, t)) in s.positions_a.iter().zip(&type_of).enumerate() {
        let _ = writeln!(o, "{} {t} {} {} {}", i + 1, f(p[0]), f(p[1]), f(p[2]));
    }
    if let Some(v) = velocities_a_per_ps {
        let _ = writeln!(o, "\nVelocities\n");
        for (i, v) in v.iter().enumerate() {
            let _ = writeln!(o, "{} {} {} {}", i + 1, f(v[0]), f(v[1]), f(v[2]));
        }
    }
    Ok(o)
}

