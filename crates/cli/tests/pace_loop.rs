//! `autopipe run` with `potential.kind = "pace"`: the loop trains Pacemaker (ACE) models as
//! jobs and explores with Pacemaker's calculator, its extrapolation grade γ driving the
//! watchdog and the selection. The real Pacemaker (python-ace + tensorpotential in
//! `/opt/autopipe-pace`, or `AUTOPIPE_PACE_PYTHON`; made by `scripts/install-test-deps.sh`)
//! on a tiny Cu/EMT loop: 8 structures, 6 functions per element, 10 BFGS iterations, one
//! 200-step MD segment, two generations (about 2 minutes on 2 cores).
//!
//! The run is killed (SIGKILL to the orchestrator's process group and to the fit job's)
//! while Pacemaker fits generation 0; the same command again completes the loop. The
//! per-element reference energy (3 eV per Cu atom, far from EMT's zero) is taken off
//! before Pacemaker sees the energies (`energy_corrected` in its dataset) and added back in
//! evaluation: the final model's energies on the labels are checked against EMT's.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether Pacemaker is installed; without it the test is skipped (with the reason
/// printed) unless `AUTOPIPE_REQUIRE_ENGINES` is set.
fn pacemaker_or_skip() -> bool {
    let py = autopipe_workflow::pace_job::pace_python();
    let ok = std::process::Command::new(&py)
        .args(["-c", "import pyace, tensorpotential"])
        .output()
        .is_ok_and(|o| o.status.success())
        && py.with_file_name("pacemaker").is_file();
    if !ok {
        let why = format!(
            "this test needs Pacemaker: {} cannot import pyace/tensorpotential (run scripts/install-test-deps.sh, \
             or set AUTOPIPE_PACE_PYTHON)",
            py.display()
        );
        assert!(std::env::var_os("AUTOPIPE_REQUIRE_ENGINES").is_none(), "{why}");
        eprintln!("skipped: {why}");
    }
    ok
}

const REFERENCE_EV: f64 = 3.0;

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = stdout(&ok(&["init", "--example", "cu-emt"]))
        .replace("structures = 20 ", "structures = 8 ")
        .replace("elastic_cells = 12 ", "elastic_cells = 0 ")
        .replace("[potential]", "[potential]\nkind = \"pace\"")
        .replace("test_fraction = 0.1 ", "test_fraction = 0.25 ")
        .replace("temperatures_k = [300, 900, 1500]", "temperatures_k = [1200]")
        .replace("steps = 1000", "steps = 200")
        .replace("max_generations = 7", "max_generations = 2")
        .replace("per_generation = 20 ", "per_generation = 4 ")
        .replace("target_force_rmse_ev_per_a = 0.045", "target_force_rmse_ev_per_a = 0.0001");
    let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("folds")).collect();
    let text = format!(
        "{}\n[potential.pace]\nfunctions_per_element = 6\nmax_iterations = 10\n\n\
         [potential.reference]\natom_energies_ev = {{ Cu = {REFERENCE_EV} }}\n{extra}",
        text.join("\n")
    );
    let path = dir.join("pace.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every process group whose command line names `needle` (this test's run directory).
fn process_groups_naming(needle: &str) -> Vec<i32> {
    let mut groups = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        if !String::from_utf8_lossy(&cmdline).contains(needle) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // pgid is the 3rd field after the command name in parentheses
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        let pgid: i32 = after.split_whitespace().nth(2).unwrap().parse().unwrap();
        if pgid > 1 && !groups.contains(&pgid) {
            groups.push(pgid);
        }
    }
    groups
}

fn loop_status(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&ok(&["status", "--dir", dir.to_str().unwrap(), "--json"]).stdout).unwrap()
}

#[test]
fn pace_loop_two_generations_killed_mid_fit_then_resumed() {
    if !pacemaker_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();

    // Refused at their keys before any work: k-fold (K Pacemaker fits), LAMMPS exploration,
    // a ZBL reference.
    for (from, to, key) in [
        ("test_fraction = 0.25 ", "folds = 5\ntest_fraction = 0.25 ", "fit.folds"),
        ("[explore] ", "[explore]\nengine = \"lammps\" ", "explore.engine"),
        ("[potential.reference]", "[potential.reference]\nzbl_inner_a = 1.5\nzbl_outer_a = 2.0", "zbl_inner_a"),
    ] {
        let cfg = config(tmp.path(), "");
        let text = std::fs::read_to_string(&cfg).unwrap();
        assert!(text.contains(from), "{from:?} not in the example");
        std::fs::write(&cfg, text.replacen(from, to, 1)).unwrap();
        let out = run(&["run", cfg.to_str().unwrap(), "--dir", d]);
        assert!(!out.status.success() && stderr(&out).contains(key), "{key}: {}", stderr(&out));
        assert!(!dir.join("autopipe.db").exists());
    }

    let cfg = config(tmp.path(), "");
    let cfg_s = cfg.to_str().unwrap();
    // Pacemaker missing: refused before any labelling.
    let out = autopipe()
        .args(["run", cfg_s, "--dir", d])
        .env("AUTOPIPE_PACE_PYTHON", "/nonexistent/bin/python")
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("Pacemaker is not installed"), "{}", stderr(&out));
    assert!(!dir.join("autopipe.db").exists());
    // Killed while Pacemaker fits generation 0: the orchestrator's process group and the
    // fit job's (which runs in its own group) get SIGKILL, as when the machine goes down.
    let mut child = {
        use std::os::unix::process::CommandExt;
        autopipe()
            .args(["run", cfg_s, "--dir", d])
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let fit0 = dir.join("fits").join("gen-000");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !fit0.join("pacemaker.log").is_file() {
        assert!(Instant::now() < deadline, "Pacemaker never started on generation 0");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before Pacemaker started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    let groups = process_groups_naming(d);
    assert!(groups.contains(&(child.id() as i32)), "the orchestrator's group among {groups:?}");
    assert!(groups.len() >= 2, "the fit job runs in its own group: {groups:?}");
    for g in groups {
        // SAFETY: SIGKILL to process groups this test started.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    child.wait().unwrap();
    assert!(!fit0.join("result.json").exists(), "killed before the fit finished");
    assert_eq!(loop_status(&dir)["phase"], "fit");

    let out = run_loop(&[cfg_s, "--dir", d]);
    let log = stderr(&out);
    eprintln!("{log}");
    assert!(log.contains("Pacemaker ACE (6 functions per element"), "{log}");
    let s = loop_status(&dir);
    assert_eq!(s["phase"], "finished", "{s}");
    assert_eq!(s["generation"], 1, "{s}");
    let gens = s["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{s}");
    for g in gens {
        // the pace model's errors, on held-out labels, evaluated with Pacemaker's calculator
        let f = g["test_force_rmse_ev_per_a"].as_f64().expect("a test force RMSE");
        let e = g["test_energy_rmse_ev_per_atom"].as_f64().expect("a test energy RMSE");
        assert!(f > 0.0 && f < 2.0 && e < 1.0, "{g}");
        assert_eq!(g["metrics"]["kind"], "pace", "{g}");
        assert!(g["metrics"]["fit_s"].as_f64().unwrap() > 0.0);
        // γ of Pacemaker's active set: finite, positive
        let gamma = g["explore"]["max_gamma"].as_f64().expect("a max γ from the pace calculator");
        assert!(gamma > 0.0 && gamma < 1e3, "{g}");
    }
    // Generation 1 labelled MD frames chosen by their γ under the generation 0 pace model.
    assert_eq!(gens[1]["n_labelled"], 4, "{s}");
    assert_eq!(gens[0]["explore"]["n_selected_for_next"], 4, "{s}");
    let labels = autopipe_atoms::extxyz::read_extxyz_file(&dir.join("labels.xyz")).unwrap();
    let md: Vec<_> = labels.into_iter().filter(|f| autopipe_potential::frame_group(f) == "md").collect();
    assert_eq!(md.len(), 4, "four MD frames among the labels");
    // Their γ under the generation 0 model, evaluated again by `potential eval` (a fresh
    // Pacemaker calculator), is among the γ the MD segment recorded for its candidates.
    let result = dir.join("explore").join("gen-000").join("T1200").join("result.json");
    let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(result).unwrap()).unwrap();
    let recorded: Vec<f64> = result["candidates"].as_array().unwrap().iter().map(|c| c[1].as_f64().unwrap()).collect();
    let model0 = dir.join("models").join("gen-000.json");
    for (k, f) in md.iter().enumerate() {
        let one = tmp.path().join(format!("md-{k}.xyz"));
        autopipe_atoms::extxyz::write_extxyz_file(&one, std::slice::from_ref(f)).unwrap();
        let fig =
            figures(&stdout(&ok(&["potential", "eval", one.to_str().unwrap(), "--model", model0.to_str().unwrap()])));
        let gamma = fig["max_gamma"];
        assert!(
            recorded.iter().any(|g| (g - gamma).abs() <= 1e-6 * g.abs().max(1.0)),
            "MD frame {k}: γ {gamma} is not among the segment's candidates' {recorded:?}"
        );
    }
    // The model files say their kind; SNAP-only readers refuse them clearly.
    let model = dir.join(s["model"].as_str().unwrap());
    let text = std::fs::read_to_string(&model).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["kind"], "pace");
    assert_eq!(json["reference_energies_ev"]["Cu"], REFERENCE_EV);
    assert_eq!(json["provenance"]["generation"], 1);
    let out = run(&["export", "--dir", d, "--lammps", tmp.path().join("lmp").to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("Pacemaker ACE model"), "{}", stderr(&out));
    let out = run(&["md", "--model", model.to_str().unwrap(), "--steps", "2", "--out", "/dev/null"]);
    assert!(!out.status.success() && stderr(&out).contains("Pacemaker ACE model"), "{}", stderr(&out));

    // The reference energy: Pacemaker fitted energy minus 3 eV per atom ...
    let fit1 = dir.join("fits").join("gen-001");
    let py = autopipe_workflow::pace_job::pace_python();
    let check = std::process::Command::new(&py)
        .arg("-c")
        .arg(
            "import pandas as pd, sys; d = pd.read_pickle(sys.argv[1], compression='gzip'); \
             print(max(abs(r.energy - r.energy_corrected - 3.0 * len(r.ase_atoms)) for r in d.itertuples()))",
        )
        .arg(fit1.join("data.pckl.gzip"))
        .output()
        .unwrap();
    let worst: f64 = String::from_utf8_lossy(&check.stdout).trim().parse().expect("the dataset's check");
    assert!(worst < 1e-9, "energy_corrected = energy - 3 eV x atoms, off by {worst}");
    // ... and added back: the final model on every label (EMT energies near 0 eV/atom)
    // misses by far less than the 3 eV/atom reference.
    let fig = figures(&stdout(&ok(&["potential", "eval", dir.join("labels.xyz").to_str().unwrap(), "--dir", d])));
    assert!(
        fig["energy_rmse"] < 300.0,
        "energy RMSE {} meV/atom: the reference was not added back",
        fig["energy_rmse"]
    );
    assert!(fig["force_rmse"] < 1.0, "{fig:?}");

    // A rerun of the finished loop starts no fit.
    let stamp = |g: &str| std::fs::metadata(dir.join("fits").join(g).join("result.json")).unwrap().modified().unwrap();
    let before = (stamp("gen-000"), stamp("gen-001"));
    let out = run_loop(&[cfg_s, "--dir", d]);
    assert!(!stderr(&out).contains("fitting Pacemaker"), "{}", stderr(&out));
    assert_eq!((stamp("gen-000"), stamp("gen-001")), before);
    assert_eq!(loop_status(&dir)["labels"], s["labels"]);
}
