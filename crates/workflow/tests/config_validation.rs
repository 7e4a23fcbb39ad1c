//! Every value of the configuration is checked by `parse_config`, before any work; an
//! error names the exact key, its 1-based line and the limit. The cases are the shipped
//! examples with one value changed.
use autopipe_workflow::examples::example;
use autopipe_workflow::{parse_config, ConfigError};
use std::path::Path;

/// `text` with `key = value` set in `[table]`: the existing line replaced (its comment
/// kept), or a new line right after the header. Returns the text and the 1-based line.
fn set(text: &str, table: &str, key: &str, value: &str) -> (String, usize) {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header = lines
        .iter()
        .position(|l| l.trim_start().starts_with(&format!("[{table}]")))
        .unwrap_or_else(|| panic!("no [{table}]"));
    let end = lines[header + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |k| header + 1 + k);
    let existing = (header + 1..end).find(|&i| lines[i].split_once('=').map(|(k, _)| k.trim() == key).unwrap_or(false));
    let line = match existing {
        Some(i) => {
            let comment = lines[i].find(" #").map(|c| lines[i][c..].to_string()).unwrap_or_default();
            lines[i] = format!("{key} = {value}{comment}");
            i
        }
        None => {
            lines.insert(header + 1, format!("{key} = {value}"));
            header + 1
        }
    };
    (lines.join("\n") + "\n", line + 1)
}

fn parse(text: &str) -> Result<autopipe_workflow::Config, ConfigError> {
    parse_config(text, Path::new("case.toml"))
}

/// The example with one value changed must be refused at `table.key`, on its line,
/// with a message containing `text`.
#[track_caller]
fn refused(name: &str, table: &str, key: &str, value: &str, text: &str) -> ConfigError {
    let (toml, line) = set(example(name).unwrap(), table, key, value);
    let e = parse(&toml).expect_err(&format!("{name}: {table}.{key} = {value} must be refused"));
    let shown = e.to_string();
    assert_eq!(e.key.as_deref(), Some(format!("{table}.{key}").as_str()), "{shown}");
    assert_eq!(e.line, Some(line), "{shown}");
    assert!(e.message.contains(text), "{shown}: lacks {text:?}");
    assert!(shown.starts_with(&format!("case.toml:{line}:")), "{shown}");
    e
}

#[track_caller]
fn accepted(name: &str, table: &str, key: &str, value: &str) {
    let (toml, _) = set(example(name).unwrap(), table, key, value);
    if let Err(e) = parse(&toml) {
        panic!("{name}: {table}.{key} = {value} must be accepted: {e}");
    }
}

#[test]
fn fit_values_are_checked_before_any_work() {
    refused("cu-emt", "fit", "force_weight", "-1", "-1: a weight must be >= 0 and finite");
    refused("cu-emt", "fit", "energy_weight", "nan", "NaN: a weight must be >= 0 and finite");
    refused("cu-emt", "fit", "stress_weight", "inf", "a weight must be >= 0 and finite");
    refused("cu-emt", "generate", "elastic_cells", "1001", "more than 1000 cells");
    refused("cu-emt", "generate", "elastic_max_strain", "0.2", "outside (0, 0.05]");
    refused("cu-emt", "generate", "elastic_max_strain", "0", "outside (0, 0.05]");
    refused("cu-emt", "fit", "alpha", "-1e-3", "outside 0 ..= 1");
    refused("cu-emt", "fit", "test_fraction", "1.5", "1.5 is outside 0 ..< 1");
    refused("cu-emt", "fit", "active_set", "false", "needs the active set");
    refused("cu-emt", "fit", "batch_frames", "0", "outside 1 ..= 100000");
    refused("cu-emt", "fit", "rank_rtol", "2", "outside 0 .. 1");
    // Wrong type and unknown key: the key and line of the value.
    refused("cu-emt", "fit", "force_weight", "\"heavy\"", "invalid type");
    refused("cu-emt", "fit", "force_wieght", "1.0", "unknown field `force_wieght`");
    // Energy and forces both unweighted: nothing to fit.
    let (t, _) = set(example("cu-emt").unwrap(), "fit", "energy_weight", "0");
    let (t, line) = set(&t, "fit", "force_weight", "0");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("fit.force_weight"), Some(line)), "{e}");
    assert!(e.message.contains("both 0: nothing to fit"), "{e}");
    accepted("cu-emt", "fit", "stress_weight", "0");
    accepted("cu-emt", "fit", "alpha", "0");
}

#[test]
fn keys_of_another_engine_are_refused_with_their_line() {
    let e = refused("cu-emt", "oracle", "ecutwfc_ry", "25.0", "not a setting of engine \"emt\"");
    assert!(e.message.contains("a setting of engine \"qe\""), "{e}");
    refused("cu-emt", "oracle", "command", "\"pw.x\"", "not a setting of engine \"emt\"");
    // The other engines: unknown keys and bad values at their own line, not at [oracle].
    refused("si-qe", "oracle", "cutoff_ry", "300.0", "not a setting of engine \"qe\"");
    refused("si-qe", "oracle", "ecutwfc_ry", "\"high\"", "invalid type");
    refused("si-cp2k", "oracle", "ecutwfc_ry", "25.0", "not a setting of engine \"cp2k\"");
    refused("si-cp2k", "oracle", "max_scf", "-3", "");
    refused("cu-emt", "oracle", "engine", "\"gaussian\"", "unknown engine \"gaussian\"");
    // The engine's own keys still pass.
    accepted("si-qe", "oracle", "ecutwfc_ry", "30.0");
    let command = "[system]\nelements = [\"Cu\"]\n[oracle]\nengine = \"command\"\ncommand = \"true\"\nbogus = 1\n";
    let e = parse(command).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("oracle.bogus"), Some(6)), "{e}");
    let ok = "[system]\nelements = [\"Cu\"]\n[oracle]\nengine = \"command\"\ncommand = \"true\"\n";
    parse(ok).unwrap();
    // An inline table is checked too.
    let inline = "oracle = { engine = \"emt\", ecutwfc_ry = 25 }\n[system]\nelements = [\"Cu\"]\n";
    let e = parse(inline).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("oracle.ecutwfc_ry"), Some(1)), "{e}");
}

#[test]
fn run_names_that_cannot_name_a_directory_are_refused() {
    refused("cu-emt", "run", "name", "\"\"", "must not be empty");
    refused("cu-emt", "run", "name", "\"a/b\"", "contains '/'");
    refused("cu-emt", "run", "name", "\"a\\tb\"", "contains '\\t'");
    refused("cu-emt", "run", "name", "\"..\"", "is not a name");
    accepted("cu-emt", "run", "name", "\"Cu EMT, take 2\"");
}

#[test]
fn explore_values_have_physical_limits_named_in_the_message() {
    refused("cu-emt", "explore", "pressures_gpa", "[-1000]", "-1000 GPa (number 1) is outside -50 ..= 1000 GPa");
    refused("cu-emt", "explore", "pressures_gpa", "[0, 2000]", "2000 GPa (number 2) is outside -50 ..= 1000 GPa");
    refused("cu-emt", "explore", "temperatures_k", "[300, 30000]", "30000 K (number 2) is outside 1 ..= 20000 K");
    refused("cu-emt", "explore", "temperatures_k", "[0]", "outside 1 ..= 20000 K");
    refused("cu-emt", "explore", "temperatures_k", "[]", "needs one or more temperatures");
    refused("cu-emt", "explore", "timestep_fs", "0", "0 fs: must be > 0 and <= 20 fs");
    refused("cu-emt", "explore", "timestep_fs", "100", "100 fs: must be > 0 and <= 20 fs");
    refused("cu-emt", "explore", "steps", "0", "0 is outside 1 ..= 10000000");
    refused("cu-emt", "explore", "steps", "100000000", "outside 1 ..= 10000000");
    refused("cu-emt", "explore", "sample_every", "0", "0 is outside 1 ..= explore.steps (1000)");
    refused("cu-emt", "explore", "sample_every", "5000", "5000 is outside 1 ..= explore.steps (1000)");
    refused("cu-emt", "explore", "max_frames_per_segment", "0", "0 is outside 1 ..= 100000");
    refused("cu-emt", "explore", "gamma_select", "nan", "outside 1 .. 1000000");
    refused("cu-emt", "explore", "gamma_select", "0.5", "outside 1 .. 1000000");
    refused("cu-emt", "explore", "gamma_break", "inf", "must be above explore.gamma_select (2)");
    refused("cu-emt", "explore", "gamma_break", "1.5", "must be above explore.gamma_select (2)");
    refused("cu-emt", "explore", "friction_per_fs", "0", "must be > 0 and <= 10 /fs");
    accepted("cu-emt", "explore", "pressures_gpa", "[-50, 0, 1000]");
    accepted("cu-emt", "explore", "sample_every", "1000");
}

#[test]
fn loop_and_targets() {
    refused("cu-emt", "loop", "max_generations", "0", "0 is outside 1 ..= 1000");
    refused("cu-emt", "loop", "per_generation", "0", "0 is outside 1 ..= 100000");
    refused("cu-emt", "loop", "target_force_rmse_ev_per_a", "0", "must be a positive number of eV/Å");
    refused("cu-emt", "loop", "target_force_rmse_ev_per_a", "-0.1", "must be a positive number of eV/Å");
    refused("cu-emt", "loop", "target_energy_rmse_mev_per_atom", "nan", "must be a positive number of meV/atom");
    refused("cu-emt", "loop", "target_energy_rmse_mev_per_atom", "inf", "must be a positive number of meV/atom");
}

#[test]
fn execution_limits() {
    refused("cu-emt", "execution", "max_physics_retries", "1000", "1000 is outside 0 ..= 100");
    refused("cu-emt", "execution", "max_infra_retries", "101", "101 is outside 0 ..= 100");
    refused("cu-emt", "execution", "workers", "0", "not between 1 and 4096");
    refused("cu-emt", "execution", "walltime_s", "0", "must be > 0 and <= 2592000 s");
    refused("cu-emt", "execution", "failure_tolerance", "nan", "outside 0 ..= 1");
    refused("si-cp2k", "execution", "max_infra_retries", "500", "outside 0 ..= 100");
}

#[test]
fn generate_uses_the_recipe_limits() {
    refused("cu-emt", "generate", "lattice_constant_a", "0", "0 Å is outside the plausible range 0.5 .. 50 Å");
    refused("cu-emt", "generate", "max_strain", "0.9", "0.9 is outside 0 ..= 0.2");
    refused("cu-emt", "generate", "rattle_a", "5", "5 Å is outside 0 ..= 0.5 Å");
    refused("cu-emt", "generate", "vacancy_fraction", "3", "3 is outside 0 ..= 1");
    refused("cu-emt", "generate", "structures", "0", "between 1 and 100000");
    refused("cu-emt", "generate", "supercell", "[50, 50, 50]", "500000 atoms, more than 100000");
    refused("cu-emt", "generate", "supercell", "[0, 1, 1]", "between 1 and 50");
}

#[test]
fn potential_limits() {
    refused("cu-emt", "potential", "rfac0", "0", "must be > 0 and <= 1");
    refused("cu-emt", "potential", "rfac0", "1.5", "must be > 0 and <= 1");
    refused("cu-emt", "potential", "rmin0_a", "-1", "must be >= 0 and below the smallest pair cutoff, 4.7 Å");
    refused("cu-emt", "potential", "rmin0_a", "4.7", "below the smallest pair cutoff, 4.7 Å");
    refused("cu-emt", "potential", "twojmax", "40", "40 is outside 2 ..= 12");
    refused("cu-emt", "potential", "cutoff_a", "0.5", "outside 1 .. 15 Å");
    accepted("cu-emt", "potential", "rmin0_a", "0.5");
    // Per-element tables point at the element's key.
    let (t, line) = set(example("cu-emt").unwrap(), "potential", "radii", "{ Cu = 0 }");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("potential.radii.Cu"), Some(line)), "{e}");
    assert!(e.message.contains("must be > 0 and <= 1"), "{e}");
    let (t, line) = set(example("cu-emt").unwrap(), "potential", "weights", "{ Cu = -1 }");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("potential.weights.Cu"), Some(line)), "{e}");
    let (t, _) = set(example("cu-emt").unwrap(), "potential", "weights", "{ Au = 1 }");
    assert!(parse(&t).unwrap_err().message.contains("Au is not one of system.elements"));
}

#[test]
fn keys_under_headers_with_comments_are_named_exactly() {
    // `[explore]   # MD with the current potential, watching gamma` in the example.
    let (t, line) = set(example("cu-emt").unwrap(), "explore", "stepz", "10");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("explore.stepz"), Some(line)), "{e}");
    let (t, line) = set(example("cu-emt").unwrap(), "explore", "steps", "\"many\"");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("explore.steps"), Some(line)), "{e}");
    let (t, line) = set(example("cu-emt").unwrap(), "generate", "supercell", "[2, 2]");
    let e = parse(&t).unwrap_err();
    assert_eq!((e.key.as_deref(), e.line), (Some("generate.supercell"), Some(line)), "{e}");
    // A missing required key names its table.
    let e = parse("[system]   # what\n[oracle]   # who\nengine = \"emt\"\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("system.elements"), "{e}");
    assert_eq!(e.line, Some(1), "{e}");
    // Not TOML at all: the text fallback strips the header's comment too.
    let e = parse("[explore]   # MD [x]\nsteps = = 3\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    assert!(!e.to_string().contains('#'), "{e}");
}

#[test]
fn every_shipped_example_still_validates() {
    for name in ["cu-emt", "si-qe", "si-cp2k"] {
        let c = parse(example(name).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.name, name);
    }
}

/// `[fit.groups.NAME]` and `[potential.reference]`: accepted and carried into the fit
/// options; bad values refused at their key and line.
#[test]
fn groups_and_reference() {
    let base = example("cu-emt").unwrap().to_string();
    let good = base.clone()
        + "\n[fit.groups.Liquid]\nenergy_weight = 467.0\nstress_weight = 1e-8\ntest_fraction = 0.2\n\
           [potential.reference]\nzbl_inner_a = 4.0\nzbl_outer_a = 4.8\n\
           [potential.reference.atom_energies_ev]\nCu = -0.25\n";
    let c = parse(&good).unwrap();
    let g = &c.fit.groups["Liquid"];
    assert_eq!(
        (g.energy_weight, g.force_weight, g.stress_weight, g.test_fraction),
        (Some(467.0), None, Some(1e-8), Some(0.2))
    );
    assert_eq!(c.fit.reference, Some(autopipe_potential::ZblReference { inner_a: 4.0, outer_a: 4.8 }));
    assert_eq!(c.fit.reference_energies_ev["Cu"], -0.25);
    let n0 = base.lines().count();
    for (extra, key, line, text) in [
        ("[fit.groups.Liquid]\nforce_weight = -1\n", "fit.groups.Liquid.force_weight", n0 + 3, "a weight must be >= 0"),
        ("[fit.groups.Surface]\ntest_fraction = 1.0\n", "fit.groups.Surface.test_fraction", n0 + 3, "outside 0 ..< 1"),
        (
            "[potential.reference]\nzbl_inner_a = 5.0\nzbl_outer_a = 4.8\n",
            "potential.reference.zbl_outer_a",
            n0 + 4,
            "0 < inner < outer",
        ),
        (
            "[potential.reference]\nzbl_inner_a = 4.0\n",
            "potential.reference.zbl_inner_a",
            n0 + 3,
            "zbl_outer_a is missing",
        ),
        (
            "[potential.reference.atom_energies_ev]\nTa = -2.0\n",
            "potential.reference.atom_energies_ev.Ta",
            n0 + 3,
            "not one of system.elements",
        ),
    ] {
        let e = parse(&(base.clone() + "\n" + extra)).expect_err(extra);
        assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(line)), "{e}");
        assert!(e.message.contains(text), "{e}");
    }
    refused("cu-emt", "fit", "folds", "1", "outside 2 ..= 100");
    accepted("cu-emt", "fit", "folds", "5");
    let e = parse(&(base.clone() + "\n[fit.groups.Liquid]\nfoo_weight = 1\n")).unwrap_err();
    assert!(e.to_string().contains("foo_weight"), "{e}");
}

#[test]
fn pace_settings_and_kind() {
    let base = example("cu-emt").unwrap().to_string();
    let c = parse(&(base.clone() + "\n[potential.pace]\nfunctions_per_element = 7\nladder_step = 2\n")).unwrap();
    assert_eq!((c.pace.functions_per_element, c.pace.ladder_step), (7, Some(2)));
    assert_eq!(c.pace.elements, vec!["Cu".to_string()], "elements from system.elements");
    assert_eq!(parse(&base).unwrap().pace.max_iterations, 100, "defaults without the table");
    let n0 = base.lines().count();
    for (extra, key, line, text) in [
        ("[potential.pace]\ncutoff_a = 0.5\n", "potential.pace.cutoff_a", n0 + 3, "outside 1 .. 15"),
        ("[potential.pace]\nkappa = 2\n", "potential.pace.kappa", n0 + 3, "outside 0 ..= 1"),
        ("[potential.pace]\nfunctions_per_element = 0\n", "potential.pace.functions_per_element", n0 + 3, "outside"),
    ] {
        let e = parse(&(base.clone() + "\n" + extra)).expect_err(extra);
        assert_eq!((e.key.as_deref(), e.line), (Some(key), Some(line)), "{e}");
        assert!(e.message.contains(text), "{e}");
    }
    let e = parse(&(base.clone() + "\n[potential.pace]\nbasis = 3\n")).unwrap_err();
    assert!(e.to_string().contains("basis"), "{e}");
    refused("cu-emt", "potential", "kind", "\"mace\"", "not one of");
    // Pacemaker fits are judged on the test split: the example's 5 folds are refused at
    // their key; without folds the kind is accepted.
    let (pace, _) = set(&base, "potential", "kind", "\"pace\"");
    let e = parse(&pace).expect_err("fit.folds with pace");
    assert_eq!(e.key.as_deref(), Some("fit.folds"), "{e}");
    assert!(e.message.contains("test split"), "{e}");
    let (pace, _) = set(&pace, "fit", "folds", "0");
    assert_eq!(parse(&pace).unwrap().potential_kind, "pace");
}
