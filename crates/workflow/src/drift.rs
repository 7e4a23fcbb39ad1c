//! Configuration drift: what changed between the configuration a run goes by and the
//! one given now, classified by what each change means for the labels and the model.
//!
//! Pure: compares two validated configurations; the loop decides (refuse, accept,
//! reopen) and records.

use crate::config::Config;
use sha2::{Digest, Sha256};
use std::fmt::Debug;

/// The changes between two configurations, by class, as dotted keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Drift {
    /// The oracle's label-defining settings or the elements: labels computed before and
    /// after would not be comparable.
    pub label: Vec<String>,
    /// Potential and fit settings: taken from the next fit on.
    pub model: Vec<String>,
    /// Exploration, generation of candidates, seed: taken from the next exploration on.
    pub explore: Vec<String>,
    /// Loop limits (max_generations, per_generation, targets): a finished or converged
    /// run goes on when the new limits allow it.
    pub limits: Vec<String>,
    /// How calculations run (workers, wall time, retries; the oracle's run options and
    /// convergence knobs): taken for calculations started from now on.
    pub execution: Vec<String>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.label.is_empty()
            && self.model.is_empty()
            && self.explore.is_empty()
            && self.limits.is_empty()
            && self.execution.is_empty()
    }

    /// One line: "label-defining: oracle.ecutwfc_ry; model: potential.twojmax".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for (name, keys) in [
            ("label-defining", &self.label),
            ("model", &self.model),
            ("exploration", &self.explore),
            ("loop limits", &self.limits),
            ("execution", &self.execution),
        ] {
            if !keys.is_empty() {
                parts.push(format!("{name}: {}", keys.join(", ")));
            }
        }
        parts.join("; ")
    }
}

fn sha256_hex(text: &str) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The label-defining part of a configuration, canonical: the elements, the oracle's
/// name and its label parameters (the same ones that enter every idempotency key).
fn label_part(c: &Config) -> String {
    let elements: Vec<&str> = c.elements.iter().map(|e| e.symbol()).collect();
    format!("{elements:?}|{}|{}", c.oracle.name(), c.oracle.label_params())
}

/// Hash of the label-defining part.
pub fn label_hash(c: &Config) -> String {
    sha256_hex(&label_part(c))
}

/// Hash of the whole validated configuration (what the run does, not how the file is
/// written: comments and key order do not count).
pub fn config_hash(c: &Config) -> String {
    let oracle = serde_json::to_string(&c.oracle).expect("engine settings serialise");
    let snap = serde_json::to_string(&c.snap).expect("SNAP parameters serialise");
    let fit = serde_json::to_string(&c.fit).expect("fit options serialise");
    let mut text = format!(
        "{}|{}|{:?}|{}|{:?}|{snap}|{fit}|{:?}|{:?}|{oracle}",
        c.name,
        c.seed,
        c.generate,
        label_part(c),
        c.execution,
        c.explore,
        c.loop_
    );
    // only when present, so that the hashes of configurations without recipes stay
    if let Some(r) = &c.recipes {
        text.push_str(&format!("|{r:?}"));
    }
    if let Some(e) = &c.elastic_cells {
        text.push_str(&format!("|elastic:{e:?}"));
    }
    sha256_hex(&text)
}

fn diff<T: PartialEq + Debug>(out: &mut Vec<String>, key: &str, a: &T, b: &T) {
    if a != b {
        out.push(key.to_string());
    }
}

/// Keys of two JSON objects whose values differ (missing on one side counts).
fn json_diff(out: &mut Vec<String>, prefix: &str, a: &serde_json::Value, b: &serde_json::Value) {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                if x.get(k) != y.get(k) {
                    out.push(format!("{prefix}.{k}"));
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

/// What changed from `old` to `new`.
pub fn classify(old: &Config, new: &Config) -> Drift {
    let mut d = Drift::default();
    diff(&mut d.label, "system.elements", &old.elements, &new.elements);
    if old.oracle.name() != new.oracle.name() {
        d.label.push("oracle.engine".into());
    } else {
        json_diff(&mut d.label, "oracle", &old.oracle.label_params(), &new.oracle.label_params());
        // Everything else of the oracle: convergence knobs and run options.
        if d.label.is_empty() && old.oracle != new.oracle {
            let a = serde_json::to_value(&old.oracle).expect("engine settings serialise");
            let b = serde_json::to_value(&new.oracle).expect("engine settings serialise");
            json_diff(&mut d.execution, "oracle", &a, &b);
        }
    }

    let (p, q) = (&old.snap, &new.snap);
    diff(&mut d.model, "potential.twojmax", &p.twojmax, &q.twojmax);
    diff(&mut d.model, "potential.cutoff_a", &p.rcutfac, &q.rcutfac);
    diff(&mut d.model, "potential.rfac0", &p.rfac0, &q.rfac0);
    diff(&mut d.model, "potential.rmin0_a", &p.rmin0, &q.rmin0);
    diff(&mut d.model, "potential.quadratic", &p.quadraticflag, &q.quadraticflag);
    let radii = |s: &autopipe_potential::SnapParams| s.elements.iter().map(|e| e.radius).collect::<Vec<_>>();
    let weights = |s: &autopipe_potential::SnapParams| s.elements.iter().map(|e| e.weight).collect::<Vec<_>>();
    if old.elements == new.elements {
        diff(&mut d.model, "potential.radii", &radii(p), &radii(q));
        diff(&mut d.model, "potential.weights", &weights(p), &weights(q));
    }
    diff(&mut d.model, "potential.kind", &old.potential_kind, &new.potential_kind);
    let pa = serde_json::to_value(&old.pace).expect("pace settings serialise");
    let pb = serde_json::to_value(&new.pace).expect("pace settings serialise");
    json_diff(&mut d.model, "potential.pace", &pa, &pb);
    let fa = serde_json::to_value(&old.fit).expect("fit options serialise");
    let fb = serde_json::to_value(&new.fit).expect("fit options serialise");
    json_diff(&mut d.model, "fit", &fa, &fb);

    diff(&mut d.explore, "run.seed", &old.seed, &new.seed);
    let (g, h) = (&old.generate, &new.generate);
    diff(&mut d.explore, "generate.lattice", &g.lattice, &h.lattice);
    diff(&mut d.explore, "generate.lattice_constant_a", &g.lattice_constant_a, &h.lattice_constant_a);
    diff(&mut d.explore, "generate.supercell", &g.supercell, &h.supercell);
    diff(&mut d.explore, "generate.structures", &g.count, &h.count);
    diff(&mut d.explore, "generate.max_strain", &g.max_strain, &h.max_strain);
    diff(&mut d.explore, "generate.rattle_a", &g.rattle_a, &h.rattle_a);
    diff(&mut d.explore, "generate.vacancy_fraction", &g.vacancy_fraction, &h.vacancy_fraction);
    diff(&mut d.explore, "generate.recipe", &old.recipes, &new.recipes);
    diff(&mut d.explore, "generate.elastic_cells", &old.elastic_cells, &new.elastic_cells);
    let (e, f) = (&old.explore, &new.explore);
    diff(&mut d.explore, "explore.temperatures_k", &e.temperatures_k, &f.temperatures_k);
    diff(&mut d.explore, "explore.pressures_gpa", &e.pressures_gpa, &f.pressures_gpa);
    diff(&mut d.explore, "explore.steps", &e.steps, &f.steps);
    diff(&mut d.explore, "explore.timestep_fs", &e.timestep_fs, &f.timestep_fs);
    diff(&mut d.explore, "explore.friction_per_fs", &e.friction_per_fs, &f.friction_per_fs);
    diff(&mut d.explore, "explore.sample_every", &e.sample_every, &f.sample_every);
    diff(&mut d.explore, "explore.gamma_select", &e.gamma_select, &f.gamma_select);
    diff(&mut d.explore, "explore.gamma_break", &e.gamma_break, &f.gamma_break);
    diff(&mut d.explore, "explore.max_frames_per_segment", &e.max_frames_per_segment, &f.max_frames_per_segment);
    diff(&mut d.explore, "explore.engine", &e.engine, &f.engine);
    diff(&mut d.explore, "explore.lammps_command", &e.lammps_command, &f.lammps_command);
    diff(&mut d.explore, "explore.start_file", &e.start_file, &f.start_file);
    diff(&mut d.explore, "explore.extract_above_atoms", &e.extract_above_atoms, &f.extract_above_atoms);
    diff(&mut d.explore, "explore.extract_buffer_a", &e.extract_buffer_a, &f.extract_buffer_a);

    let (l, m) = (&old.loop_, &new.loop_);
    diff(&mut d.limits, "loop.max_generations", &l.max_generations, &m.max_generations);
    diff(&mut d.limits, "loop.per_generation", &l.per_generation, &m.per_generation);
    diff(
        &mut d.limits,
        "loop.target_force_rmse_ev_per_a",
        &l.target_force_rmse_ev_per_a,
        &m.target_force_rmse_ev_per_a,
    );
    diff(
        &mut d.limits,
        "loop.target_energy_rmse_mev_per_atom",
        &l.target_energy_rmse_mev_per_atom,
        &m.target_energy_rmse_mev_per_atom,
    );

    diff(&mut d.execution, "run.name", &old.name, &new.name);
    let (x, y) = (&old.execution, &new.execution);
    diff(&mut d.execution, "execution.backend", &x.backend, &y.backend);
    diff(&mut d.execution, "execution.workers", &x.workers, &y.workers);
    diff(&mut d.execution, "execution.walltime_s", &x.walltime_s, &y.walltime_s);
    diff(&mut d.execution, "execution.max_physics_retries", &x.max_physics_retries, &y.max_physics_retries);
    diff(&mut d.execution, "execution.max_infra_retries", &x.max_infra_retries, &y.max_infra_retries);
    diff(&mut d.execution, "execution.failure_tolerance", &x.failure_tolerance, &y.failure_tolerance);
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_config;
    use std::path::Path;

    fn cu(edit: impl Fn(String) -> String) -> Config {
        let text = edit(crate::examples::example("cu-emt").unwrap().to_string());
        parse_config(&text, Path::new("cu.toml")).unwrap()
    }

    #[test]
    fn each_class_of_change_is_named_by_its_key() {
        let base = cu(|t| t);
        assert!(classify(&base, &cu(|t| t.replace("# every random", "# any comment"))).is_empty());
        assert_eq!(config_hash(&base), config_hash(&cu(|t| t.replace("# every random", "# other"))));

        let d = classify(&base, &cu(|t| t.replace("elements = [\"Cu\"]", "elements = [\"Cu\", \"Au\"]")));
        assert_eq!(d.label, vec!["system.elements"]);
        let d = classify(&base, &cu(|t| t.replace("twojmax = 10", "twojmax = 6")));
        assert_eq!(d.model, vec!["potential.twojmax"]);
        assert!(d.label.is_empty() && d.limits.is_empty());
        let d = classify(&base, &cu(|t| t.replace("force_weight = 1.0", "force_weight = 2.0")));
        assert_eq!(d.model, vec!["fit.force_weight"]);
        let d = classify(&base, &cu(|t| t.replace("elastic_cells = 12", "elastic_cells = 6")));
        assert_eq!(d.explore, vec!["generate.elastic_cells"]);
        let d = classify(&base, &cu(|t| t.replace("max_generations = 7", "max_generations = 9")));
        assert_eq!(d.limits, vec!["loop.max_generations"]);
        // the training engine and Pacemaker's settings are model settings
        let pace = |t: String, n: u32| {
            t.replace("[potential]", "[potential]\nkind = \"pace\"").replace("folds = 5", "folds = 0")
                + &format!("\n[potential.pace]\nmax_iterations = {n}\n")
        };
        let d = classify(&cu(|t| t.replace("folds = 5", "folds = 0")), &cu(|t| pace(t, 10)));
        assert_eq!(d.model, vec!["potential.kind", "potential.pace.max_iterations"]);
        let d = classify(&cu(|t| pace(t, 10)), &cu(|t| pace(t, 20)));
        assert_eq!(d.model, vec!["potential.pace.max_iterations"]);
        assert!(d.label.is_empty());
        let d = classify(&base, &cu(|t| t.replace("name = \"cu-emt\"", "name = \"copper\"")));
        assert_eq!(d.execution, vec!["run.name"]);
        let d = classify(&base, &cu(|t| t.replace("steps = 1000", "steps = 500")));
        assert_eq!(d.explore, vec!["explore.steps"]);
        assert_ne!(config_hash(&base), config_hash(&cu(|t| t.replace("steps = 1000", "steps = 500"))));
        assert_eq!(label_hash(&base), label_hash(&cu(|t| t.replace("steps = 1000", "steps = 500"))));
    }

    #[test]
    fn oracle_label_settings_differ_from_its_knobs() {
        let qe = |edit: &dyn Fn(String) -> String| {
            let text = edit(crate::examples::example("si-qe").unwrap().to_string());
            parse_config(&text, Path::new("si.toml")).unwrap()
        };
        let base = qe(&|t| t);
        let text = crate::examples::example("si-qe").unwrap();
        let cut = text.lines().find(|l| l.trim_start().starts_with("ecutwfc_ry")).unwrap();
        let changed = qe(&|t| t.replace(cut, "ecutwfc_ry = 30.0"));
        let d = classify(&base, &changed);
        assert!(d.label.contains(&"oracle.ecutwfc_ry".to_string()), "{d:?}");
        assert!(d.model.is_empty() && d.execution.is_empty(), "{d:?}");
        assert_ne!(label_hash(&base), label_hash(&changed));
        // A convergence knob is not label-defining.
        let beta = qe(&|t| t.replace("mixing_beta = 0.7", "mixing_beta = 0.3"));
        let d = classify(&base, &beta);
        assert!(d.label.is_empty(), "{d:?}");
        assert_eq!(d.execution, vec!["oracle.mixing_beta"], "{d:?}");
    }
}
