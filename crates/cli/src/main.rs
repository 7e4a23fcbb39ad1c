//! `autopipe`: the command line of MLIP-AutoPipe.
//!
//! Exit codes: 0 success; 1 error (bad input, I/O, database); 2 usage;
//! 3 a batch stopped because more than `failure_tolerance` of it failed;
//! 130 interrupted (SIGINT/SIGTERM), state saved.

mod backend_args;
mod bench;
mod bench_build;
mod bench_elastic;
mod bench_explore;
mod bench_fit;
mod bench_pace;
mod bench_property;
mod bench_sched;
mod build_cmd;
mod jobs;
mod pace_cmd;
mod progress;
mod property_calc;
mod property_cmd;
mod property_diffusion;
mod property_elastic;
mod property_hull;
mod report;

use anyhow::{bail, Context, Result};
use autopipe_atoms::extxyz::{read_extxyz_file, write_extxyz_file};
use autopipe_build::{BulkRecipe, Lattice};
use autopipe_exec::Launcher;
use autopipe_store::JobStore;
use autopipe_workflow::examples::{example, EXAMPLES};
use autopipe_workflow::labelling::RunError;
use autopipe_workflow::models;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "autopipe",
    version,
    about = "MLIP-AutoPipe: machine-learning interatomic potentials with no human in the loop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a commented configuration: an example, or one made for elements and goals
    /// (`--elements Si --goal elastic --oracle qe`).
    Init {
        /// Example name (see --list).
        #[arg(long, required_unless_present_any = ["list", "goal"], conflicts_with = "goal")]
        example: Option<String>,
        /// List the examples.
        #[arg(long)]
        list: bool,
        /// Chemical symbols of the system (with --goal).
        #[arg(long, value_delimiter = ',', requires = "goal")]
        elements: Vec<String>,
        /// elastic, diffusion, phase_diagram (several with commas or repeated).
        #[arg(long, value_delimiter = ',', requires = "elements")]
        goal: Vec<String>,
        /// Who labels: emt, qe or cp2k (with --goal).
        #[arg(long, default_value = "emt", requires = "goal")]
        oracle: String,
        /// Where QE's pseudopotentials are (with --oracle qe).
        #[arg(long, default_value = "/usr/share/espresso/pseudo")]
        pseudo_dir: PathBuf,
    },
    /// Run a configuration: generate candidates, label them, write RUN/labels.xyz.
    /// Running it again resumes where it stopped.
    Run {
        config: PathBuf,
        /// Run directory (default: the configuration file's directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Accept label-defining changes of the configuration (oracle settings, elements):
        /// the run's structures are labelled again with the new settings.
        #[arg(long)]
        accept_changes: bool,
    },
    /// Check a configuration completely (every value, every limit) without doing any work.
    Validate { config: PathBuf },
    /// Check a run directory's database in full and say what can be recovered; with
    /// --recover, rebuild a damaged database from the job directories' results.
    Doctor {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long)]
        recover: bool,
        #[arg(long)]
        json: bool,
    },
    /// Where the learning loop stands (generation, phase, labels, errors, gamma).
    Status {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
        /// Show it again every 2 s, in place, until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Write the run's report: RUN/report/index.html (plots, no network needed), or its
    /// data as JSON.
    Report {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Output directory (default RUN/report); `-` prints to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// html or json (report.json).
        #[arg(long, default_value = "html")]
        format: String,
    },
    /// The report as a live page that follows the database (read-only).
    Serve {
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Address to listen on (port 0 picks a free one; loopback unless told otherwise).
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
    },
    /// Export the potential for LAMMPS (`pair_style snap`).
    Export {
        /// Output directory for .snapcoeff, .snapparam and the pair_coeff lines.
        #[arg(long)]
        lammps: PathBuf,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// A generation's model instead of the latest.
        #[arg(long)]
        generation: Option<i64>,
        /// A model file instead of a run directory's.
        #[arg(long, conflicts_with_all = ["generation"])]
        model: Option<PathBuf>,
    },
    /// Fit or evaluate a potential outside the loop.
    #[command(subcommand)]
    Potential(PotentialCommand),
    /// Label the frames of an extended XYZ file with the built-in EMT (energy, forces, stress).
    Label {
        file: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Molecular dynamics with a potential (or EMT), writing a labelled trajectory.
    Md(MdArgs),
    /// The job manager: import structures, label them, watch, export.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Structure generation on its own (extended XYZ out).
    #[command(subcommand)]
    Build(build_cmd::BuildCommand),
    /// Material properties with a potential or EMT: elastic constants, diffusion, convex hull.
    #[command(subcommand)]
    Property(property_cmd::PropertyCommand),
    /// Measure the figures of merit; prints `name value unit` lines.
    Bench {
        /// Smaller sizes, for a quick check.
        #[arg(long)]
        quick: bool,
        /// Every measurement once at toy sizes (seconds; the numbers mean nothing): checks
        /// that the command and each of its measurements work.
        #[arg(long, conflicts_with = "quick")]
        smoke: bool,
        /// Only these groups of measurements, comma-separated (fit, parse, snap, emt, store,
        /// status, pool, sched, build, elastic, property, explore).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// What a parser reads from a real engine output, as one JSON object.
    Parse {
        /// qe (pw.x), cp2k, orca (text or .gz) or vasp (vasprun.xml or OUTCAR).
        #[arg(long)]
        engine: String,
        file: PathBuf,
    },
    /// Run one job directory (started by the executor; not for people).
    #[command(hide = true)]
    JobExec { dir: PathBuf },
}

#[derive(Subcommand)]
enum PotentialCommand {
    /// Errors of a model against the labels of an extended XYZ file, `name value unit` lines.
    Eval {
        file: PathBuf,
        /// The model (default: the latest of the run directory --dir).
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Fit a SNAP potential to the labels of an extended XYZ file.
    Fit {
        file: PathBuf,
        /// Output model (JSON).
        #[arg(long, short)]
        out: PathBuf,
        /// Take [potential] and [fit] from this configuration.
        #[arg(long)]
        config: Option<PathBuf>,
        /// SNAP 2J (default 8, or the configuration's); overrides --config.
        #[arg(long)]
        twojmax: Option<usize>,
        /// SNAP cutoff, Å (default 4.7, or the configuration's); overrides --config.
        #[arg(long)]
        cutoff_a: Option<f64>,
        /// Held-out share (default 0.1, or the configuration's); overrides --config.
        #[arg(long)]
        test_fraction: Option<f64>,
        /// K-fold cross-validation over all labelled frames first (errors with 95%
        /// confidence intervals); the model is then fitted on every frame.
        #[arg(long, conflicts_with = "test_fraction")]
        folds: Option<usize>,
        /// Choose the ridge strength and scale the energy and stress weights by
        /// cross-validation (--folds K, default 5) before the final fit: the lowest
        /// cross-validated force RMSE whose energy RMSE is no worse than the configured
        /// options'.
        #[arg(long)]
        search: bool,
        /// The training engine: `snap` (native) or `pace` (Pacemaker's ACE, run as a job).
        #[arg(long, default_value = "snap", value_parser = ["snap", "pace"])]
        kind: String,
        /// Pace: basis functions per element (default 16).
        #[arg(long)]
        functions: Option<usize>,
        /// Pace: Pacemaker's BFGS iterations (default 100).
        #[arg(long)]
        max_iterations: Option<usize>,
        /// Pace: ladder fitting, this many functions added per step.
        #[arg(long)]
        ladder_step: Option<usize>,
    },
}

#[derive(Args)]
struct MdArgs {
    /// Drive the dynamics with EMT (frames then carry EMT labels).
    #[arg(long, conflicts_with = "model")]
    emt: bool,
    /// Drive the dynamics with this SNAP model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Start from the last frame of this extended XYZ file instead of a lattice.
    #[arg(long)]
    structure: Option<PathBuf>,
    #[arg(long, default_value = "fcc")]
    lattice: String,
    #[arg(long, value_delimiter = ',', default_value = "Cu")]
    elements: Vec<String>,
    #[arg(long, default_value_t = 3.61)]
    lattice_constant_a: f64,
    #[arg(long, num_args = 3, default_values_t = [3, 3, 3])]
    supercell: Vec<usize>,
    #[arg(long, default_value_t = 300.0)]
    temperature_k: f64,
    /// NPT at this pressure (default: NVT).
    #[arg(long)]
    pressure_gpa: Option<f64>,
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    #[arg(long, default_value_t = 2.0)]
    timestep_fs: f64,
    #[arg(long, default_value_t = 0.02)]
    friction_per_fs: f64,
    /// Write a frame every this many steps.
    #[arg(long, default_value_t = 50)]
    every: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Trajectory (extended XYZ).
    #[arg(long, short)]
    out: PathBuf,
    /// Thermo log.
    #[arg(long)]
    thermo: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only print die quietly on a closed pipe (`status | head -1`), as
    // Unix tools do; the ones that run work keep the default (an error they handle).
    if !matches!(
        cli.command,
        Command::Run { .. }
            | Command::Jobs(jobs::JobsCommand::Run { .. })
            | Command::JobExec { .. }
            | Command::Serve { .. }
    ) {
        // SAFETY: setting a signal disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, each cause once: a cause whose text the
/// message already shows (thiserror's `{source}`) is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Where a command's report goes: stdout, unless stdout carries the data (`-`).
pub(crate) fn report_line(out_path: &Path, line: &str) {
    if autopipe_atoms::output::is_stdout(out_path) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Frames of an extended XYZ input, which must have at least one.
pub(crate) fn read_frames(path: &Path) -> Result<Vec<autopipe_atoms::Frame>> {
    let mut frames = read_extxyz_file(path)?;
    if frames.is_empty() {
        bail!("{}: no frames (an empty file?)", path.display());
    }
    for (i, f) in frames.iter_mut().enumerate() {
        f.structure.validate().with_context(|| format!("{}: frame {}", path.display(), i + 1))?;
        f.take_virial_as_stress().map_err(|e| anyhow::anyhow!("{}: frame {}: {e}", path.display(), i + 1))?;
    }
    Ok(frames)
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Init { example: name, list, elements, goal, oracle, pseudo_dir } => {
            if goal.is_empty() {
                init(name, list)
            } else {
                init_goal(&elements, &goal, &oracle, &pseudo_dir)
            }
        }
        Command::Run { config, dir, accept_changes } => run(&config, dir, accept_changes),
        Command::Validate { config } => validate(&config),
        Command::Doctor { dir, recover, json } => doctor(&dir, recover, json),
        Command::Jobs(j) => jobs::run(j),
        Command::Status { dir, json, watch: false } => loop_status(&dir, json),
        Command::Status { dir, json, watch: true } => {
            report::watch(std::time::Duration::from_secs(2), || loop_status(&dir, json))
        }
        Command::Report { dir, out, format } => report::report(&dir, out.as_deref(), &format),
        Command::Serve { dir, bind } => report::serve(&dir, &bind),
        Command::Export { lammps, dir, generation, model } => {
            let path = match model {
                Some(p) => p,
                None => models::run_model_path(&dir, generation)?,
            };
            for f in models::export_lammps_file(&path, &lammps)? {
                println!("{}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Potential(p) => potential(p),
        Command::Md(args) => md(args),
        Command::Label { file, out } => {
            let emt = autopipe_engines::emt::Emt::new();
            let mut frames = read_frames(&file)?;
            for (i, f) in frames.iter_mut().enumerate() {
                models::label_with_emt(&emt, f).with_context(|| format!("{}: frame {}", file.display(), i + 1))?;
            }
            write_extxyz_file(&out, &frames)?;
            report_line(&out, &format!("{} frames labelled with EMT, written to {}", frames.len(), out.display()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(b) => build_cmd::run(b),
        Command::Property(p) => property_cmd::run(p),
        Command::Bench { quick, smoke, only } => {
            let size = match (quick, smoke) {
                (_, true) => bench::Size::Smoke,
                (true, _) => bench::Size::Quick,
                _ => bench::Size::Full,
            };
            bench::run(size, &only).map(|_| ExitCode::SUCCESS)
        }
        Command::Parse { engine, file } => parse(&engine, &file),
        Command::JobExec { dir } => {
            // An exploration segment, or an attempt of a calculation.
            if autopipe_workflow::explore_job::is_segment_dir(&dir) {
                autopipe_workflow::explore_job::execute_segment_dir(&dir).map_err(anyhow::Error::msg)?;
            } else if autopipe_workflow::pace_job::is_pace_dir(&dir) {
                autopipe_workflow::pace_job::execute_pace_dir(&dir).map_err(anyhow::Error::msg)?;
            } else {
                autopipe_exec::execute_job_dir(&dir)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn loop_status(dir: &Path, json: bool) -> Result<ExitCode> {
    let store = JobStore::open_read_only(dir)?;
    let status = models::loop_status(&store)?;
    if json {
        println!("{status}");
        return Ok(ExitCode::SUCCESS);
    }
    match (status["generation"].as_i64(), status["phase"].as_str()) {
        (Some(g), Some(phase)) => println!(
            "generation {g}, phase {phase}{}; {} labels, {} engine executions",
            status["message"].as_str().map(|m| format!(" ({m})")).unwrap_or_default(),
            status["labels"],
            status["executions"]
        ),
        _ => println!("no learning loop in {} ({} labels from `autopipe jobs`)", dir.display(), status["labels"]),
    }
    if let Some(model) = status["model"].as_str() {
        println!("model: {}", dir.join(model).display());
    }
    let gens = status["generations"].as_array().cloned().unwrap_or_default();
    // The headline of the report: the current model's held-out errors, and where the page is.
    if let Some(g) = gens.iter().rev().find(|g| g["metrics"]["test"].is_object()) {
        let v = |key: &str, scale: f64| g[key].as_f64().map(|x| format!("{:.4}", x * scale)).unwrap_or("-".into());
        println!(
            "held-out errors of the generation {} model: energy {} meV/atom, forces {} eV/Å, stress {} GPa",
            g["generation"],
            v("test_energy_rmse_ev_per_atom", 1e3),
            v("test_force_rmse_ev_per_a", 1.0),
            v("test_stress_rmse_gpa", 1.0)
        );
    }
    let page = autopipe_report::default_out_dir(dir).join("index.html");
    if page.is_file() {
        println!("report: {}", page.display());
    }
    if !gens.is_empty() {
        // One row per generation: what it labelled, the fit, and what its exploration found.
        println!(
            "{:>4} {:>8} {:>6} {:>14} {:>15} {:>9} {:>9} {:>10} {:>9}",
            "gen",
            "labelled",
            "failed",
            "test F (eV/Å)",
            "test E (meV/at)",
            "max γ",
            "uncertain",
            "candidates",
            "selected"
        );
        let num = |v: &serde_json::Value, scale: f64| {
            v.as_f64().map(|x| format!("{:.4}", x * scale)).unwrap_or_else(|| "-".into())
        };
        let int = |v: &serde_json::Value| v.as_i64().map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        let mut below = Vec::new();
        for g in &gens {
            let x = &g["explore"];
            if x["filled_below_gamma_select"] == true {
                below.push(g["generation"].to_string());
            }
            println!(
                "{:>4} {:>8} {:>6} {:>14} {:>15} {:>9} {:>9} {:>10} {:>9}",
                g["generation"].to_string(),
                int(&g["n_labelled"]),
                int(&g["n_failed"]),
                num(&g["test_force_rmse_ev_per_a"], 1.0),
                num(&g["test_energy_rmse_ev_per_atom"], 1e3),
                num(&x["max_gamma"], 1.0),
                int(&x["n_uncertain"]),
                int(&x["n_candidates"]),
                int(&x["n_selected_for_next"]),
            );
        }
        println!("(candidates and selected: found by that generation's exploration, labelled by the next)");
        if !below.is_empty() {
            println!(
                "generation {}: nothing was above gamma_select; the next generation's quota was filled with the \
                 most uncertain frames below it because the test errors missed their targets",
                below.join(", ")
            );
        }
    }
    for line in autopipe_workflow::goals::status_lines(&store)? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(config_path: &Path) -> Result<ExitCode> {
    let c = autopipe_workflow::load_config(config_path)?;
    println!(
        "{}: valid. run {:?}: {} ({}, {} atoms per cell, {} structures in generation 0), oracle {}, {}, \
         {} MD segments of {} steps, at most {} generations of {} labels, {} workers",
        config_path.display(),
        c.name,
        c.elements.iter().map(|e| e.symbol()).collect::<Vec<_>>().join("-"),
        c.generate.lattice.name(),
        c.generate.atoms_per_structure(),
        c.generate.count,
        c.oracle.name(),
        autopipe_workflow::pace_loop::potential_summary(&c),
        autopipe_workflow::learn::segments(&c).len(),
        c.explore.steps,
        c.loop_.max_generations,
        c.loop_.per_generation,
        c.execution.workers
    );
    Ok(ExitCode::SUCCESS)
}

fn doctor(dir: &Path, recover: bool, json: bool) -> Result<ExitCode> {
    let r = autopipe_workflow::doctor::doctor(dir, recover)?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        match &r.problems {
            None => println!(
                "{}: sound (integrity_check ok), {} labels",
                r.database.display(),
                r.labels_in_database.unwrap_or(0)
            ),
            Some(_) if r.missing => println!("{}: there is no database", r.database.display()),
            Some(p) => {
                println!(
                    "{}: DAMAGED ({} {}):",
                    r.database.display(),
                    p.len(),
                    if p.len() == 1 { "problem" } else { "problems" }
                );
                for line in p.iter().take(10) {
                    println!("  {line}");
                }
            }
        }
        println!("{} finished labels in the job directories of {}", r.labels_in_job_dirs, dir.display());
        if !r.unreadable_job_dirs.is_empty() {
            println!("{} job results could not be read:", r.unreadable_job_dirs.len());
            for p in r.unreadable_job_dirs.iter().take(10) {
                println!("  {}", p.display());
            }
        }
        match (&r.problems, r.recovered) {
            (Some(_), Some(n)) => println!(
                "recovered {n} labels into a fresh {}{}; `autopipe run` resumes from them (no finished label runs again)",
                r.database.display(),
                r.damaged_moved_to.as_ref().map(|p| format!(" (the damaged file is now {})", p.display())).unwrap_or_default()
            ),
            (Some(_), None) if r.labels_in_job_dirs > 0 || !r.missing => println!(
                "`autopipe doctor --dir {} --recover` builds a database from those {} labels (a damaged file is kept aside)",
                dir.display(),
                r.labels_in_job_dirs
            ),
            _ => {}
        }
    }
    Ok(if r.problems.is_some() && r.recovered.is_none() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub(crate) fn print_metrics(prefix: &str, m: &autopipe_potential::ErrorMetrics) {
    println!("{prefix}frames {} frames", m.n_frames);
    if let Some(s) = m.energy_ev_per_atom {
        println!("{prefix}energy_rmse {:.6} meV/atom", s.rmse * 1e3);
        println!("{prefix}energy_mae {:.6} meV/atom", s.mae * 1e3);
    }
    if let Some(s) = m.forces_ev_per_a {
        println!("{prefix}force_rmse {:.6} eV/Å", s.rmse);
        println!("{prefix}force_mae {:.6} eV/Å", s.mae);
    }
    if let Some(s) = m.stress_gpa {
        println!("{prefix}stress_rmse {:.6} GPa", s.rmse);
    }
    if let Some(g) = m.max_gamma {
        println!("{prefix}max_gamma {g:.6} 1");
    }
}

/// Cross-validated errors: `PREFIXforce_rmse`, `..._ci95_low`, `..._ci95_high` lines.
fn print_cv(prefix: &str, e: &autopipe_potential::CvErrors) {
    let line = |name: &str, s: &Option<autopipe_potential::CvStat>, scale: f64, unit: &str| {
        if let Some(s) = s {
            println!("{prefix}{name}_rmse {:.6} {unit}", s.rmse * scale);
            println!("{prefix}{name}_rmse_ci95_low {:.6} {unit}", s.ci95_low * scale);
            println!("{prefix}{name}_rmse_ci95_high {:.6} {unit}", s.ci95_high * scale);
        }
    };
    line("energy", &e.energy_ev_per_atom, 1e3, "meV/atom");
    line("force", &e.forces_ev_per_a, 1.0, "eV/Å");
    line("stress", &e.stress_ev_per_a3, autopipe_atoms::units::EV_PER_A3_IN_GPA, "GPa");
}

/// Per-group metrics: the lines of [`print_metrics`], named `PREFIXgroup.NAME.…`.
pub(crate) fn print_group_metrics(
    prefix: &str,
    groups: &std::collections::BTreeMap<String, autopipe_potential::ErrorMetrics>,
) {
    if groups.len() < 2 && groups.keys().all(|g| g == autopipe_potential::DEFAULT_GROUP) {
        return;
    }
    for (g, m) in groups {
        print_metrics(&format!("{prefix}group.{g}."), m);
    }
}

fn potential(command: PotentialCommand) -> Result<ExitCode> {
    match command {
        PotentialCommand::Eval { file, model, dir } => {
            let path = match model {
                Some(p) => p,
                None => models::run_model_path(&dir, None)?,
            };
            if pace_cmd::is_pace_model(&path) {
                pace_cmd::eval(&path, &read_frames(&file)?, &file)?;
                return Ok(ExitCode::SUCCESS);
            }
            let model = models::read_model(&path)?;
            let frames = read_frames(&file)?;
            check_model_elements(&model, &path, &frames, &file)?;
            let (metrics, groups) = autopipe_potential::evaluate_errors_by_group(&model, &frames, &Default::default())
                .with_context(|| format!("evaluating {} on {}", path.display(), file.display()))?;
            print_metrics("", &metrics);
            print_group_metrics("", &groups);
            Ok(ExitCode::SUCCESS)
        }
        PotentialCommand::Fit {
            file,
            out,
            config,
            twojmax,
            cutoff_a,
            test_fraction,
            folds,
            search,
            kind,
            functions,
            max_iterations,
            ladder_step,
        } => {
            let frames = read_frames(&file)?;
            for (i, f) in frames.iter().enumerate() {
                if f.energy_ev.is_none() || f.forces_ev_per_a.is_none() {
                    bail!("{}: frame {}: no energy and forces to fit on", file.display(), i + 1);
                }
            }
            if kind == "pace" {
                if folds.is_some() || search || twojmax.is_some() {
                    bail!("--folds, --search and --twojmax are for SNAP fits, not --kind pace");
                }
                let (base, mut opts) = match config {
                    Some(c) => {
                        let c = autopipe_workflow::load_config(&c)?;
                        (Some(c.pace), c.fit)
                    }
                    None => (None, Default::default()),
                };
                let mut settings = pace_cmd::settings_for(&frames, base);
                settings.cutoff_a = cutoff_a.unwrap_or(settings.cutoff_a);
                settings.functions_per_element = functions.unwrap_or(settings.functions_per_element);
                settings.max_iterations = max_iterations.unwrap_or(settings.max_iterations);
                settings.ladder_step = ladder_step.or(settings.ladder_step);
                settings.validate().map_err(|e| anyhow::anyhow!("pace settings: {e}"))?;
                if let Some(t) = test_fraction {
                    if !(0.0..1.0).contains(&t) {
                        bail!("--test-fraction {t} is outside 0 .. 1");
                    }
                    opts.test_fraction = t;
                }
                pace_cmd::fit(&file, &frames, &out, pace_cmd::PaceFitArgs { settings, opts })?;
                return Ok(ExitCode::SUCCESS);
            }
            if functions.is_some() || max_iterations.is_some() || ladder_step.is_some() {
                bail!("--functions, --max-iterations and --ladder-step are for --kind pace");
            }
            let (mut params, mut opts) = match config {
                Some(c) => {
                    let c = autopipe_workflow::load_config(&c)?;
                    (c.snap, c.fit)
                }
                None => (models::default_snap_params(&frames, 8, 4.7), Default::default()),
            };
            // An explicit flag wins over the configuration, always.
            if let Some(t) = twojmax {
                if !(2..=12).contains(&t) {
                    bail!("--twojmax {t} is outside 2 ..= 12");
                }
                params.twojmax = t;
            }
            if let Some(r) = cutoff_a {
                if !(r.is_finite() && r > 1.0 && r < 15.0) {
                    bail!("--cutoff-a {r} is outside 1 .. 15 Å");
                }
                params.rcutfac = r;
            }
            if let Some(t) = test_fraction {
                if !(0.0..1.0).contains(&t) {
                    bail!("--test-fraction {t} is outside 0 .. 1");
                }
                opts.test_fraction = t;
            }
            if let Some(k) = folds {
                if !(2..=100).contains(&k) {
                    bail!("--folds {k} is outside 2 ..= 100");
                }
            }
            if search {
                let k = folds.unwrap_or(5);
                let start = std::time::Instant::now();
                let s = autopipe_potential::search_weights(&frames, &params, &opts, k, &Default::default())
                    .with_context(|| format!("searching the weights on {}", file.display()))?;
                let b = &s.best;
                println!("search_alpha {:e} 1", b.alpha);
                println!("search_energy_weight_scale {} 1", b.energy_scale);
                println!("search_stress_weight_scale {} 1", b.stress_scale);
                println!("search_cv_force_rmse {:.6} eV/Å", b.cv_forces_ev_per_a);
                println!("search_cv_energy_rmse {:.6} meV/atom", b.cv_energy_ev_per_atom * 1e3);
                eprintln!(
                    "search: {} candidates, {k} folds, {:.3} s; from CV force RMSE {:.4} eV/Å, energy {:.3} meV/atom",
                    s.points.len(),
                    start.elapsed().as_secs_f64(),
                    s.start.cv_forces_ev_per_a,
                    s.start.cv_energy_ev_per_atom * 1e3
                );
                opts = s.options;
            }
            if let Some(k) = folds {
                let start = std::time::Instant::now();
                let cv = autopipe_potential::cross_validate(&frames, &params, &opts, k)
                    .with_context(|| format!("cross-validating on {}", file.display()))?;
                print_cv("cv_", &cv.all);
                if cv.groups.len() > 1 || cv.groups.keys().any(|g| g != autopipe_potential::DEFAULT_GROUP) {
                    for (g, e) in &cv.groups {
                        print_cv(&format!("cv_group.{g}."), e);
                    }
                }
                eprintln!(
                    "{k}-fold cross-validation: {:.3} s; the model is fitted on every frame",
                    start.elapsed().as_secs_f64()
                );
                opts.test_fraction = 0.0;
                opts.groups.values_mut().for_each(|g| g.test_fraction = None);
            }
            let start = std::time::Instant::now();
            let report = autopipe_potential::fit(&frames, params, &opts)
                .with_context(|| format!("fitting {}", file.display()))?;
            let fit_s = start.elapsed().as_secs_f64();
            autopipe_atoms::output::write_output(&out, &serde_json::to_vec(&report.model)?)
                .with_context(|| format!("cannot write {}", out.display()))?;
            print_metrics("train_", &report.train);
            print_metrics("test_", &report.test);
            print_group_metrics("train_", &report.train_groups);
            print_group_metrics("test_", &report.test_groups);
            eprintln!("fit_s {:.3} s", fit_s);
            eprintln!(
                "model (SNAP 2J={}, cutoff {} Å) written to {}",
                report.model.params.twojmax,
                report.model.params.rcutfac,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Every element of the frames must be one of the model's.
pub(crate) fn check_model_elements(
    model: &autopipe_potential::SnapModel,
    model_path: &Path,
    frames: &[autopipe_atoms::Frame],
    file: &Path,
) -> Result<()> {
    let known: Vec<_> = model.params.elements.iter().map(|e| e.element).collect();
    for (i, f) in frames.iter().enumerate() {
        if let Some((k, e)) = f.structure.species.iter().enumerate().find(|(_, e)| !known.contains(e)) {
            bail!(
                "{}: frame {}: atom {} is {e}, which is not one of the elements of the model {} ({})",
                file.display(),
                i + 1,
                k + 1,
                model_path.display(),
                known.iter().map(|e| e.symbol()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(())
}

fn md(a: MdArgs) -> Result<ExitCode> {
    let driver = match (&a.model, a.emt) {
        (Some(p), false) => models::MdDriver::Model(models::read_model(p)?),
        (None, true) => models::MdDriver::Emt,
        _ => bail!("give --emt or --model MODEL"),
    };
    let structure = match &a.structure {
        Some(p) => read_frames(p)?.pop().with_context(|| format!("{} has no frame", p.display()))?.structure,
        None => {
            let lattice = Lattice::parse(&a.lattice).with_context(|| format!("unknown lattice {:?}", a.lattice))?;
            let elements =
                a.elements.iter().map(|s| s.parse().map_err(anyhow::Error::msg)).collect::<Result<Vec<_>>>()?;
            let recipe = BulkRecipe {
                lattice,
                elements,
                lattice_constant_a: a.lattice_constant_a,
                supercell: [a.supercell[0], a.supercell[1], a.supercell[2]],
                count: 1,
                max_strain: 0.0,
                rattle_a: 0.0,
                vacancy_fraction: 0.0,
                seed: a.seed,
            };
            recipe.validate().map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
            autopipe_build::generate_bulk(&recipe).remove(0)
        }
    };
    if a.every == 0 {
        bail!("--every must be at least 1");
    }
    let run = models::MdRun {
        temperature_k: a.temperature_k,
        pressure_gpa: a.pressure_gpa,
        steps: a.steps,
        timestep_fs: a.timestep_fs,
        every: a.every.max(1),
        seed: a.seed,
        friction_per_fs: a.friction_per_fs,
    };
    let bar = progress::md_bar(a.steps);
    let steps = models::run_md_to_files(&driver, structure, &run, &a.out, a.thermo.as_deref(), &mut |step, t| {
        if let Some(bar) = &bar {
            bar.set_position(step);
            bar.set_message(format!("T = {t:.0} K"));
        }
    })?;
    if let Some(bar) = bar {
        bar.finish();
    }
    eprintln!("{steps} steps; trajectory in {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn parse(engine: &str, file: &Path) -> Result<ExitCode> {
    use autopipe_engines::{cp2k, orca, output::read_output_file, qe, vasp};
    let source = file.display().to_string();
    let parsed = match engine {
        "qe" | "pw" | "pw.x" => qe::parse_pw_output(&read_output_file(file)?, &source)?,
        "cp2k" => cp2k::parse_cp2k_output(&read_output_file(file)?, &source)?,
        "orca" => orca::read_orca_output(file)?,
        // vasprun.xml or OUTCAR (maybe gzipped), told apart by their content.
        "vasp" => vasp::read_vasp_output(file)?,
        other => bail!("unknown engine {other:?} for parse; this version reads: qe, cp2k, orca, vasp"),
    };
    println!("{}", serde_json::to_string(&parsed)?);
    Ok(ExitCode::SUCCESS)
}

fn init(name: Option<String>, list: bool) -> Result<ExitCode> {
    if list {
        for (n, about, _) in EXAMPLES {
            println!("{n:<12} {about}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let name = name.unwrap_or_default();
    match example(&name) {
        Some(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let names: Vec<_> = EXAMPLES.iter().map(|(n, _, _)| *n).collect();
            bail!("no example named {name:?}; there are: {}", names.join(", "))
        }
    }
}

/// `init --elements ... --goal ... --oracle ...`: a configuration made for the goals.
fn init_goal(elements: &[String], goals: &[String], oracle: &str, pseudo_dir: &Path) -> Result<ExitCode> {
    use autopipe_workflow::goal_init::{choose_pseudo, goal_config, Goal, Oracle};
    let elements = elements
        .iter()
        .map(|s| s.trim().parse().map_err(|e: String| anyhow::anyhow!("--elements: {e}")))
        .collect::<Result<Vec<autopipe_atoms::Element>>>()?;
    let goals = goals
        .iter()
        .map(|g| Goal::parse(g).with_context(|| format!("--goal {g:?}: expected elastic, diffusion or phase_diagram")))
        .collect::<Result<Vec<_>>>()?;
    let oracle = Oracle::parse(oracle).with_context(|| format!("--oracle {oracle:?}: expected emt, qe or cp2k"))?;
    let mut pseudos = Vec::new();
    if oracle == Oracle::Qe {
        // The candidate files of each element, read for their suggested cutoffs.
        let names: Vec<String> = std::fs::read_dir(pseudo_dir)
            .with_context(|| format!("--pseudo-dir {}: cannot list it", pseudo_dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        for e in &elements {
            let prefix = format!("{}.", e.symbol());
            let mut files = Vec::new();
            for name in names.iter().filter(|n| n.starts_with(&prefix)) {
                let path = pseudo_dir.join(name);
                let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                files.push((name.clone(), String::from_utf8_lossy(&text).into_owned()));
            }
            let p = choose_pseudo(*e, &files).with_context(|| {
                format!("--oracle qe: no PBE pseudopotential for {e} ({e}.pbe-*.UPF) in {}", pseudo_dir.display())
            })?;
            pseudos.push(p);
        }
    }
    let text = goal_config(&elements, &goals, oracle, &pseudo_dir.display().to_string(), &pseudos)
        .map_err(anyhow::Error::msg)?;
    // What is printed must be a valid configuration.
    autopipe_workflow::parse_config(&text, Path::new("init.toml"))
        .context("the generated configuration does not validate (please report)")?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The command that runs one job directory: this very program.
pub fn launcher() -> Result<Launcher> {
    let program = std::env::current_exe().context("cannot locate the autopipe executable")?;
    Ok(Launcher { program, args: vec!["job-exec".into()] })
}

fn run(config_path: &Path, dir: Option<PathBuf>, accept_changes: bool) -> Result<ExitCode> {
    let config = autopipe_workflow::load_config(config_path)?;
    if config.potential_kind == "pace" {
        autopipe_workflow::pace_job::check_installed()
            .map_err(|e| anyhow::anyhow!("{}: potential.kind = \"pace\": {e}", config_path.display()))?;
    }
    let run_dir = dir.unwrap_or_else(|| {
        config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    eprintln!(
        "autopipe run {}: {} ({}), oracle {}, {}, {} workers, in {}",
        config.name,
        config.elements.iter().map(|e| e.symbol()).collect::<Vec<_>>().join("-"),
        config.generate.lattice.name(),
        config.oracle.name(),
        autopipe_workflow::pace_loop::potential_summary(&config),
        config.execution.workers,
        run_dir.display()
    );
    let mut progress = progress::Progress::new();
    let options = autopipe_workflow::RunOptions { accept_changes };
    let mut reporter = report::Reporting::new(&mut progress, &run_dir);
    let outcome = autopipe_workflow::run_loop(&config, &run_dir, &launcher()?, &mut reporter, options);
    progress.finish();
    // The report of how the run ended or stopped (not when the database itself failed,
    // or another run holds the directory: that one keeps its report).
    if run_dir.join(autopipe_store::DB_FILE).is_file()
        && !matches!(outcome, Err(RunError::Store(_) | RunError::ConfigDrift(_)))
    {
        report::refresh(&run_dir);
    }
    match outcome {
        Ok(o) => {
            eprintln!(
                "{} after generation {}: {} labels in {}; model {}",
                o.state.phase.as_str(),
                o.state.generation,
                o.labels,
                run_dir.join("labels.xyz").display(),
                o.model.map(|p| p.display().to_string()).unwrap_or_else(|| "none".into())
            );
            if o.state.phase == autopipe_store::Phase::Converged {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "not converged ({}); raise loop.max_generations and run again to go on",
                    o.state.message.as_deref().unwrap_or("max_generations reached")
                );
                Ok(ExitCode::from(4))
            }
        }
        Err(RunError::Stopped(message)) => {
            eprintln!("{message}");
            Ok(ExitCode::from(3))
        }
        Err(RunError::Interrupted) => {
            let saved = JobStore::open_read_only(&run_dir)
                .ok()
                .and_then(|s| Some((s.counts().ok()?.done, s.loop_state().ok()??)))
                .map(|(n, st)| {
                    format!(
                        "{n} labels and generation {} (phase {}) are saved in {}; ",
                        st.generation,
                        st.phase.as_str(),
                        run_dir.join(autopipe_store::DB_FILE).display()
                    )
                })
                .unwrap_or_default();
            eprintln!("interrupted: {saved}running jobs were stopped and put back to pending; run the same command again to resume");
            Ok(ExitCode::from(130))
        }
        Err(e) => Err(e.into()),
    }
}
