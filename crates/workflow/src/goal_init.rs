//! `autopipe init --elements ... --goal ... --oracle ...`: a complete, commented
//! configuration whose every value follows from the elements, the goals and the oracle,
//! each with the reason it was chosen. Pure text generation: the caller reads the
//! pseudopotential files ([`upf_suggested_cutoffs`] reads their headers).

use crate::config::{default_lattice_constant_a, natural_lattice};
use autopipe_atoms::Element;
use autopipe_build::Lattice;
use std::fmt::Write;

/// A property the user wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Goal {
    Elastic,
    Diffusion,
    PhaseDiagram,
}

impl Goal {
    pub const ALL: [Goal; 3] = [Goal::Elastic, Goal::Diffusion, Goal::PhaseDiagram];

    pub fn name(self) -> &'static str {
        match self {
            Goal::Elastic => "elastic",
            Goal::Diffusion => "diffusion",
            Goal::PhaseDiagram => "phase_diagram",
        }
    }

    pub fn parse(s: &str) -> Option<Goal> {
        let s = s.trim().to_ascii_lowercase().replace('-', "_");
        Goal::ALL.into_iter().find(|g| g.name() == s || (s == "hull" && *g == Goal::PhaseDiagram))
    }
}

/// Who labels the structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oracle {
    Emt,
    Qe,
    Cp2k,
}

impl Oracle {
    pub fn parse(s: &str) -> Option<Oracle> {
        match s.trim().to_ascii_lowercase().as_str() {
            "emt" => Some(Oracle::Emt),
            "qe" | "pw" | "pw.x" | "quantum-espresso" => Some(Oracle::Qe),
            "cp2k" => Some(Oracle::Cp2k),
            _ => None,
        }
    }
}

/// A QE pseudopotential file and the cutoffs its header suggests (Ry).
#[derive(Clone, Debug, PartialEq)]
pub struct Pseudo {
    pub file: String,
    pub wfc_cutoff_ry: Option<f64>,
    pub rho_cutoff_ry: Option<f64>,
}

/// The suggested minimum cutoffs (wavefunctions, charge density; Ry) of a UPF file:
/// the `wfc_cutoff`/`rho_cutoff` attributes of UPF v2's PP_HEADER, or the
/// "Suggested minimum cutoff for ..." lines of its info block. Zero means none.
pub fn upf_suggested_cutoffs(text: &str) -> (Option<f64>, Option<f64>) {
    let attribute = |name: &str| -> Option<f64> {
        let i = text.find(&format!("{name}=\""))? + name.len() + 2;
        text[i..].split('"').next()?.trim().parse().ok()
    };
    let line = |what: &str| -> Option<f64> {
        let l = text.lines().find(|l| l.contains(&format!("Suggested minimum cutoff for {what}")))?;
        l.split(':').nth(1)?.trim().trim_end_matches("Ry").trim().trim_end_matches('.').parse().ok()
    };
    let positive = |v: Option<f64>| v.filter(|x| x.is_finite() && *x > 0.0);
    (
        positive(attribute("wfc_cutoff")).or(positive(line("wavefunctions"))),
        positive(attribute("rho_cutoff")).or(positive(line("charge density"))),
    )
}

/// The PBE pseudopotential of `element` among `(file name, text)` of a directory:
/// scalar-relativistic PBE files only (`El.pbe-...`); among those with suggested
/// cutoffs, the one with the lowest wavefunction cutoff (the cheapest that its author
/// vouches for); otherwise the first by name.
pub fn choose_pseudo(element: Element, files: &[(String, String)]) -> Option<Pseudo> {
    let prefix = format!("{}.pbe-", element.symbol());
    let mut found: Vec<Pseudo> = files
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix) && name.to_ascii_lowercase().ends_with(".upf"))
        .map(|(name, text)| {
            let (w, r) = upf_suggested_cutoffs(text);
            Pseudo { file: name.clone(), wfc_cutoff_ry: w, rho_cutoff_ry: r }
        })
        .collect();
    found.sort_by(|a, b| {
        let key = |p: &Pseudo| p.wfc_cutoff_ry.unwrap_or(f64::INFINITY);
        key(a).total_cmp(&key(b)).then(a.file.cmp(&b.file))
    });
    found.into_iter().next()
}

/// Melting points at 1 atm (K), CRC Handbook of Chemistry and Physics, 97th ed. (2016),
/// "Melting, boiling, triple, and critical points of the elements". Carbon sublimes at
/// 1 atm; its value is the graphite-liquid-vapour triple point (~4600 K at 10 MPa) rounded
/// down, used only to scale temperatures.
pub fn melting_point_k(e: Element) -> Option<f64> {
    Some(match e.symbol() {
        "Al" => 933.47,
        "Si" => 1687.0,
        "Fe" => 1811.0,
        "Ni" => 1728.0,
        "Cu" => 1357.77,
        "Mo" => 2896.0,
        "Pd" => 1828.05,
        "Ag" => 1234.93,
        "Ta" => 3290.0,
        "W" => 3695.0,
        "Pt" => 2041.4,
        "Au" => 1337.33,
        "C" => 4500.0,
        _ => return None,
    })
}

/// CP2K's GTH pseudopotential valence (the `-qN` of GTH-PBE-qN and of the matching
/// DZVP-MOLOPT-SR-GTH basis in Debian's cp2k-data).
fn cp2k_valence(e: Element) -> Option<u32> {
    Some(match e.symbol() {
        "C" | "Si" => 4,
        "Al" => 3,
        "Cu" | "Ag" | "Au" => 11,
        "Ni" | "Pd" | "Pt" => 18,
        "Fe" => 16,
        "W" | "Mo" => 14,
        "Ta" => 13,
        _ => return None,
    })
}

/// Metals get smearing and denser k-points; Si and C are semiconductors.
fn is_metal(e: Element) -> bool {
    !matches!(e.symbol(), "Si" | "C")
}

fn round_to(x: f64, step: f64) -> f64 {
    (x / step).round() * step
}

fn list(xs: &[f64]) -> String {
    xs.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", ")
}

/// The configuration text. `pseudos` (QE only) has one entry per element, in order;
/// `pseudo_dir` is where they are.
pub fn goal_config(
    elements: &[Element],
    goals: &[Goal],
    oracle: Oracle,
    pseudo_dir: &str,
    pseudos: &[Pseudo],
) -> Result<String, String> {
    if elements.is_empty() {
        return Err("--elements: give one or more chemical symbols".into());
    }
    if goals.is_empty() {
        return Err("--goal: give elastic, diffusion or phase_diagram (several with commas)".into());
    }
    for (i, e) in elements.iter().enumerate() {
        if elements[..i].contains(e) {
            return Err(format!("--elements: {e} is listed twice"));
        }
        if default_lattice_constant_a(*e, Lattice::Fcc).is_none() || melting_point_k(*e).is_none() {
            return Err(format!(
                "--elements: no element data for {e} (init --goal knows Al, Si, Fe, Ni, Cu, Mo, Pd, Ag, Ta, W, Pt, \
                 Au, C); write the configuration from `autopipe init --example` instead"
            ));
        }
        if oracle == Oracle::Emt && !autopipe_engines::emt::Emt::supports(*e) {
            return Err(format!(
                "--oracle emt: the built-in EMT has no parameters for {e} (it knows Al, Cu, Ag, Au, Ni, Pd, Pt, C); \
                 use --oracle qe or cp2k"
            ));
        }
        if oracle == Oracle::Cp2k && cp2k_valence(*e).is_none() {
            return Err(format!("--oracle cp2k: no GTH pseudopotential known for {e}"));
        }
    }
    if goals.contains(&Goal::PhaseDiagram) && elements.len() < 2 {
        return Err("--goal phase_diagram needs two elements or more (e.g. --elements Cu,Au)".into());
    }
    if oracle == Oracle::Qe && pseudos.len() != elements.len() {
        return Err(format!("--oracle qe: no PBE pseudopotential found in {pseudo_dir} for every element"));
    }
    let mut goals = goals.to_vec();
    goals.sort();
    goals.dedup();
    let first = elements[0];
    let lattice = natural_lattice(first).expect("checked above");
    let symbols: Vec<&str> = elements.iter().map(|e| e.symbol()).collect();
    let goal_names: Vec<&str> = goals.iter().map(|g| g.name()).collect();
    let has = |g: Goal| goals.contains(&g);
    let dft = oracle != Oracle::Emt;
    // Lattice constant: Vegard's law over the elements, each at the same volume per atom
    // in the first element's lattice.
    let a: f64 = elements.iter().map(|e| default_lattice_constant_a(*e, lattice).expect("checked")).sum::<f64>()
        / elements.len() as f64;
    let a = round_to(a, 0.001);
    let sites = lattice.sites();
    // Nearest-neighbour distance of the lattice, for the SNAP cutoff.
    let nn = match lattice {
        Lattice::Fcc => a / 2f64.sqrt(),
        Lattice::Bcc => a * 3f64.sqrt() / 2.0,
        Lattice::Diamond => a * 3f64.sqrt() / 4.0,
        Lattice::Sc | Lattice::Hcp => a,
    };
    let cutoff_a = round_to((2.0 * nn).clamp(4.0, 6.0), 0.1);
    // Temperatures from the lowest melting point of the elements (the alloy melts first
    // where its weakest element does; a rough, safe scale).
    let tm = elements.iter().map(|e| melting_point_k(*e).expect("checked")).fold(f64::INFINITY, f64::min);
    let t = |f: f64| round_to(f * tm, 10.0);
    // Supercell: at least 32 atoms with EMT (cheap), at least 8 with DFT (a label costs
    // minutes), the same repetition along each axis.
    let min_atoms = if dft { 8 } else { 32 };
    let n = (1..=6).find(|n| sites * n * n * n >= min_atoms).unwrap_or(6);
    let atoms = sites * n * n * n;

    let mut explore_t: Vec<f64> = Vec::new();
    let mut why_t = Vec::new();
    if has(Goal::Elastic) {
        explore_t.extend([t(0.1), t(0.3)]);
        why_t.push("elastic: near-equilibrium cells, 0.1 and 0.3 T_m");
    }
    if has(Goal::Diffusion) {
        explore_t.extend([t(0.6), t(0.9), t(1.2), t(1.5)]);
        why_t.push("diffusion: the crystal near melting and the liquid, 0.6 to 1.5 T_m");
    }
    if has(Goal::PhaseDiagram) {
        explore_t.extend([t(0.2), t(0.5)]);
        why_t.push("phase_diagram: ordered and disordered alloys, 0.2 and 0.5 T_m");
    }
    explore_t.sort_by(f64::total_cmp);
    explore_t.dedup();
    let max_strain = if has(Goal::PhaseDiagram) {
        0.05
    } else if has(Goal::Elastic) {
        0.03
    } else {
        0.02
    };
    let vacancy_fraction = if has(Goal::Diffusion) { 0.2 } else { 0.0 };

    let mut s = String::new();
    let w = &mut s;
    let _ = writeln!(
        w,
        "# MLIP-AutoPipe configuration written by `autopipe init --elements {} --goal {} --oracle {}`.",
        symbols.join(","),
        goal_names.join(","),
        match oracle {
            Oracle::Emt => "emt",
            Oracle::Qe => "qe",
            Oracle::Cp2k => "cp2k",
        }
    );
    let _ = writeln!(w, "# Every value below follows from the elements and the goals; the comments say why.");
    let _ = writeln!(w, "# Run it with `autopipe run FILE`; run the same command again to resume.");
    let _ = writeln!(w, "# Units are in the key names: _a = Ångström, _s = seconds, _fs = femtoseconds, _k = kelvin.");
    let _ = writeln!(w);
    let _ = writeln!(w, "[run]");
    let _ = writeln!(w, "name = \"{}-{}\"", symbols.join("").to_lowercase(), goal_names.join("-").replace('_', "-"));
    let _ = writeln!(w, "seed = 42                    # every random step derives from this seed");
    let _ = writeln!(w);
    let _ = writeln!(w, "[system]");
    let _ = writeln!(w, "elements = [{}]", symbols.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "));
    let _ = writeln!(w);
    let _ = writeln!(w, "[generate]                   # generation 0: strained, rattled bulk supercells");
    let _ = writeln!(
        w,
        "lattice = \"{}\"{:width$}# the ground state of {first}",
        lattice.name(),
        "",
        width = 17 - lattice.name().len()
    );
    let vegard = if elements.len() > 1 { ", Vegard's mean of the elements at equal volume per atom" } else { "" };
    let _ = writeln!(
        w,
        "lattice_constant_a = {a}{:width$}# experimental, room temperature{vegard}",
        "",
        width = 9usize.saturating_sub(format!("{a}").len())
    );
    let _ = writeln!(
        w,
        "supercell = [{n}, {n}, {n}]        # {atoms} atoms: at least {min_atoms} ({})",
        if dft { "a DFT label costs minutes" } else { "EMT labels are cheap" }
    );
    let _ = writeln!(w, "structures = {:<16} # candidates of generation 0", if dft { 8 } else { 20 });
    let _ = writeln!(
        w,
        "max_strain = {max_strain}            # {}",
        if has(Goal::PhaseDiagram) {
            "alloys of other compositions have other volumes: wide"
        } else if has(Goal::Elastic) {
            "three times the largest strain of the elastic fit"
        } else {
            "thermal expansion up to the melting point"
        }
    );
    let _ = writeln!(
        w,
        "rattle_a = {}               # Gaussian displacement per component, Å",
        if has(Goal::Diffusion) { "0.1 " } else { "0.05" }
    );
    let _ = writeln!(
        w,
        "vacancy_fraction = {vacancy_fraction:<10?} # share of structures with one vacancy: {}",
        if has(Goal::Diffusion) { "vacancies carry diffusion in the crystal" } else { "perfect crystals" }
    );
    if has(Goal::Elastic) {
        let _ = writeln!(
            w,
            "elastic_cells = {:<15} # unrattled conventional cells strained up to 1 %: the fit group",
            if dft { 6 } else { 12 }
        );
        let _ = writeln!(w, "elastic_max_strain = 0.01    # `elastic`, whose stresses pin the elastic constants");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "[oracle]                     # who computes the labels (energy, forces, stress)");
    match oracle {
        Oracle::Emt => {
            let _ = writeln!(w, "engine = \"emt\"               # built in: no external program needed");
        }
        Oracle::Qe => {
            let metal = elements.iter().any(|e| is_metal(*e));
            let wfc = pseudos.iter().filter_map(|p| p.wfc_cutoff_ry).fold(0.0, f64::max);
            let rho = pseudos.iter().filter_map(|p| p.rho_cutoff_ry).fold(0.0, f64::max);
            let all_suggest = pseudos.iter().all(|p| p.wfc_cutoff_ry.is_some());
            let ecutwfc = if wfc > 0.0 { (wfc * 1.2).ceil() } else { 30.0 };
            let _ = writeln!(w, "engine = \"qe\"                # Quantum ESPRESSO pw.x");
            let _ = writeln!(w, "pseudo_dir = \"{pseudo_dir}\"");
            let _ = writeln!(
                w,
                "pseudopotentials = {{ {} }}   # PBE; the lowest suggested cutoff among the PBE files there",
                elements
                    .iter()
                    .zip(pseudos)
                    .map(|(e, p)| format!("{} = \"{}\"", e.symbol(), p.file))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let why = match (wfc > 0.0, all_suggest) {
                (true, true) => format!("1.2 x the largest suggested minimum ({wfc:.1} Ry): converged stresses"),
                (true, false) => format!("1.2 x the largest suggested minimum ({wfc:.1} Ry; some files suggest none)"),
                _ => "the files suggest no cutoff: a safe value for norm-conserving PBE".to_string(),
            };
            let _ = writeln!(w, "ecutwfc_ry = {ecutwfc:<16?} # label-defining: {why}");
            if rho > 0.0 {
                let ecutrho = (rho * 1.2).ceil().max(4.0 * ecutwfc);
                let _ = writeln!(
                    w,
                    "ecutrho_ry = {ecutrho:<16?} # 1.2 x the largest suggested density cutoff ({rho:.1} Ry), at least 4 x ecutwfc"
                );
            }
            let _ = writeln!(
                w,
                "kspacing_per_a = {}         # 1/Å including 2π: {}",
                if metal { "0.25" } else { "0.35" },
                if metal { "metals need dense k-points for stresses" } else { "a gapped solid converges with fewer" }
            );
            let _ = writeln!(w, "occupations = \"smearing\"     # safe for metals and harmless for semiconductors");
            let _ = writeln!(w, "smearing = \"mv\"");
            let _ = writeln!(w, "degauss_ry = 0.01");
            let magnetic: Vec<&str> =
                elements.iter().map(|e| e.symbol()).filter(|s| matches!(*s, "Fe" | "Ni")).collect();
            if !magnetic.is_empty() {
                let _ = writeln!(w, "nspin = 2                    # {} is ferromagnetic", magnetic.join(" and "));
                let _ = writeln!(
                    w,
                    "starting_magnetization = {{ {} }}",
                    magnetic.iter().map(|s| format!("{s} = 0.5")).collect::<Vec<_>>().join(", ")
                );
            }
            let _ = writeln!(w, "conv_thr_ry = 1e-8           # tight enough for forces to 1 meV/Å");
            let _ =
                writeln!(w, "mixing_beta = 0.4            # convergence knob: the remediation ladder may change it");
            let _ = writeln!(w, "electron_maxstep = 100");
            let _ = writeln!(w, "diagonalization = \"david\"");
            let _ = writeln!(w, "command = \"pw.x\"");
            let _ = writeln!(w, "mpi_ranks = 1");
        }
        Oracle::Cp2k => {
            let metal = elements.iter().any(|e| is_metal(*e));
            let semicore = elements.iter().any(|e| cp2k_valence(*e).unwrap_or(0) > 8);
            let _ = writeln!(w, "engine = \"cp2k\"              # CP2K Quickstep (GPW)");
            let map = |f: &dyn Fn(Element) -> String| {
                elements.iter().map(|e| format!("{} = \"{}\"", e.symbol(), f(*e))).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(w, "basis_sets = {{ {} }}", map(&|_| "DZVP-MOLOPT-SR-GTH".into()));
            let _ = writeln!(
                w,
                "potentials = {{ {} }}   # the GTH valence of the MOLOPT basis",
                map(&|e| format!("GTH-PBE-q{}", cp2k_valence(e).expect("checked")))
            );
            let _ = writeln!(w, "xc_functional = \"PBE\"");
            let _ = writeln!(
                w,
                "cutoff_ry = {}              # {}",
                if semicore { "400.0" } else { "300.0" },
                if semicore { "semicore d electrons need a finer grid" } else { "s-p valence: 300 Ry suffices" }
            );
            let _ = writeln!(w, "rel_cutoff_ry = {}", if semicore { "50.0" } else { "40.0" });
            let _ = writeln!(
                w,
                "kspacing_per_a = {}         # 1/Å including 2π: {}",
                if metal { "0.25" } else { "0.35" },
                if metal { "metals need dense k-points" } else { "a gapped solid converges with fewer" }
            );
            let _ = writeln!(w, "smearing_temperature_k = {}    # Fermi-Dirac", if metal { "500.0" } else { "300.0" });
            let _ = writeln!(w, "scf_method = \"diagonalization\"   # OT is slow on small cells");
            let _ = writeln!(w, "eps_scf = 1e-7");
            let _ = writeln!(w, "mixing_method = \"BROYDEN_MIXING\"");
            let _ = writeln!(w, "mixing_alpha = 0.4");
            let _ = writeln!(w, "max_scf = 100");
            let _ = writeln!(w, "command = \"cp2k.psmp\"");
        }
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "[potential]                  # SNAP (LAMMPS conventions)");
    let _ = writeln!(
        w,
        "twojmax = {}                  # {}",
        if dft { 6 } else { 8 },
        if dft { "few DFT labels: 31 components" } else { "55 components" }
    );
    let _ = writeln!(
        w,
        "cutoff_a = {cutoff_a}               # two nearest-neighbour distances ({nn:.2} Å), within 4 .. 6 Å"
    );
    if has(Goal::Elastic) {
        let _ = writeln!(w);
        let _ = writeln!(w, "[fit.groups.elastic]         # the elastic cells' stresses weigh 17 times the default,");
        let _ = writeln!(w, "stress_weight = 1e-3         # as FitSNAP's Ta06A weighs its Elastic_BCC group");
    }
    let _ = writeln!(w);
    let _ = writeln!(w, "[explore]                    # MD with the current potential, watching gamma");
    let _ = writeln!(
        w,
        "temperatures_k = [{}]   # melting point {tm} K (lowest of the elements); {}",
        list(&explore_t),
        why_t.join("; ")
    );
    let _ = writeln!(w, "steps = {}                  # per temperature and generation", if dft { 500 } else { 1000 });
    let light = elements.iter().any(|e| e.mass_amu() < 20.0);
    let _ = writeln!(
        w,
        "timestep_fs = {:<15} # {}",
        if light { "1.0" } else { "2.0" },
        if light { "a light element vibrates fast" } else { "no element lighter than 20 amu: 2 fs is stable" }
    );
    let _ = writeln!(w, "sample_every = 10            # steps between candidate frames");
    let _ = writeln!(w, "gamma_select = 2.0           # frames above this are uncertain");
    let _ = writeln!(w, "gamma_break = 10.0           # a segment stops above this");
    let _ = writeln!(w, "max_frames_per_segment = 20");
    let _ = writeln!(w);
    let _ = writeln!(w, "[loop]");
    let _ = writeln!(w, "max_generations = {}", if dft { 5 } else { 7 });
    let _ = writeln!(w, "per_generation = {}            # new labels per generation at most", if dft { 6 } else { 20 });
    let _ = writeln!(w, "target_force_rmse_ev_per_a = {}", if dft { "0.1" } else { "0.045" });
    let _ = writeln!(w, "target_energy_rmse_mev_per_atom = {}", if dft { "5.0" } else { "2.0" });
    let _ = writeln!(w);
    let _ = writeln!(w, "[execution]");
    let _ = writeln!(w, "workers = 2                  # concurrent jobs");
    let _ = writeln!(
        w,
        "walltime_s = {}             # a job running longer is killed and retried",
        if dft { 1800 } else { 600 }
    );
    let _ = writeln!(w, "max_physics_retries = 2");
    let _ = writeln!(w, "max_infra_retries = 2");
    let _ = writeln!(w, "failure_tolerance = 0.5");
    if has(Goal::Elastic) || has(Goal::PhaseDiagram) {
        let _ = writeln!(w);
        let _ =
            writeln!(w, "[goals]                      # properties computed with the final model, guarded by gamma");
        let _ = writeln!(
            w,
            "max_rounds = 2               # label-refit rounds when a property calculation meets uncertain structures"
        );
    }
    if has(Goal::Elastic) {
        let _ = writeln!(w);
        let _ = writeln!(w, "[goals.elastic]");
        let _ = writeln!(w, "lattice = \"{}\"", lattice.name());
        let _ = writeln!(w, "lattice_constant_a = {a}     # relaxed first (relax = true)");
        let _ = writeln!(w, "supercell = [1, 1, 1]        # the conventional cell: C_ij need no larger one");
        let _ =
            writeln!(w, "strains = [0.005, 0.01]      # two amplitudes, each with both signs: linear, above the noise");
        let _ = writeln!(w, "relax = true                 # cell and positions first, positions at each strain (diamond needs it for C44)");
    }
    if has(Goal::Diffusion) {
        let temps = [t(1.1), t(1.3), t(1.5)];
        let _ = writeln!(w);
        let _ = writeln!(w, "# Goal diffusion: once the run has a model, D(T) and the Arrhenius fit in the liquid");
        let _ = writeln!(w, "# (1.1, 1.3, 1.5 T_m; for vacancy diffusion in the crystal use 0.7 .. 0.95 T_m):");
        let _ = writeln!(
            w,
            "#   autopipe property diffusion --dir RUN --temperatures-k {}",
            temps.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(",")
        );
    }
    if has(Goal::PhaseDiagram) {
        let _ = writeln!(w);
        let _ = writeln!(w, "# Goal phase_diagram: when the loop ends, formation energies and the convex hull of the");
        let _ = writeln!(w, "# elements (fcc, bcc, hcp), L1_2, B2, L1_0 and SQS at 25/50/75 % of every pair, each");
        let _ = writeln!(w, "# relaxed with the final model (the same as, on the trained model:");
        let _ = writeln!(w, "#   autopipe property hull --dir RUN --elements {})", symbols.join(","));
        let _ = writeln!(w, "[goals.hull]");
        let _ = writeln!(w, "seed = 1                     # of the SQS");
        let _ = writeln!(w, "fmax_ev_per_a = 0.01         # relaxed until every force is below this");
        let _ = writeln!(w, "ordered = true               # L1_2, B2, L1_0 of every pair");
        let _ = writeln!(w, "sqs = true                   # 32-atom SQS at 25, 50, 75 % (the costliest candidates)");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upf_headers() {
        let v2 = "<PP_HEADER\n wfc_cutoff=\"4.374353992864e1\" rho_cutoff=\"1.749741597146e2\"/>";
        assert_eq!(upf_suggested_cutoffs(v2), (Some(43.74353992864), Some(174.9741597146)));
        let v1 = "Suggested minimum cutoff for wavefunctions:  47. Ry\nSuggested minimum cutoff for charge density: 189. Ry\n";
        assert_eq!(upf_suggested_cutoffs(v1), (Some(47.0), Some(189.0)));
        let none = "Suggested minimum cutoff for wavefunctions:   0. Ry\nwfc_cutoff=\"0.000000000000e0\"";
        assert_eq!(upf_suggested_cutoffs(none), (None, None));
        let si = Element::from_symbol("Si").unwrap();
        let files = vec![
            ("Si.pbe-rrkj.UPF".to_string(), none.to_string()),
            ("Si.pbe-nl-rrkjus_psl.1.0.0.UPF".to_string(), v2.to_string()),
            ("Si.pz-vbc.UPF".to_string(), v1.to_string()),
            ("Si.rel-pbe-rrkj.UPF".to_string(), v1.to_string()),
        ];
        assert_eq!(choose_pseudo(si, &files).unwrap().file, "Si.pbe-nl-rrkjus_psl.1.0.0.UPF");
        assert_eq!(choose_pseudo(Element::from_symbol("Cu").unwrap(), &files), None);
    }

    /// Every combination of goals, oracles and element sets gives a configuration that
    /// the configuration parser accepts, with the goals' settings in it.
    #[test]
    fn every_generated_configuration_parses() {
        let sets: Vec<Vec<Element>> = [vec!["Cu"], vec!["Si"], vec!["W"], vec!["Cu", "Au"], vec!["Ni", "Al", "Cu"]]
            .iter()
            .map(|s| s.iter().map(|x| Element::from_symbol(x).unwrap()).collect())
            .collect();
        let mut parsed = 0;
        for mask in 1..8u32 {
            let goals: Vec<Goal> =
                Goal::ALL.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, g)| *g).collect();
            for oracle in [Oracle::Emt, Oracle::Qe, Oracle::Cp2k] {
                for elements in &sets {
                    let pseudos: Vec<Pseudo> = elements
                        .iter()
                        .map(|e| Pseudo {
                            file: format!("{e}.pbe-x.UPF"),
                            wfc_cutoff_ry: Some(40.0),
                            rho_cutoff_ry: Some(200.0),
                        })
                        .collect();
                    let text = goal_config(elements, &goals, oracle, "/pseudo", &pseudos);
                    let emt_lacks =
                        oracle == Oracle::Emt && elements.iter().any(|e| !autopipe_engines::emt::Emt::supports(*e));
                    let single_pd = goals.contains(&Goal::PhaseDiagram) && elements.len() < 2;
                    if emt_lacks || single_pd {
                        assert!(text.is_err(), "{elements:?} {goals:?} {oracle:?} should be refused");
                        continue;
                    }
                    let text = text.unwrap();
                    let config = crate::parse_config(&text, std::path::Path::new("goal.toml"))
                        .unwrap_or_else(|e| panic!("{elements:?} {goals:?} {oracle:?}: {e}\n{text}"));
                    assert_eq!(config.elements, *elements);
                    assert_eq!(config.goals.elastic.is_some(), goals.contains(&Goal::Elastic));
                    // The elastic goal labels small strained cells, fitted as their own group.
                    assert_eq!(config.elastic_cells.is_some(), goals.contains(&Goal::Elastic));
                    assert_eq!(
                        config.fit.groups.get("elastic").and_then(|g| g.stress_weight),
                        goals.contains(&Goal::Elastic).then_some(1e-3)
                    );
                    assert!(text.lines().next().unwrap().starts_with('#'));
                    if goals.contains(&Goal::Diffusion) {
                        // Above the (lowest) melting point: the liquid is explored.
                        let tm = elements.iter().map(|e| melting_point_k(*e).unwrap()).fold(f64::INFINITY, f64::min);
                        assert!(config.explore.temperatures_k.iter().any(|t| *t > tm), "{text}");
                        assert!(text.contains("autopipe property diffusion --dir RUN"));
                    }
                    if goals.contains(&Goal::PhaseDiagram) {
                        assert!(text.contains("autopipe property hull --dir RUN --elements"));
                        let hull = config.goals.hull.as_ref().expect("the hull goal");
                        assert_eq!(hull.elements, *elements);
                        assert!(hull.ordered && hull.sqs);
                    }
                    assert_eq!(config.goals.hull.is_some(), goals.contains(&Goal::PhaseDiagram));
                    parsed += 1;
                }
            }
        }
        assert!(parsed > 60, "{parsed} configurations parsed");
    }

    #[test]
    fn si_elastic_qe_values_follow_from_the_element() {
        let si = Element::from_symbol("Si").unwrap();
        let p = Pseudo {
            file: "Si.pbe-nl-rrkjus_psl.1.0.0.UPF".into(),
            wfc_cutoff_ry: Some(43.7),
            rho_cutoff_ry: Some(175.0),
        };
        let text = goal_config(&[si], &[Goal::Elastic], Oracle::Qe, "/usr/share/espresso/pseudo", &[p]).unwrap();
        let c = crate::parse_config(&text, std::path::Path::new("si.toml")).unwrap();
        assert_eq!(c.generate.lattice, Lattice::Diamond);
        assert!((c.generate.lattice_constant_a - 5.43).abs() < 1e-9);
        assert!(text.contains("ecutwfc_ry = 53"), "1.2 x 43.7 rounded up:\n{text}");
        assert!(text.contains("ecutrho_ry = 212"), "{text}");
        let e = c.goals.elastic.unwrap();
        assert_eq!(e.amplitudes, vec![0.005, 0.01]);
        assert!(e.relax);
        // 0.1 and 0.3 of Si's melting point (1687 K).
        assert_eq!(c.explore.temperatures_k, vec![170.0, 510.0]);
    }
}
