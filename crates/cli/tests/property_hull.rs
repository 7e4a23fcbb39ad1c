//! `autopipe property hull ENTRIES.csv` against pymatgen's `PhaseDiagram` (run by
//! `tests/hull_pymatgen.py`; needs python3 with pymatgen, from
//! scripts/install-test-deps.sh; `PYTHON` chooses the interpreter) on a binary and a
//! ternary set with degenerate entries: collinear and coplanar ones exactly on the hull,
//! duplicate compositions, several entries of one pure element. Bad CSVs: errors naming
//! the file and the row.

mod common;

use common::{ok, run, stderr};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn pymatgen(csv: &Path) -> Vec<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("hull_pymatgen.py");
    let out_path = csv.with_extension("pymatgen.json");
    let out = Command::new(python()).arg(&script).arg(csv).arg(&out_path).output().unwrap_or_else(|e| {
        panic!("cannot run {} ({e}): install pymatgen with scripts/install-test-deps.sh", python())
    });
    assert!(
        out.status.success(),
        "pymatgen failed (scripts/install-test-deps.sh installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(out_path).unwrap()).unwrap()
}

/// (name, formula, formation energy per atom) -> CSV rows with total energies from the
/// given per-atom elemental energies.
fn write_csv(path: &Path, mu: &BTreeMap<&str, f64>, rows: &[(String, String, f64)]) {
    let mut text = String::from("name,formula,energy_ev\n");
    for (name, formula, ef) in rows {
        let comp = autopipe_property::hull::parse_formula(formula).unwrap();
        let n: f64 = comp.values().sum();
        let e: f64 = ef * n + comp.iter().map(|(el, k)| k * mu[el.symbol()]).sum::<f64>();
        text.push_str(&format!("{name},{formula},{e:.12}\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// Compares autopipe's JSON with pymatgen's, entry by entry; returns how many entries
/// are on the hull without being vertices (the degenerate cases present).
fn compare(csv: &Path) -> usize {
    let out = ok(&["property", "hull", csv.to_str().unwrap(), "--json"]);
    let ours: Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = pymatgen(csv);
    let ours = ours["entries"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    let mut on_hull_not_vertex = 0;
    for (a, b) in ours.iter().zip(&theirs) {
        let name = b["name"].as_str().unwrap();
        assert_eq!(a["name"], b["name"]);
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{name}: {k} in {v}"));
        let key = "formation_energy_ev_per_atom";
        assert!((f(a, key) - f(b, key)).abs() < 1e-9, "{name}: formation {} vs pymatgen {}", f(a, key), f(b, key));
        let key = "e_above_hull_ev_per_atom";
        assert!((f(a, key) - f(b, key)).abs() < 1e-7, "{name}: e_above_hull {} vs pymatgen {}", f(a, key), f(b, key));
        assert_eq!(a["stable"], b["stable"], "{name}: stable");
        if a["stable"] == false && f(a, key) < 1e-9 {
            on_hull_not_vertex += 1;
        }
        // Decomposition: the same products with the same fractions.
        let mut ours_d: BTreeMap<String, f64> = BTreeMap::new();
        for p in a["decomposition"].as_array().unwrap() {
            ours_d.insert(p["name"].as_str().unwrap().into(), p["fraction"].as_f64().unwrap());
        }
        let theirs_d: BTreeMap<String, f64> = b["decomposition"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .filter(|(_, v)| *v > 1e-9)
            .collect();
        assert_eq!(ours_d.keys().collect::<Vec<_>>(), theirs_d.keys().collect::<Vec<_>>(), "{name}: products");
        for (k, v) in &ours_d {
            assert!((v - theirs_d[k]).abs() < 1e-7, "{name}: fraction of {k}: {v} vs pymatgen {}", theirs_d[k]);
        }
    }
    on_hull_not_vertex
}

#[test]
fn binary_hull_matches_pymatgen() {
    let dir = tempfile::tempdir().unwrap();
    let mu = BTreeMap::from([("Cu", -3.5), ("Au", -3.8)]);
    let mut rows: Vec<(String, String, f64)> = vec![
        ("Cu-fcc".into(), "Cu".into(), 0.0),
        ("Cu-bcc".into(), "Cu2".into(), 0.04), // a second, higher pure Cu
        ("Au-fcc".into(), "Au".into(), 0.0),
        ("CuAu-L10".into(), "CuAu".into(), -0.2),
        ("CuAu-B2".into(), "Cu2Au2".into(), -0.15), // the same composition, higher
        ("Cu3Au-L12".into(), "Cu3Au".into(), -0.1), // exactly on the line Cu - CuAu
        ("CuAu3-L12".into(), "CuAu3".into(), -0.15),
        ("Cu7Au5".into(), "Cu7Au5".into(), -0.2 * 10.0 / 12.0), // on the same line (x = 5/12)
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..25 {
        let (a, b) = (rng.gen_range(1..7), rng.gen_range(1..7));
        rows.push((format!("r{i}"), format!("Cu{a}Au{b}"), rng.gen_range(-0.05..0.2)));
    }
    let csv = dir.path().join("binary.csv");
    write_csv(&csv, &mu, &rows);
    let degenerate = compare(&csv);
    assert!(degenerate >= 1, "the set should have an entry on the hull that is no vertex");
    // The text table names every entry.
    let text = common::stdout(&ok(&["property", "hull", csv.to_str().unwrap()]));
    assert!(text.contains("Cu3Au-L12") && text.contains("decomposition"), "{text}");
}

#[test]
fn ternary_hull_matches_pymatgen() {
    let dir = tempfile::tempdir().unwrap();
    let mu = BTreeMap::from([("Cu", -3.5), ("Au", -3.8), ("Ni", -4.4)]);
    let mut rows: Vec<(String, String, f64)> = vec![
        ("Cu".into(), "Cu".into(), 0.0),
        ("Au".into(), "Au".into(), 0.0),
        ("Ni".into(), "Ni".into(), 0.0),
        ("Ni-hcp".into(), "Ni2".into(), 0.02),
        ("CuAu".into(), "CuAu".into(), -0.2),
        ("AuNi".into(), "AuNi".into(), -0.12),
        ("CuNi".into(), "CuNi".into(), -0.1),
        ("CuAuNi".into(), "CuAuNi".into(), -0.3),
        ("CuAuNi-2".into(), "Cu2Au2Ni2".into(), -0.25),
        // Midpoints of the segments from CuAuNi to the binaries and elements: on the
        // hull when the segment is (exactly the average energy).
        ("mid-CuAu".into(), "Cu5Au5Ni2".into(), -0.25),
        ("mid-Ni".into(), "CuAuNi4".into(), -0.15),
        // The centroid of CuAuNi, CuAu and Cu: on the hull when they make a facet.
        ("centroid".into(), "Cu11Au5Ni2".into(), (-0.3 - 0.2 + 0.0) / 3.0),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for i in 0..40 {
        let (a, b, c) = (rng.gen_range(0..5), rng.gen_range(0..5), rng.gen_range(1..5));
        let formula = format!(
            "{}{}Ni{c}",
            if a > 0 { format!("Cu{a}") } else { String::new() },
            if b > 0 { format!("Au{b}") } else { String::new() }
        );
        rows.push((format!("r{i}"), formula, rng.gen_range(-0.25..0.2)));
    }
    let csv = dir.path().join("ternary.csv");
    write_csv(&csv, &mu, &rows);
    let degenerate = compare(&csv);
    assert!(degenerate >= 1, "the set should have an entry on the hull that is no vertex");
}

#[test]
fn bad_csv_rows_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("name,formula,energy_ev\nCu,Cu,-3.5\nX,CuQq,-3\n", "row 3", "unknown element \"Qq\""),
        ("name,formula,energy_ev\nCu,Cu,-3.5\nAu,Au,lots\n", "row 3", "not a number"),
        ("name,formula\nCu,Cu\n", "", "no column `energy_ev`"),
        ("name,formula,energy_ev\nCu,Cu,-3.5\nCuAu,CuAu,-7\n", "", "no entry of pure Au"),
    ];
    for (i, (text, row, message)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.csv"));
        std::fs::write(&path, text).unwrap();
        let out = run(&["property", "hull", path.to_str().unwrap()]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(message) && err.contains(row), "case {i}: {err}");
        if !row.is_empty() {
            assert!(err.contains(&format!("bad{i}.csv: {row}")), "case {i}: {err}");
        }
    }
}

/// The workflow on EMT Cu-Au: the ordered Cu3Au (L1_2) and CuAu (L1_0) are on the hull,
/// the disordered (SQS) and the B2 cells above it, every relaxation converged.
#[test]
fn emt_cu_au_candidates_order() {
    let out = ok(&["property", "hull", "--emt", "--elements", "Cu,Au", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stable: Vec<&str> = v["stable"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(stable.contains(&"Cu3Au-L12") && stable.contains(&"CuAu-L10"), "{stable:?}");
    for e in v["entries"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let above = e["e_above_hull_ev_per_atom"].as_f64().unwrap();
        if name.contains("SQS") || name.ends_with("-B2") {
            assert!(above > 1e-3, "{name} should be above the hull: {above}");
        }
    }
    assert_eq!(v["entries"].as_array().unwrap().len(), 13);
    for r in v["relaxations"].as_array().unwrap() {
        assert_eq!(r["converged"], true, "{r}");
    }
    assert!(v["max_gamma"].is_null(), "EMT has no extrapolation grade");
    // A calculator without one of the elements: refused before any work.
    let out = run(&["property", "hull", "--emt", "--elements", "Cu,Fe"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Fe"), "{}", stderr(&out));
}

/// The run configuration `autopipe init --elements Cu,Ni --goal phase_diagram` writes,
/// made small (12 structures, 2J = 6, one 200-step MD segment, one generation).
fn small_cu_ni_config(dir: &Path, max_rounds: usize) -> PathBuf {
    let text = common::stdout(&ok(&["init", "--elements", "Cu,Ni", "--goal", "phase_diagram", "--oracle", "emt"]));
    assert!(text.contains("[goals.hull]"), "{text}");
    let small = text
        .replace("structures = 20 ", "structures = 12 ")
        .replace("twojmax = 8 ", "twojmax = 6 ")
        .replace("temperatures_k = [270, 680]", "temperatures_k = [600]")
        .replace("steps = 1000 ", "steps = 200 ")
        .replace("max_generations = 7", "max_generations = 1")
        .replace("max_rounds = 2 ", &format!("max_rounds = {max_rounds} "));
    assert_eq!(small.matches("= 12 ").count() + small.matches("= 6 ").count(), 2, "the replaced lines exist");
    let config = dir.join("cuni.toml");
    std::fs::write(&config, small).unwrap();
    config
}

/// `[goals.hull]` (from `init --goal phase_diagram`) in a Cu-Ni run with EMT: the hull of
/// the candidates relaxed with the final model is stored (formation energies, energies
/// above the hull, stable set, decompositions, max gamma, trusted), its uncertain
/// structures are labelled and the hull recomputed with the refitted model; status and
/// the report show it; `property hull --dir RUN --elements Cu,Ni` on the same model
/// gives the same stable set and energies.
#[test]
fn hull_goal_of_a_run_matches_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let config = small_cu_ni_config(tmp.path(), 1);
    let out = common::run_loop(&[config.to_str().unwrap(), "--dir", d]);
    let log = common::stdout(&out) + &stderr(&out);
    assert!(log.contains("goal hull: relaxing 13 candidates of Cu-Ni"), "{log}");

    let status: Value = serde_json::from_slice(&ok(&["status", "--dir", d, "--json"]).stdout).unwrap();
    let history: Vec<&Value> =
        status["properties"]["history"].as_array().unwrap().iter().filter(|h| h["goal"] == "hull").collect();
    assert!(!history.is_empty(), "{status}");
    let latest = &status["properties"]["latest"]["hull"];
    let g = latest["generation"].as_i64().unwrap();
    let max_gamma = latest["max_gamma"].as_f64().expect("a SNAP model has a grade");
    assert_eq!(latest["trusted"], max_gamma < 2.0, "{latest}");
    if history[0]["outcome"] == "relabel" {
        // The round: the goal's structures labelled, a model refitted, the hull again.
        assert_eq!((history.len(), g), (2, 1), "{status}");
        assert!(common::labels_of_origin(&dir, "goal:hull") > 0, "labelled structures of the hull goal");
    }
    let value = &latest["value"];
    let entries = value["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 13, "{value}");
    for e in entries {
        assert!(e["formation_energy_ev_per_atom"].as_f64().unwrap().is_finite());
        assert!(e["e_above_hull_ev_per_atom"].as_f64().unwrap() >= -1e-9);
        assert!(!e["decomposition"].as_array().unwrap().is_empty(), "{e}");
    }
    // Both elements have a stable reference; every stable entry is on the hull.
    let stable: Vec<&str> = value["stable"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(stable.iter().any(|s| s.starts_with("Cu-")) && stable.iter().any(|s| s.starts_with("Ni-")), "{stable:?}");

    // The command on the run's latest model (the one the stored hull was computed with).
    let model = format!("models/gen-{g:03}.json");
    assert_eq!(latest["model_path"], model.as_str());
    let cli: Value =
        serde_json::from_slice(&ok(&["property", "hull", "--dir", d, "--elements", "Cu,Ni", "--json"]).stdout).unwrap();
    assert_eq!(cli["stable"], value["stable"]);
    for (a, b) in entries.iter().zip(cli["entries"].as_array().unwrap()) {
        assert_eq!(a["name"], b["name"]);
        for key in ["formation_energy_ev_per_atom", "e_above_hull_ev_per_atom"] {
            let (x, y) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!((x - y).abs() < 1e-9, "{} {key}: goal {x}, command {y}", a["name"]);
        }
    }
    assert!((cli["max_gamma"].as_f64().unwrap() - max_gamma).abs() < 1e-9);

    let text = common::stdout(&ok(&["status", "--dir", d]));
    let line = text.lines().find(|l| l.starts_with("goal hull: stable ")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("largest e_above_hull") && line.contains(&stable.join(", ")), "{line}");
    ok(&["report", "--dir", d]);
    let page = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert_eq!(page.matches("<tr><td>hull</td>").count(), history.len(), "the report lists every computation");
    assert!(page.contains(&format!("stable: {}", stable.join(", "))), "the report's hull line");

    // `--feed`: the command's uncertain structures (above a low gamma_select) go into the
    // ended run as its next generation; `autopipe run` labels them and refits.
    let out = ok(&["property", "hull", "--dir", d, "--elements", "Cu,Ni", "--gamma-select", "1.0", "--feed"]);
    assert!(stderr(&out).contains("structures queued into"), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&ok(&["status", "--dir", d, "--json"]).stdout).unwrap();
    let pending = status["counts"]["pending"].as_u64().unwrap();
    assert!(pending > 0 && pending <= 20, "{status}");
    assert_eq!(status["generation"].as_i64(), Some(g + 1));
    common::run_loop(&[config.to_str().unwrap(), "--dir", d]);
    assert!(dir.join(format!("models/gen-{:03}.json", g + 1)).is_file(), "the refit");
    assert_eq!(common::labels_of_origin(&dir, "property:hull") as u64, pending);
}

/// A hull goal in a run of one element is refused before anything runs, at its key.
#[test]
fn hull_goal_of_one_element_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let text = common::stdout(&ok(&["init", "--example", "cu-emt"]));
    let line = text.lines().count() + 2;
    let config = tmp.path().join("cu.toml");
    std::fs::write(&config, format!("{text}[goals]\nhull = true\n")).unwrap();
    let dir = tmp.path().join("run");
    for args in [
        vec!["validate", config.to_str().unwrap()],
        vec!["run", config.to_str().unwrap(), "--dir", dir.to_str().unwrap()],
    ] {
        let out = run(&args);
        assert_ne!(out.status.code(), Some(0), "{args:?} must fail");
        let e = stderr(&out);
        assert!(e.contains(&format!("cu.toml:{line}")) && e.contains("goals.hull"), "{args:?}: {e}");
        assert!(e.contains("two elements or more"), "{e}");
    }
    assert!(!dir.join(autopipe_store::DB_FILE).exists(), "nothing ran");
}
