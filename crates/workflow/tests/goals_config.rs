//! The `[goals]` table: what it accepts and the defaults it takes from `[generate]`,
//! and every refusal pointing at the file, line and key.
use autopipe_build::Lattice;
use autopipe_workflow::examples::example;
use autopipe_workflow::{parse_config, Config, ConfigError};
use std::path::Path;

/// The cu-emt example with `goals` appended; returns the text and the 1-based line of
/// the first appended line.
fn with_goals(goals: &str) -> (String, usize) {
    let base = example("cu-emt").unwrap();
    let line = base.lines().count() + 1;
    (format!("{base}{goals}"), line)
}

fn parse(goals: &str) -> Result<Config, ConfigError> {
    parse_config(&with_goals(goals).0, Path::new("case.toml"))
}

#[track_caller]
fn refused(goals: &str, key: &str, line_offset: usize, text: &str) {
    let (toml, first) = with_goals(goals);
    let e = parse_config(&toml, Path::new("case.toml")).expect_err(&format!("{goals:?} must be refused"));
    let shown = e.to_string();
    assert_eq!(e.key.as_deref(), Some(key), "{shown}");
    assert_eq!(e.line, Some(first + line_offset), "{shown}");
    assert!(e.message.contains(text), "{shown}: lacks {text:?}");
    assert!(shown.starts_with("case.toml:"), "{shown}");
}

#[test]
fn goals_are_optional_and_take_their_defaults_from_generate() {
    assert!(parse("").unwrap().goals.is_empty());
    let c = parse("[goals]\nelastic = true\n").unwrap();
    let e = c.goals.elastic.unwrap();
    assert_eq!((e.lattice, e.lattice_constant_a, e.supercell), (Lattice::Fcc, 3.61, [1, 1, 1]));
    assert_eq!(e.amplitudes, vec![0.005, 0.01]);
    assert!(e.relax);
    assert_eq!(c.goals.max_rounds, 2);
    let c = parse(
        "[goals]\nmax_rounds = 1\n[goals.elastic]\nlattice = \"bcc\"\nlattice_constant_a = 2.87\nstrains = [0.01, 0.02]\nrelax = false\n",
    )
    .unwrap();
    let e = c.goals.elastic.unwrap();
    assert_eq!((e.lattice, e.lattice_constant_a, e.relax, c.goals.max_rounds), (Lattice::Bcc, 2.87, false, 1));
    assert!(parse("[goals]\nelastic = false\n").unwrap().goals.is_empty());
    let c = parse("[goals.diffusion]\ntemperatures_k = [1200, 1400]\nvacancies = 1\n").unwrap();
    let d = c.goals.diffusion.clone().unwrap();
    assert_eq!((d.temperatures_k, d.supercell, d.vacancies), (vec![1200.0, 1400.0], [2, 2, 2], 1));
    assert_eq!((d.md.timestep_fs, d.md.seed), (2.0, 42), "the run's time step and seed");
    assert_eq!(c.goals.names(), vec!["diffusion"]);
}

/// The hull goal takes the run's elements; `phase_diagram` is its other name.
#[test]
fn the_hull_goal_takes_the_run_elements() {
    let binary = |goals: &str| {
        let text = format!("{}{goals}", example("cu-emt").unwrap())
            .replace("elements = [\"Cu\"]", "elements = [\"Cu\", \"Ni\"]");
        parse_config(&text, Path::new("cuni.toml"))
    };
    let h = binary("[goals]\nhull = true\n").unwrap().goals.hull.unwrap();
    let names: Vec<&str> = h.elements.iter().map(|e| e.symbol()).collect();
    assert_eq!((names, h.seed, h.fmax_ev_per_a, h.ordered, h.sqs), (vec!["Cu", "Ni"], 1, 0.01, true, true));
    let c = binary("[goals.phase_diagram]\nseed = 7\nfmax_ev_per_a = 0.05\nsqs = false\n").unwrap();
    assert_eq!(c.goals.names(), vec!["hull"]);
    let h = c.goals.hull.unwrap();
    assert_eq!((h.seed, h.fmax_ev_per_a, h.ordered, h.sqs), (7, 0.05, true, false));
    let e = binary("[goals.hull]\nfmax_ev_per_a = 0\n").unwrap_err();
    assert_eq!(e.key.as_deref(), Some("goals.hull.fmax_ev_per_a"), "{e}");
    let e = binary("[goals]\nhull = true\nphase_diagram = true\n").unwrap_err();
    assert!(e.message.contains("given twice"), "{e}");
}

#[test]
fn bad_goals_are_refused_at_their_key() {
    refused("[goals]\nelastc = true\n", "goals.elastc", 1, "unknown goal");
    refused("[goals]\nmax_rounds = -1\n", "goals.max_rounds", 1, "0 ..= 20");
    refused("[goals]\nelastic = 3\n", "goals.elastic", 1, "true, false or a table");
    refused("[goals.elastic]\nlattice = \"fcx\"\n", "goals.elastic.lattice", 1, "unknown lattice");
    refused("[goals.elastic]\nlattice = \"bcc\"\n", "goals.elastic.lattice_constant_a", 0, "differs from");
    refused("[goals.elastic]\nstrains = [0.01]\n", "goals.elastic.strains", 1, "at least two");
    refused("[goals.elastic]\nstrains = [0.01, 0.5]\n", "goals.elastic.strains", 1, "not in (0, 0.1]");
    refused("[goals.elastic]\nsupercell = [0, 1, 1]\n", "goals.elastic.supercell", 1, "1 ..= 6");
    refused("[goals.elastic]\nstrain = [0.01]\n", "goals.elastic.strain", 1, "unknown field");
    refused("[goals]\nhull = true\n", "goals.hull", 1, "two elements or more; the run has Cu only");
    refused("[goals]\nphase_diagram = true\n", "goals.phase_diagram", 1, "two elements or more");
    refused("[goals.hull]\nelements = [\"Cu\", \"Au\"]\n", "goals.hull.elements", 1, "unknown field");
    refused("[goals]\nhull = 1\n", "goals.hull", 1, "true, false or a table");
    refused("[goals]\ndiffusion = true\n", "goals.diffusion", 1, "must be a table");
    refused("[goals.diffusion]\nsupercell = [3, 3, 3]\n", "goals.diffusion.temperatures_k", 0, "missing field");
    refused("[goals.diffusion]\ntemperatures_k = [1200, -5]\n", "goals.diffusion.temperatures_k", 1, "1 ..= 20000");
    refused("[goals.diffusion]\ntemperatures_k = []\n", "goals.diffusion.temperatures_k", 1, "at least one");
    refused(
        "[goals.diffusion]\ntemperatures_k = [1200]\nproduction_steps = 500\n",
        "goals.diffusion.production_steps",
        2,
        "at least 100",
    );
    refused("[goals.diffusion]\ntemperatures_k = [1200]\nvacancies = 31\n", "goals.diffusion.vacancies", 2, "32 atoms");
    refused(
        "[goals.diffusion]\ntemperatures_k = [1200]\ntimestep_fs = 0\n",
        "goals.diffusion.timestep_fs",
        2,
        "(0, 20]",
    );
    refused("[goals.diffusion]\ntemperatures_k = [1200]\nsteps = 5\n", "goals.diffusion.steps", 2, "unknown field");
}
