//! Random sequences of what users do to a run directory over days — `run`, `kill -9`
//! at any instant, configuration edits of each class, `jobs import` of labels with
//! other settings, `jobs reset`, `status` while a run works — on a small EMT run.
//! After every step: the database passes `integrity_check` (`autopipe doctor`), no
//! finished label is lost, executions stay within what the kills can explain, and the
//! model is fitted only on labels of the run's own oracle settings.
//!
//! Seeded (rand_chacha), so a failure is reproduced by its seed, printed with each step.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn config_text(max_generations: u32, twojmax: u32, elements: &str) -> String {
    stdout(&ok(&["init", "--example", "cu-emt"]))
        .replace("structures = 20 ", "structures = 4 ")
        .replace("elastic_cells = 12 ", "elastic_cells = 0 ")
        .replace("supercell = [2, 2, 2]", "supercell = [1, 1, 1]")
        .replace("steps = 1000", "steps = 60")
        .replace("temperatures_k = [300, 900, 1500]", "temperatures_k = [600]")
        .replace("per_generation = 20 ", "per_generation = 3 ")
        .replace("max_generations = 7", &format!("max_generations = {max_generations}"))
        .replace("twojmax = 10", &format!("twojmax = {twojmax}"))
        .replace("elements = [\"Cu\"]", &format!("elements = {elements}"))
}

struct World {
    max_generations: u32,
    twojmax: u32,
    two_elements: bool,
    /// Kills of a `run` that was still going (each may cost up to `workers` executions).
    kills: u64,
    done: BTreeSet<u64>,
}

impl World {
    fn elements(&self) -> &'static str {
        if self.two_elements {
            "[\"Cu\", \"Ni\"]"
        } else {
            "[\"Cu\"]"
        }
    }
    fn write(&self, cfg: &Path) {
        std::fs::write(cfg, config_text(self.max_generations, self.twojmax, self.elements())).unwrap();
    }
}

fn ids(v: &serde_json::Value) -> BTreeSet<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

/// The invariants, checked after every step; `completed`: the last `run` ended by itself
/// (then its final model was fitted on exactly the labels of `labels.xyz`).
fn check(dir: &Path, world: &mut World, what: &str, completed: bool) {
    let d = dir.to_str().unwrap();
    if !dir.join("autopipe.db").exists() {
        return;
    }
    let doctor = run(&["doctor", "--dir", d]);
    assert!(doctor.status.success(), "{what}: integrity_check failed:\n{}", stdout(&doctor));
    let s = status_json(dir);
    let done = ids(&s["done_ids"]);
    assert!(world.done.is_subset(&done), "{what}: finished labels were lost: {:?} -> {:?}", world.done, done);
    world.done = done;
    let executions = s["executions"].as_u64().unwrap();
    let settled = world.done.len() as u64 + s["counts"]["failed"].as_u64().unwrap();
    // Two workers: a kill can orphan at most two attempts that left no result.
    assert!(
        executions <= settled + 2 * world.kills + s["counts"]["pending"].as_u64().unwrap(),
        "{what}: {executions} executions for {settled} settled calculations after {} kills",
        world.kills
    );
    // The model, when there is one, was fitted on EMT labels only, and no more of them
    // than the run has.
    let loop_s: serde_json::Value =
        serde_json::from_slice(&ok(&["status", "--dir", d, "--json"]).stdout).expect("status --json");
    if let Some(model) = loop_s["model"].as_str() {
        let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(model)).unwrap()).unwrap();
        let p = &m["provenance"];
        assert_eq!(p["oracle"], "emt", "{what}: {p}");
        let emt_labels = autopipe_atoms::extxyz::read_extxyz_file(&dir.join("labels.xyz")).unwrap();
        for f in &emt_labels {
            assert_eq!(f.info.get("engine"), Some(&autopipe_atoms::InfoValue::Str("emt".into())), "{what}");
        }
        assert!(p["labels"].as_u64().unwrap() <= world.done.len() as u64, "{what}: {p}");
        if completed {
            assert_eq!(p["labels"].as_u64(), Some(emt_labels.len() as u64), "{what}: fitted on other labels: {p}");
        }
    }
}

fn sequence(seed: u64, steps: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let cfg = dir.join("run.toml");
    let c = cfg.to_str().unwrap();
    let mut world = World { max_generations: 2, twojmax: 8, two_elements: false, kills: 0, done: BTreeSet::new() };
    world.write(&cfg);
    let cells = dir.join("other.xyz");
    one_atom_cells(&cells, 3);
    for step in 0..steps {
        let action = rng.gen_range(0..7);
        let mut completed = false;
        let what = format!("seed {seed} step {step} action {action}");
        eprintln!("{what}");
        match action {
            // run to the end
            0 => {
                let out = run(&["run", c]);
                assert!(matches!(out.status.code(), Some(0 | 4)), "{what}: {}", stderr(&out));
                completed = true;
            }
            // run, with `status` reading meanwhile, killed at a random instant
            1 | 2 => {
                let mut child = autopipe().args(["run", c]).stderr(Stdio::null()).spawn().unwrap();
                let until = rng.gen_range(50..1500);
                let mut waited = 0;
                while waited < until {
                    std::thread::sleep(Duration::from_millis(50));
                    waited += 50;
                    if dir.join("autopipe.db").exists() {
                        let out = run(&["status", "--dir", d, "--json"]);
                        assert!(out.status.success(), "{what}: status while running: {}", stderr(&out));
                    }
                }
                if child.try_wait().unwrap().is_none() {
                    world.kills += 1;
                }
                let _ = child.kill();
                let status = child.wait().unwrap();
                assert!(status.code().is_none_or(|c| c == 0 || c == 4), "{what}: run failed with {status:?}");
            }
            // a loop-limit or model edit (accepted)
            3 => {
                if rng.gen_bool(0.5) {
                    world.max_generations = rng.gen_range(1..=4);
                } else {
                    world.twojmax = if world.twojmax == 8 { 6 } else { 8 };
                }
                world.write(&cfg);
            }
            // a label-defining edit: refused (database untouched) unless accepted
            4 => {
                world.two_elements = !world.two_elements;
                world.write(&cfg);
                if dir.join("autopipe.db").exists() {
                    let out = run(&["run", c]);
                    if out.status.code() == Some(1) {
                        assert!(stderr(&out).contains("system.elements"), "{what}: {}", stderr(&out));
                        let out = run(&["run", c, "--accept-changes"]);
                        assert!(matches!(out.status.code(), Some(0 | 4)), "{what}: {}", stderr(&out));
                        completed = true;
                    } else {
                        // No label-defining change was pending (the first run had not
                        // recorded its configuration yet, or the toggle went back).
                        assert!(matches!(out.status.code(), Some(0 | 4)), "{what}: {}", stderr(&out));
                        completed = true;
                    }
                }
            }
            // labels of other settings in the same directory
            5 => {
                ok(&[
                    "jobs",
                    "import",
                    cells.to_str().unwrap(),
                    "--dir",
                    d,
                    "--engine",
                    "command",
                    "--command",
                    WRITE_LABEL,
                ]);
            }
            // reset failed and timed-out calculations
            _ => {
                if dir.join("autopipe.db").exists() {
                    ok(&["jobs", "reset", "--dir", d]);
                }
            }
        }
        check(dir, &mut world, &what, completed);
    }
    // Whatever happened, one more run ends the loop, and the invariants still hold.
    let out = run(&["run", c, "--accept-changes"]);
    assert!(matches!(out.status.code(), Some(0 | 4)), "seed {seed}: final run: {}", stderr(&out));
    check(dir, &mut world, &format!("seed {seed}: after the final run"), true);
}

#[test]
fn random_sequences_of_runs_kills_edits_imports_and_resets_keep_every_invariant() {
    for seed in [1, 2, 3] {
        sequence(seed, 10);
    }
}
