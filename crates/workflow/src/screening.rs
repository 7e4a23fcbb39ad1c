//! Screening candidates with a surrogate: the adapter side of
//! [`autopipe_build::screen`]. A surrogate is any engine that is cheap next to the
//! oracle: the built-in EMT, a SNAP model file, or an ASE calculator through the bridge
//! (one Python process for the whole set).

use crate::models::read_model;
use autopipe_atoms::{Frame, InfoValue, Structure};
use autopipe_build::screen::{
    closest_contact, screen_surrogate, surrogate_numbers, Rejection, ScreenCriteria, SurrogateNumbers,
};
use autopipe_engines::ase_bridge::AseSettings;
use autopipe_engines::emt::Emt;
use autopipe_potential::SnapModel;
use std::path::Path;

/// A cheap engine used to screen candidates.
#[derive(Clone, Debug)]
pub enum Surrogate {
    Emt,
    Model(Box<SnapModel>),
    Ase(AseSettings),
}

impl Surrogate {
    /// `emt`, `model:FILE` (a model JSON of a run) or `ase:IMPORT.PATH` (with `python`
    /// and `kwargs` for the bridge). Reading the model file happens here.
    pub fn parse(
        spec: &str,
        python: Option<&str>,
        kwargs: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Surrogate, String> {
        let spec = spec.trim();
        if spec == "emt" {
            Ok(Surrogate::Emt)
        } else if let Some(path) = spec.strip_prefix("model:") {
            read_model(Path::new(path)).map(|m| Surrogate::Model(Box::new(m))).map_err(|e| e.to_string())
        } else if let Some(calculator) = spec.strip_prefix("ase:") {
            match calculator.rsplit_once('.') {
                Some((m, n)) if !m.is_empty() && !n.is_empty() => {}
                _ => return Err(format!("`{calculator}` is not an import path (module.Name)")),
            }
            Ok(Surrogate::Ase(AseSettings {
                calculator: calculator.to_string(),
                kwargs,
                python: python.map(str::to_string),
            }))
        } else {
            Err(format!("`{spec}`: expected emt, model:FILE or ase:IMPORT.PATH"))
        }
    }

    pub fn name(&self) -> String {
        match self {
            Surrogate::Emt => "emt".into(),
            Surrogate::Model(_) => "model".into(),
            Surrogate::Ase(s) => format!("ase:{}", s.calculator),
        }
    }

    /// Energy per atom and largest force for every structure (a failure per structure).
    /// Fails as a whole only when the surrogate cannot start (Python, ASE or the
    /// calculator missing).
    pub fn evaluate_all(&self, structures: &[&Structure]) -> Result<Vec<Result<SurrogateNumbers, String>>, String> {
        Ok(match self {
            Surrogate::Emt => {
                let emt = Emt::new();
                structures
                    .iter()
                    .map(|s| {
                        emt.calculate(s)
                            .map(|l| surrogate_numbers(l.energy_ev, &l.forces_ev_per_a))
                            .map_err(|e| format!("EMT: {e}"))
                    })
                    .collect()
            }
            Surrogate::Model(m) => {
                let evaluator = m.evaluator().map_err(|e| e.to_string())?;
                structures
                    .iter()
                    .map(|s| {
                        evaluator
                            .evaluate(s)
                            .map(|r| surrogate_numbers(r.energy_ev, &r.forces_ev_per_a))
                            .map_err(|e| format!("model: {e}"))
                    })
                    .collect()
            }
            Surrogate::Ase(settings) => {
                let mut bridge = settings.start(&[]).map_err(|e| e.to_string())?;
                structures
                    .iter()
                    .map(|s| {
                        bridge
                            .evaluate(s)
                            .map(|r| surrogate_numbers(r.labels.energy_ev, &r.labels.forces_ev_per_a))
                            .map_err(|e| e.to_string())
                    })
                    .collect()
            }
        })
    }
}

/// The screening outcome of one candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub rejection: Option<Rejection>,
    /// What the surrogate said, when it ran on this candidate.
    pub surrogate: Option<SurrogateNumbers>,
}

impl Verdict {
    pub fn kept(&self) -> bool {
        self.rejection.is_none()
    }

    /// Record the verdict in a frame's info: `screen_reason` and `screen_message` for a
    /// rejection, the surrogate's `surrogate_energy_ev_per_atom` and
    /// `surrogate_max_force_ev_per_a` when it ran.
    pub fn record(&self, frame: &mut Frame) {
        if let Some(r) = &self.rejection {
            frame.info.insert("screen_reason".into(), InfoValue::Str(r.reason().into()));
            frame.info.insert("screen_message".into(), InfoValue::Str(r.describe()));
        }
        if let Some(n) = &self.surrogate {
            frame.info.insert("surrogate_energy_ev_per_atom".into(), InfoValue::Float(n.energy_ev_per_atom));
            frame.info.insert("surrogate_max_force_ev_per_a".into(), InfoValue::Float(n.max_force_ev_per_a));
        }
    }
}

/// Screen a set: the distance check on every candidate, then the surrogate (when given)
/// on those that passed it; the energy median is over those the surrogate evaluated.
pub fn screen_structures(
    structures: &[&Structure],
    criteria: &ScreenCriteria,
    surrogate: Option<&Surrogate>,
) -> Result<Vec<Verdict>, String> {
    let mut verdicts: Vec<Verdict> = structures
        .iter()
        .map(|s| Verdict { rejection: closest_contact(s, criteria.min_distance_fraction), surrogate: None })
        .collect();
    let Some(surrogate) = surrogate else {
        return Ok(verdicts);
    };
    let passed: Vec<usize> = (0..structures.len()).filter(|&k| verdicts[k].kept()).collect();
    let results = surrogate.evaluate_all(&passed.iter().map(|&k| structures[k]).collect::<Vec<_>>())?;
    let decisions = screen_surrogate(&results, criteria);
    for ((&k, result), decision) in passed.iter().zip(&results).zip(decisions) {
        verdicts[k].surrogate = result.as_ref().ok().copied();
        verdicts[k].rejection = decision;
    }
    Ok(verdicts)
}
