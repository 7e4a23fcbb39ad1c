//! Special quasirandom structures (SQS): simulated annealing over the occupations of
//! one or more sublattices, minimising the Warren-Cowley short-range order (SRO) of
//! the cell's pairs shell by shell, i.e. making its pair correlations those of the
//! random alloy.
//!
//! Definitions. Sites of a *mixed* sublattice (more than one species) are the active
//! sites; a fixed sublattice (one species) only gets its element. A shell is a
//! distance between active sites of a pair of sublattices `(p, q)`, counted from the
//! ideal parent structure (distances within 1e-3 Å are one shell), the first
//! `shells` per sublattice pair. For shell `s`, `N_ab` counts the ordered pairs
//! `(i, k)` at that distance (periodic images included, as a neighbour list counts
//! them) with `i` of species `a` and `k` of `b`; the random alloy has
//! `E_ab = (N/2) (c_a^p c_b^q + c_a^q c_b^p)` (`N` ordered pairs, `c^p` the fractions on
//! sublattice `p`), and `α_ab = 1 − N_ab / E_ab` (for one sublattice the textbook
//! `1 − P(b | a) / c_b`). The objective is `Σ_s Σ_{a ≤ b, E_ab > 0} |α_ab|`.
//!
//! A trial swap exchanges two sites of different species on one sublattice and updates
//! `N_ab` from the two sites' neighbour rows only: O(neighbours), not O(N).

use crate::rng_from_seed;
use autopipe_atoms::{Element, NeighborList, Structure};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

/// One sublattice: the parent's sites it holds and what goes on them.
#[derive(Clone, Debug, PartialEq)]
pub struct Sublattice {
    /// Atom indices of the parent structure.
    pub sites: Vec<usize>,
    pub species: Vec<Element>,
    /// One per species, summing to 1, each times `sites.len()` an integer.
    pub fractions: Vec<f64>,
}

impl Sublattice {
    /// The sublattices of a supercell of `prototype`'s cell (its atoms in the order
    /// [`crate::supercell`] makes them), with `species[k]` at `fractions[k]` on sublattice k.
    pub fn of_prototype(
        parent: &Structure,
        prototype: crate::Prototype,
        species: &[Vec<Element>],
        fractions: &[Vec<f64>],
    ) -> Vec<Sublattice> {
        let subl = prototype.sublattices();
        (0..species.len().min(fractions.len()))
            .map(|k| Sublattice {
                sites: (0..parent.len()).filter(|i| subl[i % subl.len()] == k).collect(),
                species: species[k].clone(),
                fractions: fractions[k].clone(),
            })
            .collect()
    }
}

/// Why an SQS problem is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SqsError {
    /// `fractions`, `elements`, `shells`, `sublattices`.
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: String) -> SqsError {
    SqsError { field, message }
}

/// Most shells per sublattice pair.
pub const MAX_SHELLS: usize = 12;

/// The SRO of one shell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShellSro {
    /// 1-based shell number within its sublattice pair.
    pub shell: usize,
    /// The two sublattices (0-based, `p <= q`).
    pub sublattices: [usize; 2],
    pub distance_a: f64,
    /// Ordered pairs in the shell (each pair of sites counted both ways).
    pub ordered_pairs: u64,
    /// `(a, b, α_ab)` for every species pair with a random-alloy expectation, `a <= b`
    /// in the order of first appearance in the sublattices.
    pub alpha: Vec<(String, String, f64)>,
}

/// Active-site indices and (global species, count) of one mixed sublattice.
type MixedSublattice = (Vec<u32>, Vec<(u16, usize)>);

/// A prepared SQS problem: the parent, the sublattices and the shells' neighbour rows.
#[derive(Clone, Debug)]
pub struct SqsProblem {
    parent: Structure,
    /// Species per global index.
    species: Vec<Element>,
    /// Per mixed sublattice: its active-site indices (into `active`), and the species
    /// counts in global species indices.
    mixed: Vec<MixedSublattice>,
    /// Parent atom index of each active site.
    active: Vec<usize>,
    /// Fixed sites and their element.
    fixed: Vec<(usize, Element)>,
    /// Neighbour rows of active sites: (neighbour, shell id).
    row_start: Vec<u32>,
    rows: Vec<(u32, u32)>,
    /// Shell metadata: sublattice pair, distance, ordered pair count.
    shells: Vec<([usize; 2], usize, f64, u64)>,
    /// Random-alloy expectation per (shell, a, b), 0 where there is none.
    expected: Vec<f64>,
    /// The objective's terms: (count index with a <= b, 1 / expectation).
    terms: Vec<(u32, f64)>,
}

/// Scratch space of a trial swap.
#[derive(Clone, Debug)]
struct Trial {
    /// Per (shell, species): neighbours of i minus neighbours of j (others than i, j).
    d: Vec<i64>,
    /// Per shell: self-images of i minus those of j.
    selfs: Vec<i64>,
    /// The change of the pair counts, per (shell, a, b).
    delta: Vec<i64>,
}

/// The result of an annealing run.
#[derive(Clone, Debug)]
pub struct SqsResult {
    pub structure: Structure,
    pub objective: f64,
    pub sro: Vec<ShellSro>,
    /// Trial swaps done.
    pub steps: u64,
    /// The objective after each improvement, with its step (for convergence figures).
    pub improvements: Vec<(u64, f64)>,
}

impl SqsProblem {
    /// Check the sublattices against `parent` and find the shells.
    pub fn new(parent: &Structure, sublattices: &[Sublattice], shells: usize) -> Result<SqsProblem, SqsError> {
        if !(1..=MAX_SHELLS).contains(&shells) {
            return Err(err("shells", format!("{shells}: must be between 1 and {MAX_SHELLS}")));
        }
        if parent.pbc != [true; 3] {
            return Err(err("sublattices", "SQS needs a structure periodic in all three directions".into()));
        }
        let mut owner = vec![usize::MAX; parent.len()];
        let mut species: Vec<Element> = Vec::new();
        let mut mixed = Vec::new();
        let mut active = Vec::new();
        let mut active_sub = Vec::new();
        let mut fixed = Vec::new();
        let mut fractions_of: Vec<Vec<(u16, f64)>> = Vec::new();
        for (p, sub) in sublattices.iter().enumerate() {
            let n = sub.sites.len();
            if n == 0 {
                return Err(err("sublattices", format!("sublattice {} has no sites", p + 1)));
            }
            for &i in &sub.sites {
                if i >= parent.len() {
                    return Err(err(
                        "sublattices",
                        format!("site {i} is not an atom of the parent ({})", parent.len()),
                    ));
                }
                if owner[i] != usize::MAX {
                    return Err(err("sublattices", format!("site {i} is on two sublattices")));
                }
                owner[i] = p;
            }
            if sub.species.is_empty() || sub.species.len() != sub.fractions.len() {
                return Err(err(
                    "fractions",
                    format!(
                        "sublattice {}: {} elements but {} fractions",
                        p + 1,
                        sub.species.len(),
                        sub.fractions.len()
                    ),
                ));
            }
            for (k, e) in sub.species.iter().enumerate() {
                if sub.species[..k].contains(e) {
                    return Err(err("elements", format!("sublattice {}: {e} given twice", p + 1)));
                }
            }
            let sum: f64 = sub.fractions.iter().sum();
            if let Some(f) = sub.fractions.iter().find(|f| !(f.is_finite() && **f > 0.0 && **f <= 1.0)) {
                return Err(err("fractions", format!("sublattice {}: {f} is outside 0 < f <= 1", p + 1)));
            }
            if (sum - 1.0).abs() > 1e-6 {
                return Err(err("fractions", format!("sublattice {}: the fractions sum to {sum}, not 1", p + 1)));
            }
            let mut counts = Vec::new();
            for (e, f) in sub.species.iter().zip(&sub.fractions) {
                let x = f * n as f64;
                if (x - x.round()).abs() > 1e-6 {
                    return Err(err(
                        "fractions",
                        format!(
                            "sublattice {}: {f} of {n} sites is {x} atoms of {e}, not a whole number \
                             (choose a supercell whose site count times each fraction is an integer)",
                            p + 1
                        ),
                    ));
                }
                if x.round() < 1.0 {
                    return Err(err("fractions", format!("sublattice {}: {f} of {n} sites is no atom of {e}", p + 1)));
                }
                counts.push((*e, x.round() as usize));
            }
            if sub.species.len() == 1 {
                fixed.extend(sub.sites.iter().map(|&i| (i, sub.species[0])));
                continue;
            }
            let mut global = Vec::new();
            let mut fr = Vec::new();
            for ((e, c), f) in counts.iter().zip(&sub.fractions) {
                let g = match species.iter().position(|x| x == e) {
                    Some(g) => g,
                    None => {
                        species.push(*e);
                        species.len() - 1
                    }
                } as u16;
                global.push((g, *c));
                fr.push((g, *f));
            }
            let idx: Vec<u32> = sub
                .sites
                .iter()
                .map(|&i| {
                    active.push(i);
                    active_sub.push(mixed.len());
                    (active.len() - 1) as u32
                })
                .collect();
            mixed.push((idx, global));
            fractions_of.push(fr);
        }
        if let Some(i) = owner.iter().position(|&o| o == usize::MAX) {
            return Err(err("sublattices", format!("atom {i} of the parent is on no sublattice")));
        }
        let ns = species.len();
        let mut problem = SqsProblem {
            parent: parent.clone(),
            species,
            mixed,
            active,
            fixed,
            row_start: vec![0],
            rows: Vec::new(),
            shells: Vec::new(),
            expected: Vec::new(),
            terms: Vec::new(),
        };
        if problem.mixed.is_empty() {
            return Ok(problem);
        }
        // The active sites alone, to find the shells.
        let sub_struct = Structure {
            cell_a: parent.cell_a,
            positions_a: problem.active.iter().map(|&i| parent.positions_a[i]).collect(),
            species: problem.active.iter().map(|&i| parent.species[i]).collect(),
            pbc: [true; 3],
        };
        let nm = problem.mixed.len();
        let pair_index = |p: usize, q: usize| if p <= q { p * nm + q } else { q * nm + p };
        let volume = parent.volume_a3().abs();
        let mut cutoff = 1.5 * (volume / problem.active.len() as f64).cbrt();
        const TOL_A: f64 = 1e-3;
        let (nl, shell_distances) = loop {
            let nl = NeighborList::build(&sub_struct, cutoff);
            let mut dist: Vec<Vec<f64>> = vec![Vec::new(); nm * nm];
            for i in 0..nl.len() {
                for nb in nl.neighbors(i) {
                    if nb.distance_a < 1e-8 {
                        continue;
                    }
                    let d = &mut dist[pair_index(active_sub[i], active_sub[nb.j])];
                    if !d.iter().any(|x| (x - nb.distance_a).abs() < TOL_A) {
                        d.push(nb.distance_a);
                    }
                }
            }
            let enough = (0..nm).all(|p| (p..nm).all(|q| dist[pair_index(p, q)].len() > shells));
            if enough {
                for d in &mut dist {
                    d.sort_by(f64::total_cmp);
                    d.truncate(shells);
                }
                break (nl, dist);
            }
            if cutoff > 30.0 {
                return Err(err("shells", format!("fewer than {shells} shells within 30 Å")));
            }
            cutoff *= 1.25;
        };
        // Global shell ids, in pair order.
        let mut shell_id = vec![Vec::new(); nm * nm];
        for p in 0..nm {
            for q in p..nm {
                for (s, &d) in shell_distances[pair_index(p, q)].iter().enumerate() {
                    shell_id[pair_index(p, q)].push(problem.shells.len());
                    problem.shells.push(([p, q], s + 1, d, 0));
                }
            }
        }
        for i in 0..nl.len() {
            for nb in nl.neighbors(i) {
                let pi = pair_index(active_sub[i], active_sub[nb.j]);
                if let Some(s) = shell_distances[pi].iter().position(|x| (x - nb.distance_a).abs() < TOL_A) {
                    let id = shell_id[pi][s];
                    problem.rows.push((nb.j as u32, id as u32));
                    problem.shells[id].3 += 1;
                }
            }
            problem.row_start.push(problem.rows.len() as u32);
        }
        // Random-alloy expectations.
        problem.expected = vec![0.0; problem.shells.len() * ns * ns];
        let frac =
            |p: usize, a: usize| fractions_of[p].iter().find(|(g, _)| *g as usize == a).map(|(_, f)| *f).unwrap_or(0.0);
        for (id, &([p, q], _, _, n)) in problem.shells.iter().enumerate() {
            for a in 0..ns {
                for b in 0..ns {
                    problem.expected[id * ns * ns + a * ns + b] =
                        n as f64 / 2.0 * (frac(p, a) * frac(q, b) + frac(q, a) * frac(p, b));
                }
            }
        }
        for s in 0..problem.shells.len() {
            for a in 0..ns {
                for b in a..ns {
                    let k = s * ns * ns + a * ns + b;
                    if problem.expected[k] > 0.0 {
                        problem.terms.push((k as u32, 1.0 / problem.expected[k]));
                    }
                }
            }
        }
        Ok(problem)
    }

    /// Number of active (mixed) sites.
    pub fn active_sites(&self) -> usize {
        self.active.len()
    }

    /// Number of shells over all sublattice pairs.
    pub fn n_shells(&self) -> usize {
        self.shells.len()
    }

    fn ns(&self) -> usize {
        self.species.len()
    }

    /// Pair counts of an occupation (global species index per active site), from scratch.
    fn counts(&self, occ: &[u16]) -> Vec<i64> {
        let ns = self.ns();
        let mut c = vec![0i64; self.shells.len() * ns * ns];
        for i in 0..self.active.len() {
            for &(k, shell) in &self.rows[self.row_start[i] as usize..self.row_start[i + 1] as usize] {
                c[shell as usize * ns * ns + occ[i] as usize * ns + occ[k as usize] as usize] += 1;
            }
        }
        c
    }

    fn objective(&self, counts: &[i64]) -> f64 {
        self.terms.iter().map(|&(k, inv)| (1.0 - counts[k as usize] as f64 * inv).abs()).sum()
    }

    /// The objective of `counts + delta`, over the terms only.
    #[inline]
    fn objective_with(&self, counts: &[i64], delta: &[i64]) -> f64 {
        self.terms.iter().map(|&(k, inv)| (1.0 - (counts[k as usize] + delta[k as usize]) as f64 * inv).abs()).sum()
    }

    /// The change of the pair counts if active sites `i` and `j` (of different species)
    /// exchanged their species, into `t.delta`: one pass over each site's neighbours.
    /// The pair (i, j) itself keeps its unordered species pair; self-images of `i`
    /// (cells smaller than a shell) go from (a, a) to (b, b).
    #[inline]
    fn swap_delta(&self, occ: &[u16], i: usize, j: usize, t: &mut Trial) {
        let ns = self.ns();
        t.d.fill(0);
        t.selfs.fill(0);
        for &(k, s) in &self.rows[self.row_start[i] as usize..self.row_start[i + 1] as usize] {
            if k as usize == j {
                continue;
            }
            if k as usize == i {
                t.selfs[s as usize] += 1;
            } else {
                t.d[s as usize * ns + occ[k as usize] as usize] += 1;
            }
        }
        for &(k, s) in &self.rows[self.row_start[j] as usize..self.row_start[j + 1] as usize] {
            if k as usize == i {
                continue;
            }
            if k as usize == j {
                t.selfs[s as usize] -= 1;
            } else {
                t.d[s as usize * ns + occ[k as usize] as usize] -= 1;
            }
        }
        let (a, b) = (occ[i] as usize, occ[j] as usize);
        t.delta.fill(0);
        for s in 0..self.shells.len() {
            let base = s * ns * ns;
            for c in 0..ns {
                let x = t.d[s * ns + c];
                if x != 0 {
                    t.delta[base + a * ns + c] -= x;
                    t.delta[base + c * ns + a] -= x;
                    t.delta[base + b * ns + c] += x;
                    t.delta[base + c * ns + b] += x;
                }
            }
            let y = t.selfs[s];
            t.delta[base + a * ns + a] -= y;
            t.delta[base + b * ns + b] += y;
        }
    }

    /// Exchange the species of active sites `i` and `j`, updating `counts`.
    #[cfg(test)]
    fn swap(&self, counts: &mut [i64], occ: &mut [u16], i: usize, j: usize, t: &mut Trial) {
        self.swap_delta(occ, i, j, t);
        for (c, d) in counts.iter_mut().zip(&t.delta) {
            *c += d;
        }
        occ.swap(i, j);
    }

    fn trial(&self) -> Trial {
        let ns = self.ns();
        let nsh = self.shells.len();
        Trial { d: vec![0; nsh * ns], selfs: vec![0; nsh], delta: vec![0; nsh * ns * ns] }
    }

    /// The SRO table of an occupation.
    fn sro(&self, occ: &[u16]) -> Vec<ShellSro> {
        let ns = self.ns();
        let counts = self.counts(occ);
        self.shells
            .iter()
            .enumerate()
            .map(|(s, &(pair, shell, d, n))| {
                let mut alpha = Vec::new();
                for a in 0..ns {
                    for b in a..ns {
                        let k = s * ns * ns + a * ns + b;
                        if self.expected[k] > 0.0 {
                            alpha.push((
                                self.species[a].symbol().to_string(),
                                self.species[b].symbol().to_string(),
                                1.0 - counts[k] as f64 / self.expected[k],
                            ));
                        }
                    }
                }
                ShellSro { shell, sublattices: pair, distance_a: d, ordered_pairs: n, alpha }
            })
            .collect()
    }

    fn structure(&self, occ: &[u16]) -> Structure {
        let mut s = self.parent.clone();
        for (k, &i) in self.active.iter().enumerate() {
            s.species[i] = self.species[occ[k] as usize];
        }
        for &(i, e) in &self.fixed {
            s.species[i] = e;
        }
        s
    }

    /// Simulated annealing: `steps` trial swaps, the temperature falling geometrically
    /// from `t_start` to `t_end` (in units of the objective). Deterministic for a seed;
    /// returns the best occupation seen. Stops early at an objective of zero.
    pub fn anneal(&self, steps: u64, seed: u64) -> SqsResult {
        self.anneal_with(steps, seed, true)
    }

    /// [`SqsProblem::anneal`], going on to the last step when `stop_at_zero` is false
    /// (for timing).
    pub fn anneal_with(&self, steps: u64, seed: u64, stop_at_zero: bool) -> SqsResult {
        let mut rng = rng_from_seed(seed);
        // Initial occupation: the exact counts, shuffled per sublattice.
        let mut occ = vec![0u16; self.active.len()];
        for (sites, counts) in &self.mixed {
            let mut labels: Vec<u16> = counts.iter().flat_map(|&(g, c)| std::iter::repeat(g).take(c)).collect();
            labels.shuffle(&mut rng);
            for (&i, l) in sites.iter().zip(labels) {
                occ[i as usize] = l;
            }
        }
        let mut counts = self.counts(&occ);
        let mut current = self.objective(&counts);
        let mut best = current;
        let mut best_occ = occ.clone();
        let mut improvements = vec![(0, best)];
        let mut scratch = self.trial();
        // Sublattices with at least two species present are where swaps happen, chosen in
        // proportion to their size.
        let swappable: Vec<&Vec<u32>> = self.mixed.iter().map(|(s, _)| s).collect();
        let total_sites: usize = swappable.iter().map(|s| s.len()).sum();
        let (t_start, t_end) = (0.1f64, 1e-4f64);
        let mut done = 0;
        if !swappable.is_empty() && (best > 0.0 || !stop_at_zero) {
            let decay = (t_end / t_start).powf(1.0 / steps.max(1) as f64);
            let mut t = t_start;
            for step in 1..=steps {
                done = step;
                let mut r = rng.gen_range(0..total_sites);
                let mut sub = swappable[0];
                for s in &swappable {
                    if r < s.len() {
                        sub = s;
                        break;
                    }
                    r -= s.len();
                }
                let i = sub[r] as usize;
                let j = loop {
                    let j = sub[rng.gen_range(0..sub.len())] as usize;
                    if occ[j] != occ[i] {
                        break j;
                    }
                };
                self.swap_delta(&occ, i, j, &mut scratch);
                let trial = self.objective_with(&counts, &scratch.delta);
                let accept = trial <= current || rng.gen::<f64>() < ((current - trial) / t).exp();
                if accept {
                    for (c, d) in counts.iter_mut().zip(&scratch.delta) {
                        *c += d;
                    }
                    occ.swap(i, j);
                    current = trial;
                    if current < best - 1e-12 {
                        best = current;
                        best_occ.copy_from_slice(&occ);
                        improvements.push((step, best));
                        if stop_at_zero && best < 1e-12 {
                            break;
                        }
                    }
                }
                t *= decay;
            }
        }
        SqsResult {
            structure: self.structure(&best_occ),
            objective: self.objective(&self.counts(&best_occ)),
            sro: self.sro(&best_occ),
            steps: done,
            improvements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prototype::Prototype;
    use crate::supercell;

    fn el(s: &str) -> Element {
        Element::from_symbol(s).unwrap()
    }

    fn fcc_problem(reps: [usize; 3], shells: usize) -> SqsProblem {
        let parent = supercell(&Prototype::Fcc.build(&[el("Cu")], 3.8, None).unwrap(), reps);
        let sub = Sublattice {
            sites: (0..parent.len()).collect(),
            species: vec![el("Cu"), el("Au")],
            fractions: vec![0.5, 0.5],
        };
        SqsProblem::new(&parent, &[sub], shells).unwrap()
    }

    #[test]
    fn incremental_counts_equal_counts_from_scratch() {
        // A cell smaller than the third shell (self-images appear) and a larger one.
        for reps in [[1, 1, 2], [2, 2, 4]] {
            let p = fcc_problem(reps, 3);
            let mut rng = rng_from_seed(3);
            let mut occ: Vec<u16> = (0..p.active.len()).map(|i| (i % 2) as u16).collect();
            occ.shuffle(&mut rng);
            let mut counts = p.counts(&occ);
            let mut t = p.trial();
            for _ in 0..500 {
                let i = rng.gen_range(0..occ.len());
                let j = rng.gen_range(0..occ.len());
                if i == j || occ[i] == occ[j] {
                    continue;
                }
                p.swap(&mut counts, &mut occ, i, j, &mut t);
                assert_eq!(counts, p.counts(&occ), "{reps:?}");
            }
        }
    }

    #[test]
    fn fcc_shells_have_their_coordination() {
        let p = fcc_problem([2, 2, 4], 3);
        let n = p.active_sites() as u64;
        let got: Vec<(u64, f64)> = p.shells.iter().map(|s| (s.3 / n, s.2 / 3.8)).collect();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![12, 6, 24]);
        assert!((got[0].1 - 0.5f64.sqrt()).abs() < 1e-9 && (got[1].1 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn same_seed_same_structure() {
        let p = fcc_problem([2, 2, 2], 2);
        let a = p.anneal(2000, 9);
        let b = p.anneal(2000, 9);
        assert_eq!(a.structure, b.structure);
        assert_eq!(a.objective, b.objective);
        let n_au = a.structure.species.iter().filter(|e| **e == el("Au")).count();
        assert_eq!(n_au, 16);
    }

    #[test]
    fn bad_fractions_are_refused() {
        let parent = supercell(&Prototype::Fcc.build(&[el("Cu")], 3.8, None).unwrap(), [1, 1, 2]);
        let sub = |f: Vec<f64>| Sublattice { sites: (0..8).collect(), species: vec![el("Cu"), el("Au")], fractions: f };
        let e = SqsProblem::new(&parent, &[sub(vec![0.5, 0.6])], 2).unwrap_err();
        assert!(e.message.contains("sum to"), "{e}");
        let e = SqsProblem::new(&parent, &[sub(vec![0.3, 0.7])], 2).unwrap_err();
        assert!(e.message.contains("not a whole number"), "{e}");
        assert_eq!(SqsProblem::new(&parent, &[sub(vec![0.5, 0.5])], 0).unwrap_err().field, "shells");
    }
}
