//! Properties of the SNAP descriptors that must hold whatever LAMMPS says: analytic
//! gradients equal finite differences, invariance under rotation, translation and
//! permutation, the virial equals the strain derivative, and the adjoint energy/forces
//! path agrees with the descriptor path.

use autopipe_atoms::{Element, Structure};
use autopipe_potential::{Snap, SnapDescriptors, SnapElement, SnapParams};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

fn params(twojmax: usize, quadratic: bool) -> SnapParams {
    SnapParams {
        twojmax,
        rcutfac: 4.2,
        rfac0: 0.99363,
        rmin0: 0.1,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: quadratic,
        elements: vec![
            SnapElement { element: el("Ta"), radius: 0.5, weight: 1.0 },
            SnapElement { element: el("Nb"), radius: 0.45, weight: 0.7 },
        ],
    }
}

/// A rattled two-element bcc cell with a slightly triclinic (not lower-triangular) cell.
fn structure(seed: u64) -> Structure {
    let a = 3.3;
    let cell = [[2.0 * a, 0.2, -0.1], [0.3, 2.0 * a, 0.15], [-0.2, 0.1, 2.0 * a]];
    let mut rng = Rng(seed);
    let mut pos = Vec::new();
    let mut sp = Vec::new();
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..2 {
                for (o, e) in [(0.0, "Ta"), (0.5, "Nb")] {
                    let f = [(i as f64 + o) / 2.0, (j as f64 + o) / 2.0, (k as f64 + o) / 2.0];
                    let mut p = [0.0; 3];
                    for c in 0..3 {
                        for r in 0..3 {
                            p[c] += f[r] * cell[r][c];
                        }
                        p[c] += 0.2 * rng.next();
                    }
                    pos.push(p);
                    sp.push(el(if (i + j + k) % 3 == 0 { "Nb" } else { e }));
                }
            }
        }
    }
    Structure::new(cell, pos, sp, [true; 3]).unwrap()
}

fn random_beta(snap: &Snap, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = Rng(seed);
    let n = snap.params().n_columns();
    let nl = snap.params().n_linear();
    (0..snap.params().elements.len())
        .map(|_| (0..n).map(|k| rng.next() * if k < nl { 1.0 } else { 0.01 }).collect())
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Dense dB_i/dr_k (all columns) from the sparse per-pair gradients: [i][k][xyz][col].
fn dense_jacobian(d: &SnapDescriptors) -> Vec<f64> {
    let (n, nc) = (d.n_atoms, d.n_columns);
    let mut jac = vec![0.0; n * n * 3 * nc];
    let mut buf = vec![0.0; 3 * nc];
    let g = d.gradients.as_ref().unwrap();
    for i in 0..n {
        for p in d.pairs_of(i) {
            d.pair_gradient(i, p, &mut buf);
            let j = g.pair_j[p];
            for (m, &x) in buf.iter().enumerate() {
                jac[(i * n + j) * 3 * nc + m] += x;
                jac[(i * n + i) * 3 * nc + m] -= x;
            }
        }
    }
    jac
}

#[test]
fn gradients_match_central_finite_differences() {
    for quadratic in [false, true] {
        let p = params(6, quadratic);
        let snap = Snap::new(&p).unwrap();
        let s = structure(7);
        let d = snap.descriptors_with_gradients(&s).unwrap();
        let jac = dense_jacobian(&d);
        let (n, nc) = (d.n_atoms, d.n_columns);
        let scale = jac.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let h = 1e-5;
        let mut worst = 0.0f64;
        for k in [0, 3, 8, 15] {
            for c in 0..3 {
                let mut sp = s.clone();
                sp.positions_a[k][c] += h;
                let bp = snap.descriptors(&sp).unwrap().b;
                let mut sm = s.clone();
                sm.positions_a[k][c] -= h;
                let bm = snap.descriptors(&sm).unwrap().b;
                for i in 0..n {
                    for col in 0..nc {
                        let fd = (bp[i * nc + col] - bm[i * nc + col]) / (2.0 * h);
                        let an = jac[(i * n + k) * 3 * nc + c * nc + col];
                        let dev = (fd - an).abs() / scale;
                        assert!(
                            dev < 1e-7,
                            "quadratic={quadratic} dB_{i}[{col}]/dr_{k}[{c}]: analytic {an:e}, fd {fd:e}"
                        );
                        worst = worst.max(dev);
                    }
                }
            }
        }
        println!("quadratic={quadratic}: worst |fd - analytic| / max|dB| = {worst:.2e}");
        // the gradient must not be trivially zero
        assert!(scale > 1e-3);
    }
}

fn rotation(ax: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let nrm = (ax[0] * ax[0] + ax[1] * ax[1] + ax[2] * ax[2]).sqrt();
    let [x, y, z] = [ax[0] / nrm, ax[1] / nrm, ax[2] / nrm];
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [t * x * x + c, t * x * y - s * z, t * x * z + s * y],
        [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
        [t * x * z - s * y, t * y * z + s * x, t * z * z + c],
    ]
}

fn rot(r: &[[f64; 3]; 3], v: &[f64; 3]) -> [f64; 3] {
    [
        r[0][0] * v[0] + r[0][1] * v[1] + r[0][2] * v[2],
        r[1][0] * v[0] + r[1][1] * v[1] + r[1][2] * v[2],
        r[2][0] * v[0] + r[2][1] * v[1] + r[2][2] * v[2],
    ]
}

fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().chain(b).fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    for (k, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}: element {k}: {x:e} vs {y:e}");
    }
}

#[test]
fn invariant_under_rotation_translation_and_permutation() {
    let p = params(8, true);
    let snap = Snap::new(&p).unwrap();
    let s = structure(11);
    let d = snap.descriptors_with_gradients(&s).unwrap();
    let f = d.force_rows();

    // rotation: B unchanged, force rows rotate with the structure
    let r = rotation([0.3, -0.5, 0.8], 0.77);
    let mut sr = s.clone();
    for row in sr.cell_a.iter_mut() {
        *row = rot(&r, row);
    }
    for x in sr.positions_a.iter_mut() {
        *x = rot(&r, x);
    }
    let dr = snap.descriptors_with_gradients(&sr).unwrap();
    assert_close("B after rotation", &d.b, &dr.b, 1e-10);
    let fr = dr.force_rows();
    let nc = d.n_columns;
    let mut f_rot = vec![0.0; f.len()];
    for blk in 0..f.len() / (3 * nc) {
        for col in 0..nc {
            let v = [f[blk * 3 * nc + col], f[blk * 3 * nc + nc + col], f[blk * 3 * nc + 2 * nc + col]];
            let w = rot(&r, &v);
            for c in 0..3 {
                f_rot[blk * 3 * nc + c * nc + col] = w[c];
            }
        }
    }
    assert_close("force rows after rotation", &f_rot, &fr, 1e-9);

    // translation (atoms cross the cell boundary)
    let mut st = s.clone();
    for x in st.positions_a.iter_mut() {
        x[0] += 1.7;
        x[1] -= 4.1;
        x[2] += 0.37;
    }
    let dt = snap.descriptors_with_gradients(&st).unwrap();
    assert_close("B after translation", &d.b, &dt.b, 1e-11);
    assert_close("force rows after translation", &f, &dt.force_rows(), 1e-10);
    assert_close("virial after translation", &d.virial_row(), &dt.virial_row(), 1e-10);

    // permutation of the atoms (and so of every neighbour list)
    let n = s.len();
    let perm: Vec<usize> = (0..n).map(|k| (k * 7 + 3) % n).collect();
    let mut sp = s.clone();
    sp.positions_a = perm.iter().map(|&k| s.positions_a[k]).collect();
    sp.species = perm.iter().map(|&k| s.species[k]).collect();
    let dp = snap.descriptors_with_gradients(&sp).unwrap();
    let b_perm: Vec<f64> = perm.iter().flat_map(|&k| d.b_row(k).to_vec()).collect();
    assert_close("B after permutation", &b_perm, &dp.b, 1e-11);
    let w = f.len() / n;
    let f_perm: Vec<f64> = perm.iter().flat_map(|&k| f[k * w..(k + 1) * w].to_vec()).collect();
    assert_close("force rows after permutation", &f_perm, &dp.force_rows(), 1e-10);
    assert_close("energy row after permutation", &d.energy_row(), &dp.energy_row(), 1e-11);

    // the per-atom B depends on the environment: a different structure gives different B
    let other = snap.descriptors(&structure(12)).unwrap();
    assert!(d.b.iter().zip(&other.b).any(|(a, b)| (a - b).abs() > 1e-6));
}

#[test]
fn virial_matches_strain_derivative() {
    let p = params(6, true);
    let snap = Snap::new(&p).unwrap();
    let s = structure(5);
    let beta = random_beta(&snap, 99);
    let d = snap.descriptors_with_gradients(&s).unwrap();
    let nc = d.n_columns;
    let vrow = d.virial_row();
    let w: Vec<f64> = (0..6)
        .map(|v| (0..d.n_elements).map(|e| dot(&beta[e], &vrow[(e * 6 + v) * nc..(e * 6 + v + 1) * nc])).sum())
        .collect();
    let energy = |eps: [[f64; 3]; 3]| -> f64 {
        let mut t = s.clone();
        let m = |v: &[f64; 3]| {
            let mut o = [0.0; 3];
            for b in 0..3 {
                o[b] = v[b] + (0..3).map(|a| v[a] * eps[a][b]).sum::<f64>();
            }
            o
        };
        for row in t.cell_a.iter_mut() {
            *row = m(row);
        }
        for x in t.positions_a.iter_mut() {
            *x = m(x);
        }
        let dd = snap.descriptors(&t).unwrap();
        let row = dd.energy_row();
        (0..dd.n_elements).map(|e| dot(&beta[e], &row[e * nc..(e + 1) * nc])).sum()
    };
    let h = 1e-6;
    // Voigt xx yy zz yz xz xy; W_ab = -dE/dε_ba with r' = r (1 + ε)
    let comps = [(0, 0), (1, 1), (2, 2), (2, 1), (2, 0), (1, 0)];
    let scale = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(scale > 1e-3);
    for (v, &(a, b)) in comps.iter().enumerate() {
        let mut ep = [[0.0; 3]; 3];
        ep[a][b] = h;
        let mut em = [[0.0; 3]; 3];
        em[a][b] = -h;
        let fd = -(energy(ep) - energy(em)) / (2.0 * h);
        assert!((fd - w[v]).abs() < 1e-6 * scale, "virial component {v}: analytic {:e}, fd {fd:e}", w[v]);
    }

    // the adjoint path gives the same virial
    let efv = snap.energy_forces_virial(&s, &beta).unwrap();
    assert_close("adjoint virial", &w, &efv.virial, 1e-10);
}

#[test]
fn adjoint_energy_forces_agree_with_descriptor_path_and_finite_differences() {
    for quadratic in [false, true] {
        let p = params(8, quadratic);
        let snap = Snap::new(&p).unwrap();
        let s = structure(3);
        let beta = random_beta(&snap, 5);
        let d = snap.descriptors_with_gradients(&s).unwrap();
        let nc = d.n_columns;
        let ne = d.n_elements;
        let e_row = d.energy_row();
        let energy: f64 = (0..ne).map(|e| dot(&beta[e], &e_row[e * nc..(e + 1) * nc])).sum();
        let frows = d.force_rows();
        let efv = snap.energy_forces_virial(&s, &beta).unwrap();
        assert!((efv.energy - energy).abs() < 1e-10 * energy.abs().max(1.0), "{} vs {energy}", efv.energy);
        let per_atom: f64 = efv.atom_energies.iter().sum();
        assert!((per_atom - efv.energy).abs() < 1e-9);
        let mut f_desc = Vec::new();
        for k in 0..d.n_atoms {
            for c in 0..3 {
                let o = k * ne * 3 * nc;
                f_desc.push(
                    (0..ne).map(|e| dot(&beta[e], &frows[o + (e * 3 + c) * nc..o + (e * 3 + c + 1) * nc])).sum::<f64>(),
                );
            }
        }
        let f_adj: Vec<f64> = efv.forces.iter().flatten().copied().collect();
        assert_close("forces, adjoint vs descriptor rows", &f_desc, &f_adj, 1e-10);
        let sum: [f64; 3] = efv.forces.iter().fold([0.0; 3], |a, f| [a[0] + f[0], a[1] + f[1], a[2] + f[2]]);
        let fmax = f_adj.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(fmax > 1e-3);
        assert!(sum.iter().all(|x| x.abs() < 1e-10 * fmax), "net force {sum:?}");
        // forces are minus the gradient of the energy
        let h = 1e-5;
        for k in [1, 6] {
            for c in 0..3 {
                let mut sp = s.clone();
                sp.positions_a[k][c] += h;
                let mut sm = s.clone();
                sm.positions_a[k][c] -= h;
                let ep = snap.energy_forces_virial(&sp, &beta).unwrap().energy;
                let em = snap.energy_forces_virial(&sm, &beta).unwrap().energy;
                let fd = -(ep - em) / (2.0 * h);
                assert!((fd - efv.forces[k][c]).abs() < 1e-6 * fmax, "F[{k}][{c}]: {} vs fd {fd}", efv.forces[k][c]);
            }
        }
    }
}

#[test]
fn isolated_atom_has_only_the_self_term() {
    // one atom in a large non-periodic box: no neighbours, B = bispectrum of the identity
    let mut p = params(6, false);
    p.bzeroflag = true;
    let snap = Snap::new(&p).unwrap();
    let s = Structure::new(
        [[20.0, 0.0, 0.0], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]],
        vec![[1.0, 2.0, 3.0]],
        vec![el("Ta")],
        [false; 3],
    )
    .unwrap();
    let d = snap.descriptors_with_gradients(&s).unwrap();
    assert!(d.b.iter().all(|x| x.abs() < 1e-12), "bzero removes the self term: {:?}", d.b);
    assert_eq!(d.gradients.as_ref().unwrap().pair_j.len(), 0);
    assert!(d.force_rows().iter().all(|&x| x == 0.0));
    p.bzeroflag = false;
    let d = Snap::new(&p).unwrap().descriptors(&s).unwrap();
    assert!(d.b.iter().all(|x| *x > 0.5), "without bzero the self term is positive: {:?}", d.b);
    let efv = Snap::new(&p).unwrap().energy_forces_virial(&s, &[vec![1.0; 30], vec![0.0; 30]]).unwrap();
    assert_eq!(efv.forces, vec![[0.0; 3]]);
    assert!((efv.energy - d.b.iter().sum::<f64>()).abs() < 1e-12);
}

#[test]
fn errors_and_shapes() {
    let p = params(4, false);
    let snap = Snap::new(&p).unwrap();
    let mut s = structure(1);
    s.species[0] = el("Cu");
    assert!(matches!(snap.descriptors(&s), Err(autopipe_potential::SnapError::UnknownElement { atom: 0, .. })));
    let s = structure(1);
    assert!(snap.energy_forces_virial(&s, &[vec![0.0; 14]]).is_err());
    let mut bad = p.clone();
    bad.rfac0 = 1.5;
    assert!(Snap::new(&bad).is_err());
    assert_eq!(p.n_linear(), 14);
    let mut q = p.clone();
    q.quadraticflag = true;
    assert_eq!(q.n_columns(), 14 + 14 * 15 / 2);
    // serde round trip
    let text = serde_json::to_string(&q).unwrap();
    let back: SnapParams = serde_json::from_str(&text).unwrap();
    assert_eq!(back, q);
}
