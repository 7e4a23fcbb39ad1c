//! Bad input gets a clear error naming the file, line and key, and loses nothing.

mod common;
use common::*;
use std::path::Path;

fn config_error(name: &str, text: &str) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = run(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "a bad config must be refused");
    assert!(!tmp.path().join("autopipe.db").exists(), "a bad config must not create a database");
    (stderr(&out), tmp)
}

fn cu_emt() -> String {
    stdout(&ok(&["init", "--example", "cu-emt"]))
}

#[test]
fn the_example_config_validates_runs_and_resumes_without_recomputing() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("cu.toml");
    // The example, made small: 6 structures (and its 12 elastic cells), short MD, one
    // generation.
    let text = cu_emt()
        .replace("structures = 20 ", "structures = 6 ")
        .replace("steps = 1000", "steps = 100")
        .replace("max_generations = 7", "max_generations = 1");
    std::fs::write(&path, text).unwrap();
    let out = run_loop(&[path.to_str().unwrap()]);
    assert!(stderr(&out).contains("after generation 0: 18 labels"), "{}", stderr(&out));
    let first = status_json(tmp.path());
    assert_eq!(first["executions"], 18);
    // Running again: the loop is over, nothing is computed again.
    let out = run_loop(&[path.to_str().unwrap()]);
    assert!(stderr(&out).contains("after generation 0: 18 labels"), "{}", stderr(&out));
    assert_eq!(status_json(tmp.path())["executions"], 18);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = cu_emt().replace("workers = 2 ", "workers = 2\nwrokers = 3 ");
    let (err, _t) = config_error("typo.toml", &text);
    let line = text.lines().position(|l| l.starts_with("wrokers")).unwrap() + 1;
    assert!(err.contains(&format!("typo.toml:{line}:")), "{err}");
    assert!(err.contains("execution.wrokers") && err.contains("unknown field"), "{err}");
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let text = cu_emt().replace("workers = 2 ", "workers = \"two\" ");
    let (err, _t) = config_error("type.toml", &text);
    let line = text.lines().position(|l| l.starts_with("workers")).unwrap() + 1;
    assert!(err.contains(&format!("type.toml:{line}:")), "{err}");
    assert!(err.contains("execution.workers") && err.contains("invalid type"), "{err}");
}

#[test]
fn missing_required_field_is_named() {
    let text = cu_emt().replace("engine = \"emt\"", "");
    let (err, _t) = config_error("missing.toml", &text);
    assert!(err.contains("missing.toml:") && err.contains("oracle") && err.contains("engine"), "{err}");
    let text: String = cu_emt().lines().filter(|l| !l.starts_with("elements")).map(|l| format!("{l}\n")).collect();
    let (err, _t) = config_error("missing2.toml", &text);
    assert!(
        err.contains("missing2.toml:") && err.contains("system.elements") && err.contains("missing field"),
        "{err}"
    );
}

#[test]
fn invalid_values_are_pointed_at() {
    let text = cu_emt().replace("failure_tolerance = 0.5", "failure_tolerance = 1.5");
    let (err, _t) = config_error("range.toml", &text);
    let line = text.lines().position(|l| l.starts_with("failure_tolerance")).unwrap() + 1;
    assert!(err.contains(&format!("range.toml:{line}:")) && err.contains("execution.failure_tolerance"), "{err}");
    let text = cu_emt().replace("force_weight = 1.0 ", "force_wieght = 1.0 ");
    let (err, _t) = config_error("fit.toml", &text);
    assert!(err.contains("fit.toml:") && err.contains("fit") && err.contains("force_wieght"), "{err}");
    let text = cu_emt().replace("elements = [\"Cu\"]", "elements = [\"Cu\", \"Xx\"]");
    let (err, _t) = config_error("element.toml", &text);
    assert!(err.contains("system.elements") && err.contains("\"Xx\" is not a chemical symbol"), "{err}");
    let text = cu_emt().replace("elements = [\"Cu\"]", "elements = [\"Fe\"]").replace("lattice_constant_a = 3.61", "");
    let (err, _t) = config_error("emt.toml", &text);
    assert!(err.contains("EMT has no parameters for Fe"), "{err}");
}

fn db_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("autopipe.db")).unwrap()
}

#[test]
fn malformed_structure_files_are_refused_and_the_database_is_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let good = dir.join("good.xyz");
    one_atom_cells(&good, 3);
    ok(&["jobs", "import", good.to_str().unwrap(), "--dir", d]);
    let before = db_bytes(dir);

    // Truncated: the last frame stops in the middle of its atom lines.
    let text = std::fs::read_to_string(&good).unwrap();
    let mut frames = String::new();
    frames.push_str(&text);
    frames.push_str("2\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nCu 0 0 0\n");
    let truncated = dir.join("truncated.xyz");
    std::fs::write(&truncated, &frames).unwrap();
    let out = run(&["jobs", "import", truncated.to_str().unwrap(), "--dir", d]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("truncated.xyz") && err.contains("frame 4") && err.contains("truncated"), "{err}");

    // Malformed: a bad number on a known line.
    let bad = dir.join("bad.xyz");
    std::fs::write(
        &bad,
        "1\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nCu 0 zero 0\n",
    )
    .unwrap();
    let err = stderr(&run(&["jobs", "import", bad.to_str().unwrap(), "--dir", d]));
    assert!(err.contains("bad.xyz:3") && err.contains("frame 1"), "{err}");

    // An element EMT cannot compute is refused before anything is written.
    let fe = dir.join("fe.xyz");
    std::fs::write(&fe, "1\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nFe 0 0 0\n")
        .unwrap();
    let err = stderr(&run(&["jobs", "import", fe.to_str().unwrap(), "--dir", d]));
    assert!(err.contains("fe.xyz: frame 1") && err.contains("EMT has no parameters for Fe"), "{err}");

    assert_eq!(db_bytes(dir), before, "a refused import must not touch the database");
    assert_eq!(count(&status_json(dir), "pending"), 3);
}

#[test]
fn a_corrupted_database_is_reported_and_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let good = dir.join("good.xyz");
    one_atom_cells(&good, 3);
    ok(&["jobs", "import", good.to_str().unwrap(), "--dir", d]);
    // Overwrite the middle of the file, as a failing disk or a stray `dd` would.
    let mut bytes = db_bytes(dir);
    let n = bytes.len();
    for (i, b) in bytes.iter_mut().enumerate().take(n).skip(20) {
        *b = (i as u8).wrapping_mul(37);
    }
    std::fs::write(dir.join("autopipe.db"), &bytes).unwrap();
    for args in [
        vec!["jobs", "status", "--dir", d],
        vec!["jobs", "run", "--dir", d],
        vec!["jobs", "import", good.to_str().unwrap(), "--dir", d],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains("autopipe.db") && err.contains("not an MLIP-AutoPipe database"), "{args:?}: {err}");
        assert_eq!(db_bytes(dir), bytes, "{args:?} changed a damaged database");
    }
}

#[test]
fn status_of_a_directory_without_a_database_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(&["jobs", "status", "--dir", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no job database here"), "{}", stderr(&out));
}
