//! Built-in example configurations (`autopipe init --example NAME`). Each is a commented
//! TOML file that validates; a test checks that.

/// (name, one-line description, text)
pub const EXAMPLES: &[(&str, &str, &str)] = &[(
    "cu-emt",
    "fcc copper labelled by the built-in EMT oracle (no external program needed)",
    CU_EMT,
)];

pub fn example(name: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(n, _, _)| *n == name).map(|(_, _, t)| *t)
}

const CU_EMT: &str = r#"# MLIP-AutoPipe configuration: fcc copper, labelled by the built-in EMT oracle.
# Run it with `autopipe run cu-emt.toml`; run the same command again to resume.
# Units are in the key names: _a = Ångström, _s = seconds.

[run]
name = "cu-emt"
seed = 42                    # every random step derives from this seed

[system]
elements = ["Cu"]            # chemical symbols; several make a random alloy

[generate]                   # generation 0: strained, rattled bulk supercells
lattice = "fcc"              # sc | fcc | bcc | hcp | diamond
lattice_constant_a = 3.61    # optional: experimental value of the first element by default
supercell = [2, 2, 2]        # repetitions of the conventional cell (32 atoms for fcc)
structures = 40              # how many candidates
max_strain = 0.03            # each strain component uniform in [-max, max]
rattle_a = 0.05              # Gaussian displacement per Cartesian component, Å
vacancy_fraction = 0.2       # share of structures with one vacancy

[oracle]                     # who computes the labels (energy, forces, stress)
engine = "emt"               # emt (built in) | command (any program reading input.xyz, writing output.xyz)

[execution]
backend = "local"            # a pool of processes on this machine
workers = 2                  # concurrent jobs
walltime_s = 600             # a job running longer is killed (its whole process group) and retried
max_physics_retries = 2      # retries after physics failures (e.g. SCF not converged)
max_infra_retries = 2        # retries after timeouts, crashes, kills; separate budget
failure_tolerance = 0.5      # stop when more than this share of a batch fails
"#;
