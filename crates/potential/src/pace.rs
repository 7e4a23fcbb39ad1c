//! Pacemaker (ACE) as the training engine: its settings, the input YAML generated from
//! them, the per-frame weights Pacemaker reads (from the fit's groups), and the model file
//! that points at what Pacemaker wrote (`.yaml` potential, `.asi` active set).
//!
//! Pure: writing the files and running `pacemaker`/`pace_activeset` is the workflow's
//! pace job; evaluating the model is the pace evaluator (a Python subprocess with pyace).

use crate::fit::{frame_group, FitOptions};
use autopipe_atoms::Frame;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// What a Pacemaker fit is asked for (the `[potential.pace]` keys; `potential fit --kind pace`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaceSettings {
    /// Chemical symbols, sorted as Pacemaker sorts them (alphabetically).
    pub elements: Vec<String>,
    /// Radial cutoff, Å (`cutoff` and the bonds' `rcut`).
    pub cutoff_a: f64,
    /// `number_of_functions_per_element`: the basis size.
    pub functions_per_element: usize,
    /// Pacemaker's `maxiter` (BFGS iterations, per ladder step when `ladder_step` is set).
    pub max_iterations: usize,
    /// Ladder (hierarchical) fitting: the basis grows by this many functions per step;
    /// `None` fits the whole basis at once.
    pub ladder_step: Option<usize>,
    /// Pacemaker's loss balance: 0 weighs energies only, 1 forces only.
    pub kappa: f64,
    pub seed: u64,
}

impl Default for PaceSettings {
    fn default() -> Self {
        PaceSettings {
            elements: Vec::new(),
            cutoff_a: 5.0,
            functions_per_element: 16,
            max_iterations: 100,
            ladder_step: None,
            kappa: 0.3,
            seed: 42,
        }
    }
}

impl PaceSettings {
    /// Every setting checked, each error naming its key.
    pub fn validate(&self) -> Result<(), String> {
        if self.elements.is_empty() {
            return Err("elements: none given".into());
        }
        for e in &self.elements {
            if autopipe_atoms::Element::from_symbol(e).is_none() {
                return Err(format!("elements: {e:?} is not a chemical symbol"));
            }
        }
        if !(self.cutoff_a.is_finite() && self.cutoff_a > 1.0 && self.cutoff_a <= 15.0) {
            return Err(format!("cutoff_a: {} Å is outside 1 .. 15 Å", self.cutoff_a));
        }
        if !(1..=5000).contains(&self.functions_per_element) {
            return Err(format!("functions_per_element: {} is outside 1 ..= 5000", self.functions_per_element));
        }
        if !(1..=100_000).contains(&self.max_iterations) {
            return Err(format!("max_iterations: {} is outside 1 ..= 100000", self.max_iterations));
        }
        if self.ladder_step == Some(0) {
            return Err("ladder_step: must be at least 1".into());
        }
        if !(self.kappa.is_finite() && (0.0..=1.0).contains(&self.kappa)) {
            return Err(format!("kappa: {} is outside 0 ..= 1", self.kappa));
        }
        Ok(())
    }

    /// Pacemaker's input YAML: data from `dataset` (its pandas pickle), weights from
    /// `weights` (an `ExternalWeightingPolicy` pickle with `w_energy`, `w_forces`), the
    /// potential written to `output_potential.yaml` in the working directory.
    pub fn input_yaml(&self, dataset: &str, weights: &str) -> String {
        let mut elements: Vec<&str> = self.elements.iter().map(String::as_str).collect();
        elements.sort_unstable();
        elements.dedup();
        let mut y = String::new();
        let _ = writeln!(y, "# written by autopipe (potential.kind = \"pace\")");
        let _ = writeln!(y, "cutoff: {:?}", self.cutoff_a);
        let _ = writeln!(y, "seed: {}", self.seed);
        let _ = writeln!(y, "data:\n  filename: {dataset}");
        let _ = writeln!(y, "potential:\n  deltaSplineBins: 0.001\n  elements: [{}]", elements.join(", "));
        let _ = writeln!(
            y,
            "  embeddings:\n    ALL: {{npot: 'FinnisSinclairShiftedScaled', fs_parameters: [1, 1, 1, 0.5], ndensity: 2}}"
        );
        let _ = writeln!(
            y,
            "  bonds:\n    ALL: {{radbase: SBessel, radparameters: [5.25], rcut: {:?}, dcut: 0.01}}",
            self.cutoff_a
        );
        let _ = writeln!(
            y,
            "  functions:\n    number_of_functions_per_element: {}\n    ALL: {{nradmax_by_orders: [15, 3, 2, 1], lmax_by_orders: [0, 3, 2, 1]}}",
            self.functions_per_element
        );
        let _ = writeln!(y, "fit:\n  loss: {{kappa: {:?}, L1_coeffs: 1e-8, L2_coeffs: 1e-8}}", self.kappa);
        let _ = writeln!(y, "  weighting: {{type: ExternalWeightingPolicy, filename_or_df: {weights}}}");
        let _ = writeln!(y, "  optimizer: BFGS\n  maxiter: {}", self.max_iterations);
        if let Some(step) = self.ladder_step {
            let _ = writeln!(y, "  ladder_step: {step}\n  ladder_type: power_order");
        }
        let _ = writeln!(y, "backend:\n  evaluator: tensorpot\n  batch_size: 100\n  display_step: 50");
        y
    }
}

/// Pacemaker's weights of one frame: `w_energy` for its energy, `w_forces` for each of its
/// atoms' forces. The fit's group weights multiply rows (FitSNAP's meaning), Pacemaker's
/// multiply squared errors, so they are squared; Pacemaker then normalises each kind to
/// sum 1 and balances energies against forces by `kappa`, so only the ratios between
/// groups carry over.
pub fn frame_weights(frames: &[Frame], opts: &FitOptions) -> Vec<(f64, f64)> {
    frames
        .iter()
        .map(|f| {
            let (w, _) = opts.group_weights(frame_group(f));
            (w.e * w.e, w.f * w.f)
        })
        .collect()
}

/// The model file of a Pacemaker fit (JSON, `"kind": "pace"`): where Pacemaker's output
/// is and what it was fitted with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaceModel {
    /// Always `"pace"`: tells a pace model file from a SNAP one.
    pub kind: String,
    /// Pacemaker's potential (`output_potential.yaml`), absolute.
    pub potential_yaml: PathBuf,
    /// The active set written by `pace_activeset` (`.asi`), absolute.
    pub active_set_asi: PathBuf,
    pub settings: PaceSettings,
    /// Wall time of the fit (`pacemaker` and `pace_activeset`), s.
    pub fit_s: f64,
    /// Per-element reference energies (eV, by symbol) taken off the labels before the fit
    /// (Pacemaker's `energy_corrected`) and added back in every evaluation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reference_energies_ev: BTreeMap<String, f64>,
    /// Where the model comes from (the loop's run, generation, errors), when it does.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub provenance: serde_json::Value,
}

impl PaceModel {
    pub const KIND: &'static str = "pace";
}

/// The sum of the per-element reference energies of a structure's atoms, eV (elements
/// without one count 0).
pub fn reference_energy_ev(references_ev: &BTreeMap<String, f64>, species: &[autopipe_atoms::Element]) -> f64 {
    species.iter().map(|e| references_ev.get(e.symbol()).copied().unwrap_or(0.0)).sum()
}

/// Whether a model file's JSON text is a pace model (`"kind": "pace"`).
pub fn is_pace_model_json(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v["kind"] == PaceModel::KIND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::GroupWeights;
    use autopipe_atoms::InfoValue;

    #[test]
    fn yaml_carries_the_settings_and_validation_names_keys() {
        let s = PaceSettings {
            elements: vec!["Ni".into(), "Cu".into()],
            cutoff_a: 4.5,
            functions_per_element: 7,
            max_iterations: 3,
            ladder_step: Some(2),
            ..Default::default()
        };
        s.validate().unwrap();
        let y = s.input_yaml("data.pckl.gzip", "weights.pckl.gzip");
        for want in [
            "cutoff: 4.5",
            "elements: [Cu, Ni]",
            "rcut: 4.5",
            "number_of_functions_per_element: 7",
            "maxiter: 3",
            "ladder_step: 2",
            "filename: data.pckl.gzip",
            "filename_or_df: weights.pckl.gzip",
            "kappa: 0.3",
        ] {
            assert!(y.contains(want), "{want:?} missing from\n{y}");
        }
        assert!(!PaceSettings { ladder_step: None, ..s.clone() }.input_yaml("d", "w").contains("ladder"));
        for (bad, key) in [
            (PaceSettings { elements: vec![], ..s.clone() }, "elements"),
            (PaceSettings { elements: vec!["Xx".into()], ..s.clone() }, "elements"),
            (PaceSettings { cutoff_a: 0.5, ..s.clone() }, "cutoff_a"),
            (PaceSettings { functions_per_element: 0, ..s.clone() }, "functions_per_element"),
            (PaceSettings { max_iterations: 0, ..s.clone() }, "max_iterations"),
            (PaceSettings { ladder_step: Some(0), ..s.clone() }, "ladder_step"),
            (PaceSettings { kappa: 1.5, ..s.clone() }, "kappa"),
        ] {
            assert!(bad.validate().unwrap_err().starts_with(key), "{key}");
        }
    }

    #[test]
    fn group_weights_are_squared_for_pacemaker() {
        let mut opts = FitOptions { energy_weight: 2.0, force_weight: 1.0, ..Default::default() };
        opts.groups.insert(
            "liquid".into(),
            GroupWeights { energy_weight: Some(10.0), force_weight: Some(3.0), ..Default::default() },
        );
        let mut liquid = Frame::default();
        liquid.info.insert("config_type".into(), InfoValue::Str("liquid".into()));
        let w = frame_weights(&[Frame::default(), liquid], &opts);
        assert_eq!(w, vec![(4.0, 1.0), (100.0, 9.0)]);
        let m = PaceModel {
            kind: "pace".into(),
            potential_yaml: "/x/p.yaml".into(),
            active_set_asi: "/x/p.asi".into(),
            settings: PaceSettings::default(),
            fit_s: 1.0,
            reference_energies_ev: BTreeMap::new(),
            provenance: serde_json::Value::Null,
        };
        assert!(is_pace_model_json(&serde_json::to_string(&m).unwrap()));
        assert!(!is_pace_model_json("{\"snap\": 1}"));
    }
}
