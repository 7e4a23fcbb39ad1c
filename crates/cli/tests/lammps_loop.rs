//! The learning loop with LAMMPS as the exploration engine (`explore.engine = "lammps"`):
//! the cu-emt example converges, and a large start cell is explored in LAMMPS and sends
//! cells cut around its uncertain atoms to the oracle, whose buffer forces the fit
//! ignores (the `force_weight` column of `labels.xyz`).
//!
//! Needs LAMMPS with ML-SNAP: `lmp` on PATH (the README's test command puts
//! /opt/autopipe-venv/bin there; `scripts/install-test-deps.sh` installs it).

mod common;
use autopipe_atoms::extxyz::{read_extxyz_file, write_extxyz_file};
use autopipe_atoms::frame::ArrayValue;
use autopipe_atoms::{Element, Frame, InfoValue};
use common::*;
use std::path::Path;

fn lammps_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = stdout(&ok(&["init", "--example", "cu-emt"]));
    let text = text.replacen("[explore]", &format!("[explore]\nengine = \"lammps\"\n{extra}"), 1);
    let config = dir.join("cu-emt.toml");
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn cu_emt_converges_exploring_in_lammps() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = lammps_config(dir, "");
    let out = ok(&["run", config.to_str().unwrap()]);
    eprintln!("{}", stderr(&out));
    let status: serde_json::Value =
        serde_json::from_slice(&ok(&["status", "--dir", dir.to_str().unwrap(), "--json"]).stdout).unwrap();
    assert_eq!(status["converged"], true, "{status}");
    assert!(status["labels"].as_u64().unwrap() <= 150, "{status}");
    // every segment ran in LAMMPS, with the gamma watch
    let mut segments = 0;
    for g in std::fs::read_dir(dir.join("explore")).unwrap() {
        for s in std::fs::read_dir(g.unwrap().path()).unwrap() {
            let s = s.unwrap().path();
            let input = std::fs::read_to_string(s.join("in.lammps")).unwrap();
            assert!(input.contains("pair_style snap") && input.contains("fix gamma_halt all halt"), "{input}");
            assert!(std::fs::read_to_string(s.join("log.lammps")).unwrap().contains("Loop time"));
            segments += 1;
        }
    }
    assert!(segments >= 3, "{segments} segments");
}

#[test]
fn large_start_cell_sends_extracted_cells_with_core_force_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cu = Element::from_symbol("Cu").unwrap();
    let big = autopipe_build::supercell(&autopipe_build::bulk(autopipe_build::Lattice::Fcc, cu, 3.61), [5, 5, 5]);
    write_extxyz_file(&dir.join("big.xyz"), &[Frame::from_structure(big)]).unwrap();
    let config = lammps_config(dir, "start_file = \"big.xyz\"\nextract_above_atoms = 100\nextract_buffer_a = 1.5\n");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("temperatures_k = [300, 900, 1500]", "temperatures_k = [1500]")
        .replace("steps = 1000", "steps = 300")
        .replace("max_generations = 7", "max_generations = 2")
        .replace("per_generation = 20", "per_generation = 4");
    std::fs::write(&config, text).unwrap();
    let out = run_loop(&[config.to_str().unwrap()]);
    eprintln!("{}", stderr(&out));
    let labels = read_extxyz_file(&dir.join("labels.xyz")).unwrap();
    let extracted: Vec<&Frame> = labels.iter().filter(|f| f.arrays.contains_key("force_weight")).collect();
    assert!(!extracted.is_empty(), "no extracted cell was labelled");
    for f in &extracted {
        assert!(matches!(f.info.get("config_type"), Some(InfoValue::Str(t)) if t == "md"));
        assert!(f.len() < 500 && f.len() > 50, "{} atoms", f.len());
        let Some(ArrayValue::Real { values, .. }) = f.arrays.get("force_weight") else { panic!("not reals") };
        assert_eq!(values[0], 1.0);
        assert_eq!(values.iter().sum::<f64>(), 1.0);
    }
}
