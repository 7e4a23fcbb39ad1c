//! Built-in example configurations (`autopipe init --example NAME`). Each is a commented
//! TOML file that validates; a test checks that.

/// (name, one-line description, text)
pub const EXAMPLES: &[(&str, &str, &str)] = &[
    ("cu-emt", "fcc copper labelled by the built-in EMT oracle (no external program needed)", CU_EMT),
    ("si-qe", "diamond silicon labelled by Quantum ESPRESSO pw.x (apt-get install quantum-espresso)", SI_QE),
    ("si-cp2k", "diamond silicon labelled by CP2K (apt-get install cp2k cp2k-data)", SI_CP2K),
];

pub fn example(name: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(n, _, _)| *n == name).map(|(_, _, t)| *t)
}

const CU_EMT: &str = r#"# MLIP-AutoPipe configuration: learn fcc copper from the built-in EMT oracle, 300-1500 K.
# Run it with `autopipe run cu-emt.toml`; run the same command again to resume.
# Units are in the key names: _a = Ångström, _s = seconds, _fs = femtoseconds, _k = kelvin.

[run]
name = "cu-emt"
seed = 42                    # every random step derives from this seed

[system]
elements = ["Cu"]            # chemical symbols; several make a random alloy

[generate]                   # generation 0: strained, rattled bulk supercells
lattice = "fcc"              # sc | fcc | bcc | hcp | diamond
lattice_constant_a = 3.61    # optional: experimental value of the first element by default
supercell = [2, 2, 2]        # repetitions of the conventional cell (32 atoms for fcc)
structures = 20              # how many candidates
max_strain = 0.03            # each strain component uniform in [-max, max]
rattle_a = 0.1               # Gaussian displacement per Cartesian component, Å
vacancy_fraction = 0.2       # share of structures with one vacancy
elastic_cells = 12           # and 12 unrattled 4-atom cells strained up to 1 %: the fit group
elastic_max_strain = 0.01    # `elastic`, whose stresses pin the elastic constants

[oracle]                     # who computes the labels (energy, forces, stress)
engine = "emt"               # emt (built in) | command | qe | cp2k

[potential]                  # SNAP (LAMMPS conventions)
twojmax = 10                 # 2J: 91 bispectrum components (with 2J=8's 55, no weighting gave
                             # both forces within 0.045 eV/Å and C12 within 10 % of EMT's)
cutoff_a = 4.7               # radial cutoff, Å
rfac0 = 0.99363
quadratic = false

[fit]                        # weighted, regularised least squares (QR)
energy_weight = 75.0         # multiplies each energy-per-atom row (eV/atom); FitSNAP's eweight
force_weight = 1.0           # multiplies each force-component row (eV/Å); fweight
stress_weight = 6e-6         # multiplies each stress row (bar); vweight
                             # per-group weights: [fit.groups.NAME] (NAME = config_type), below
                             # energy and stress weights from `potential fit --folds 5 --search` on a
                             # run's labels at 2J=8 (with 300 and 6e-5 even the training force error
                             # on the loop's hard frames stayed above the 0.045 eV/Å target)
folds = 5                    # convergence judged on 5-fold cross-validation over every label
test_fraction = 0.1          # held out, chosen by structure hash

[fit.groups.elastic]         # the generate.elastic_cells: their stresses weigh 170 times more,
stress_weight = 1e-3         # as FitSNAP's Ta06A weighs its Elastic_BCC group (vweight 1e-4)

[explore]                    # MD with the current potential, watching gamma
temperatures_k = [300, 900, 1500]
steps = 1000
timestep_fs = 2.0
sample_every = 10            # steps between candidate frames
gamma_select = 2.0           # frames above this are uncertain
gamma_break = 10.0           # a segment stops above this
max_frames_per_segment = 30

[loop]
max_generations = 7
per_generation = 20          # new labels per generation at most
target_force_rmse_ev_per_a = 0.045
target_energy_rmse_mev_per_atom = 2.0

[execution]
backend = "local"            # a pool of processes on this machine
workers = 2                  # concurrent jobs
walltime_s = 600             # a job running longer is killed (its whole process group) and retried
max_physics_retries = 2      # retries after physics failures (e.g. SCF not converged)
max_infra_retries = 2        # retries after timeouts, crashes, kills; separate budget
failure_tolerance = 0.5      # stop when more than this share of a batch fails
"#;

const SI_QE: &str = r#"# MLIP-AutoPipe configuration: diamond silicon, labelled by Quantum ESPRESSO.
# Needs pw.x and the pseudopotentials of Debian's quantum-espresso-data package.

[run]
name = "si-qe"
seed = 7

[system]
elements = ["Si"]

[generate]
lattice = "diamond"
lattice_constant_a = 5.43
supercell = [1, 1, 1]        # the 8-atom conventional cell
structures = 8
max_strain = 0.02
rattle_a = 0.05

[oracle]
engine = "qe"
pseudo_dir = "/usr/share/espresso/pseudo"
pseudopotentials = { Si = "Si.pbe-rrkj.UPF" }   # norm-conserving PBE
ecutwfc_ry = 25.0            # label-defining: never changed by remediation
kspacing_per_a = 0.5         # 1/Å including 2π: 3x3x3 for this cell
occupations = "smearing"
smearing = "mv"
degauss_ry = 0.01
conv_thr_ry = 1e-8
mixing_beta = 0.7            # convergence knobs: the remediation ladder may change these
electron_maxstep = 100
diagonalization = "david"
command = "pw.x"
mpi_ranks = 1

[potential]
twojmax = 6                  # small data: 31 components
cutoff_a = 4.5

[explore]
temperatures_k = [300, 1000]
steps = 500
timestep_fs = 2.0
sample_every = 10
gamma_select = 2.0
gamma_break = 10.0
max_frames_per_segment = 20

[loop]
max_generations = 4
per_generation = 4           # DFT labels are expensive: few, well chosen
target_force_rmse_ev_per_a = 0.1
target_energy_rmse_mev_per_atom = 5.0

[execution]
workers = 2
walltime_s = 900
max_physics_retries = 2
max_infra_retries = 2
failure_tolerance = 0.5
"#;

const SI_CP2K: &str = r#"# MLIP-AutoPipe configuration: diamond silicon, labelled by CP2K (Quickstep, GPW).
# Needs cp2k.psmp and Debian's cp2k-data (BASIS_MOLOPT, GTH_POTENTIALS).

[run]
name = "si-cp2k"
seed = 7

[system]
elements = ["Si"]

[generate]
lattice = "diamond"
lattice_constant_a = 5.43
supercell = [1, 1, 1]
structures = 8
max_strain = 0.02
rattle_a = 0.05

[oracle]
engine = "cp2k"
basis_sets = { Si = "DZVP-MOLOPT-SR-GTH" }
potentials = { Si = "GTH-PBE-q4" }
xc_functional = "PBE"
cutoff_ry = 300.0
rel_cutoff_ry = 40.0
kpoints = [2, 2, 2]
smearing_temperature_k = 300.0
scf_method = "diagonalization"   # OT is slow on small cells
eps_scf = 1e-7
mixing_method = "BROYDEN_MIXING"
mixing_alpha = 0.4
max_scf = 100
command = "cp2k.psmp"

[potential]
twojmax = 6                  # small data: 31 components
cutoff_a = 4.5

[explore]
temperatures_k = [300, 1000]
steps = 500
timestep_fs = 2.0
sample_every = 10
gamma_select = 2.0
gamma_break = 10.0
max_frames_per_segment = 20

[loop]
max_generations = 4
per_generation = 4           # DFT labels are expensive: few, well chosen
target_force_rmse_ev_per_a = 0.1
target_energy_rmse_mev_per_atom = 5.0

[execution]
workers = 2
walltime_s = 900
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_validates() {
        for (name, _, text) in EXAMPLES {
            let path = std::path::PathBuf::from(format!("{name}.toml"));
            let config = crate::parse_config(text, &path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(config.name, *name);
            // Every line but the blank ones and the table headers carries a comment or a value.
            assert!(text.lines().next().unwrap().starts_with('#'), "{name} starts with a comment");
        }
        assert_eq!(example("cu-emt").map(|t| t.contains("engine = \"emt\"")), Some(true));
        assert_eq!(example("nope"), None);
    }
}
