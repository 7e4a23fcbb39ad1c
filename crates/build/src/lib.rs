//! Structure generation: bulk lattices, supercells, strain, rattle, random
//! substitutions and vacancies (this file); [`prototype`]s in ASE's cells; supercells
//! from a matrix and nearly cubic ones ([`cells`]); special quasirandom structures
//! ([`sqs`]); surface [`slab`]s; point [`defects`] at symmetry-distinct sites (moyo);
//! screening of candidates ([`screen`]); farthest-point selection ([`select`]). Pure and reproducible: every random step takes
//! a seeded generator, and the same seed gives the same structures on every machine.

pub mod cells;
pub mod defects;
pub mod extract;
pub mod prototype;
pub mod screen;
pub mod select;
pub mod slab;
pub mod sqs;

pub use cells::{make_supercell, nearly_cubic_supercell};
pub use prototype::Prototype;

use autopipe_atoms::structure::{vec_mat, Mat3};
use autopipe_atoms::{Element, Structure};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// A crystal lattice of one kind of site.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lattice {
    /// Simple cubic, 1 atom.
    Sc,
    /// Face-centred cubic, conventional cubic cell of 4 atoms.
    Fcc,
    /// Body-centred cubic, conventional cubic cell of 2 atoms.
    Bcc,
    /// Hexagonal close-packed with ideal c/a, 2 atoms.
    Hcp,
    /// Diamond, conventional cubic cell of 8 atoms.
    Diamond,
}

impl Lattice {
    pub const ALL: [Lattice; 5] = [Lattice::Sc, Lattice::Fcc, Lattice::Bcc, Lattice::Hcp, Lattice::Diamond];

    pub fn name(self) -> &'static str {
        match self {
            Lattice::Sc => "sc",
            Lattice::Fcc => "fcc",
            Lattice::Bcc => "bcc",
            Lattice::Hcp => "hcp",
            Lattice::Diamond => "diamond",
        }
    }

    /// Atoms in the cell [`bulk`] builds.
    pub fn sites(self) -> usize {
        match self {
            Lattice::Sc => 1,
            Lattice::Bcc | Lattice::Hcp => 2,
            Lattice::Fcc => 4,
            Lattice::Diamond => 8,
        }
    }

    pub fn parse(s: &str) -> Option<Lattice> {
        Lattice::ALL.into_iter().find(|l| l.name() == s)
    }
}

/// The conventional cell of `lattice` with lattice constant `a_a` (Å), all sites `element`.
pub fn bulk(lattice: Lattice, element: Element, a_a: f64) -> Structure {
    let cubic = [[a_a, 0.0, 0.0], [0.0, a_a, 0.0], [0.0, 0.0, a_a]];
    let (cell, frac): (Mat3, Vec<[f64; 3]>) = match lattice {
        Lattice::Sc => (cubic, vec![[0.0; 3]]),
        Lattice::Fcc => (cubic, vec![[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]]),
        Lattice::Bcc => (cubic, vec![[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]),
        Lattice::Diamond => (
            cubic,
            vec![
                [0.0, 0.0, 0.0],
                [0.25, 0.25, 0.25],
                [0.0, 0.5, 0.5],
                [0.25, 0.75, 0.75],
                [0.5, 0.0, 0.5],
                [0.75, 0.25, 0.75],
                [0.5, 0.5, 0.0],
                [0.75, 0.75, 0.25],
            ],
        ),
        Lattice::Hcp => {
            let c = a_a * (8.0f64 / 3.0).sqrt();
            (
                [[a_a, 0.0, 0.0], [-a_a / 2.0, a_a * 3f64.sqrt() / 2.0, 0.0], [0.0, 0.0, c]],
                vec![[1.0 / 3.0, 2.0 / 3.0, 0.25], [2.0 / 3.0, 1.0 / 3.0, 0.75]],
            )
        }
    };
    let positions = frac.iter().map(|f| vec_mat(f, &cell)).collect::<Vec<_>>();
    let n = positions.len();
    Structure { cell_a: cell, positions_a: positions, species: vec![element; n], pbc: [true; 3] }
}

/// The diagonal supercell `n[0] x n[1] x n[2]`.
pub fn supercell(s: &Structure, n: [usize; 3]) -> Structure {
    let mut out = Structure {
        cell_a: [[0.0; 3]; 3],
        positions_a: Vec::with_capacity(s.len() * n[0] * n[1] * n[2]),
        species: Vec::with_capacity(s.len() * n[0] * n[1] * n[2]),
        pbc: s.pbc,
    };
    for ((row, src), &nk) in out.cell_a.iter_mut().zip(&s.cell_a).zip(&n) {
        for (x, y) in row.iter_mut().zip(src) {
            *x = y * nk as f64;
        }
    }
    for i in 0..n[0] {
        for j in 0..n[1] {
            for k in 0..n[2] {
                let t = vec_mat(&[i as f64, j as f64, k as f64], &s.cell_a);
                for (p, e) in s.positions_a.iter().zip(&s.species) {
                    out.positions_a.push([p[0] + t[0], p[1] + t[1], p[2] + t[2]]);
                    out.species.push(*e);
                }
            }
        }
    }
    out
}

/// Apply the symmetric strain `eps` (Voigt `[xx, yy, zz, yz, xz, xy]`, engineering
/// shear halved into the tensor): cell and positions become `x (1 + eps)`.
pub fn strain(s: &Structure, eps: [f64; 6]) -> Structure {
    let f = [
        [1.0 + eps[0], eps[5] / 2.0, eps[4] / 2.0],
        [eps[5] / 2.0, 1.0 + eps[1], eps[3] / 2.0],
        [eps[4] / 2.0, eps[3] / 2.0, 1.0 + eps[2]],
    ];
    let apply = |v: &[f64; 3]| vec_mat(v, &f);
    Structure {
        cell_a: [apply(&s.cell_a[0]), apply(&s.cell_a[1]), apply(&s.cell_a[2])],
        positions_a: s.positions_a.iter().map(apply).collect(),
        species: s.species.clone(),
        pbc: s.pbc,
    }
}

/// A random strain with every Voigt component uniform in `[-max, max]`.
pub fn random_strain(rng: &mut impl Rng, max: f64) -> [f64; 6] {
    let mut e = [0.0; 6];
    if max > 0.0 {
        for x in &mut e {
            *x = rng.gen_range(-max..=max);
        }
    }
    e
}

/// Displace every atom by a Gaussian of standard deviation `sigma_a` (Å) per component.
pub fn rattle(s: &Structure, sigma_a: f64, rng: &mut impl Rng) -> Structure {
    let mut out = s.clone();
    if sigma_a > 0.0 {
        let normal = Normal::new(0.0, sigma_a).expect("a positive standard deviation");
        for p in &mut out.positions_a {
            for x in p.iter_mut() {
                *x += normal.sample(rng);
            }
        }
    }
    out
}

/// Random substitutional alloy: each site becomes one of `elements`, with counts as
/// close as possible to equal shares, shuffled.
pub fn random_alloy(s: &Structure, elements: &[Element], rng: &mut impl Rng) -> Structure {
    let mut out = s.clone();
    if elements.len() > 1 {
        let mut labels: Vec<Element> = (0..s.len()).map(|i| elements[i % elements.len()]).collect();
        labels.shuffle(rng);
        out.species = labels;
    }
    out
}

/// Remove `count` randomly chosen atoms.
pub fn vacancies(s: &Structure, count: usize, rng: &mut impl Rng) -> Structure {
    let mut keep: Vec<usize> = (0..s.len()).collect();
    keep.shuffle(rng);
    keep.truncate(s.len().saturating_sub(count));
    keep.sort_unstable();
    Structure {
        cell_a: s.cell_a,
        positions_a: keep.iter().map(|&i| s.positions_a[i]).collect(),
        species: keep.iter().map(|&i| s.species[i]).collect(),
        pbc: s.pbc,
    }
}

/// The reproducible generator every random step uses.
pub fn rng_from_seed(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Physical limits of a [`BulkRecipe`], checked by [`BulkRecipe::validate`] (the
/// configuration and the command line use the same ones).
pub mod limits {
    /// Lattice constant, Å (exclusive at both ends: `0.5 < a < 50`).
    pub const LATTICE_CONSTANT_A: (f64, f64) = (0.5, 50.0);
    /// Each Voigt strain component is drawn from `[-max_strain, max_strain]`, `0 ..= 0.2`.
    pub const MAX_STRAIN: f64 = 0.2;
    /// Standard deviation of the rattle per Cartesian component, `0 ..= 0.5` Å.
    pub const MAX_RATTLE_A: f64 = 0.5;
    /// Repetitions of the conventional cell along each axis, `1 ..= 50`.
    pub const MAX_SUPERCELL: usize = 50;
    /// Atoms in one generated structure, at most.
    pub const MAX_ATOMS: usize = 100_000;
    /// Structures in one recipe, `1 ..= 100000`.
    pub const MAX_COUNT: usize = 100_000;
}

/// Why a [`BulkRecipe`] is refused: the field (named as in the struct, e.g.
/// `lattice_constant_a`, so that a caller can map it to its own flag or key) and a
/// message that states the limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RecipeError {
    /// One of `elements`, `lattice_constant_a`, `supercell`, `count`, `max_strain`,
    /// `rattle_a`, `vacancy_fraction`.
    pub field: &'static str,
    pub message: String,
}

/// How to generate a set of bulk candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BulkRecipe {
    pub lattice: Lattice,
    pub elements: Vec<Element>,
    pub lattice_constant_a: f64,
    pub supercell: [usize; 3],
    pub count: usize,
    pub max_strain: f64,
    pub rattle_a: f64,
    /// Fraction of structures that get one vacancy.
    pub vacancy_fraction: f64,
    pub seed: u64,
}

impl BulkRecipe {
    /// Atoms per structure before vacancies (saturating: a huge supercell gives `usize::MAX`).
    pub fn atoms_per_structure(&self) -> usize {
        self.supercell.iter().fold(self.lattice.sites(), |n, &k| n.saturating_mul(k))
    }

    /// Checks every field against [`limits`]; the first violation, naming its field.
    /// A recipe that passes gives [`generate_bulk`] non-degenerate cells (the strain
    /// cannot shrink any direction by more than 40 %) and never makes it panic.
    pub fn validate(&self) -> Result<(), RecipeError> {
        let bad = |field: &'static str, message: String| Err(RecipeError { field, message });
        if self.elements.is_empty() {
            return bad("elements", "needs at least one element".into());
        }
        let (lo, hi) = limits::LATTICE_CONSTANT_A;
        let a = self.lattice_constant_a;
        if !(a.is_finite() && a > lo && a < hi) {
            return bad("lattice_constant_a", format!("{a} Å is outside the plausible range {lo} .. {hi} Å"));
        }
        if let Some(n) = self.supercell.iter().find(|&&n| n == 0 || n > limits::MAX_SUPERCELL) {
            return bad(
                "supercell",
                format!("{n} repetitions: each repetition must be between 1 and {}", limits::MAX_SUPERCELL),
            );
        }
        let atoms = self.atoms_per_structure();
        if atoms > limits::MAX_ATOMS {
            return bad(
                "supercell",
                format!(
                    "{}x{}x{} {} cells make {atoms} atoms, more than {}",
                    self.supercell[0],
                    self.supercell[1],
                    self.supercell[2],
                    self.lattice.name(),
                    limits::MAX_ATOMS
                ),
            );
        }
        if self.count == 0 || self.count > limits::MAX_COUNT {
            return bad("count", format!("{} structures: must be between 1 and {}", self.count, limits::MAX_COUNT));
        }
        let s = self.max_strain;
        if !(s.is_finite() && (0.0..=limits::MAX_STRAIN).contains(&s)) {
            return bad("max_strain", format!("{s} is outside 0 ..= {}", limits::MAX_STRAIN));
        }
        let r = self.rattle_a;
        if !(r.is_finite() && (0.0..=limits::MAX_RATTLE_A).contains(&r)) {
            return bad("rattle_a", format!("{r} Å is outside 0 ..= {} Å", limits::MAX_RATTLE_A));
        }
        let v = self.vacancy_fraction;
        if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
            return bad("vacancy_fraction", format!("{v} is outside 0 ..= 1"));
        }
        Ok(())
    }
}

/// Generate `recipe.count` strained, rattled (alloyed, vacancy-containing) supercells.
/// Structure `k` depends only on the seed and `k`. The recipe should have passed
/// [`BulkRecipe::validate`]: an invalid one gives no structures (use
/// [`try_generate_bulk`] to get the reason).
pub fn generate_bulk(recipe: &BulkRecipe) -> Vec<Structure> {
    try_generate_bulk(recipe).unwrap_or_default()
}

/// [`BulkRecipe::validate`], then [`generate_bulk`].
pub fn try_generate_bulk(recipe: &BulkRecipe) -> Result<Vec<Structure>, RecipeError> {
    recipe.validate()?;
    let base = supercell(&bulk(recipe.lattice, recipe.elements[0], recipe.lattice_constant_a), recipe.supercell);
    Ok((0..recipe.count)
        .map(|k| {
            let mut rng = rng_from_seed(recipe.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut s = random_alloy(&base, &recipe.elements, &mut rng);
            if rng.gen_bool(recipe.vacancy_fraction) && s.len() > 1 {
                s = vacancies(&s, 1, &mut rng);
            }
            let eps = random_strain(&mut rng, recipe.max_strain);
            s = strain(&s, eps);
            rattle(&s, recipe.rattle_a, &mut rng)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::NeighborList;

    fn cu() -> Element {
        Element::from_symbol("Cu").unwrap()
    }

    #[test]
    fn lattices_have_their_coordination() {
        // (lattice, nearest-neighbour distance / a, coordination)
        let cases = [
            (Lattice::Sc, 1.0, 6),
            (Lattice::Fcc, 0.5f64.sqrt(), 12),
            (Lattice::Bcc, 0.75f64.sqrt(), 8),
            (Lattice::Hcp, 1.0, 12),
            (Lattice::Diamond, 0.1875f64.sqrt(), 4),
        ];
        for (lattice, d, z) in cases {
            let s = supercell(&bulk(lattice, cu(), 3.0), [2, 2, 2]);
            let nl = NeighborList::build(&s, 3.0 * d * 1.01);
            for i in 0..s.len() {
                assert_eq!(nl.neighbors(i).len(), z, "{lattice:?} atom {i}");
                for nb in nl.neighbors(i) {
                    assert!((nb.distance_a - 3.0 * d).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn generation_is_reproducible_and_varied() {
        let recipe = BulkRecipe {
            lattice: Lattice::Fcc,
            elements: vec![cu(), Element::from_symbol("Au").unwrap()],
            lattice_constant_a: 3.7,
            supercell: [2, 2, 2],
            count: 10,
            max_strain: 0.03,
            rattle_a: 0.05,
            vacancy_fraction: 0.5,
            seed: 7,
        };
        let a = generate_bulk(&recipe);
        let b = generate_bulk(&recipe);
        assert_eq!(a, b);
        let hashes: std::collections::HashSet<_> = a.iter().map(|s| s.content_hash()).collect();
        assert_eq!(hashes.len(), 10);
        assert!(a.iter().any(|s| s.len() == 31) && a.iter().any(|s| s.len() == 32));
        for s in &a {
            let v0 = 3.7f64.powi(3) * 8.0;
            assert!((s.volume_a3() / v0 - 1.0).abs() < 0.1);
            s.validate().unwrap();
        }
    }

    #[test]
    fn strain_scales_volume() {
        let s = bulk(Lattice::Fcc, cu(), 3.6);
        let t = strain(&s, [0.01, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert!((t.volume_a3() / s.volume_a3() - 1.01).abs() < 1e-12);
    }
}
