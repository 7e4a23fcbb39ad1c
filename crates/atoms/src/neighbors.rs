//! Periodic neighbour lists for any triclinic cell, including cells smaller than the
//! cutoff (an atom may then see several images of the same neighbour, and itself),
//! mixed periodic and open directions, and positions outside the cell.
//!
//! * [`NeighborList::build`]: the full list (each pair as i->j and j->i), from a cell
//!   list in O(N); [`NeighborList::rebuild`] reuses the memory of an existing list;
//!   [`NeighborList::build_half`]: each pair once.
//! * [`CellList`]: the binning itself, for code that wants the pairs without storing
//!   them: [`CellList::for_each_neighbor`] (one row of the full list),
//!   [`CellList::for_each_half_pair`] (each pair once, oriented `i <= j`) and
//!   [`CellList::for_each_half_pair_d2`] (each pair once, fastest).
//! * [`NeighborList::build_brute_force`]: the O(N²) reference the tests compare with.
//!
//! Vectors of the full list are computed exactly as the brute force computes them
//! (`wrapped_j + shift·cell - wrapped_i`), so the two agree to the last bit.

use crate::structure::{cross, det3, inverse3, norm, vec_mat, Mat3, Structure, Vec3};

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
    /// All neighbours within `cutoff_a` (inclusive) of every atom, found with a cell list
    /// (O(N) for large cells). Rows are in no particular order, but the order is
    /// deterministic for a given structure.
    pub fn build(structure: &Structure, cutoff_a: f64) -> NeighborList {
        let mut nl = NeighborList { cutoff_a, offsets: Vec::new(), neighbors: Vec::new() };
        nl.rebuild(structure, cutoff_a);
        nl
    }

    /// Like [`NeighborList::build`], reusing this list's memory.
    pub fn rebuild(&mut self, structure: &Structure, cutoff_a: f64) {
        let n = structure.len();
        let cells = CellList::new(structure, cutoff_a);
        // Row by row (each pair is found from both ends): the rows are written in order,
        // with no temporary list and no scattered writes.
        self.offsets.clear();
        self.offsets.reserve(n + 1);
        self.offsets.push(0);
        self.neighbors.clear();
        for i in 0..n {
            let neighbors = &mut self.neighbors;
            cells.for_each_neighbor(i, |j, shift, vector_a, distance_a| {
                neighbors.push(Neighbor { j, shift, vector_a, distance_a });
            });
            self.offsets.push(self.neighbors.len());
        }
        self.cutoff_a = cutoff_a;
    }

    /// A half list: every pair once, stored in the row of its smaller index (row `i`
    /// holds neighbours `j >= i`; an atom's own images appear with a lexicographically
    /// positive shift only).
    pub fn build_half(structure: &Structure, cutoff_a: f64) -> NeighborList {
        let n = structure.len();
        let cells = CellList::new(structure, cutoff_a);
        let mut half: Vec<(u32, Neighbor)> = Vec::new();
        cells.for_each_half_pair(|i, j, shift, v, d| {
            half.push((i as u32, Neighbor { j, shift, vector_a: v, distance_a: d }));
        });
        let mut offsets = vec![0usize; n + 1];
        for (i, _) in &half {
            offsets[*i as usize + 1] += 1;
        }
        for k in 0..n {
            offsets[k + 1] += offsets[k];
        }
        let mut next: Vec<usize> = offsets[..n].to_vec();
        let blank = Neighbor { j: 0, shift: [0; 3], vector_a: [0.0; 3], distance_a: 0.0 };
        let mut neighbors = vec![blank; half.len()];
        for (i, nb) in &half {
            let i = *i as usize;
            neighbors[next[i]] = *nb;
            next[i] += 1;
        }
        NeighborList { cutoff_a, offsets, neighbors }
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
    [v / norm(&cross(&c[1], &c[2])), v / norm(&cross(&c[2], &c[0])), v / norm(&cross(&c[0], &c[1]))]
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

/// Atoms binned for neighbour search: the engine behind [`NeighborList::build`].
///
/// Bins are parallelepipeds of the cell (fractional-coordinate boxes) along periodic
/// directions, and boxes of the occupied range along non-periodic ones (Cartesian boxes
/// when nothing is periodic, so any cell, even a zero one, works). A vector shorter than
/// the cutoff crosses at most `reach` bins along each axis, because the perpendicular
/// thickness of a bin is known; periodic bins wrap around with an image shift, so a cell
/// smaller than the cutoff simply visits the same bin several times with different shifts.
#[derive(Clone, Debug)]
pub struct CellList {
    cutoff_a: f64,
    cell: Mat3,
    periodic: [bool; 3],
    nbins: [usize; 3],
    reach: [i32; 3],
    /// `bin_start[b]..bin_start[b + 1]` indexes `atom`/`pos` for bin `b`.
    bin_start: Vec<u32>,
    /// Atom indices grouped by bin, ascending within a bin.
    atom: Vec<u32>,
    /// Wrapped positions in the order of `atom`.
    pos: Vec<Vec3>,
    /// Per atom index: wrapped = original + wrap_shift·cell.
    wrap_shift: Vec<[i32; 3]>,
    /// Non-empty bins.
    occupied: Vec<u32>,
    /// Per atom index: its bin, and its place in `atom`/`pos`.
    bin_of: Vec<u32>,
    slot: Vec<u32>,
    /// Per axis: the (bin, shift) of every unwrapped bin coordinate in `-reach..n + reach`.
    wrap_tables: [Vec<Option<(usize, i32)>>; 3],
    /// Per stencil row `(dx + reach0) * (2 reach1 + 1) + dy + reach1`: the z reach, or -1.
    z_reach: Vec<i32>,
}

impl CellList {
    /// Bin the atoms of `structure` for a search radius `cutoff_a`.
    pub fn new(structure: &Structure, cutoff_a: f64) -> CellList {
        let n = structure.len();
        let any_pbc = structure.pbc.iter().any(|&p| p);
        let (wrapped, wrap_shift) = wrap_positions(structure);
        let periodic = if any_pbc { structure.pbc } else { [false; 3] };
        // Binning basis: the cell when anything is periodic (then it is non-singular),
        // Cartesian axes otherwise.
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let (inv, heights) = if any_pbc {
            (inverse3(&structure.cell_a).expect("periodic cell must be non-singular"), cell_heights_a(structure))
        } else {
            (identity, [1.0; 3])
        };
        let frac: Vec<Vec3> = wrapped.iter().map(|p| vec_mat(p, &inv)).collect();
        let mut lo = [0.0f64; 3];
        let mut span = [1.0f64; 3];
        for k in 0..3 {
            if !periodic[k] {
                let mut mn = f64::INFINITY;
                let mut mx = f64::NEG_INFINITY;
                for f in &frac {
                    mn = mn.min(f[k]);
                    mx = mx.max(f[k]);
                }
                if n == 0 {
                    mn = 0.0;
                    mx = 0.0;
                }
                lo[k] = mn;
                span[k] = mx - mn;
            }
        }
        // Perpendicular extent of the binned region along each axis, in Å.
        let extent: [f64; 3] = std::array::from_fn(|k| span[k] * heights[k]);
        // Bins about half the cutoff thick, but never many more bins than atoms.
        let max_bins = 4 * n + 64;
        // Binning basis vectors (Å); when they are orthogonal the bins are boxes, the exact
        // distance between two bins is known, and finer bins with a rounder stencil pay.
        let basis = if any_pbc { structure.cell_a } else { identity };
        let orthogonal = (0..3).all(|a| {
            (a + 1..3).all(|b| {
                let d = basis[a][0] * basis[b][0] + basis[a][1] * basis[b][1] + basis[a][2] * basis[b][2];
                d.abs() <= 1e-12 * norm(&basis[a]) * norm(&basis[b])
            })
        });
        let mut target = (if orthogonal { cutoff_a / 2.0 } else { 0.5 * cutoff_a }).max(1e-3);
        let mut nbins = [1usize; 3];
        loop {
            for k in 0..3 {
                let m = (extent[k] / target).floor();
                nbins[k] = if m.is_finite() && m >= 1.0 { (m as usize).min(max_bins) } else { 1 };
            }
            let total = nbins[0].saturating_mul(nbins[1]).saturating_mul(nbins[2]);
            if total <= max_bins {
                break;
            }
            target *= 1.25;
        }
        let mut reach = [0i32; 3];
        for k in 0..3 {
            if extent[k] > 0.0 {
                // A vector of length <= cutoff changes this coordinate by at most
                // cutoff / thickness bins; the margin covers rounding in the binning.
                let x = cutoff_a * nbins[k] as f64 / extent[k];
                let r = (x * (1.0 + 1e-10) + 1e-9).ceil();
                reach[k] = if r.is_finite() { r.clamp(0.0, 1e6) as i32 } else { 0 };
            }
            if !periodic[k] {
                reach[k] = reach[k].min(nbins[k] as i32 - 1).max(0);
            }
        }
        // Per stencil row (dx, dy): how far along z it reaches, or -1 when the whole row is
        // beyond the cutoff (only pruned for box-shaped bins).
        let (w0, w1) = (2 * reach[0] as usize + 1, 2 * reach[1] as usize + 1);
        let mut z_reach = vec![reach[2]; w0 * w1];
        if orthogonal {
            let thick: [f64; 3] = std::array::from_fn(|k| extent[k] / nbins[k] as f64);
            let gap = |d: i32, k: usize| ((d.abs() - 1).max(0) as f64) * thick[k];
            let c = cutoff_a * (1.0 + 1e-9) + 1e-9;
            for dx in -reach[0]..=reach[0] {
                for dy in -reach[1]..=reach[1] {
                    let rem = c * c - gap(dx, 0).powi(2) - gap(dy, 1).powi(2);
                    let zr = &mut z_reach[(dx + reach[0]) as usize * w1 + (dy + reach[1]) as usize];
                    if rem < 0.0 {
                        *zr = -1;
                    } else {
                        while *zr > 0 && gap(*zr, 2) > rem.sqrt() {
                            *zr -= 1;
                        }
                    }
                }
            }
        }
        let nb_total = nbins[0] * nbins[1] * nbins[2];
        let mut bin_of = Vec::with_capacity(n);
        for f in &frac {
            let mut b = [0usize; 3];
            for k in 0..3 {
                if span[k] > 0.0 {
                    let u = ((f[k] - lo[k]) / span[k] * nbins[k] as f64).floor();
                    b[k] = if u >= 0.0 { (u as usize).min(nbins[k] - 1) } else { 0 };
                }
            }
            bin_of.push(((b[0] * nbins[1] + b[1]) * nbins[2] + b[2]) as u32);
        }
        let mut bin_start = vec![0u32; nb_total + 1];
        for &b in &bin_of {
            bin_start[b as usize + 1] += 1;
        }
        for b in 0..nb_total {
            bin_start[b + 1] += bin_start[b];
        }
        let mut next: Vec<u32> = bin_start[..nb_total].to_vec();
        let mut atom = vec![0u32; n];
        let mut pos = vec![[0.0; 3]; n];
        for (i, &b) in bin_of.iter().enumerate() {
            let k = next[b as usize] as usize;
            atom[k] = i as u32;
            pos[k] = wrapped[i];
            next[b as usize] += 1;
        }
        let occupied = (0..nb_total as u32).filter(|&b| bin_start[b as usize + 1] > bin_start[b as usize]).collect();
        let mut slot = vec![0u32; n];
        for (k, &i) in atom.iter().enumerate() {
            slot[i as usize] = k as u32;
        }
        let wrap_tables = std::array::from_fn(|k| {
            let r = reach[k];
            (-r..nbins[k] as i32 + r).map(|u| wrap_bin(u, nbins[k], periodic[k])).collect()
        });
        CellList {
            cutoff_a,
            cell: structure.cell_a,
            periodic,
            nbins,
            reach,
            bin_start,
            atom,
            pos,
            wrap_shift,
            occupied,
            bin_of,
            slot,
            wrap_tables,
            z_reach,
        }
    }

    pub fn cutoff_a(&self) -> f64 {
        self.cutoff_a
    }

    /// Number of bins along each axis.
    pub fn bins(&self) -> [usize; 3] {
        self.nbins
    }

    /// Call `f(i, j, shift, vector, distance)` once for every pair within the cutoff
    /// (inclusive), with `i <= j`; for `i == j` (an atom and its own image) only the
    /// lexicographically positive shift is given. `shift` is relative to the stored
    /// positions and `vector = r_j + shift·cell - r_i`, as in [`Neighbor`].
    #[inline]
    pub fn for_each_half_pair<F: FnMut(usize, usize, [i32; 3], Vec3, f64)>(&self, f: F) {
        self.visit_half::<F, true>(f)
    }

    /// Like [`CellList::for_each_half_pair`], for speed when only geometry matters: no
    /// lattice shift, no orientation (`i > j` may occur) and no square root:
    /// `f(i, j, vector, d²)` with `vector = r_j(image) - r_i`, once per pair with
    /// `d² <= cutoff² (1 + 1e-14)`.
    #[inline]
    pub fn for_each_half_pair_d2<F: FnMut(usize, usize, Vec3, f64)>(&self, mut f: F) {
        self.visit_half::<_, false>(|i, j, _, v, d2| f(i, j, v, d2))
    }

    /// Call `f(j, shift, vector, distance)` for every neighbour of atom `i` within the
    /// cutoff (inclusive): the row `i` of the full list, with vectors computed exactly as
    /// [`NeighborList::build_brute_force`] computes them.
    #[inline]
    pub fn for_each_neighbor<F: FnMut(usize, [i32; 3], Vec3, f64)>(&self, i: usize, mut f: F) {
        let c = self.cutoff_a;
        let c2 = c * c * (1.0 + 1e-14);
        let [_, n1, n2] = self.nbins;
        let [r0, r1, _] = self.reach;
        let a = self.slot[i] as usize;
        let bin = self.bin_of[i] as usize;
        let (bx, by, bz) = (bin / (n1 * n2), (bin / n2) % n1, bin % n2);
        let ws = &self.wrap_shift;
        let atom = &self.atom;
        let mut emit = |a: usize, b: usize, s: [i32; 3], v: Vec3, d2: f64| {
            if a == b && s == [0; 3] {
                return;
            }
            let d = d2.sqrt();
            if d <= c {
                let j = atom[b] as usize;
                f(j, [s[0] + ws[j][0] - ws[i][0], s[1] + ws[j][1] - ws[i][1], s[2] + ws[j][2] - ws[i][2]], v, d);
            }
        };
        let mut hits = [0u32; CHUNK];
        let (tx, ty) = (&self.wrap_tables[0], &self.wrap_tables[1]);
        for dx in -r0..=r0 {
            let Some((cx, sx)) = tx[(bx as i32 + dx + r0) as usize] else {
                continue;
            };
            for dy in -r1..=r1 {
                let Some((cy, sy)) = ty[(by as i32 + dy + r1) as usize] else {
                    continue;
                };
                let zr = self.z_reach[(dx + r0) as usize * (2 * r1 as usize + 1) + (dy + r1) as usize];
                if zr < 0 {
                    continue;
                }
                let row = (cx * n1 + cy) * n2;
                self.z_runs(bz, -zr, zr, |cz, cz_end, sz| {
                    let (s1, e1) = (self.bin_start[row + cz] as usize, self.bin_start[row + cz_end] as usize);
                    let s = [sx, sy, sz];
                    let t =
                        if s == [0; 3] { [0.0; 3] } else { vec_mat(&[sx as f64, sy as f64, sz as f64], &self.cell) };
                    scan(&self.pos, a, s1, e1, s, t, c2, &mut hits, &mut emit);
                });
            }
        }
    }

    /// The unwrapped z bins `bz + dz_lo ..= bz + dz_hi` as runs of consecutive bins with
    /// one image shift: `f(first bin, last bin + 1, shift)`.
    #[inline(always)]
    fn z_runs<G: FnMut(usize, usize, i32)>(&self, bz: usize, dz_lo: i32, dz_hi: i32, mut g: G) {
        let n2 = self.nbins[2] as i32;
        let mut u = bz as i32 + dz_lo;
        let u_end = bz as i32 + dz_hi;
        if self.periodic[2] {
            while u <= u_end {
                let sz = u.div_euclid(n2);
                let v = ((sz + 1) * n2 - 1).min(u_end);
                let cz = u.rem_euclid(n2);
                g(cz as usize, (cz + v - u) as usize + 1, sz);
                u = v + 1;
            }
        } else {
            let lo = u.max(0);
            let hi = u_end.min(n2 - 1);
            if lo <= hi {
                g(lo as usize, hi as usize + 1, 0);
            }
        }
    }

    #[inline(always)]
    fn visit_half<F: FnMut(usize, usize, [i32; 3], Vec3, f64), const SHIFT: bool>(&self, mut f: F) {
        let c = self.cutoff_a;
        // A margin so that the final test is exactly `norm(v) <= cutoff`.
        let c2 = c * c * (1.0 + 1e-14);
        let [_, n1, n2] = self.nbins;
        let [r0, r1, _] = self.reach;
        let cell = &self.cell;
        let atom = &self.atom;
        let pos = &self.pos;
        let ws = &self.wrap_shift;
        // Called for candidates with d² <= c2 only. Without SHIFT: f(i, j, _, v, d²).
        let mut emit = |a: usize, b: usize, s: [i32; 3], v: Vec3, d2: f64| {
            if !SHIFT {
                f(atom[a] as usize, atom[b] as usize, [0; 3], v, d2);
                return;
            }
            let d = d2.sqrt();
            if d <= c {
                let i = atom[a] as usize;
                let j = atom[b] as usize;
                let shift = [s[0] + ws[j][0] - ws[i][0], s[1] + ws[j][1] - ws[i][1], s[2] + ws[j][2] - ws[i][2]];
                if i <= j {
                    f(i, j, shift, v, d);
                } else {
                    f(j, i, [-shift[0], -shift[1], -shift[2]], [-v[0], -v[1], -v[2]], d);
                }
            }
        };
        let mut hits = [0u32; CHUNK];
        let (tx, ty) = (&self.wrap_tables[0], &self.wrap_tables[1]);
        for &bin in &self.occupied {
            let bin = bin as usize;
            let bz = bin % n2;
            let by = (bin / n2) % n1;
            let bx = bin / (n1 * n2);
            let (s0, e0) = (self.bin_start[bin] as usize, self.bin_start[bin + 1] as usize);
            // Same bin, no shift: j after i.
            for a in s0..e0 {
                scan(pos, a, a + 1, e0, [0; 3], [0.0; 3], c2, &mut hits, &mut emit);
            }
            // The half stencil: unwrapped bin offsets that are lexicographically positive,
            // taken as rows along z, each split into runs of consecutive bins with one shift.
            for dx in 0..=r0 {
                let Some((cx, sx)) = tx[(bx as i32 + dx + r0) as usize] else {
                    continue;
                };
                let dy_lo = if dx == 0 { 0 } else { -r1 };
                for dy in dy_lo..=r1 {
                    let Some((cy, sy)) = ty[(by as i32 + dy + r1) as usize] else {
                        continue;
                    };
                    let zr = self.z_reach[(dx + r0) as usize * (2 * r1 as usize + 1) + (dy + r1) as usize];
                    if zr < 0 {
                        continue;
                    }
                    let row = (cx * n1 + cy) * n2;
                    let dz_lo = if dx == 0 && dy == 0 { 1 } else { -zr };
                    self.z_runs(bz, dz_lo, zr, |cz, cz_end, sz| {
                        let (s1, e1) = (self.bin_start[row + cz] as usize, self.bin_start[row + cz_end] as usize);
                        if s1 == e1 {
                            return;
                        }
                        let s = [sx, sy, sz];
                        let t = if s == [0; 3] { [0.0; 3] } else { vec_mat(&[sx as f64, sy as f64, sz as f64], cell) };
                        for a in s0..e0 {
                            scan(pos, a, s1, e1, s, t, c2, &mut hits, &mut emit);
                        }
                    });
                }
            }
        }
    }
}

const CHUNK: usize = 64;

/// Test atoms `b` in `lo..hi` against atom `a` (image of `b` translated by `t`), and
/// call `emit(a, b, shift, vector, d²)` for those with `d² <= c2`. The distance test is
/// branch-free (indices are compacted first), so unpredictable hits cost no mispredictions.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan<E: FnMut(usize, usize, [i32; 3], Vec3, f64)>(
    pos: &[Vec3],
    a: usize,
    lo: usize,
    hi: usize,
    s: [i32; 3],
    t: Vec3,
    c2: f64,
    hits: &mut [u32; CHUNK],
    emit: &mut E,
) {
    let pi = pos[a];
    let mut start = lo;
    while start < hi {
        let end = (start + CHUNK).min(hi);
        let mut nh = 0usize;
        for (b, pj) in pos[start..end].iter().enumerate() {
            let v = [pj[0] + t[0] - pi[0], pj[1] + t[1] - pi[1], pj[2] + t[2] - pi[2]];
            let d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
            hits[nh] = (start + b) as u32;
            nh += (d2 <= c2) as usize;
        }
        for &b in &hits[..nh] {
            let b = b as usize;
            let pj = pos[b];
            let v = [pj[0] + t[0] - pi[0], pj[1] + t[1] - pi[1], pj[2] + t[2] - pi[2]];
            let d2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
            emit(a, b, s, v, d2);
        }
        start = end;
    }
}

/// The bin and image shift of an unwrapped bin coordinate, or None outside a
/// non-periodic range.
#[inline]
fn wrap_bin(u: i32, n: usize, periodic: bool) -> Option<(usize, i32)> {
    let n = n as i32;
    if periodic {
        Some((u.rem_euclid(n) as usize, u.div_euclid(n)))
    } else if (0..n).contains(&u) {
        Some((u as usize, 0))
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
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

    /// A small deterministic generator (splitmix64) so the tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in [lo, hi).
        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn cu() -> Element {
        Element::from_symbol("Cu").unwrap()
    }

    /// Every (i, j, shift) with its vector and distance, sorted.
    fn triples(nl: &NeighborList) -> Vec<(usize, usize, [i32; 3], Vec3, f64)> {
        let mut out = Vec::new();
        for i in 0..nl.len() {
            for nb in nl.neighbors(i) {
                out.push((i, nb.j, nb.shift, nb.vector_a, nb.distance_a));
            }
        }
        out.sort_by_key(|a| (a.0, a.1, a.2));
        out
    }

    /// The cell list and the brute force agree exactly on the set of (i, j, shift), and on
    /// the vectors and distances up to rounding; the half list is half of the full list.
    fn assert_same_as_brute_force(s: &Structure, cutoff: f64, what: &str) {
        let fast = NeighborList::build(s, cutoff);
        let slow = NeighborList::build_brute_force(s, cutoff);
        let (a, b) = (triples(&fast), triples(&slow));
        assert_eq!(a.len(), b.len(), "{what}: {} pairs with cell list, {} by brute force", a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!((x.0, x.1, x.2), (y.0, y.1, y.2), "{what}: different pairs");
            // Same arithmetic as the brute force: the same bits.
            assert_eq!(x.3, y.3, "{what}: vectors differ");
            assert_eq!(x.4, y.4, "{what}: distances differ");
            // The vector is the stored positions plus the shift.
            let t = vec_mat(&[x.2[0] as f64, x.2[1] as f64, x.2[2] as f64], &s.cell_a);
            for k in 0..3 {
                let v = s.positions_a[x.1][k] + t[k] - s.positions_a[x.0][k];
                assert!((v - x.3[k]).abs() < 1e-8, "{what}: vector is not r_j + shift·cell - r_i");
            }
        }
        // Half list: each pair once, row i holds j >= i, and mirroring it gives the full list.
        let half = NeighborList::build_half(s, cutoff);
        assert_eq!(2 * half.total_pairs(), fast.total_pairs(), "{what}: half list size");
        let mut mirrored = Vec::new();
        for i in 0..half.len() {
            for nb in half.neighbors(i) {
                assert!(nb.j >= i, "{what}: half list row {i} holds {}", nb.j);
                if nb.j == i {
                    assert!(nb.shift > [0; 3], "{what}: self image with non-positive shift");
                }
                mirrored.push((i, nb.j, nb.shift));
                mirrored.push((nb.j, i, [-nb.shift[0], -nb.shift[1], -nb.shift[2]]));
            }
        }
        mirrored.sort();
        let full: Vec<_> = b.iter().map(|x| (x.0, x.1, x.2)).collect();
        assert_eq!(mirrored, full, "{what}: half list mirrored is not the full list");
    }

    fn random_structure(rng: &mut Rng, n: usize, pbc: [bool; 3], scale: f64, skew: f64, spread: f64) -> Structure {
        let mut cell = [[0.0; 3]; 3];
        for (r, row) in cell.iter_mut().enumerate() {
            for (c, x) in row.iter_mut().enumerate() {
                *x = if r == c { scale * rng.uniform(0.7, 1.3) } else { scale * skew * rng.uniform(-1.0, 1.0) };
            }
        }
        let positions = (0..n)
            .map(|_| {
                let f = [
                    rng.uniform(-spread, 1.0 + spread),
                    rng.uniform(-spread, 1.0 + spread),
                    rng.uniform(-spread, 1.0 + spread),
                ];
                vec_mat(&f, &cell)
            })
            .collect();
        Structure::new(cell, positions, vec![cu(); n], pbc).unwrap()
    }

    #[test]
    fn random_triclinic_cells_match_brute_force() {
        let mut rng = Rng(7);
        let pbcs =
            [[true, true, true], [true, true, false], [false, true, true], [true, false, false], [false, false, false]];
        for case in 0..60 {
            let pbc = pbcs[case % pbcs.len()];
            let n = 1 + (rng.next_u64() % 40) as usize;
            let scale = rng.uniform(2.0, 12.0);
            let skew = rng.uniform(0.0, 0.6);
            let spread = if case % 3 == 0 { 1.5 } else { 0.0 };
            let s = random_structure(&mut rng, n, pbc, scale, skew, spread);
            let cutoff = rng.uniform(1.0, 7.0);
            assert_same_as_brute_force(
                &s,
                cutoff,
                &format!("case {case} pbc {pbc:?} n {n} scale {scale:.2} cutoff {cutoff:.2}"),
            );
        }
    }

    #[test]
    fn tiny_and_one_atom_cells_see_their_own_images() {
        let mut rng = Rng(11);
        for case in 0..30 {
            let pbc = if case % 4 == 3 { [true, true, false] } else { [true; 3] };
            let n = 1 + case % 3;
            let (scale, skew) = (rng.uniform(0.8, 2.5), rng.uniform(0.0, 0.9));
            let s = random_structure(&mut rng, n, pbc, scale, skew, 0.3);
            let cutoff = rng.uniform(2.0, 6.0);
            assert_same_as_brute_force(&s, cutoff, &format!("tiny case {case}"));
        }
        // One atom in a simple cubic cell of 1 Å with cutoff 1.5 Å: 6 + 12 images.
        let s = Structure::new(
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            vec![[0.3, -4.2, 7.7]],
            vec![cu()],
            [true; 3],
        )
        .unwrap();
        let nl = NeighborList::build(&s, 1.5);
        assert_eq!(nl.neighbors(0).len(), 18);
        assert!(nl.neighbors(0).iter().all(|nb| nb.j == 0));
        assert_same_as_brute_force(&s, 1.5, "simple cubic 1 Å");
        // A very flat triclinic cell, much thinner than the cutoff along one direction.
        let s = Structure::new(
            [[4.0, 0.0, 0.0], [3.9, 0.3, 0.0], [1.0, 1.0, 5.0]],
            vec![[0.1, 0.1, 0.1], [2.0, 0.2, 2.5]],
            vec![cu(); 2],
            [true; 3],
        )
        .unwrap();
        assert_same_as_brute_force(&s, 4.0, "flat cell");
    }

    #[test]
    fn clusters_and_slabs_match_brute_force() {
        let mut rng = Rng(5);
        // A cluster with no cell at all.
        let positions: Vec<Vec3> =
            (0..50).map(|_| [rng.uniform(-6.0, 6.0), rng.uniform(-6.0, 6.0), rng.uniform(-3.0, 9.0)]).collect();
        let s = Structure::new([[0.0; 3]; 3], positions.clone(), vec![cu(); 50], [false; 3]).unwrap();
        assert_same_as_brute_force(&s, 3.0, "cluster, zero cell");
        // The same atoms in a (small, irrelevant) cell, non-periodic: same neighbours.
        let s2 =
            Structure::new([[2.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, 0.3, 2.0]], positions, vec![cu(); 50], [false; 3])
                .unwrap();
        assert_same_as_brute_force(&s2, 3.0, "cluster, small cell");
        assert_eq!(NeighborList::build(&s, 3.0).total_pairs(), NeighborList::build(&s2, 3.0).total_pairs());
        // A far-away atom must not blow up the number of bins.
        let mut far = s.clone();
        far.positions_a.push([1e5, -3e4, 2e5]);
        far.species.push(cu());
        assert_same_as_brute_force(&far, 3.0, "cluster with a far atom");
        // Slabs: periodic in-plane, atoms spread far out of the cell along z.
        for case in 0..10 {
            let cell = [[3.0, 0.0, 0.0], [1.4, 2.7, 0.0], [0.3, -0.2, 1.0 + case as f64]];
            let positions = (0..20)
                .map(|_| vec_mat(&[rng.uniform(-2.0, 3.0), rng.uniform(-2.0, 3.0), rng.uniform(-4.0, 8.0)], &cell))
                .collect();
            let s = Structure::new(cell, positions, vec![cu(); 20], [true, true, false]).unwrap();
            assert_same_as_brute_force(&s, 4.5, &format!("slab {case}"));
        }
        // Wires: periodic along one axis only.
        let cell = [[2.5, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]];
        let positions =
            (0..15).map(|_| [rng.uniform(-3.0, 3.0), rng.uniform(0.0, 4.0), rng.uniform(0.0, 4.0)]).collect();
        let s = Structure::new(cell, positions, vec![cu(); 15], [true, false, false]).unwrap();
        assert_same_as_brute_force(&s, 5.0, "wire");
    }

    #[test]
    fn orthogonal_boxes_with_pruned_stencils_match_brute_force() {
        // Box-shaped bins get a rounder (pruned) stencil: check it on boxes of all shapes,
        // with cutoffs from a fraction of the box to several times it.
        let mut rng = Rng(21);
        let pbcs = [[true, true, true], [true, true, false], [false, true, false], [false, false, false]];
        for case in 0..40 {
            let sides = [rng.uniform(1.0, 14.0), rng.uniform(1.0, 14.0), rng.uniform(1.0, 14.0)];
            let cell = [[sides[0], 0.0, 0.0], [0.0, sides[1], 0.0], [0.0, 0.0, sides[2]]];
            let n = 1 + (rng.next_u64() % 200) as usize;
            let positions = (0..n)
                .map(|_| vec_mat(&[rng.uniform(-0.5, 1.5), rng.uniform(-0.5, 1.5), rng.uniform(-0.5, 1.5)], &cell))
                .collect();
            let pbc = pbcs[case % pbcs.len()];
            let s = Structure::new(cell, positions, vec![cu(); n], pbc).unwrap();
            let cutoff = rng.uniform(0.5, 9.0);
            assert_same_as_brute_force(&s, cutoff, &format!("box {case} {sides:?} pbc {pbc:?} cutoff {cutoff:.2}"));
        }
    }

    #[test]
    fn large_cells_match_brute_force() {
        // fcc 6x6x6 conventional cells (864 atoms), rattled and sheared: many bins.
        let mut rng = Rng(3);
        let a = 3.6;
        let mut positions = Vec::new();
        for x in 0..6 {
            for y in 0..6 {
                for z in 0..6 {
                    for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]] {
                        positions.push([
                            (x as f64 + b[0]) * a + rng.uniform(-0.2, 0.2),
                            (y as f64 + b[1]) * a + rng.uniform(-0.2, 0.2),
                            (z as f64 + b[2]) * a + rng.uniform(-0.2, 0.2),
                        ]);
                    }
                }
            }
        }
        let n = positions.len();
        let cell = [[6.0 * a, 0.0, 0.0], [1.0, 6.0 * a, 0.0], [-0.7, 2.0, 6.0 * a]];
        let s = Structure::new(cell, positions, vec![cu(); n], [true; 3]).unwrap();
        let cells = CellList::new(&s, 5.9);
        assert!(cells.bins().iter().all(|&b| b >= 4), "bins {:?}", cells.bins());
        assert_same_as_brute_force(&s, 5.9, "864 atoms");
        assert_same_as_brute_force(&s, 2.0, "864 atoms, short cutoff");
    }

    #[test]
    fn rebuild_reuses_and_matches() {
        let mut rng = Rng(9);
        let s1 = random_structure(&mut rng, 30, [true; 3], 8.0, 0.3, 0.5);
        let s2 = random_structure(&mut rng, 12, [true, false, true], 5.0, 0.3, 0.5);
        let mut nl = NeighborList::build(&s1, 4.0);
        nl.rebuild(&s2, 3.0);
        assert_eq!(triples(&nl).len(), triples(&NeighborList::build_brute_force(&s2, 3.0)).len());
        assert_eq!(nl.len(), 12);
        assert_eq!(nl.cutoff_a, 3.0);
    }

    #[test]
    fn empty_structure() {
        let s = Structure::new([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]], vec![], vec![], [true; 3]).unwrap();
        let nl = NeighborList::build(&s, 5.0);
        assert_eq!(nl.len(), 0);
        assert_eq!(nl.total_pairs(), 0);
    }

    #[test]
    fn degenerate_cutoffs() {
        // Zero and negative cutoffs find nothing (a zero cutoff: only coincident atoms).
        let s = Structure::new(
            [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]],
            vec![[0.0; 3], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
            vec![cu(); 3],
            [true; 3],
        )
        .unwrap();
        for cutoff in [0.0, -1.0, 1e-9] {
            assert_same_as_brute_force(&s, cutoff, &format!("cutoff {cutoff}"));
        }
        assert_eq!(NeighborList::build(&s, 0.0).total_pairs(), 2);
        assert_eq!(NeighborList::build(&s, -1.0).total_pairs(), 0);
    }
}
