//! Every real output fixture parses to the values verified by hand (expected.json beside
//! the fixtures); empty, binary and random files are ParseErrors, never panics or bogus
//! results.

use autopipe_engines::cp2k::parse_cp2k_output;
use autopipe_engines::orca::parse_orca_output;
use autopipe_engines::output::{ParseError, ParsedOutput, RunStatus};
use autopipe_engines::qe::{parse_pw_output, parse_pw_xml_convergence};
use autopipe_engines::vasp::{parse_outcar, parse_vasprun};
use serde_json::Value;
use std::path::PathBuf;

type Parser = fn(&str, &str) -> Result<ParsedOutput, ParseError>;

fn data(engine: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(engine)
}

fn close(a: f64, b: f64, what: &str) {
    let tol = 1e-9 * b.abs().max(1e-3);
    assert!((a - b).abs() <= tol, "{what}: parsed {a}, expected {b}");
}

fn opt_close(parsed: Option<f64>, expected: &Value, what: &str) {
    match (parsed, expected.as_f64()) {
        (Some(a), Some(b)) => close(a, b, what),
        (None, None) => {}
        (a, _) => panic!("{what}: parsed {a:?}, expected {expected}"),
    }
}

fn check_fixtures(engine: &str, parse: Parser) {
    let dir = data(engine);
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let map = expected.as_object().unwrap();
    assert!(map.len() >= 8, "{engine}: too few fixtures");
    for (file, exp) in map {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 200_000, "{file} is too big for a fixture");
        let p = parse(&text, file).unwrap_or_else(|e| panic!("{engine}/{file}: {e}"));
        let ctx = format!("{engine}/{file}");
        let status: RunStatus = serde_json::from_value(exp["status"].clone()).unwrap();
        assert_eq!(p.status, status, "{ctx}: status (message {:?})", p.message);
        opt_close(p.energy_ev, &exp["energy_ev"], &format!("{ctx} energy"));
        opt_close(p.max_force_ev_per_a, &exp["max_force_ev_per_a"], &format!("{ctx} max force"));
        opt_close(p.wall_time_s, &exp["wall_time_s"], &format!("{ctx} wall time"));
        assert_eq!(p.scf_steps.map(u64::from), exp["scf_steps"].as_u64(), "{ctx}: scf steps");
        match (&p.forces_ev_per_a, exp["forces_ev_per_a"].as_array()) {
            (Some(f), Some(e)) => {
                assert_eq!(f.len(), e.len(), "{ctx}: number of forces");
                for (i, (a, b)) in f.iter().zip(e).enumerate() {
                    for k in 0..3 {
                        close(a[k], b[k].as_f64().unwrap(), &format!("{ctx} force {i}/{k}"));
                    }
                }
            }
            (None, None) => {}
            (a, b) => panic!("{ctx}: forces parsed {a:?}, expected {b:?}"),
        }
        match (&p.stress_ev_per_a3, exp["stress_ev_per_a3"].as_array()) {
            (Some(s), Some(e)) => {
                for k in 0..6 {
                    close(s[k], e[k].as_f64().unwrap(), &format!("{ctx} stress {k}"));
                }
            }
            (None, None) => {}
            (a, b) => panic!("{ctx}: stress parsed {a:?}, expected {b:?}"),
        }
        if let Some(m) = exp.get("message_contains").and_then(Value::as_str) {
            let msg = p.message.clone().unwrap_or_default();
            assert!(msg.contains(m), "{ctx}: message {msg:?} should contain {m:?}");
        }
        // labels only for converged runs with forces (a truncated run keeps its last
        // converged energy, and is still never a label)
        assert_eq!(
            p.to_labels().is_some(),
            status == RunStatus::Converged && p.forces_ev_per_a.is_some(),
            "{ctx}: labels"
        );
        // the JSON printed by `autopipe parse` round-trips
        let j = serde_json::to_string(&p).unwrap();
        let back: ParsedOutput = serde_json::from_str(&j).unwrap();
        assert_eq!(back.status, p.status);
        assert_eq!(back.forces_ev_per_a.as_ref().map(Vec::len), p.forces_ev_per_a.as_ref().map(Vec::len));
        if let (Some(a), Some(b)) = (back.energy_ev, p.energy_ev) {
            close(a, b, &format!("{ctx} energy through JSON"));
        }
    }
}

#[test]
fn qe_fixtures_parse_to_expected_values() {
    check_fixtures("qe", parse_pw_output);
}

#[test]
fn cp2k_fixtures_parse_to_expected_values() {
    check_fixtures("cp2k", parse_cp2k_output);
}

#[test]
fn qe_stress_agrees_with_kbar_columns() {
    // the parser reads the Ry/bohr^3 columns; the kbar columns (2 decimals) must agree
    let text = std::fs::read_to_string(data("qe").join("si2.out")).unwrap();
    let p = parse_pw_output(&text, "si2.out").unwrap();
    let s = p.stress_ev_per_a3.unwrap();
    let i = text.find("total   stress").unwrap();
    let rows: Vec<Vec<f64>> = text[i..]
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().skip(3).map(|x| x.parse().unwrap()).collect())
        .collect();
    let kbar = autopipe_atoms::units::KBAR_IN_EV_PER_A3;
    let from_kbar = [rows[0][0], rows[1][1], rows[2][2], rows[1][2], rows[0][2], rows[0][1]].map(|x| -x * kbar);
    for k in 0..6 {
        assert!((s[k] - from_kbar[k]).abs() < 0.0051 * kbar + 1e-12, "component {k}: {} vs {}", s[k], from_kbar[k]);
    }
    // ASE sign: pw.x reports a positive pressure (compressed cell) -> negative ASE stress
    assert!(s[0] < 0.0 && s[1] < 0.0 && s[2] < 0.0);
}

#[test]
fn qe_xml_convergence_flag() {
    let ok = std::fs::read_to_string(data("qe").join("si2.data-file-schema.xml")).unwrap();
    let bad = std::fs::read_to_string(data("qe").join("scf_not_converged.data-file-schema.xml")).unwrap();
    assert_eq!(parse_pw_xml_convergence(&ok), Some(true));
    assert_eq!(parse_pw_xml_convergence(&bad), Some(false));
    assert_eq!(parse_pw_xml_convergence("<qes></qes>"), None);
}

/// A small deterministic generator (xorshift64*), so the tests need no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn assert_not_output(parse: Parser, text: &str, what: &str, engine_name: &str) {
    match parse(text, "FILE") {
        Err(e @ ParseError::NotAnOutput { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with("FILE is not a "), "{what}: {msg}");
            assert!(msg.contains(engine_name), "{what}: {msg}");
        }
        Err(e) => panic!("{what}: unexpected error kind {e}"),
        Ok(p) => panic!("{what}: parsed as {p:?}"),
    }
}

#[test]
fn empty_binary_and_random_files_are_errors() {
    let parsers: [(Parser, &str); 2] = [(parse_pw_output, "Quantum ESPRESSO pw.x"), (parse_cp2k_output, "CP2K")];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (parse, name) in parsers {
        assert_not_output(parse, "", "empty", name);
        assert_not_output(parse, "  \n\n\t \n", "blank", name);
        // binary: random bytes, lossily decoded as the CLI does
        for _ in 0..50 {
            let n = 1 + rng.below(5000);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let text = autopipe_engines::output::bytes_to_text(&bytes);
            assert_not_output(parse, &text, "random bytes", name);
        }
        // an ELF-like header with NULs
        assert_not_output(parse, "\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0", "elf", name);
        // random printable text, including words the parsers look for
        let words = [
            "total",
            "energy",
            "=",
            "Ry",
            "!",
            "Forces",
            "acting",
            "atom",
            "force",
            "JOB",
            "DONE.",
            "ENERGY|",
            "FORCE_EVAL",
            "SCF",
            "run",
            "converged",
            "-1.5",
            "3.2E-02",
            "%%%%%",
            "*",
            "STRESS|",
            "x",
            "y",
            "z",
            "lorem",
            "ipsum",
            "\n",
            "\n",
            "\n",
        ];
        for _ in 0..50 {
            let n = rng.below(400);
            let text: Vec<&str> = (0..n).map(|_| words[rng.below(words.len())]).collect();
            let text = text.join(" ");
            // must not panic; if it is accepted at all, it must not be a converged label
            if let Ok(p) = parse(&text, "FILE") {
                assert_ne!(p.status, RunStatus::Converged, "random words accepted as converged: {text:?}");
            }
        }
    }
    // one engine's output is not the other's
    let qe = std::fs::read_to_string(data("qe").join("si2.out")).unwrap();
    let cp = std::fs::read_to_string(data("cp2k").join("si2.out")).unwrap();
    assert_not_output(parse_cp2k_output, &qe, "QE output given to the CP2K parser", "CP2K");
    assert_not_output(parse_pw_output, &cp, "CP2K output given to the QE parser", "pw.x");
}

#[test]
fn every_prefix_of_a_fixture_parses_without_panic_and_never_claims_success_early() {
    let mut rng = Rng(42);
    // the end of a pw.x run: `JOB DONE.`, or the final `PWSCF :` timing line (QE 4.0-4.2
    // print no `JOB DONE.`)
    let qe_ended = |t: &str| {
        t.contains("JOB DONE")
            || t.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with("PWSCF") && (l.contains("WALL") || l.contains("wall time"))
            })
    };
    let cp2k_ended = |t: &str| t.contains("PROGRAM ENDED AT");
    for (engine, parse, ended) in [
        ("qe", parse_pw_output as Parser, &qe_ended as &dyn Fn(&str) -> bool),
        ("cp2k", parse_cp2k_output as Parser, &cp2k_ended),
    ] {
        for entry in std::fs::read_dir(data(engine)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("out") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut cuts: Vec<usize> = (0..60).map(|_| rng.below(text.len() + 1)).collect();
            cuts.extend([0, 1, text.len() / 2, text.len()]);
            for cut in cuts {
                let mut cut = cut;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                let prefix = &text[..cut];
                if let Ok(p) = parse(prefix, "prefix") {
                    if p.status == RunStatus::Converged {
                        assert!(ended(prefix), "{}: prefix of {cut} bytes claims convergence", path.display());
                    }
                    if p.to_labels().is_some() {
                        assert!(p.forces_ev_per_a.as_ref().unwrap().iter().all(|f| f.iter().all(|x| x.is_finite())));
                    }
                }
            }
        }
    }
}

#[test]
fn corrupted_numbers_are_not_labels() {
    // a force overflow (`****`) in a converged output must not produce a label
    let text = std::fs::read_to_string(data("qe").join("si2.out")).unwrap();
    let broken = text.replacen("0.02333408", "**********", 1);
    let p = parse_pw_output(&broken, "broken").unwrap();
    assert!(p.to_labels().is_none(), "{p:?}");
    assert!(p.message.unwrap().contains("force"));
    let text = std::fs::read_to_string(data("cp2k").join("si2.out")).unwrap();
    let broken = text.replacen("0.01267988", "**********", 1);
    let p = parse_cp2k_output(&broken, "broken").unwrap();
    assert!(p.to_labels().is_none(), "{p:?}");
}

#[test]
fn appended_outputs_give_the_last_run() {
    for (engine, parse, files) in [
        ("qe", parse_pw_output as Parser, ["scf_not_converged.out", "crashed.out", "si2.out"]),
        ("cp2k", parse_cp2k_output as Parser, ["crashed.out", "scf_not_converged.out", "si2.out"]),
    ] {
        let all: String = files.iter().map(|f| std::fs::read_to_string(data(engine).join(f)).unwrap()).collect();
        let last = std::fs::read_to_string(data(engine).join(files[2])).unwrap();
        assert_eq!(parse(&all, "all").unwrap(), parse(&last, "last").unwrap(), "{engine}");
        // and a run that failed after a good one is a failure
        let rev: String = [files[2], "scf_not_converged.out"]
            .iter()
            .map(|f| std::fs::read_to_string(data(engine).join(f)).unwrap())
            .collect();
        assert_eq!(parse(&rev, "rev").unwrap().status, RunStatus::ScfNotConverged, "{engine}");
    }
}

#[test]
fn file_helpers_name_the_file() {
    let p = autopipe_engines::qe::parse_pw_file(&data("qe").join("si2.out")).unwrap();
    assert_eq!(p.status, RunStatus::Converged);
    let p = autopipe_engines::cp2k::parse_cp2k_file(&data("cp2k").join("si2.out")).unwrap();
    assert_eq!(p.status, RunStatus::Converged);
    let missing = data("qe").join("no-such-file.out");
    let e = autopipe_engines::qe::parse_pw_file(&missing).unwrap_err().to_string();
    assert!(e.contains("no-such-file.out"), "{e}");
    // a binary file (the expected.json is text but not an output; an ELF-like file is binary)
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("a.out");
    std::fs::write(&bin, [0x7fu8, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0xff, 0xfe]).unwrap();
    let e = autopipe_engines::cp2k::parse_cp2k_file(&bin).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{} is not a CP2K output", bin.display())), "{e}");
    let e = autopipe_engines::qe::parse_pw_file(&data("qe").join("expected.json")).unwrap_err().to_string();
    assert!(e.contains("is not a Quantum ESPRESSO pw.x output"), "{e}");
}

#[test]
fn qe_without_job_done_ends_with_its_timing_report() {
    // QE 4.0.3 prints no `JOB DONE.`: the `PWSCF : ... wall time` line opens its final
    // timing report (real output, EPW/examples/sic of QE)
    let text = std::fs::read_to_string(data("qe").join("v4.0.3_sic_scf.out")).unwrap();
    assert!(!text.contains("JOB DONE"));
    let p = parse_pw_output(&text, "v4.0.3").unwrap();
    assert_eq!(p.status, RunStatus::Converged, "{:?}", p.message);
    assert_eq!(p.wall_time_s, Some(3.94));
    assert!(p.to_labels().is_some());
    // the same output cut just before that line is truncated, and keeps its energy
    let cut = &text[..text.find("     PWSCF        :").unwrap()];
    let t = parse_pw_output(cut, "cut").unwrap();
    assert_eq!(t.status, RunStatus::Truncated);
    assert_eq!(t.energy_ev, p.energy_ev);
    assert!(t.to_labels().is_none());
}

#[test]
fn truncated_after_a_converged_scf_keeps_the_energy_but_is_never_a_label() {
    let si8 = std::fs::read_to_string(data("qe").join("si8.out")).unwrap();
    let full = parse_pw_output(&si8, "si8").unwrap();
    // cut after the forces were printed completely: energy and forces, status truncated
    let end_of_forces = si8.find("Total force").unwrap();
    let p = parse_pw_output(&si8[..end_of_forces], "cut").unwrap();
    assert_eq!(p.status, RunStatus::Truncated);
    assert_eq!(p.energy_ev, full.energy_ev);
    assert_eq!(p.forces_ev_per_a, full.forces_ev_per_a);
    assert!(p.to_labels().is_none(), "a truncated output must never become a label");
    // cut before the SCF converged: nothing
    let before = si8.find("!    total energy").unwrap();
    let p = parse_pw_output(&si8[..before], "cut").unwrap();
    assert_eq!(p.status, RunStatus::Truncated);
    assert_eq!(p.energy_ev, None);
    // a later SCF that failed after the converged one: no energy
    let failed = format!("{}\n     convergence NOT achieved after   3 iterations: stopping\n", &si8[..end_of_forces]);
    assert_eq!(parse_pw_output(&failed, "failed").unwrap().energy_ev, None);
}

#[test]
fn scheduler_kills_at_the_end_of_an_output() {
    let time_limit = "srun: Job step aborted: Waiting up to 47 seconds for job step to finish.\n\
        slurmstepd: error: *** JOB 494583 ON n1 CANCELLED AT 2024-04-20T09:09:37 DUE TO TIME LIMIT ***\n\
        slurmstepd: error: *** STEP 494583.0 ON n1 CANCELLED AT 2024-04-20T09:09:37 DUE TO TIME LIMIT ***\n";
    let cancelled = "   0: slurmstepd: error: *** STEP 23893144.0 ON nid02518 CANCELLED AT 2019-08-15T19:17:26 ***\n";
    let oom = "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=1234.0. Some of your processes may have been \
        killed by the cgroup out-of-memory handler.\n";
    let pbs = "=>> PBS: job killed: walltime 3634 exceeded limit 3600\n";
    let cases = [
        (time_limit, RunStatus::OutOfTime, "*** JOB 494583 ON n1 CANCELLED AT 2024-04-20T09:09:37 DUE TO TIME LIMIT"),
        (cancelled, RunStatus::Crashed, "STEP 23893144.0 ON nid02518 CANCELLED AT 2019-08-15T19:17:26"),
        (oom, RunStatus::Crashed, "oom-kill"),
        (pbs, RunStatus::OutOfTime, "walltime 3634 exceeded limit 3600"),
    ];
    let qe = std::fs::read_to_string(data("qe").join("truncated.out")).unwrap();
    let cp = std::fs::read_to_string(data("cp2k").join("truncated.out")).unwrap();
    for (tail, status, words) in cases {
        for (name, parse, text) in [("qe", parse_pw_output as Parser, &qe), ("cp2k", parse_cp2k_output as Parser, &cp)]
        {
            let p = parse(&format!("{text}\n{tail}"), "killed").unwrap();
            assert_eq!(p.status, status, "{name}: {tail}");
            let m = p.message.clone().unwrap();
            assert!(m.contains("batch scheduler") && m.contains(words), "{name}: {m}");
            assert!(p.to_labels().is_none());
        }
    }
    // a finished run followed by scheduler noise is still finished; a crash keeps the engine's message
    let si2 = std::fs::read_to_string(data("qe").join("si2.out")).unwrap();
    assert_eq!(parse_pw_output(&format!("{si2}{time_limit}"), "x").unwrap().status, RunStatus::Converged);
    let crashed = std::fs::read_to_string(data("cp2k").join("crashed.out")).unwrap();
    let p = parse_cp2k_output(&format!("{crashed}{cancelled}"), "x").unwrap();
    assert_eq!(p.status, RunStatus::Crashed);
    assert!(!p.message.unwrap().contains("batch scheduler"));
    // scheduler words far from the end (in an echoed input, say) are not read
    let echo = format!("{cancelled}{}", text_lines(100));
    let p = parse_pw_output(&format!("{qe}\n{echo}"), "x").unwrap();
    assert_eq!(p.status, RunStatus::Truncated);
}

fn text_lines(n: usize) -> String {
    (0..n).map(|i| format!("     line {i}\n")).collect()
}

/// Every parser refuses every other engine's output (and the QE XML data file) with
/// "FILE is not a <engine> output".
#[test]
fn each_parser_refuses_the_other_engines_outputs() {
    let read = |engine: &str, file: &str| std::fs::read_to_string(data(engine).join(file)).unwrap();
    let files = [
        ("qe", read("qe", "si2.out")),
        ("qe", read("qe", "v4.0.3_sic_scf.out")),
        ("qe-xml", read("qe", "si2.data-file-schema.xml")),
        ("cp2k", read("cp2k", "si2.out")),
        ("cp2k", read("cp2k", "v9.0_si_bulk8.out")),
        ("orca", read("orca", "water_engrad.out")),
        ("orca", read("orca", "v5.0.0_water_mp2.out")),
        ("orca-engrad", read("orca", "water.engrad")),
        ("vasprun", read("vasp", "vasprun_pstress.xml")),
        ("outcar", read("vasp", "OUTCAR_example_1")),
    ];
    let parsers: [(&str, Parser, &str); 5] = [
        ("qe", parse_pw_output, "is not a Quantum ESPRESSO pw.x output"),
        ("cp2k", parse_cp2k_output, "is not a CP2K output"),
        ("orca", parse_orca_output, "is not an ORCA output"),
        ("vasprun", parse_vasprun, "is not a VASP vasprun.xml output"),
        ("outcar", parse_outcar, "is not a VASP OUTCAR output"),
    ];
    for (pname, parse, words) in parsers {
        for (fname, text) in &files {
            if *fname == pname {
                assert!(parse(text, "FILE").is_ok(), "{pname} must read its own {fname} file");
                continue;
            }
            match parse(text, "FILE") {
                Err(e @ ParseError::NotAnOutput { .. }) => {
                    let m = e.to_string();
                    assert!(m.starts_with(&format!("FILE {words}: ")), "{fname} given to {pname}: {m}");
                }
                other => panic!("{fname} given to {pname}: {other:?}"),
            }
        }
    }
    // the audit's case: a QE XML data file given to `autopipe parse --engine vasp`
    let e = parse_vasprun(&read("qe", "si2.data-file-schema.xml"), "data-file-schema.xml").unwrap_err().to_string();
    assert!(
        e.starts_with("data-file-schema.xml is not a VASP vasprun.xml output: its root element is <qes:espresso"),
        "{e}"
    );
}
