//! Generation 0 from `[[generate.recipe]]`s: a loop whose pool is bulk SQS, slabs and
//! vacancies (screened, then picked by farthest-point selection) labels those kinds; bad
//! recipes are refused with the file, line and key before any work.
mod common;

use autopipe_atoms::extxyz::read_extxyz_file;
use autopipe_atoms::InfoValue;
use common::{ok, run, run_loop, stderr, stdout};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const RECIPES: &str = r#"
[[generate.recipe]]
kind = "sqs"
prototype = "fcc"
elements = ["Cu,Au"]
lattice_constant_a = 3.8
supercell = [1, 1, 2]
steps = 2000
count = 4

[[generate.recipe]]
kind = "slab"
prototype = "fcc"
elements = ["Cu"]
lattice_constant_a = 3.61
miller = [1, 1, 1]
layers = 2
vacuum_a = 5.0
count = 3

[[generate.recipe]]
kind = "defects"
prototype = "fcc"
elements = ["Au"]
lattice_constant_a = 4.08
supercell = [2, 1, 1]
vacancies = true
count = 3
"#;

/// The cu-emt example made a one-generation loop of small cells, `structures` in
/// generation 0.
fn tiny_loop(structures: usize) -> String {
    stdout(&ok(&["init", "--example", "cu-emt"]))
        .replace("structures = 20 ", &format!("structures = {structures} "))
        .replace("elastic_cells = 12 ", "elastic_cells = 0 ")
        .replace("supercell = [2, 2, 2]", "supercell = [1, 1, 1]")
        .replace("steps = 1000", "steps = 40")
        .replace("temperatures_k = [300, 900, 1500]", "temperatures_k = [600]")
        .replace("max_generations = 7", "max_generations = 1")
        .replace("per_generation = 20 ", "per_generation = 2 ")
}

/// A one-generation Cu-Au loop labelled by EMT, generation 0 from `recipes`.
fn config(dir: &Path, structures: usize, recipes: &str) -> PathBuf {
    let text = tiny_loop(structures)
        .replace("elements = [\"Cu\"]", "elements = [\"Cu\", \"Au\"]")
        .replace("[oracle]", &format!("{recipes}\n[oracle]"));
    let path = dir.join("cuau.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn generation_zero_from_sqs_slab_and_vacancy_recipes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 8, RECIPES);
    let out = run_loop(&[cfg.to_str().unwrap(), "--dir", tmp.path().join("run").to_str().unwrap()]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains("generation 0: 10 candidates from 3 recipes, 0 rejected by screening, 8 picked"), "{said}");
    let labels = read_extxyz_file(&tmp.path().join("run/labels.xyz")).unwrap();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for f in labels.iter().filter(|f| f.info.get("generation") == Some(&InfoValue::Int(0))) {
        let Some(InfoValue::Str(origin)) = f.info.get("origin") else { panic!("no origin in {:?}", f.info) };
        *kinds.entry(origin.clone()).or_default() += 1;
        // every structure is strained and rattled: no two are the same
        assert!(f.energy_ev.is_some());
    }
    assert_eq!(kinds.values().sum::<usize>(), 8, "{kinds:?}");
    for k in ["generated:sqs", "generated:slab", "generated:vacancy"] {
        assert!(kinds.contains_key(k), "{k} missing: {kinds:?}");
    }
    // the SQS structures are Cu-Au 50/50 on 8 sites, the slabs have vacuum, the vacancies 7 atoms
    for f in &labels {
        match f.info.get("origin") {
            Some(InfoValue::Str(o)) if o == "generated:sqs" => {
                assert_eq!(f.structure.len(), 8);
                assert_eq!(f.structure.formula(), "Cu4Au4", "{}", f.structure.formula());
            }
            Some(InfoValue::Str(o)) if o == "generated:vacancy" => assert_eq!(f.structure.len(), 7),
            _ => {}
        }
    }
}

#[test]
fn bad_recipes_name_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    // (recipes, structures, the error, the text of the line it must point at)
    let cases: [(&str, usize, &str, &str); 6] = [
        (
            &RECIPES.replace("kind = \"slab\"", "kind = \"surface\""),
            8,
            "generate.recipe[1].kind: unknown kind \"surface\"",
            "kind = \"surface\"",
        ),
        (
            &RECIPES.replace("elements = [\"Au\"]", "elements = [\"Ni\"]"),
            8,
            "generate.recipe[2].elements: Ni is not one of [system] elements",
            "elements = [\"Ni\"]",
        ),
        (
            &RECIPES.replace("miller = [1, 1, 1]", "miler = [1, 1, 1]"),
            8,
            "generate.recipe[1].miler: unknown field",
            "miler",
        ),
        (RECIPES, 11, "generate.structures: 11 structures are to be picked from a pool of 10", "structures = 11"),
        (
            &RECIPES.replace("count = 4", "count = 4\nfractions = [[0.3, 0.7]]"),
            8,
            "generate.recipe[0].fractions",
            "fractions = [[0.3, 0.7]]",
        ),
        (
            &RECIPES.replace("vacancies = true", "miller = [1, 0, 0]"),
            8,
            "generate.recipe[2].miller: is not a key of kind = \"defects\"",
            "miller = [1, 0, 0]",
        ),
    ];
    for (recipes, structures, wanted, line_text) in cases {
        let cfg = config(tmp.path(), structures, recipes);
        let out = run(&["run", cfg.to_str().unwrap(), "--dir", tmp.path().join("never").to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{wanted}: {err}");
        assert!(err.contains(wanted), "wanted {wanted:?} in: {err}");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let line = text.lines().position(|l| l.trim_start().starts_with(line_text)).unwrap() + 1;
        assert!(err.contains(&format!("cuau.toml:{line}:")), "{wanted}: line {line} in: {err}");
        assert!(!tmp.path().join("never/autopipe.db").exists(), "nothing started");
    }
}

/// `engine = "ase"` as the loop's oracle: ASE's EMT through the bridge in the job
/// processes labels generation 0 with the built-in EMT's numbers.
#[test]
fn ase_engine_labels_through_the_job_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let text = tiny_loop(3).replace("engine = \"emt\"", "engine = \"ase\"\ncalculator = \"ase.calculators.emt.EMT\"");
    let cfg = tmp.path().join("cu-ase.toml");
    std::fs::write(&cfg, text).unwrap();
    run_loop(&[cfg.to_str().unwrap(), "--dir", tmp.path().join("run").to_str().unwrap()]);
    let labels = read_extxyz_file(&tmp.path().join("run/labels.xyz")).unwrap();
    assert!(labels.len() >= 3, "{} labels", labels.len());
    let emt = autopipe_engines::emt::Emt::new();
    for f in &labels {
        let want = emt.calculate(&f.structure).unwrap();
        assert!((f.energy_ev.unwrap() - want.energy_ev).abs() < 1e-9, "{} vs {}", f.energy_ev.unwrap(), want.energy_ev);
        for (a, b) in f.forces_ev_per_a.as_ref().unwrap().iter().zip(&want.forces_ev_per_a) {
            assert!((0..3).all(|c| (a[c] - b[c]).abs() < 1e-9), "{a:?} vs {b:?}");
        }
    }
    // a calculator that does not exist fails the jobs with the bridge's message
    let bad = std::fs::read_to_string(&cfg).unwrap().replace("ase.calculators.emt.EMT", "no_such_module.Calc");
    std::fs::write(&cfg, bad).unwrap();
    let out = run(&["run", cfg.to_str().unwrap(), "--dir", tmp.path().join("bad").to_str().unwrap()]);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("no_such_module"), "{said}");
}
