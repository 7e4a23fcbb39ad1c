//! `autopipe init --elements ... --goal ... --oracle ...`: configurations made for the
//! goals, with QE's real pseudopotential files (their suggested cutoffs), that
//! `autopipe validate` accepts; clear errors for what cannot be made. (Every combination
//! of goals and oracles is parsed in crates/workflow/src/goal_init.rs.)

mod common;

use common::{ok, run, stderr, stdout};

fn validate(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goal.toml");
    std::fs::write(&path, text).unwrap();
    stdout(&ok(&["validate", path.to_str().unwrap()]))
}

#[test]
fn si_elastic_with_qe_reads_the_pseudopotentials() {
    let text = stdout(&ok(&["init", "--elements", "Si", "--goal", "elastic", "--oracle", "qe"]));
    // The PBE file with the lowest suggested cutoff in Debian's quantum-espresso-data
    // (Si.pbe-nl-rrkjus_psl.1.0.0.UPF suggests 44 Ry and 175 Ry; Si.pbe-rrkj.UPF none).
    assert!(text.contains("Si = \"Si.pbe-nl-rrkjus_psl.1.0.0.UPF\""), "{text}");
    assert!(text.contains("ecutwfc_ry = 53.0"), "{text}");
    assert!(text.contains("lattice = \"diamond\"") && text.contains("[goals.elastic]"), "{text}");
    assert!(validate(&text).contains("Si (diamond, 8 atoms per cell"));
}

#[test]
fn several_goals_and_oracles_validate() {
    for args in [
        vec!["--elements", "Cu", "--goal", "elastic,diffusion"],
        vec!["--elements", "Cu,Au", "--goal", "phase_diagram", "--goal", "diffusion", "--oracle", "cp2k"],
        vec!["--elements", "Cu,Ni", "--goal", "elastic,diffusion,phase_diagram", "--oracle", "qe"],
    ] {
        let mut all = vec!["init"];
        all.extend(args.iter());
        let text = stdout(&ok(&all));
        validate(&text);
    }
    // The examples are still there.
    assert!(stdout(&ok(&["init", "--example", "cu-emt"])).contains("engine = \"emt\""));
}

#[test]
fn what_cannot_be_made_is_refused() {
    for (args, message) in [
        (vec!["--elements", "Fe", "--goal", "elastic"], "no parameters for Fe"),
        (vec!["--elements", "Cu", "--goal", "phase_diagram"], "two elements or more"),
        (vec!["--elements", "Cu", "--goal", "melting"], "--goal \"melting\""),
        (vec!["--elements", "Xx", "--goal", "elastic"], "--elements"),
        (vec!["--elements", "Ta", "--goal", "elastic", "--oracle", "qe"], "no PBE pseudopotential for Ta"),
        (vec!["--elements", "Cu", "--goal", "elastic", "--oracle", "vasp"], "--oracle \"vasp\""),
    ] {
        let mut all = vec!["init"];
        all.extend(args.iter());
        let out = run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{args:?}: {}", stderr(&out));
    }
}
