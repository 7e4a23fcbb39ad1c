//! The VASP and ORCA runners (`vasp::run_vasp`, `orca::run_orca`) with FAKE programs.
//!
//! VASP and ORCA are licensed and cannot be installed here, so these tests do not run
//! them. Each test writes a small shell script into a temporary directory that plays the
//! engine: it records where and how it was started, checks that the input files are
//! there, and copies a REAL output from tests/data/{vasp,orca} (see SOURCES.md there)
//! into the job directory or to stdout. What is tested is the adapter's plumbing: the
//! input files written into the job directory, the command run there, the output found
//! and parsed (vasprun.xml, the OUTCAR fallback, orca.out and orca.engrad), VASP's
//! forces mapped back from POSCAR order (species grouped) to our atom order for a
//! structure whose species are interleaved (Cu Au Cu Au), and clear errors when the
//! program is missing or dies. The physics of real runs is not tested here.

use autopipe_atoms::{Element, Structure};
use autopipe_engines::orca::{self, parse_engrad, OrcaSettings};
use autopipe_engines::output::{RunError, RunStatus};
use autopipe_engines::vasp::{self, parse_poscar, VaspSettings};
use std::path::{Path, PathBuf};

fn data(engine: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(engine).join(file)
}

fn el(s: &str) -> Element {
    Element::from_symbol(s).unwrap()
}

/// Write an executable script (closed before anyone runs it).
fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a.canonicalize().unwrap() == b.canonicalize().unwrap()
}

// ---------------------------------------------------------------------------------
// VASP
// ---------------------------------------------------------------------------------

/// Cu Au Cu Au in a 4 Å cube: POSCAR order is Cu(0) Cu(2) Au(1) Au(3).
fn cuau() -> Structure {
    Structure::new(
        [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]],
        vec![[0.0, 0.0, 0.0], [2.0, 2.0, 0.0], [2.0, 0.0, 2.0], [0.0, 2.0, 2.0]],
        vec![el("Cu"), el("Au"), el("Cu"), el("Au")],
        [true; 3],
    )
    .unwrap()
}

/// The force we want back on atom `i` of our structure.
fn wanted_force(i: usize) -> [f64; 3] {
    let x = (i + 1) as f64;
    [0.1 * x, -0.01 * x, 0.001 * x]
}

/// The real vasprun_pstress.xml (ASE's test file) with its forces array replaced by
/// four rows in POSCAR order, so that the mapping back to our order is visible.
fn fake_vasprun_cuau(structure: &Structure) -> String {
    let xml = std::fs::read_to_string(data("vasp", "vasprun_pstress.xml")).unwrap();
    let start = xml.find("<varray name=\"forces\" >").unwrap();
    let end = start + xml[start..].find("</varray>").unwrap() + "</varray>".len();
    let mut rows = String::from("<varray name=\"forces\" >\n");
    for i in vasp::poscar_atom_order(structure) {
        let f = wanted_force(i);
        rows.push_str(&format!("   <v> {:16.8} {:16.8} {:16.8} </v>\n", f[0], f[1], f[2]));
    }
    rows.push_str("  </varray>");
    format!("{}{}{}", &xml[..start], rows, &xml[end..])
}

fn fake_potcar(p: &Path) -> std::io::Result<String> {
    Ok(format!("  PAW_PBE fake POTCAR read from {}\n", p.display()))
}

fn vasp_settings(command: String) -> VaspSettings {
    let mut s = VaspSettings { command, potcar_dir: "/potcars".into(), kpoints: Some([2, 2, 2]), ..Default::default() };
    s.potcars.insert("Cu".into(), "Cu_pv".into());
    s
}

/// The fake VASP: checks its inputs, records its working directory and arguments,
/// copies the given outputs into place.
fn fake_vasp(dir: &Path, copies: &[(&Path, &str)]) -> PathBuf {
    let script = dir.join("fake_vasp.sh");
    let mut body = String::from(
        "for f in POSCAR INCAR KPOINTS POTCAR; do test -s \"$f\" || { echo \"fake vasp: no $f\" >&2; exit 7; }; done\n\
         pwd > fake_ran_in.txt\necho \"$@\" > fake_args.txt\necho ' running on    1 total cores'\n",
    );
    for (from, to) in copies {
        body.push_str(&format!("cp '{}' '{to}'\n", from.display()));
    }
    write_script(&script, &body);
    script
}

#[test]
fn vasp_writes_inputs_runs_in_job_dir_parses_vasprun_and_maps_forces_back() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    std::fs::create_dir(&job).unwrap();
    let s = cuau();
    let fixture = tmp.path().join("vasprun_cuau.xml");
    std::fs::write(&fixture, fake_vasprun_cuau(&s)).unwrap();
    // stale outputs of an earlier attempt must not be read
    std::fs::write(job.join("OUTCAR"), "stale").unwrap();
    let script = fake_vasp(tmp.path(), &[(&fixture, "vasprun.xml")]);
    // a shell line, as a user's "mpirun -np 4 vasp_std" is
    let settings = vasp_settings(format!("sh {} --fake-flag", script.display()));

    let p = vasp::run_vasp(&job, &s, &settings, fake_potcar).unwrap();

    // inputs in the job directory
    let poscar = parse_poscar(&std::fs::read_to_string(job.join("POSCAR")).unwrap()).unwrap();
    assert_eq!(poscar.species, vec![el("Cu"), el("Cu"), el("Au"), el("Au")]);
    assert_eq!(poscar.positions_a[1], s.positions_a[2]);
    let incar = std::fs::read_to_string(job.join("INCAR")).unwrap();
    assert!(incar.contains("ENCUT = 520\n") && incar.contains("NELM = 100\n"), "{incar}");
    assert!(std::fs::read_to_string(job.join("KPOINTS")).unwrap().contains("Gamma\n2 2 2\n"));
    let potcar = std::fs::read_to_string(job.join("POTCAR")).unwrap();
    let cu = potcar.find("/potcars/Cu_pv/POTCAR").expect("Cu_pv POTCAR");
    let au = potcar.find("/potcars/Au/POTCAR").expect("Au POTCAR");
    assert!(cu < au, "POTCAR order must be POSCAR order:\n{potcar}");
    // the command ran in the job directory through sh -c, with its arguments
    assert!(same_dir(Path::new(std::fs::read_to_string(job.join("fake_ran_in.txt")).unwrap().trim()), &job));
    assert_eq!(std::fs::read_to_string(job.join("fake_args.txt")).unwrap().trim(), "--fake-flag");
    assert!(std::fs::read_to_string(job.join("vasp.out")).unwrap().contains("total cores"));
    assert!(!job.join("OUTCAR").exists(), "the stale OUTCAR was removed before the run");

    // the output parsed: the real fixture's energy and stress, our forces in our order
    assert_eq!(p.status, RunStatus::Converged, "{:?}", p.message);
    assert!((p.energy_ev.unwrap() - -20.246_959_37).abs() < 1e-8, "{:?}", p.energy_ev);
    assert_eq!(p.scf_steps, Some(9));
    assert!((p.stress_ev_per_a3.unwrap()[0] - 0.103_606_320_475_149_32).abs() < 1e-9);
    let f = p.forces_ev_per_a.as_ref().unwrap();
    assert_eq!(f.len(), 4);
    for (i, fi) in f.iter().enumerate() {
        for k in 0..3 {
            assert!((fi[k] - wanted_force(i)[k]).abs() < 1e-12, "atom {i} ({}): {fi:?}", s.species[i]);
        }
    }
    assert!(
        (p.max_force_ev_per_a.unwrap() - (0.4f64.powi(2) + 0.04f64.powi(2) + 0.004f64.powi(2)).sqrt()).abs() < 1e-9
    );
    let labels = p.to_labels().expect("labels");
    assert_eq!(labels.forces_ev_per_a[1], wanted_force(1));
}

#[test]
fn vasp_falls_back_to_outcar_when_vasprun_is_truncated() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().to_path_buf();
    // OUTCAR_example_1 (ASE's test file): 18 Ni atoms, NSW 0
    let positions: Vec<[f64; 3]> =
        (0..18).map(|i| [(i % 3) as f64 * 2.5, (i / 3 % 3) as f64 * 2.5, (i / 9) as f64 * 2.5]).collect();
    let s =
        Structure::new([[7.5, 0.0, 0.0], [0.0, 7.5, 0.0], [0.0, 0.0, 5.0]], positions, vec![el("Ni"); 18], [true; 3])
            .unwrap();
    let script = fake_vasp(
        &job,
        &[
            (&data("vasp", "vasprun_pstress_truncated.xml"), "vasprun.xml"),
            (&data("vasp", "OUTCAR_example_1"), "OUTCAR"),
        ],
    );
    let settings = vasp_settings(format!("sh {}", script.display()));
    let p = vasp::run_vasp(&job, &s, &settings, fake_potcar).unwrap();
    assert_eq!(p.status, RunStatus::Converged, "{:?}", p.message);
    assert!((p.energy_ev.unwrap() - -68.228_685_32).abs() < 1e-9);
    assert_eq!(p.wall_time_s, Some(124.967));
    assert_eq!(p.scf_steps, Some(63));
    assert_eq!(p.forces_ev_per_a.as_ref().unwrap().len(), 18);
    assert!(p.message.as_deref().unwrap().contains("read from OUTCAR: vasprun.xml is truncated"), "{:?}", p.message);

    // with only the truncated vasprun.xml, the run is reported truncated (no labels)
    let script = fake_vasp(&job, &[(&data("vasp", "vasprun_pstress_truncated.xml"), "vasprun.xml")]);
    let p = vasp::run_vasp(&job, &s, &vasp_settings(format!("sh {}", script.display())), fake_potcar).unwrap();
    assert_eq!(p.status, RunStatus::Truncated, "{:?}", p.message);
    assert!(p.to_labels().is_none());
}

#[test]
fn vasp_missing_program_or_crash_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let settings = vasp_settings("autopipe-no-such-vasp-binary -x".into());
    match vasp::run_vasp(tmp.path(), &cuau(), &settings, fake_potcar) {
        Err(e @ RunError::Spawn { .. }) => {
            let m = e.to_string();
            assert!(
                m.contains("autopipe-no-such-vasp-binary") && m.contains("licensed") && m.contains("vasp_std"),
                "{m}"
            );
        }
        other => panic!("expected a Spawn error, got {other:?}"),
    }
    // no POTCAR directory: a settings error before anything runs
    let no_dir = VaspSettings { potcar_dir: String::new(), ..settings.clone() };
    assert!(
        matches!(vasp::run_vasp(tmp.path(), &cuau(), &no_dir, fake_potcar), Err(RunError::Settings(m)) if m.contains("potcar_dir"))
    );
    // the POTCAR reader's error names the file
    let r = vasp::run_vasp(tmp.path(), &cuau(), &settings, |_| Err(std::io::Error::other("no such POTCAR")));
    assert!(matches!(r, Err(RunError::Io { path, .. }) if path.contains("Cu_pv")));
    // a VASP that dies before writing anything: crashed, with the exit code and stderr
    let crash = vasp_settings("echo 'forrtl: severe (174): SIGSEGV' >&2; exit 139".into());
    let p = vasp::run_vasp(tmp.path(), &cuau(), &crash, fake_potcar).unwrap();
    assert_eq!(p.status, RunStatus::Crashed);
    let m = p.message.unwrap();
    assert!(m.contains("exit code 139") && m.contains("SIGSEGV"), "{m}");
    // POTCARs from disk: a missing directory names the POTCAR path
    let disk = VaspSettings { potcar_dir: tmp.path().join("nope").display().to_string(), ..settings };
    assert!(
        matches!(vasp::run_vasp_with_potcar_dir(tmp.path(), &cuau(), &disk), Err(RunError::Io { path, .. }) if path.ends_with("Cu_pv/POTCAR"))
    );
}

// ---------------------------------------------------------------------------------
// ORCA
// ---------------------------------------------------------------------------------

/// The water molecule of tests/data/orca/water_engrad.out (O, H, H).
fn water() -> Structure {
    Structure::new(
        [[0.0; 3]; 3],
        vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        vec![el("O"), el("H"), el("H")],
        [false; 3],
    )
    .unwrap()
}

/// Run ORCA, retrying when the fake program was still open for writing in a process
/// forked by another test thread at that moment (ETXTBSY, a test-only race).
fn run_orca_retrying(
    job: &Path,
    s: &Structure,
    settings: &OrcaSettings,
) -> Result<autopipe_engines::output::ParsedOutput, RunError> {
    for _ in 0..50 {
        match orca::run_orca(job, s, settings) {
            Err(RunError::Spawn { error, .. }) if error.contains("Text file busy") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            r => return r,
        }
    }
    panic!("ETXTBSY 50 times");
}

#[test]
fn orca_writes_input_runs_in_job_dir_and_reads_output_and_engrad() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    std::fs::create_dir(&job).unwrap();
    let fake = tmp.path().join("orca");
    write_script(
        &fake,
        &format!(
            "test -s \"$1\" || {{ echo \"fake orca: no input $1\" >&2; exit 2; }}\n\
             grep -q '^\\* xyz 0 1' \"$1\" || exit 3\n\
             pwd > fake_ran_in.txt\necho \"$@\" > fake_args.txt\n\
             cat '{}'\ncp '{}' orca.engrad\n",
            data("orca", "water_engrad.out").display(),
            data("orca", "water.engrad").display()
        ),
    );
    let settings = OrcaSettings { command: fake.display().to_string(), ..Default::default() };
    let p = run_orca_retrying(&job, &water(), &settings).unwrap();

    let inp = std::fs::read_to_string(job.join("orca.inp")).unwrap();
    assert!(inp.starts_with("! PBE0 def2-TZVP EnGrad\n"), "{inp}");
    assert!(same_dir(Path::new(std::fs::read_to_string(job.join("fake_ran_in.txt")).unwrap().trim()), &job));
    assert_eq!(std::fs::read_to_string(job.join("fake_args.txt")).unwrap().trim(), "orca.inp");
    assert!(std::fs::read_to_string(job.join("orca.out")).unwrap().contains("ORCA TERMINATED NORMALLY"));

    assert_eq!(p.status, RunStatus::Converged, "{:?}", p.message);
    assert!((p.energy_ev.unwrap() - -76.422_436_201_230 * orca::ORCA_HARTREE_TO_EV).abs() < 1e-9);
    // forces from orca.engrad (12 decimals), not the printed gradient (9 decimals)
    let engrad = parse_engrad(&std::fs::read_to_string(data("orca", "water.engrad")).unwrap()).unwrap();
    assert_eq!(p.forces_ev_per_a.as_ref().unwrap(), &engrad.forces_ev_per_a);
    let fx = -(-0.047_131_484_960) * orca::HARTREE_PER_BOHR_TO_EV_PER_A;
    assert!((p.forces_ev_per_a.as_ref().unwrap()[0][0] - fx).abs() < 1e-12);
    assert!(p.to_labels().is_some());
}

#[test]
fn orca_without_engrad_uses_the_printed_gradient_and_ignores_a_stale_engrad() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job");
    std::fs::create_dir(&job).unwrap();
    std::fs::write(job.join("orca.engrad"), "# stale\n 3\n -1.0\n 9 9 9 9 9 9 9 9 9\n").unwrap();
    let fake = tmp.path().join("orca");
    write_script(&fake, &format!("cat '{}'\n", data("orca", "water_engrad.out").display()));
    let p =
        run_orca_retrying(&job, &water(), &OrcaSettings { command: fake.display().to_string(), ..Default::default() })
            .unwrap();
    assert_eq!(p.status, RunStatus::Converged, "{:?}", p.message);
    let f = p.forces_ev_per_a.unwrap();
    assert!((f[0][0] - 0.047_131_485 * orca::HARTREE_PER_BOHR_TO_EV_PER_A).abs() < 1e-12, "{f:?}");
    assert!(!job.join("orca.engrad").exists());
}

#[test]
fn orca_truncated_or_crashed_runs_are_not_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("orca");
    // dies (exit 1) after a truncated output
    write_script(
        &fake,
        &format!(
            "cat '{}'\necho 'fake orca: out of memory' >&2\nexit 1\n",
            data("orca", "water_engrad_truncated.out").display()
        ),
    );
    let p = run_orca_retrying(
        tmp.path(),
        &water(),
        &OrcaSettings { command: fake.display().to_string(), ..Default::default() },
    )
    .unwrap();
    assert_eq!(p.status, RunStatus::Crashed, "{:?}", p.message);
    assert!(p.message.as_deref().unwrap().contains("out of memory"), "{:?}", p.message);
    assert!(p.to_labels().is_none());
}

#[test]
fn orca_missing_program_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    for command in ["/nonexistent/dir/orca", "autopipe-no-such-orca-binary"] {
        let settings = OrcaSettings { command: command.into(), ..Default::default() };
        match orca::run_orca(tmp.path(), &water(), &settings) {
            Err(e @ RunError::Spawn { .. }) => {
                let m = e.to_string();
                assert!(m.contains(command) && m.contains("orcaforum") && m.contains("full"), "{m}");
            }
            other => panic!("{command}: expected a Spawn error, got {other:?}"),
        }
    }
    let periodic = Structure { pbc: [true; 3], cell_a: [[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 9.0]], ..water() };
    assert!(matches!(orca::run_orca(tmp.path(), &periodic, &OrcaSettings::default()), Err(RunError::Settings(_))));
}

// ---------------------------------------------------------------------------------
// Every runner: a stale output that cannot be removed stops the run before it starts
// ---------------------------------------------------------------------------------

/// A directory (with a file in it) where an earlier run's output would be: removing it
/// fails for real (EISDIR), not with NotFound. The runner must refuse to start the
/// engine, naming the file, rather than let the old output be read as the new run's.
#[test]
fn a_stale_output_that_cannot_be_removed_stops_every_runner_before_the_engine_starts() {
    use autopipe_engines::cp2k::{self, Cp2kSettings};
    use autopipe_engines::qe::{self, QeSettings};
    use autopipe_engines::spec::{EngineOutcome, EngineSpec};
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("fake_engine.sh");
    write_script(&fake, "touch fake_ran\n");
    let cu =
        Structure::new([[3.6, 0.0, 0.0], [0.0, 3.6, 0.0], [0.0, 0.0, 3.6]], vec![[0.0; 3]], vec![el("Cu")], [true; 3])
            .unwrap();
    let job_with_stale = |name: &str, stale: &str| {
        let job = tmp.path().join(name);
        std::fs::create_dir_all(job.join(stale)).unwrap();
        std::fs::write(job.join(stale).join("old"), "from an earlier run").unwrap();
        job
    };
    let check = |job: &Path, stale: &str, message: String| {
        assert!(message.contains(&job.join(stale).display().to_string()), "{message}");
        assert!(message.contains("cannot remove the output of an earlier run"), "{message}");
        assert!(!job.join("fake_ran").exists(), "the engine ran beside a stale {stale}");
    };
    let io_message = |r: Result<autopipe_engines::output::ParsedOutput, RunError>| match r {
        Err(e @ RunError::Io { .. }) => e.to_string(),
        other => panic!("expected an I/O error, got {other:?}"),
    };

    let job = job_with_stale("qe", "out/pw.xml");
    let mut settings = QeSettings { command: fake.display().to_string(), ..Default::default() };
    settings.pseudopotentials.insert("Cu".into(), "Cu.paw.UPF".into());
    check(&job, "out/pw.xml", io_message(qe::run_pw(&job, &cu, &settings)));

    let job = job_with_stale("cp2k", "cp2k.out");
    let mut settings = Cp2kSettings { command: fake.display().to_string(), ..Default::default() };
    settings.basis_sets.insert("Cu".into(), "DZVP-MOLOPT-SR-GTH".into());
    settings.potentials.insert("Cu".into(), "GTH-PBE-q11".into());
    check(&job, "cp2k.out", io_message(cp2k::run_cp2k(&job, &cu, &settings)));

    let job = job_with_stale("vasp", "OUTCAR");
    let settings = vasp_settings(format!("sh {}", fake.display()));
    check(&job, "OUTCAR", io_message(vasp::run_vasp(&job, &cu, &settings, fake_potcar)));

    let job = job_with_stale("orca", "orca.engrad");
    let settings = OrcaSettings { command: fake.display().to_string(), ..Default::default() };
    check(&job, "orca.engrad", io_message(orca::run_orca(&job, &water(), &settings)));

    let job = job_with_stale("command", "output.xyz");
    let spec = EngineSpec::Command { command: "touch fake_ran".into(), label_params: Default::default() };
    match spec.run(&job, &cu) {
        EngineOutcome::Error { message } => check(&job, "output.xyz", message),
        other => panic!("expected an error, got {other:?}"),
    }
}
