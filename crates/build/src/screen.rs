//! Screening of candidate structures before anything expensive labels them: the
//! decisions only (pure). Evaluating a surrogate (EMT, the current model, an ASE
//! calculator) belongs to the callers; they hand its numbers to [`screen_surrogate`].
//!
//! * Too close: some pair of atoms nearer than `min_distance_fraction` times the sum of
//!   their covalent radii (ASE's values).
//! * Surrogate forces: the largest per-atom force above `max_force_ev_per_a`.
//! * Surrogate energy: energy per atom more than `max_energy_above_median_ev_per_atom`
//!   above the median of the screened set (the structures that passed so far).
//! * Surrogate failure: the surrogate could not evaluate the structure.

use autopipe_atoms::{NeighborList, Structure};
use serde::{Deserialize, Serialize};

/// What a candidate must satisfy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScreenCriteria {
    /// Closest allowed distance as a fraction of the sum of covalent radii, `0 .. 1.5`.
    pub min_distance_fraction: f64,
    /// Largest allowed surrogate force, eV/Å (None: not checked).
    pub max_force_ev_per_a: Option<f64>,
    /// Largest allowed surrogate energy per atom above the set's median, eV/atom.
    pub max_energy_above_median_ev_per_atom: Option<f64>,
}

impl Default for ScreenCriteria {
    fn default() -> ScreenCriteria {
        ScreenCriteria {
            min_distance_fraction: 0.6,
            max_force_ev_per_a: Some(20.0),
            max_energy_above_median_ev_per_atom: Some(1.0),
        }
    }
}

impl ScreenCriteria {
    /// The first criterion out of range: (field, message).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let f = self.min_distance_fraction;
        if !(f.is_finite() && (0.0..1.5).contains(&f)) {
            return Err(("min_distance_fraction", format!("{f} is outside 0 .. 1.5")));
        }
        if let Some(x) = self.max_force_ev_per_a {
            if !(x.is_finite() && x > 0.0) {
                return Err(("max_force_ev_per_a", format!("{x} eV/Å must be positive")));
            }
        }
        if let Some(x) = self.max_energy_above_median_ev_per_atom {
            if !(x.is_finite() && x > 0.0) {
                return Err(("max_energy_above_median_ev_per_atom", format!("{x} eV/atom must be positive")));
            }
        }
        Ok(())
    }
}

/// Why a candidate was rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Rejection {
    /// Atoms `i` and `j` (0-based) are `distance_a` apart, below `limit_a`.
    TooClose { i: usize, j: usize, pair: String, distance_a: f64, limit_a: f64 },
    /// Atom `atom` feels `force_ev_per_a` from the surrogate.
    LargeForce { atom: usize, force_ev_per_a: f64, limit_ev_per_a: f64 },
    /// The surrogate energy per atom is `above_median_ev_per_atom` above the median.
    HighEnergy {
        energy_ev_per_atom: f64,
        median_ev_per_atom: f64,
        above_median_ev_per_atom: f64,
        limit_ev_per_atom: f64,
    },
    /// The surrogate could not evaluate the structure.
    SurrogateFailed { message: String },
}

impl Rejection {
    /// The short reason, as recorded in a frame's info (`screen_reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::TooClose { .. } => "too_close",
            Rejection::LargeForce { .. } => "large_force",
            Rejection::HighEnergy { .. } => "high_energy",
            Rejection::SurrogateFailed { .. } => "surrogate_failed",
        }
    }

    /// One sentence for people.
    pub fn describe(&self) -> String {
        match self {
            Rejection::TooClose { i, j, pair, distance_a, limit_a } => format!(
                "atoms {} and {} ({pair}) are {distance_a:.3} Å apart, closer than {limit_a:.3} Å",
                i + 1,
                j + 1
            ),
            Rejection::LargeForce { atom, force_ev_per_a, limit_ev_per_a } => format!(
                "the surrogate force on atom {} is {force_ev_per_a:.3} eV/Å, above {limit_ev_per_a} eV/Å",
                atom + 1
            ),
            Rejection::HighEnergy {
                energy_ev_per_atom,
                median_ev_per_atom,
                above_median_ev_per_atom,
                limit_ev_per_atom,
            } => {
                format!(
                    "the surrogate energy {energy_ev_per_atom:.4} eV/atom is {above_median_ev_per_atom:.4} eV/atom above \
                     the median {median_ev_per_atom:.4}, more than {limit_ev_per_atom}"
                )
            }
            Rejection::SurrogateFailed { message } => format!("the surrogate failed: {message}"),
        }
    }
}

/// The pair closest relative to the sum of its covalent radii, if nearer than
/// `fraction` times that sum. O(N) with a cell list.
pub fn closest_contact(s: &Structure, fraction: f64) -> Option<Rejection> {
    if s.len() < 2 && !s.pbc.iter().any(|&p| p) {
        return None;
    }
    let max_r = s.species.iter().map(|e| e.covalent_radius_a()).fold(0.0, f64::max);
    let cutoff_a = 2.0 * max_r * fraction;
    if cutoff_a <= 0.0 {
        return None;
    }
    let nl = NeighborList::build(s, cutoff_a);
    let mut worst: Option<(f64, usize, usize, f64, f64)> = None;
    for i in 0..s.len() {
        for nb in nl.neighbors(i) {
            let limit = fraction * (s.species[i].covalent_radius_a() + s.species[nb.j].covalent_radius_a());
            let ratio = nb.distance_a / limit;
            if nb.distance_a < limit && !matches!(worst, Some(w) if ratio >= w.0) {
                worst = Some((ratio, i.min(nb.j), i.max(nb.j), nb.distance_a, limit));
            }
        }
    }
    worst.map(|(_, i, j, distance_a, limit_a)| Rejection::TooClose {
        i,
        j,
        pair: format!("{}-{}", s.species[i], s.species[j]),
        distance_a,
        limit_a,
    })
}

/// What a surrogate said about one structure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SurrogateNumbers {
    pub energy_ev_per_atom: f64,
    /// The largest per-atom force and its atom (0-based).
    pub max_force_ev_per_a: f64,
    pub max_force_atom: usize,
}

/// The surrogate decisions for a set: `results[k]` is what the surrogate gave for
/// structure k (or why it failed). The median is over the structures it evaluated.
pub fn screen_surrogate(
    results: &[Result<SurrogateNumbers, String>],
    criteria: &ScreenCriteria,
) -> Vec<Option<Rejection>> {
    let mut energies: Vec<f64> = results.iter().filter_map(|r| r.as_ref().ok().map(|n| n.energy_ev_per_atom)).collect();
    energies.sort_by(f64::total_cmp);
    let median = match energies.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => energies[n / 2],
        n => 0.5 * (energies[n / 2 - 1] + energies[n / 2]),
    };
    results
        .iter()
        .map(|r| match r {
            Err(message) => Some(Rejection::SurrogateFailed { message: message.clone() }),
            Ok(n) => {
                if !(n.energy_ev_per_atom.is_finite() && n.max_force_ev_per_a.is_finite()) {
                    return Some(Rejection::SurrogateFailed { message: "non-finite energy or forces".into() });
                }
                if let Some(limit) = criteria.max_force_ev_per_a {
                    if n.max_force_ev_per_a > limit {
                        return Some(Rejection::LargeForce {
                            atom: n.max_force_atom,
                            force_ev_per_a: n.max_force_ev_per_a,
                            limit_ev_per_a: limit,
                        });
                    }
                }
                if let Some(limit) = criteria.max_energy_above_median_ev_per_atom {
                    let above = n.energy_ev_per_atom - median;
                    if above > limit {
                        return Some(Rejection::HighEnergy {
                            energy_ev_per_atom: n.energy_ev_per_atom,
                            median_ev_per_atom: median,
                            above_median_ev_per_atom: above,
                            limit_ev_per_atom: limit,
                        });
                    }
                }
                None
            }
        })
        .collect()
}

/// [`SurrogateNumbers`] from a total energy and forces.
pub fn surrogate_numbers(energy_ev: f64, forces_ev_per_a: &[[f64; 3]]) -> SurrogateNumbers {
    let (atom, f2) = forces_ev_per_a
        .iter()
        .enumerate()
        .map(|(i, f)| (i, f[0] * f[0] + f[1] * f[1] + f[2] * f[2]))
        .fold((0, -1.0), |b, c| if c.1 > b.1 || c.1.is_nan() { c } else { b });
    SurrogateNumbers {
        energy_ev_per_atom: energy_ev / forces_ev_per_a.len().max(1) as f64,
        max_force_ev_per_a: f2.max(0.0).sqrt(),
        max_force_atom: atom,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::Element;

    fn el(s: &str) -> Element {
        Element::from_symbol(s).unwrap()
    }

    /// The closest pair, by brute force over images -1..=1.
    fn brute_min_ratio(s: &Structure) -> f64 {
        let mut best = f64::INFINITY;
        for i in 0..s.len() {
            for j in 0..s.len() {
                for a in -1..=1 {
                    for b in -1..=1 {
                        for c in -1..=1 {
                            if i == j && a == 0 && b == 0 && c == 0 {
                                continue;
                            }
                            let t = autopipe_atoms::structure::vec_mat(&[a as f64, b as f64, c as f64], &s.cell_a);
                            let d: f64 = (0..3)
                                .map(|k| (s.positions_a[j][k] + t[k] - s.positions_a[i][k]).powi(2))
                                .sum::<f64>()
                                .sqrt();
                            let r = s.species[i].covalent_radius_a() + s.species[j].covalent_radius_a();
                            best = best.min(d / r);
                        }
                    }
                }
            }
        }
        best
    }

    #[test]
    fn closest_contact_finds_the_pair_brute_force_finds() {
        let mut rng = crate::rng_from_seed(5);
        let base = crate::supercell(&crate::bulk(crate::Lattice::Fcc, el("Cu"), 3.61), [2, 2, 2]);
        let mut rejected = 0;
        for k in 0..40 {
            let mut s = crate::rattle(&base, 0.35, &mut rng);
            if k % 2 == 0 {
                s.species[3] = el("H");
            }
            let ratio = brute_min_ratio(&s);
            for fraction in [0.5, 0.7, 0.9] {
                match closest_contact(&s, fraction) {
                    Some(Rejection::TooClose { distance_a, limit_a, .. }) => {
                        rejected += 1;
                        assert!(ratio < fraction);
                        assert!((distance_a / limit_a * fraction - ratio).abs() < 1e-12, "{k}");
                    }
                    None => assert!(ratio >= fraction, "{k}: {ratio} < {fraction} not found"),
                    Some(other) => panic!("{other:?}"),
                }
            }
        }
        assert!(rejected > 10, "the test must exercise rejections ({rejected})");
        // an ideal crystal passes, two atoms on top of each other do not
        assert!(closest_contact(&base, 0.9).is_none());
        let mut s = base.clone();
        s.positions_a[1] = [s.positions_a[0][0] + 0.3, s.positions_a[0][1], s.positions_a[0][2]];
        let r = closest_contact(&s, 0.6).unwrap();
        assert_eq!(r.reason(), "too_close");
        assert!(r.describe().contains("atoms 1 and 2 (Cu-Cu) are 0.300 Å apart"), "{}", r.describe());
    }

    #[test]
    fn surrogate_decisions_use_the_median_and_the_force_limit() {
        let ok =
            |e: f64, f: f64| Ok(SurrogateNumbers { energy_ev_per_atom: e, max_force_ev_per_a: f, max_force_atom: 2 });
        let results = vec![ok(-3.0, 1.0), ok(-2.9, 1.0), ok(-1.5, 1.0), ok(-3.1, 30.0), Err("boom".to_string())];
        let criteria = ScreenCriteria::default();
        let v = screen_surrogate(&results, &criteria);
        // median of -3.1, -3.0, -2.9, -1.5 is -2.95: -1.5 is 1.45 above it
        assert_eq!(v[0], None);
        assert_eq!(v[1], None);
        assert!(
            matches!(v[2], Some(Rejection::HighEnergy { above_median_ev_per_atom, .. }) if (above_median_ev_per_atom - 1.45).abs() < 1e-12)
        );
        assert!(matches!(v[3], Some(Rejection::LargeForce { atom: 2, .. })));
        assert!(matches!(v[4], Some(Rejection::SurrogateFailed { .. })));
        let lenient =
            ScreenCriteria { max_force_ev_per_a: None, max_energy_above_median_ev_per_atom: None, ..criteria };
        assert!(screen_surrogate(&results[..4], &lenient).iter().all(Option::is_none));
        let n = surrogate_numbers(-8.0, &[[0.0, 0.0, 1.0], [3.0, 4.0, 0.0]]);
        assert_eq!((n.energy_ev_per_atom, n.max_force_ev_per_a, n.max_force_atom), (-4.0, 5.0, 1));
        assert!(ScreenCriteria { min_distance_fraction: 2.0, ..Default::default() }.validate().is_err());
    }
}
