//! The job manager of a campaign (issue 8, item 7): CSV import of molecules with their
//! charge and multiplicity, `status` with percentages and `--metrics`, `--failed`,
//! `--stalled`, `--chronic`, `reset --stalled`/`--max-fail-count`, and `update`
//! picking up outputs of jobs run outside the orchestrator (real gzipped ORCA outputs
//! from the parser fixtures). Every test runs the real binary on real processes.
//! ORCA is not installed here: a stand-in script that fails at once plays `orca`, so
//! that the input ORCA would get (`orca.inp`, written before ORCA starts) can be read.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn d(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

const WATER: &str = "O 0.0 0.0 0.0\nH 0.9572 0.0 0.0\nH -0.2399872 0.9266272 0.0";

fn orca_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engines/tests/data/orca").join(name)
}

/// An oracle file (for `--oracle`): ORCA, run through `orca` (a path).
fn orca_config(dir: &Path, orca: &Path) -> PathBuf {
    let text = format!(
        "[oracle]\nengine = \"orca\"\ncommand = \"{}\"\nfunctional = \"PBE\"\nbasis = \"def2-SVP\"\n",
        orca.display()
    );
    let path = dir.join("orca.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// An `orca` that fails at once (ORCA is not installed here).
fn failing_orca(dir: &Path) -> PathBuf {
    let path = dir.join("fake-orca");
    std::fs::write(&path, "#!/bin/sh\necho 'stand-in orca: not the real program' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn detail(dir: &Path, id: i64) -> serde_json::Value {
    let out = ok(&["jobs", "status", "--dir", d(dir), "--id", &id.to_string(), "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status_with(dir: &Path, flags: &[&str]) -> serde_json::Value {
    let mut args = vec!["jobs", "status", "--dir", d(dir), "--json"];
    args.extend_from_slice(flags);
    serde_json::from_slice(&ok(&args).stdout).expect("status --json prints one JSON object")
}

fn ids(list: &serde_json::Value) -> Vec<i64> {
    list.as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect()
}

/// The bytes of the database and its WAL, to show that nothing changed.
fn db_bytes(dir: &Path) -> Vec<Vec<u8>> {
    ["autopipe.db", "autopipe.db-wal"].iter().map(|f| std::fs::read(dir.join(f)).unwrap_or_default()).collect()
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[test]
fn csv_import_checks_every_row_before_the_database_is_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("RUN");
    let csv = tmp.path().join("molecules.csv");
    let good = format!(
        "id,xyz,charge\nwater,{},0\ncu2,{},0\n  cu3 ,{},0\n",
        csv_field(WATER),
        csv_field("2\ncopper dimer, with its count and comment lines\nCu 0 0 0\nCu 2.3 0 0\n"),
        csv_field("cu 0 0 0\nCU 2.4 0 0\nCu 1.2 2.0 0")
    );
    std::fs::write(&csv, &good).unwrap();
    let out = ok(&["jobs", "import", d(&csv), "--dir", d(&run_dir), "--charge-column", "charge"]);
    assert!(stdout(&out).starts_with("3 calculations added, 0 already present"), "{}", stdout(&out));
    let water = detail(&run_dir, 1);
    assert_eq!(water["structure"]["formula"], "OH2", "{water}");
    assert_eq!(water["structure"]["origin"], format!("import:{}#water", csv.display()));
    assert_eq!(detail(&run_dir, 3)["structure"]["origin"], format!("import:{}#cu3", csv.display()));
    let out = ok(&["jobs", "import", d(&csv), "--dir", d(&run_dir), "--charge-column", "charge"]);
    assert!(stdout(&out).starts_with("0 calculations added, 3 already present"), "{}", stdout(&out));

    // Malformed rows: the file, the line the record starts on and the column are named,
    // and the database is left byte for byte as it was.
    let before = db_bytes(&run_dir);
    let line_of = |text: &str, marker: &str| text[..text.find(marker).unwrap()].lines().count() + 1;
    let bad_coordinate = format!("{good}benzene_bit,{},0\n", csv_field("C 0 0 0\nC 1.4 0.x 0"));
    let duplicate = format!("{good}water,{},0\n", csv_field("O 0 0 0"));
    let bad_charge = format!("{good}ion,{},one\n", csv_field("O 0 0 0"));
    let charged_for_emt = format!("{good}ion,{},-1\n", csv_field("O 0 0 0\nH 0.97 0 0"));
    let short_row = format!("{good}lonely,{}\n", csv_field("O 0 0 0"));
    for (text, marker, column, message) in [
        (&bad_coordinate, "benzene_bit", "xyz", "geometry line 2: y coordinate \"0.x\" is not a finite number"),
        (&duplicate, "water,\"O 0 0 0", "id", "id \"water\" repeats the one on line 2"),
        (&bad_charge, "ion", "charge", "charge \"one\" is not a whole number"),
        (&charged_for_emt, "ion", "charge", "engine emt takes no molecular charge"),
    ] {
        std::fs::write(&csv, text).unwrap();
        let out = run(&["jobs", "import", d(&csv), "--dir", d(&run_dir), "--charge-column", "charge"]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        let want = format!("{}: line {}, column \"{column}\": {message}", csv.display(), line_of(text, marker));
        assert!(err.contains(&want), "expected {want:?} in\n{err}");
        assert!(err.contains("nothing was imported"), "{err}");
        assert_eq!(db_bytes(&run_dir), before, "a refused file left the database as it was");
    }
    std::fs::write(&csv, &short_row).unwrap();
    let err = stderr(&run(&["jobs", "import", d(&csv), "--dir", d(&run_dir), "--charge-column", "charge"]));
    let want = format!("{}: line {}: 2 fields, but the header has 3", csv.display(), line_of(&short_row, "lonely"));
    assert!(err.contains(&want), "expected {want:?} in\n{err}");
    std::fs::write(&csv, &good).unwrap();
    let err = stderr(&run(&["jobs", "import", d(&csv), "--dir", d(&run_dir), "--geometry-column", "geometry"]));
    assert!(err.contains("line 1 (the header): no column \"geometry\" (given by --geometry-column)"), "{err}");
    assert!(err.contains("the columns are: id, xyz, charge"), "{err}");
    assert_eq!(db_bytes(&run_dir), before);

    // A refused file never creates the run directory; --format csv reads any name.
    let other = tmp.path().join("molecules.txt");
    std::fs::write(&other, &bad_coordinate).unwrap();
    let fresh = tmp.path().join("FRESH");
    let out = run(&["jobs", "import", d(&other), "--dir", d(&fresh), "--format", "csv", "--charge-column", "charge"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("column \"xyz\""), "{}", stderr(&out));
    assert!(!fresh.exists());
}

#[test]
fn charge_and_multiplicity_reach_the_orca_input_and_failures_are_managed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("RUN");
    let config = orca_config(tmp.path(), &failing_orca(tmp.path()));
    let csv = tmp.path().join("ions.csv");
    let hydroxide = "O 0 0 0\nH 0.97 0 0";
    std::fs::write(
        &csv,
        format!(
            "name;geometry;q;uhf\nwater;{w};0;0\nwater_cation;{w};1;1\nhydroxide;{h};-1;0\n",
            w = csv_field(WATER),
            h = csv_field(hydroxide)
        )
        .replace(';', ","),
    )
    .unwrap();
    let import = |file: &Path| {
        run(&[
            "jobs",
            "import",
            d(file),
            "--dir",
            d(&dir),
            "--oracle",
            d(&config),
            "--geometry-column",
            "geometry",
            "--id-column",
            "name",
            "--charge-column",
            "q",
            "--unpaired-column",
            "uhf",
        ])
    };
    // An oracle file is checked as the [oracle] table of a configuration is.
    let typo = tmp.path().join("typo.toml");
    std::fs::write(&typo, "[oracle]\nengine = \"orca\"\nfunctionnal = \"PBE\"\n").unwrap();
    let out = run(&["jobs", "import", d(&csv), "--dir", d(&dir), "--oracle", d(&typo)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("{}:3:", typo.display())), "{}", stderr(&out));
    assert!(stderr(&out).contains("functionnal"), "{}", stderr(&out));
    assert!(!dir.exists());

    let out = import(&csv);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same geometry with another charge is another calculation (charge and
    // multiplicity are part of the idempotency key).
    assert!(stdout(&out).starts_with("3 calculations added"), "{}", stdout(&out));
    assert_eq!(detail(&dir, 2)["label_params"]["charge"], 1);
    assert_eq!(detail(&dir, 2)["label_params"]["multiplicity"], 2);

    // A multiplicity the electron count cannot have is refused with the row's line.
    let bad = tmp.path().join("bad.csv");
    std::fs::write(&bad, format!("name,geometry,q,uhf\nwater_triplet_typo,{},0,1\n", csv_field(WATER))).unwrap();
    let out = import(&bad);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}: line 2, columns \"q\" and \"uhf\"", bad.display())), "{err}");
    assert!(err.contains("multiplicity 2 is impossible with 10 electrons (charge 0)"), "{err}");

    // Run: the stand-in orca fails every attempt; the inputs it was given are on disk.
    let out = run(&["jobs", "run", "--dir", d(&dir), "--max-infra-retries", "1", "--failure-tolerance", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for (id, header) in [(1, "* xyz 0 1\n"), (2, "* xyz 1 2\n"), (3, "* xyz -1 1\n")] {
        for attempt in 1..=2 {
            let input = dir.join(format!("jobs/000/{id:06}/attempt-{attempt}/orca.inp"));
            let text = std::fs::read_to_string(&input).unwrap();
            assert!(text.contains(header), "{}: {text}", input.display());
            assert!(text.starts_with("! PBE def2-SVP EnGrad"), "{text}");
        }
    }

    // --failed lists each with its last message; --chronic K those failed K times.
    let s = status_with(&dir, &["--failed", "--chronic", "2"]);
    assert_eq!(ids(&s["failed"]), [1, 2, 3], "{s}");
    for c in s["failed"].as_array().unwrap() {
        assert_eq!(c["fail_count"], 2);
        assert!(c["message"].as_str().unwrap().contains("stand-in orca: not the real program"), "{c}");
    }
    assert_eq!(ids(&s["chronic"]), [1, 2, 3]);
    assert_eq!(ids(&status_with(&dir, &["--chronic", "3"])["chronic"]), Vec::<i64>::new());
    let table = stdout(&ok(&["jobs", "status", "--dir", d(&dir), "--failed"]));
    assert!(table.contains("  failed             3  100.0 %"), "{table}");
    assert!(table.contains(&format!("[{}]   0.0 % done", ".".repeat(40))), "{table}");
    assert!(table.contains("2 attempts, fail count 2"), "{table}");
    assert!(table.contains("#hydroxide: "), "{table}");

    // reset --max-fail-count: chronic failures are left as they are.
    let out = stdout(&ok(&["jobs", "reset", "--dir", d(&dir), "--failed", "--max-fail-count", "2"]));
    assert!(out.contains("0 calculations back to pending"), "{out}");
    assert!(
        out.contains("3 calculations left as they are (chronic: fail count >= 2): #1 (2), #2 (2), #3 (2)"),
        "{out}"
    );
    assert_eq!(count(&status_json(&dir), "failed"), 3);
    // Without a limit they go back to pending, with fresh budgets and their fail count.
    let out = stdout(&ok(&["jobs", "reset", "--dir", d(&dir), "--failed"]));
    assert!(out.contains("3 calculations back to pending"), "{out}");
    let s = status_with(&dir, &["--chronic", "2"]);
    assert_eq!(count(&s, "pending"), 3);
    assert_eq!(ids(&s["chronic"]), [1, 2, 3], "the fail count is kept: {s}");
    assert_eq!(s["percent"]["pending"], 100.0);
    assert_eq!(detail(&dir, 1)["infra_failures"], 0);
}

#[test]
fn update_picks_up_orca_outputs_left_in_attempt_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("RUN");
    let config = orca_config(tmp.path(), &failing_orca(tmp.path()));
    let csv = tmp.path().join("waters.csv");
    let rows: String =
        (0..4).map(|k| format!("w{k},{}\n", csv_field(&WATER.replace("0.9572", &format!("0.95{k}"))))).collect();
    std::fs::write(&csv, format!("id,xyz\n{rows}")).unwrap();
    ok(&["jobs", "import", d(&csv), "--dir", d(&dir), "--oracle", d(&config)]);
    let attempt = |id: i64| {
        let p = dir.join(format!("jobs/000/{id:06}/attempt-1"));
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    // 1: a real ORCA output, gzipped; 2: SCF not converged (plain); 3: cut mid-run; 4: nothing.
    std::fs::copy(orca_fixture("water_engrad.out.gz"), attempt(1).join("orca.out.gz")).unwrap();
    std::fs::copy(orca_fixture("dvb_scf_not_converged_derived.out"), attempt(2).join("orca.out")).unwrap();
    std::fs::copy(orca_fixture("water_engrad_truncated.out"), attempt(3).join("water.out")).unwrap();

    let out = stdout(&ok(&["jobs", "update", "--dir", d(&dir)]));
    assert!(out.contains("calculation 1: done (from orca.out.gz)"), "{out}");
    assert!(out.contains("calculation 2: failed, back to pending for a retry: scf_not_converged"), "{out}");
    assert!(out.contains("calculation 3: ") && out.contains("water.out stops mid-run; left as it is"), "{out}");
    let s = status_json(&dir);
    assert_eq!(s["done_ids"], serde_json::json!([1]), "{s}");
    assert_eq!(s["pending_ids"], serde_json::json!([2, 3, 4]), "{s}");

    // The label is ORCA's, converted independently here (CODATA 2018).
    let (eh_ev, bohr_a) = (27.211386245988, 0.529177210903);
    let gradient: [[f64; 3]; 3] = [
        [-0.047131485, -0.047131485, 0.0000000001],
        [0.025621056, 0.021510429, 0.0],
        [0.021510429, 0.025621056, -0.0000000001],
    ];
    let max_force =
        gradient.iter().map(|g| (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt() * eh_ev / bohr_a).fold(0.0, f64::max);
    let energy = -76.422436201230 * eh_ev;
    let one = detail(&dir, 1);
    assert!((one["energy_ev"].as_f64().unwrap() - energy).abs() < 1e-9, "{one}");
    assert!((one["max_force_ev_per_a"].as_f64().unwrap() - max_force).abs() < 1e-9, "{one}");
    assert_eq!(one["attempts"][0]["outcome"], "done");
    // The physics failure was recorded like the executor does: next rung of the ladder.
    let two = detail(&dir, 2);
    assert_eq!(two["attempts"][0]["outcome"], "physics", "{two}");
    assert!(two["attempts"][0]["changes"].as_str().unwrap().contains("SlowConv"), "{two}");
    assert_eq!(detail(&dir, 3)["n_attempts"], 0);

    // Its metrics; the output gives no run time, so no wall time and no core-hours.
    let m = &status_with(&dir, &["--metrics"])["metrics"];
    let orca = &m["engines"][0];
    assert_eq!((orca["engine"].as_str(), orca["done"].as_u64()), (Some("orca"), Some(1)), "{m}");
    for key in ["mean", "median", "min", "max"] {
        assert!((orca["energy_ev"][key].as_f64().unwrap() - energy).abs() < 1e-9, "{m}");
        assert!((orca["max_force_ev_per_a"][key].as_f64().unwrap() - max_force).abs() < 1e-9, "{m}");
    }
    assert!(orca["wall_time_s"].is_null() && orca["scf_steps"].is_null(), "{m}");
    assert_eq!(m["core_hours"], 0.0);

    // Again: nothing new, nothing recorded twice.
    let out = stdout(&ok(&["jobs", "update", "--dir", d(&dir)]));
    assert!(out.contains("0 done, 0 failed, 0 still running, 1 incomplete"), "{out}");
    assert_eq!(status_json(&dir)["executions"], 2);
}

fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

#[test]
fn stalled_jobs_are_found_stopped_and_reset_and_finished_ones_harvested() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("RUN");
    let csv = tmp.path().join("atoms.csv");
    std::fs::write(&csv, "id,xyz\nhangs,Cu 0 0 0\nfinishes,Cu 0 0 1\n").unwrap();
    let command = format!(
        "echo $$ > sh.pid; if [ \"$AUTOPIPE_CALCULATION_ID\" = 1 ]; then sleep 600; fi; sleep 1; {WRITE_LABEL}"
    );
    ok(&["jobs", "import", d(&csv), "--dir", d(&dir), "--engine", "command", "--command", &command]);

    // The orchestrator is killed while both jobs run; the jobs go on without it.
    let mut child = autopipe().args(["jobs", "run", "--dir", d(&dir), "--workers", "2"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status_json(&dir)["running_ids"] != serde_json::json!([1, 2]) || detail(&dir, 1)["backend_id"].is_null() {
        assert!(Instant::now() < deadline, "the jobs did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // update and reset write: they take the run lock, which the running orchestrator holds.
    for args in [vec!["jobs", "update", "--dir", d(&dir)], vec!["jobs", "reset", "--dir", d(&dir), "--stalled"]] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("another autopipe"), "{}", stderr(&out));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let job1 = dir.join("jobs/000/000001/attempt-1");
    let result2 = dir.join("jobs/000/000002/attempt-1/result.json");
    while !result2.exists() {
        assert!(Instant::now() < deadline, "job 2 did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200)); // its lock is released as it exits

    // update harvests the finished job's result.json; the other still runs.
    let out = stdout(&ok(&["jobs", "update", "--dir", d(&dir)]));
    assert!(out.contains("calculation 2: done (from result.json)"), "{out}");
    assert!(out.contains("1 done, 0 failed, 1 still running"), "{out}");
    assert_eq!(detail(&dir, 2)["energy_ev"], -1.5);
    assert_eq!(status_with(&dir, &["--stalled"])["stalled"], serde_json::json!([]));

    // Seven hours without a change: stalled after 6 h (the default), not after 8 h.
    let touched = std::process::Command::new("find")
        .arg(&job1)
        .args(["-exec", "touch", "-m", "-d", "7 hours ago", "{}", "+"])
        .status()
        .unwrap();
    assert!(touched.success());
    let s = status_with(&dir, &["--stalled"]);
    assert_eq!(ids(&s["stalled"]), [1], "{s}");
    assert_eq!(s["stalled"][0]["lock_held"], true);
    let idle_h = s["stalled"][0]["idle_s"].as_f64().unwrap() / 3600.0;
    assert!((7.0..7.1).contains(&idle_h), "{idle_h}");
    assert_eq!(status_with(&dir, &["--stalled", "--stalled-after-h", "8"])["stalled"], serde_json::json!([]));
    let table = stdout(&ok(&["jobs", "status", "--dir", d(&dir), "--stalled"]));
    assert!(table.contains("idle 7.0 h, its job still holds its lock"), "{table}");

    // reset --stalled stops the job (its process group), then puts it back to pending
    // with one more failure counted.
    let shell: i32 = std::fs::read_to_string(job1.join("sh.pid")).unwrap().trim().parse().unwrap();
    assert!(pid_alive(shell));
    let out = stdout(&ok(&["jobs", "reset", "--dir", d(&dir), "--stalled", "--max-fail-count", "3"]));
    assert!(out.contains("stopped the stalled job of calculation 1"), "{out}");
    assert!(out.contains("1 calculation back to pending"), "{out}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(!pid_alive(shell), "the stalled job was stopped");
    let one = detail(&dir, 1);
    assert_eq!(one["status"], "pending", "{one}");
    assert_eq!(one["attempts"][0]["outcome"], "stalled", "{one}");
    assert_eq!(ids(&status_with(&dir, &["--chronic", "1"])["chronic"]), [1]);
    // Once chronic (fail count 1 >= 1), a stalled job would be left alone: nothing to do now.
    let out = stdout(&ok(&["jobs", "reset", "--dir", d(&dir), "--stalled", "--max-fail-count", "1"]));
    assert!(out.contains("0 calculations back to pending"), "{out}");
}

#[test]
fn status_metrics_are_those_of_the_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("RUN");
    let csv = tmp.path().join("clusters.csv");
    let mut text = String::from("id,xyz\n");
    for (k, r) in [2.2, 2.35, 2.5, 2.7].iter().enumerate() {
        text.push_str(&format!("dimer{k},{}\n", csv_field(&format!("Cu 0 0 0\nCu {r} 0 0"))));
    }
    text.push_str(&format!("trimer,{}\n", csv_field("Cu 0 0 0\nCu 2.5 0 0\nCu 1.2 2.1 0.1")));
    text.push_str(&format!("skipped,{}\n", csv_field("Cu 0 0 0\nCu 3.0 0 0")));
    std::fs::write(&csv, text).unwrap();
    ok(&["jobs", "import", d(&csv), "--dir", d(&dir)]);
    ok(&["jobs", "cancel", "--dir", d(&dir), "6"]);
    ok(&["jobs", "run", "--dir", d(&dir)]);
    let labels = tmp.path().join("labels.xyz");
    ok(&["jobs", "export", "--dir", d(&dir), d(&labels)]);
    let frames = autopipe_atoms::extxyz::read_extxyz_file(&labels).unwrap();
    assert_eq!(frames.len(), 5);

    // Expected values, from the exported labels and the recorded wall times.
    let stats = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) };
        (v.iter().sum::<f64>() / n as f64, median, v[0], v[n - 1])
    };
    let forces: Vec<f64> = frames
        .iter()
        .map(|f| {
            f.forces_ev_per_a
                .as_ref()
                .unwrap()
                .iter()
                .map(|g| g.iter().map(|x| x * x).sum::<f64>().sqrt())
                .fold(0.0, f64::max)
        })
        .collect();
    let energies: Vec<f64> = frames.iter().map(|f| f.energy_ev.unwrap()).collect();
    let walls: Vec<f64> = (1..=5).map(|id| detail(&dir, id)["wall_time_s"].as_f64().unwrap()).collect();
    let core_hours = walls.iter().sum::<f64>() / 3600.0;

    let s = status_with(&dir, &["--metrics"]);
    let emt = &s["metrics"]["engines"][0];
    assert_eq!(emt["engine"], "emt");
    assert_eq!(emt["done"], 5);
    for (key, values, tol) in
        [("max_force_ev_per_a", forces, 1e-6), ("energy_ev", energies, 1e-6), ("wall_time_s", walls, 1e-12)]
    {
        let (mean, median, min, max) = stats(values);
        let got = &emt[key];
        assert_eq!(got["n"], 5, "{key}: {got}");
        for (name, want) in [("mean", mean), ("median", median), ("min", min), ("max", max)] {
            let v = got[name].as_f64().unwrap();
            assert!((v - want).abs() <= tol * want.abs().max(1.0), "{key} {name}: {v} vs {want}");
        }
    }
    assert!(emt["scf_steps"].is_null(), "EMT has no SCF");
    assert!((emt["core_hours"].as_f64().unwrap() - core_hours).abs() < 1e-12);
    assert!((s["metrics"]["core_hours"].as_f64().unwrap() - core_hours).abs() < 1e-12);
    assert!((s["completion_percent"].as_f64().unwrap() - 500.0 / 6.0).abs() < 1e-9, "{s}");

    let table = stdout(&ok(&["jobs", "status", "--dir", d(&dir), "--metrics"]));
    assert!(table.contains("  done               5   83.3 %"), "{table}");
    assert!(table.contains("  cancelled          1   16.7 %"), "{table}");
    assert!(table.contains(&format!("[{}{}]  83.3 % done", "#".repeat(33), ".".repeat(7))), "{table}");
    assert!(table.contains("  emt: 5 done"), "{table}");
    assert!(table.contains("    max force (eV/Å)             5"), "{table}");
}

#[test]
fn update_harvests_jobs_run_by_hand_and_refuses_foreign_ones() {
    use autopipe_atoms::{Element, Structure};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("RUN");
    let csv = tmp.path().join("dimers.csv");
    std::fs::write(&csv, "id,xyz\na,\"Cu 0 0 0\nCu 2.3 0 0\"\nb,\"Cu 0 0 0\nCu 2.4 0 0\"\n").unwrap();
    ok(&["jobs", "import", d(&csv), "--dir", d(&dir)]);
    // What a scheduler script would do: a job directory with job.json, then
    // `autopipe job-exec DIR`, without the orchestrator.
    let cu = Element::from_symbol("Cu").unwrap();
    let dimer =
        |r: f64| Structure::new([[0.0; 3]; 3], vec![[0.0; 3], [r, 0.0, 0.0]], vec![cu, cu], [false; 3]).unwrap();
    for (id, r) in [(1, 2.3), (2, 2.45)] {
        let job_dir = dir.join(format!("jobs/000/{id:06}/attempt-1"));
        std::fs::create_dir_all(&job_dir).unwrap();
        let job = autopipe_exec::JobFile {
            calculation_id: id,
            attempt: 1,
            engine: autopipe_engines::EngineSpec::Emt,
            structure: dimer(r),
        };
        std::fs::write(job_dir.join("job.json"), serde_json::to_vec(&job).unwrap()).unwrap();
        ok(&["job-exec", d(&job_dir)]);
    }
    let out = stdout(&ok(&["jobs", "update", "--dir", d(&dir)]));
    assert!(out.contains("calculation 1: done (from result.json)"), "{out}");
    // 2's directory holds a job of another structure (2.45 Å, not 2.4 Å): not taken.
    assert!(out.contains("calculation 2: not updated: ") && out.contains("not a job of this calculation"), "{out}");
    let s = status_json(&dir);
    assert_eq!((s["done_ids"].clone(), s["pending_ids"].clone()), (serde_json::json!([1]), serde_json::json!([2])));
    let one = detail(&dir, 1);
    assert_eq!(one["attempts"][0]["outcome"], "done", "{one}");
    // The label is the one EMT gives for that dimer.
    let labels = autopipe_engines::emt::Emt::new().calculate(&dimer(2.3)).unwrap();
    assert!((one["energy_ev"].as_f64().unwrap() - labels.energy_ev).abs() < 1e-9, "{one}");
}

#[test]
fn update_reads_a_gzipped_quantum_espresso_output_with_its_scf_steps_and_wall_time() {
    use autopipe_atoms::{Element, Frame, Structure};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("RUN");
    let oracle = tmp.path().join("qe.toml");
    std::fs::write(&oracle, "[oracle]\nengine = \"qe\"\npseudopotentials = { Si = \"Si.pbe-rrkj.UPF\" }\n").unwrap();
    // The two-atom Si cell of the fixture's input (crates/engines/tests/data/qe/inputs/si2.in).
    let si = Element::from_symbol("Si").unwrap();
    let a = 5.43 / 2.0;
    let cell = Structure::new(
        [[0.0, a, a], [a, 0.0, a], [a, a, 0.0]],
        vec![[0.0, 0.0, 0.0], [1.40, 1.30, 1.36]],
        vec![si, si],
        [true; 3],
    )
    .unwrap();
    let xyz = tmp.path().join("si2.xyz");
    autopipe_atoms::extxyz::write_extxyz_file(&xyz, &[Frame::from_structure(cell)]).unwrap();
    ok(&["jobs", "import", d(&xyz), "--dir", d(&dir), "--oracle", d(&oracle)]);
    let attempt = dir.join("jobs/000/000001/attempt-1");
    std::fs::create_dir_all(&attempt).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engines/tests/data/qe/si2.out");
    let gz = std::process::Command::new("gzip").arg("-c").arg(&fixture).output().unwrap();
    assert!(gz.status.success());
    std::fs::write(attempt.join("pw.out.gz"), gz.stdout).unwrap();

    let out = stdout(&ok(&["jobs", "update", "--dir", d(&dir)]));
    assert!(out.contains("calculation 1: done (from pw.out.gz)"), "{out}");
    // Values from the fixture's expected.json (computed independently of the parser).
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.parent().unwrap().join("expected.json")).unwrap())
            .unwrap();
    let want = &expected["si2.out"];
    let m = &status_with(&dir, &["--metrics"])["metrics"]["engines"][0];
    assert_eq!(m["engine"], "qe");
    assert!((m["energy_ev"]["mean"].as_f64().unwrap() - want["energy_ev"].as_f64().unwrap()).abs() < 1e-9, "{m}");
    assert!(
        (m["max_force_ev_per_a"]["max"].as_f64().unwrap() - want["max_force_ev_per_a"].as_f64().unwrap()).abs() < 1e-9
    );
    assert_eq!(m["scf_steps"]["median"].as_f64(), want["scf_steps"].as_f64());
    assert_eq!(m["wall_time_s"]["min"].as_f64(), want["wall_time_s"].as_f64());
    assert!((m["core_hours"].as_f64().unwrap() - want["wall_time_s"].as_f64().unwrap() / 3600.0).abs() < 1e-15);
}
