//! A labelling campaign with the real Quantum ESPRESSO: 20 Si cells, 2 workers, the
//! orchestrator killed with SIGKILL mid-run and restarted. Needs pw.x
//! (`apt-get install quantum-espresso`; the README's test command installs it).

mod common;
use autopipe_atoms::extxyz::write_extxyz_file;
use autopipe_atoms::{Element, Frame, Structure};
use common::*;
use std::time::{Duration, Instant};

const N: u64 = 20;

fn si2_cells(n: usize) -> Vec<Frame> {
    let si = Element::from_symbol("Si").unwrap();
    let a = 5.43;
    (0..n)
        .map(|k| {
            // Primitive diamond cell, strained by up to ±2% and rattled, reproducibly.
            let e = 0.02 * ((k as f64 * 0.37).sin());
            let h = a / 2.0 * (1.0 + e);
            let d = 0.01 * ((k as f64 * 1.3).cos());
            let s = Structure::new(
                [[0.0, h, h], [h, 0.0, h], [h, h, 0.0]],
                vec![[0.0, 0.0, 0.0], [h / 2.0 + d, h / 2.0 - d, h / 2.0]],
                vec![si, si],
                [true; 3],
            )
            .unwrap();
            Frame::from_structure(s)
        })
        .collect()
}

#[test]
fn qe_campaign_survives_kill_9_without_repeating_labels() {
    assert!(
        std::process::Command::new("sh")
            .args(["-c", "command -v pw.x"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false),
        "pw.x not found: apt-get install quantum-espresso (the README's test command does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = dir.to_str().unwrap();
    let config = dir.join("si-qe.toml");
    let text = stdout(&ok(&["init", "--example", "si-qe"]))
        .replace("ecutwfc_ry = 25.0", "ecutwfc_ry = 20.0")
        .replace("kspacing_per_a = 0.5 ", "kpoints = [2, 2, 2] ");
    std::fs::write(&config, text).unwrap();
    let xyz = dir.join("si2.xyz");
    write_extxyz_file(&xyz, &si2_cells(N as usize)).unwrap();
    ok(&["jobs", "import", xyz.to_str().unwrap(), "--dir", d, "--config", config.to_str().unwrap()]);

    let mut child = autopipe().args(["jobs", "run", "--dir", d, "--workers", "2"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        assert!(Instant::now() < deadline, "no progress with pw.x");
        assert!(child.try_wait().unwrap().is_none(), "finished before the kill");
        if count(&status_json(dir), "done") >= 6 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(count(&status_json(dir), "done") < N);

    ok(&["jobs", "run", "--dir", d, "--workers", "2"]);
    let s = status_json(dir);
    assert_eq!(count(&s, "done"), N, "{s}");
    let executions = s["executions"].as_u64().unwrap();
    eprintln!("{N} pw.x labels after a kill: {executions} executions");
    assert!(executions <= N + 2, "{executions} executions for {N} labels");

    // The labels are DFT numbers: Si2 near equilibrium is about -15.8 Ry per cell
    // (-7.9 Ry = -107.5 eV per atom) with this pseudopotential, and the forces sum to
    // zero (no net force on a periodic cell).
    let out = dir.join("labels.xyz");
    ok(&["jobs", "export", "--dir", d, out.to_str().unwrap()]);
    let frames = autopipe_atoms::extxyz::read_extxyz_file(&out).unwrap();
    assert_eq!(frames.len() as u64, N);
    for f in &frames {
        let e_per_atom = f.energy_ev.unwrap() / 2.0;
        assert!((-109.0..-105.0).contains(&e_per_atom), "{e_per_atom} eV/atom");
        let forces = f.forces_ev_per_a.as_ref().unwrap();
        for c in 0..3 {
            assert!((forces[0][c] + forces[1][c]).abs() < 1e-3, "{forces:?}");
        }
        assert!(f.stress_ev_per_a3.is_some());
    }
}
