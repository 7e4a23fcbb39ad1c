//! Point defects at symmetry-distinct sites: the space group and the orbits of the
//! sites (sets of symmetry-equivalent atoms) come from the `moyo` crate; one vacancy per
//! orbit, one antisite per orbit and other species of the structure, and one
//! interstitial per orbit of the centres of the largest empty spheres.

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
    /// The operations in the structure's cell: (rotation, translation) acting on
    /// fractional coordinates, `x' = R x + t`.
    pub operations: Vec<([[i32; 3]; 3], [f64; 3])>,
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
    let operations = d
        .operations
        .iter()
        .map(|op| {
            let r = op.rotation;
            let t = op.translation;
            (
                [
                    [r[(0, 0)], r[(0, 1)], r[(0, 2)]],
                    [r[(1, 0)], r[(1, 1)], r[(1, 2)]],
                    [r[(2, 0)], r[(2, 1)], r[(2, 2)]],
                ],
                [t[0], t[1], t[2]],
            )
        })
        .collect();
    Ok(Symmetry { number: d.number, hm_symbol: d.hm_symbol, orbits, operations })
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

/// An interstitial site: the centre of a locally largest empty sphere.
#[derive(Clone, Debug, PartialEq)]
pub struct InterstitialSite {
    /// Fractional coordinates.
    pub fractional: [f64; 3],
    /// Distance to the nearest atom, Å.
    pub radius_a: f64,
    /// Sites of its orbit in the cell.
    pub multiplicity: usize,
}

/// Distance (Å) from fractional point `g` to the nearest atom (27 images of each).
fn nearest_atom_a(s: &Structure, frac: &[[f64; 3]], g: &[f64; 3]) -> f64 {
    let mut best = f64::INFINITY;
    for f in frac {
        let d0 = [g[0] - f[0], g[1] - f[1], g[2] - f[2]].map(|x| x - x.round());
        for i in -1..=1 {
            for j in -1..=1 {
                for k in -1..=1 {
                    let d = [d0[0] + i as f64, d0[1] + j as f64, d0[2] + k as f64];
                    let c = autopipe_atoms::structure::vec_mat(&d, &s.cell_a);
                    let r2 = c[0] * c[0] + c[1] * c[1] + c[2] * c[2];
                    if r2 < best {
                        best = r2;
                    }
                }
            }
        }
    }
    best.sqrt()
}

/// Symmetry-distinct interstitial sites: the local maxima of the distance to the
/// nearest atom (the vertices of the Voronoi cells, the centres of the largest empty
/// spheres) on a grid of spacing about `grid_a` Å (points per axis a multiple of 4, so
/// that the high-symmetry sites of cubic and hexagonal cells are on the grid), at least
/// `min_distance_a` from every atom, grouped into orbits by the space-group operations.
/// Largest sphere first.
pub fn interstitial_sites(
    s: &Structure,
    sym: &Symmetry,
    grid_a: f64,
    min_distance_a: f64,
) -> Result<Vec<InterstitialSite>, SymmetryError> {
    let lengths = s.cell_a.map(|r| (r[0] * r[0] + r[1] * r[1] + r[2] * r[2]).sqrt());
    let n: [usize; 3] = lengths.map(|l| 4 * ((l / (4.0 * grid_a)).ceil() as usize).max(1));
    if n[0] * n[1] * n[2] > 2_000_000 {
        return Err(SymmetryError(format!("a grid of {n:?} points is too fine for this cell")));
    }
    let frac = s.fractional_positions();
    let idx = |i: usize, j: usize, k: usize| (i * n[1] + j) * n[2] + k;
    let mut field = vec![0.0f64; n[0] * n[1] * n[2]];
    for i in 0..n[0] {
        for j in 0..n[1] {
            for k in 0..n[2] {
                let g = [i as f64 / n[0] as f64, j as f64 / n[1] as f64, k as f64 / n[2] as f64];
                field[idx(i, j, k)] = nearest_atom_a(s, &frac, &g);
            }
        }
    }
    let wrap = |x: usize, d: i64, m: usize| ((x as i64 + d).rem_euclid(m as i64)) as usize;
    let mut candidates: Vec<([f64; 3], f64)> = Vec::new();
    for i in 0..n[0] {
        for j in 0..n[1] {
            for k in 0..n[2] {
                let v = field[idx(i, j, k)];
                if v < min_distance_a {
                    continue;
                }
                let mut is_max = true;
                'n: for di in -1..=1i64 {
                    for dj in -1..=1i64 {
                        for dk in -1..=1i64 {
                            if (di, dj, dk) != (0, 0, 0)
                                && field[idx(wrap(i, di, n[0]), wrap(j, dj, n[1]), wrap(k, dk, n[2]))] > v + 1e-9
                            {
                                is_max = false;
                                break 'n;
                            }
                        }
                    }
                }
                if is_max {
                    candidates.push(([i as f64 / n[0] as f64, j as f64 / n[1] as f64, k as f64 / n[2] as f64], v));
                }
            }
        }
    }
    let tol_a = 1.5 * grid_a;
    let close = |a: &[f64; 3], b: &[f64; 3]| {
        let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]].map(|x| x - x.round());
        let c = autopipe_atoms::structure::vec_mat(&d, &s.cell_a);
        (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt() < tol_a
    };
    // A site between grid points shows as a few neighbouring maxima: merge those that
    // touch into their centroid, and measure the sphere there.
    let mut merged: Vec<([f64; 3], [f64; 3], usize)> = Vec::new(); // (first, sum of offsets, count)
    for (p, _) in &candidates {
        match merged.iter_mut().find(|(first, _, _)| close(first, p)) {
            Some((first, sum, count)) => {
                for a in 0..3 {
                    let d = p[a] - first[a];
                    sum[a] += d - d.round();
                }
                *count += 1;
            }
            None => merged.push((*p, [0.0; 3], 1)),
        }
    }
    let candidates: Vec<([f64; 3], f64)> = merged
        .iter()
        .map(|(first, sum, count)| {
            let c = [0, 1, 2].map(|a| {
                let x = first[a] + sum[a] / *count as f64;
                x - x.floor()
            });
            (c, nearest_atom_a(s, &frac, &c))
        })
        .filter(|(_, r)| *r >= min_distance_a)
        .collect();
    // Orbits: candidates mapped onto each other by the operations.
    let mut orbit_of = vec![usize::MAX; candidates.len()];
    let mut sites: Vec<InterstitialSite> = Vec::new();
    for c in 0..candidates.len() {
        if orbit_of[c] != usize::MAX {
            continue;
        }
        let o = sites.len();
        let p = candidates[c].0;
        let mut members = 0;
        for (r, t) in &sym.operations {
            let q = [0, 1, 2].map(|a| r[a][0] as f64 * p[0] + r[a][1] as f64 * p[1] + r[a][2] as f64 * p[2] + t[a]);
            for (d, cand) in candidates.iter().enumerate() {
                if orbit_of[d] == usize::MAX && close(&cand.0, &q) {
                    orbit_of[d] = o;
                    members += 1;
                }
            }
        }
        sites.push(InterstitialSite { fractional: p, radius_a: candidates[c].1, multiplicity: members.max(1) });
    }
    sites.sort_by(|a, b| b.radius_a.total_cmp(&a.radius_a));
    Ok(sites)
}

/// One structure per interstitial site: `element` added at the site.
pub fn interstitials(s: &Structure, sites: &[InterstitialSite], element: Element) -> Vec<Defect> {
    sites
        .iter()
        .map(|site| {
            let mut d = s.clone();
            d.positions_a.push(autopipe_atoms::structure::vec_mat(&site.fractional, &s.cell_a));
            d.species.push(element);
            Defect {
                structure: d,
                description: format!(
                    "interstitial {element} (empty sphere of radius {:.3} Å, {} sites)",
                    site.radius_a, site.multiplicity
                ),
                kind: "interstitial",
            }
        })
        .collect()
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

    #[test]
    fn fcc_interstitials_are_octahedral_and_tetrahedral() {
        let a = 3.6;
        let s = supercell(&Prototype::Fcc.build(&[el("Cu")], a, None).unwrap(), [2, 2, 2]);
        let sym = symmetry(&s, 1e-4).unwrap();
        let sites = interstitial_sites(&s, &sym, 0.2, 1.0).unwrap();
        let got: Vec<(usize, f64)> = sites.iter().map(|x| (x.multiplicity, x.radius_a)).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        // octahedral: 1 per atom, radius a/2; tetrahedral: 2 per atom, radius a√3/4
        assert_eq!(got[0].0, 32);
        assert!((got[0].1 - a / 2.0).abs() < 1e-9);
        assert_eq!(got[1].0, 64);
        assert!((got[1].1 - a * 3f64.sqrt() / 4.0).abs() < 1e-9);
        // bcc: the Voronoi vertices are the tetrahedral sites only (6 per atom, radius
        // a√5/4); the octahedral sites are centres of Voronoi faces, not local maxima.
        let b = 2.87;
        let bcc = supercell(&Prototype::Bcc.build(&[el("Fe")], b, None).unwrap(), [2, 2, 2]);
        let bsym = symmetry(&bcc, 1e-4).unwrap();
        let bsites = interstitial_sites(&bcc, &bsym, 0.2, 1.0).unwrap();
        let got_b: Vec<(usize, f64)> = bsites.iter().map(|x| (x.multiplicity, x.radius_a)).collect();
        assert_eq!(got_b.len(), 1, "{got_b:?}");
        assert_eq!(got_b[0].0, 96);
        assert!((got_b[0].1 - b * 5f64.sqrt() / 4.0).abs() < 1e-9, "{got_b:?}");
        let d = interstitials(&s, &sites, el("H"));
        assert_eq!(d.len(), 2);
        for x in &d {
            let nl = autopipe_atoms::NeighborList::build(&x.structure, 1.0);
            assert_eq!(nl.neighbors(x.structure.len() - 1).len(), 0, "no atom within 1 Å");
        }
    }
}
