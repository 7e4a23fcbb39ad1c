//! Physical limits of MD settings, and the guard that stops dynamics that blew up.
//!
//! [`StabilityGuard`] is checked by [`crate::run_md`] after every step, before the
//! observers see the new state: a state that fails it is never observed, and the run
//! ends with [`crate::MdError::Unstable`] naming the step. The checks:
//!
//! * the instantaneous temperature is at most `max_temperature_k` (by default
//!   `max(10 T, T + 5000 K)`, `T` the thermostat's temperature, or the starting
//!   temperature in NVE);
//! * the largest force is at most `max_force_ev_per_a`;
//! * the potential energy per atom has moved at most `max_energy_change_ev_per_atom`
//!   from the starting one (a model extrapolating into a hole dives without bound);
//! * no two atoms are closer than `min_distance_a` (every `distance_check_every`
//!   steps, with a cell list: O(N)).
//!
//! [`min_pair_distance_a`] and [`check_frame_sane`] are the same distance test as pure
//! functions, for frames that did not come from a guarded run.

use autopipe_atoms::neighbors::CellList;
use autopipe_atoms::structure::norm;
use autopipe_atoms::Structure;
use serde::{Deserialize, Serialize};

/// Limits of [`crate::MdSettings::validate`].
pub mod limits {
    /// Time step, fs: `0 < dt <= 20`.
    pub const MAX_TIMESTEP_FS: f64 = 20.0;
    /// Steps of one run.
    pub const MAX_STEPS: u64 = 1_000_000_000;
    /// Thermostat temperature, K: `0 ..= 20000` (0 is a damped quench).
    pub const MAX_TEMPERATURE_K: f64 = 20_000.0;
    /// Barostat pressure, GPa: `-50 ..= 1000`.
    pub const PRESSURE_GPA: (f64, f64) = (-50.0, 1000.0);
    /// Langevin friction, 1/fs: `0 ..= 10`.
    pub const MAX_FRICTION_PER_FS: f64 = 10.0;
    /// Barostat relaxation time, fs: `0 < tau <= 1e6`.
    pub const MAX_BAROSTAT_TIME_FS: f64 = 1e6;
    /// Compressibility estimate, 1/GPa: `0 < beta <= 10`.
    pub const MAX_COMPRESSIBILITY_PER_GPA: f64 = 10.0;
}

fn default_min_distance() -> f64 {
    0.5
}
fn default_check_every() -> u64 {
    1
}
fn default_max_force() -> f64 {
    100.0
}
fn default_max_energy_change() -> f64 {
    10.0
}

/// When [`crate::run_md`] declares the dynamics unstable (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StabilityGuard {
    /// Highest instantaneous temperature, K. `None`: `max(10 T, T + 5000 K)`, with `T`
    /// the thermostat's temperature (NVE: the starting temperature).
    #[serde(default)]
    pub max_temperature_k: Option<f64>,
    /// Closest allowed approach of two atoms (any images), Å. Default 0.5.
    #[serde(default = "default_min_distance")]
    pub min_distance_a: f64,
    /// Check distances every this many steps (1: every step, the default).
    #[serde(default = "default_check_every")]
    pub distance_check_every: u64,
    /// Largest allowed force on an atom, eV/Å. Default 100.
    #[serde(default = "default_max_force")]
    pub max_force_ev_per_a: f64,
    /// Largest allowed change of the potential energy per atom from the start, eV/atom.
    /// Default 10.
    #[serde(default = "default_max_energy_change")]
    pub max_energy_change_ev_per_atom: f64,
}

impl Default for StabilityGuard {
    fn default() -> Self {
        StabilityGuard {
            max_temperature_k: None,
            min_distance_a: default_min_distance(),
            distance_check_every: default_check_every(),
            max_force_ev_per_a: default_max_force(),
            max_energy_change_ev_per_atom: default_max_energy_change(),
        }
    }
}

impl StabilityGuard {
    /// The temperature bound for a run whose target (or starting) temperature is `target_k`.
    pub fn temperature_bound_k(&self, target_k: f64) -> f64 {
        self.max_temperature_k.unwrap_or((10.0 * target_k).max(target_k + 5000.0))
    }

    /// Every bound positive and finite (`max_temperature_k` too, when set).
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, x: f64, unit: &str| {
            if x.is_finite() && x > 0.0 {
                Ok(())
            } else {
                Err(format!("stability.{name} must be a positive number of {unit}, got {x}"))
            }
        };
        if let Some(t) = self.max_temperature_k {
            positive("max_temperature_k", t, "K")?;
        }
        // Zero disables the distance check.
        if !(self.min_distance_a.is_finite() && self.min_distance_a >= 0.0) {
            return Err(format!("stability.min_distance_a must be >= 0 Å, got {}", self.min_distance_a));
        }
        if self.distance_check_every == 0 {
            return Err("stability.distance_check_every must be at least 1".into());
        }
        positive("max_force_ev_per_a", self.max_force_ev_per_a, "eV/Å")?;
        positive("max_energy_change_ev_per_atom", self.max_energy_change_ev_per_atom, "eV/atom")?;
        Ok(())
    }
}

/// The closest pair of atoms: `(i, j, distance_a)` with 0-based indices, over all
/// periodic images (an atom and its own image count), or `None` when no two atoms are
/// within `search_a` of each other. 0 distance for a structure that is not valid
/// (non-finite positions, singular periodic cell). O(N) for small `search_a`.
pub fn closest_pair_within(s: &Structure, search_a: f64) -> Option<(usize, usize, f64)> {
    if s.validate().is_err() {
        return Some((0, 0, 0.0));
    }
    if !(search_a.is_finite() && search_a > 0.0) {
        return None;
    }
    let cells = CellList::new(s, search_a);
    let mut best: Option<(usize, usize, f64)> = None;
    cells.for_each_half_pair_d2(|i, j, _, d2| {
        if best.is_none_or(|b| d2 < b.2) {
            best = Some((i.min(j), i.max(j), d2));
        }
    });
    best.map(|(i, j, d2)| (i, j, d2.sqrt()))
}

/// The smallest distance between two atoms (Å), over all periodic images, an atom and
/// its own images included. `f64::INFINITY` when there is no pair (fewer than two atoms
/// and no periodic direction); 0 for a structure that is not valid (non-finite
/// positions, singular periodic cell). Pure; O(N) for ordinary densities.
pub fn min_pair_distance_a(s: &Structure) -> f64 {
    if s.validate().is_err() {
        return 0.0;
    }
    // An upper bound that is certainly attained by some pair: the length of a periodic
    // cell vector (an atom and its image), or the distance of the first two atoms.
    let mut bound = f64::INFINITY;
    for k in 0..3 {
        if s.pbc[k] && !s.is_empty() {
            bound = bound.min(norm(&s.cell_a[k]));
        }
    }
    if s.len() >= 2 {
        let (a, b) = (s.positions_a[0], s.positions_a[1]);
        bound = bound.min(norm(&[b[0] - a[0], b[1] - a[1], b[2] - a[2]]));
    }
    if !bound.is_finite() {
        return f64::INFINITY;
    }
    if bound == 0.0 {
        return 0.0;
    }
    // Grow the search radius from 3 Å (where dense matter has its nearest neighbours)
    // until a pair is found; the bound guarantees one.
    let mut radius = 3.0f64.min(bound);
    loop {
        if let Some((_, _, d)) = closest_pair_within(s, radius * (1.0 + 1e-9)) {
            return d;
        }
        if radius >= bound {
            return bound;
        }
        radius = (2.0 * radius).min(bound);
    }
}

/// `Err` naming the two atoms (1-based) and their distance when two atoms are closer
/// than `min_distance_a`, or the structure is not valid. For frames about to be
/// labelled: an oracle must never see atoms on top of each other.
pub fn check_frame_sane(s: &Structure, min_distance_a: f64) -> Result<(), String> {
    s.validate().map_err(|e| e.to_string())?;
    match closest_pair_within(s, min_distance_a) {
        Some((i, j, d)) if d < min_distance_a => Err(close_pair_message(i, j, d, min_distance_a)),
        _ => Ok(()),
    }
}

pub(crate) fn close_pair_message(i: usize, j: usize, d: f64, min_distance_a: f64) -> String {
    if i == j {
        format!("atom {} is {d:.3} Å from its own periodic image (minimum {min_distance_a} Å)", i + 1)
    } else {
        format!("atoms {} and {} are {d:.3} Å apart (minimum {min_distance_a} Å)", i + 1, j + 1)
    }
}
