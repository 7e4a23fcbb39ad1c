//! `autopipe jobs ...`: the job manager (import, run, status, export, reset, cancel,
//! forget, update).

mod campaign;
mod csv_import;

pub use crate::backend_args::ExecArgs;
use crate::{launcher, progress};
use anyhow::{bail, Result};
use autopipe_atoms::extxyz::{read_extxyz_file, write_extxyz_file};
use autopipe_engines::EngineSpec;
use autopipe_exec::local::attempt_dir;
use autopipe_exec::{calc_dir_rel, plural, BackendKind, RunSummary};
use autopipe_store::{utc, CalcStatus, JobStore, RunLock, StoreError};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum JobsCommand {
    /// Add one calculation per structure of an extended XYZ file, or per row of a CSV
    /// file of molecules (creates RUN if needed). A structure already present with the
    /// same engine settings (and charge and multiplicity) is not added twice.
    Import {
        file: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        csv: CsvArgs,
    },
    /// Run every pending calculation (on this machine, or through Slurm or Flux with
    /// --backend); resumes after a crash: jobs still queued or running are adopted,
    /// finished ones harvested.
    Run {
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        exec: ExecArgs,
        /// Submit to the scheduler and return at once; a later `jobs run` picks the
        /// campaign up.
        #[arg(long)]
        detach: bool,
    },
    /// Submit the next pending calculations to the scheduler and return (skipping
    /// chronic failures); a later `jobs run` or `jobs submit` picks them up.
    Submit {
        #[arg(long)]
        dir: PathBuf,
        /// How many pending calculations to submit.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        batch_size: u64,
        /// Skip calculations that failed this many times or more.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_fail_count: Option<u32>,
        #[command(flatten)]
        exec: ExecArgs,
    },
    /// Where the calculations stand.
    Status {
        #[arg(long)]
        dir: PathBuf,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Everything about one calculation: structure, results, job directories, attempts.
        #[arg(long, conflicts_with_all = ["metrics", "failed", "stalled", "chronic"])]
        id: Option<i64>,
        /// Metrics of the finished calculations per engine: max force, SCF steps, final
        /// energy, wall time (mean, median, min, max) and core-hours.
        #[arg(long)]
        metrics: bool,
        /// Every failed (and timed-out) calculation with its last message.
        #[arg(long)]
        failed: bool,
        /// Running calculations whose attempt directory has not changed for
        /// --stalled-after-h hours.
        #[arg(long)]
        stalled: bool,
        /// Hours without a change in its job directory after which a running
        /// calculation is stalled.
        #[arg(long, default_value_t = 6.0, value_name = "HOURS", requires = "stalled")]
        stalled_after_h: f64,
        /// Calculations that failed at least K times (fail count, kept across resets).
        #[arg(long, value_name = "K")]
        chronic: Option<u32>,
    },
    /// Write every finished label as extended XYZ (energy, forces, stress).
    Export {
        #[arg(long)]
        dir: PathBuf,
        out: PathBuf,
    },
    /// Put failed (and timed-out, cancelled or stalled) calculations back to pending with
    /// fresh retry budgets; their fail count is kept (a stalled attempt adds one).
    Reset {
        #[arg(long)]
        dir: PathBuf,
        /// Reset failed calculations (default when no flag is given: failed and timed out).
        #[arg(long)]
        failed: bool,
        /// Reset timed-out calculations.
        #[arg(long)]
        timeout: bool,
        /// Reset cancelled calculations.
        #[arg(long)]
        cancelled: bool,
        /// Reset running calculations whose attempt directory has not changed for
        /// --stalled-after-h hours; a job still holding its lock is stopped first.
        #[arg(long)]
        stalled: bool,
        /// Hours without a change after which a running calculation is stalled.
        #[arg(long, default_value_t = 6.0, value_name = "HOURS", requires = "stalled")]
        stalled_after_h: f64,
        /// Leave calculations whose fail count reached K as they are (chronic failures).
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
        max_fail_count: Option<u32>,
    },
    /// Rescan the job directories and record what jobs run or finished outside the
    /// orchestrator left there: a result.json, or an engine output (plain or gzipped).
    Update {
        #[arg(long)]
        dir: PathBuf,
        /// Retries after physics failures found (0 to 100).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
        max_physics_retries: u32,
        /// Retries after infrastructure failures found (0 to 100).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
        max_infra_retries: u32,
    },
    /// Calculations that must never run: pending, failed or timed-out ones become
    /// cancelled; a running one is stopped (its process group killed) and never harvested,
    /// also while `jobs run` runs in another terminal. `reset --cancelled` undoes it.
    Cancel {
        #[arg(long)]
        dir: PathBuf,
        /// Calculation ids (also as --id N).
        #[arg(required_unless_present_any = ["pending", "failed", "timeout", "all", "id"])]
        ids: Vec<i64>,
        /// A calculation id (repeatable).
        #[arg(long = "id")]
        id: Vec<i64>,
        /// Every calculation not done: pending, queued, running, failed, timed out.
        #[arg(long, conflicts_with_all = ["ids", "id", "pending", "failed", "timeout"])]
        all: bool,
        /// Every pending calculation.
        #[arg(long, conflicts_with = "ids")]
        pending: bool,
        /// Every failed calculation.
        #[arg(long, conflicts_with = "ids")]
        failed: bool,
        /// Every timed-out calculation.
        #[arg(long, conflicts_with = "ids")]
        timeout: bool,
    },
    /// Remove calculations from the database (with their attempts, and their structure
    /// when nothing else refers to it). Running ones are refused; job directories stay on
    /// disk.
    Forget {
        #[arg(long)]
        dir: PathBuf,
        /// Calculation ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

#[derive(Args)]
pub struct EngineArgs {
    /// emt (built in) or command (any program reading input.xyz, writing output.xyz);
    /// for qe, cp2k, orca and vasp, give their settings with --oracle or --config.
    #[arg(long, default_value = "emt", conflicts_with = "config")]
    engine: String,
    /// Take the engine and its settings from the [oracle] table of this configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Take the engine and its settings from the [oracle] table of this TOML file, the
    /// only table read (for a campaign on molecules, e.g. `engine = "orca"`).
    #[arg(long, conflicts_with_all = ["config", "engine", "command"])]
    oracle: Option<PathBuf>,
    /// The command line for --engine command, run with `sh -c` in the attempt's directory
    /// (AUTOPIPE_CALCULATION_ID and AUTOPIPE_ATTEMPT are set).
    #[arg(long)]
    command: Option<String>,
}

/// How `jobs import` reads its file.
#[derive(Args)]
pub struct CsvArgs {
    /// The file's format: extxyz or csv (default: csv for a name ending in .csv).
    #[arg(long, value_parser = ["extxyz", "csv"])]
    format: Option<String>,
    /// CSV: the column holding each molecule's XYZ geometry (`El x y z` lines, Å,
    /// optionally with the count and comment lines) [default: xyz].
    #[arg(long, value_name = "NAME")]
    geometry_column: Option<String>,
    /// CSV: the column holding each molecule's id (unique) [default: id].
    #[arg(long, value_name = "NAME")]
    id_column: Option<String>,
    /// CSV: the column holding each molecule's total charge (default: the engine's).
    #[arg(long, value_name = "NAME")]
    charge_column: Option<String>,
    /// CSV: the column holding each molecule's number of unpaired electrons
    /// (multiplicity = unpaired + 1; default: the engine's multiplicity).
    #[arg(long, value_name = "NAME")]
    unpaired_column: Option<String>,
}

pub fn run(command: JobsCommand) -> Result<ExitCode> {
    match command {
        JobsCommand::Import { file, dir, engine, csv } => import(&file, &dir, &engine, &csv),
        JobsCommand::Run { dir, exec, detach } => run_batch(&dir, &exec, detach, None, None),
        JobsCommand::Submit { dir, batch_size, max_fail_count, exec } => {
            if exec.resolve()?.1.kind == BackendKind::Local {
                bail!("`jobs submit` hands calculations to a scheduler: give --backend slurm or flux (or a --config whose [execution] backend is one); on this machine, `jobs run` runs them");
            }
            run_batch(&dir, &exec, true, Some(batch_size as usize), max_fail_count)
        }
        JobsCommand::Status { dir, json, id, metrics, failed, stalled, stalled_after_h, chronic } => {
            let stalled_after_s = stalled_after(stalled, stalled_after_h)?;
            let store = JobStore::open_read_only(&dir)?;
            match id {
                Some(id) => calculation_status(&store, &dir, id, json)?,
                None => {
                    let sections = campaign::Sections { metrics, failed, stalled_after_s, chronic };
                    campaign::status(&store, &dir, json, &sections)?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Export { dir, out } => {
            let store = JobStore::open_read_only(&dir)?;
            let frames: Vec<_> = store.labels()?.iter().map(autopipe_workflow::label_frame).collect();
            write_extxyz_file(&out, &frames)?;
            let line = format!("{} written to {}", plural(frames.len() as u64, "label", "labels"), out.display());
            crate::report_line(&out, &line);
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Reset { dir, failed, timeout, cancelled, stalled, stalled_after_h, max_fail_count } => {
            let stalled_after_s = stalled_after(stalled, stalled_after_h)?;
            let _lock = lock_existing(&dir)?;
            let mut store = JobStore::open_existing(&dir)?;
            let statuses = match (failed, timeout, cancelled, stalled) {
                (false, false, false, false) => vec![CalcStatus::Failed, CalcStatus::Timeout],
                _ => [(failed, CalcStatus::Failed), (timeout, CalcStatus::Timeout), (cancelled, CalcStatus::Cancelled)]
                    .into_iter()
                    .filter_map(|(on, s)| on.then_some(s))
                    .collect(),
            };
            let counted = if statuses.is_empty() {
                autopipe_store::ResetReport::default()
            } else {
                store.reset_counted(&statuses, max_fail_count)?
            };
            let stalled = match stalled_after_s {
                Some(after_s) => {
                    Some(autopipe_exec::campaign::reset_stalled(&mut store, &dir, after_s, max_fail_count)?)
                }
                None => None,
            };
            campaign::print_reset(&counted, stalled.as_ref(), max_fail_count);
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Update { dir, max_physics_retries, max_infra_retries } => {
            let _lock = lock_existing(&dir)?;
            let mut store = JobStore::open_existing(&dir)?;
            let opts = autopipe_exec::campaign::UpdateOptions { max_physics_retries, max_infra_retries };
            campaign::update(&mut store, &dir, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel { dir, mut ids, id, all, pending, failed, timeout } => {
            ids.extend(id);
            // The run lock when it is free; when `jobs run` (or `autopipe run`) holds it,
            // cancel goes ahead anyway: it is one transaction, and the running
            // orchestrator watches for cancellations, stops those jobs and never harvests
            // them. (Waiting for the lock would make cancelling a running job impossible.)
            let _lock = match lock_existing(&dir) {
                Ok(lock) => Some(lock),
                Err(StoreError::Locked { .. }) => None,
                Err(e) => return Err(e.into()),
            };
            let mut store = JobStore::open_existing(&dir)?;
            let ids = if ids.is_empty() {
                let mut v = Vec::new();
                for (on, s) in [
                    (pending || all, CalcStatus::Pending),
                    (all, CalcStatus::Submitted),
                    (all, CalcStatus::Running),
                    (failed || all, CalcStatus::Failed),
                    (timeout || all, CalcStatus::Timeout),
                ] {
                    if on {
                        v.extend(store.ids_with_status(s)?);
                    }
                }
                v
            } else {
                ids
            };
            cancel(&mut store, &dir, &ids)
        }
        JobsCommand::Forget { dir, ids } => {
            let _lock = lock_existing(&dir)?;
            let mut store = JobStore::open_existing(&dir)?;
            forget(&mut store, &dir, &ids)
        }
    }
}

/// `--stalled` with its threshold in seconds, checked.
fn stalled_after(on: bool, hours: f64) -> Result<Option<f64>> {
    if !(hours.is_finite() && hours >= 0.0) {
        bail!("--stalled-after-h must be a number of hours >= 0");
    }
    Ok(on.then_some(hours * 3600.0))
}

fn import(file: &Path, dir: &Path, engine: &EngineArgs, csv: &CsvArgs) -> Result<ExitCode> {
    let engine = engine_spec(engine)?;
    let is_csv = match csv.format.as_deref() {
        Some(f) => f == "csv",
        None => file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")),
    };
    // Read and check everything before the database (or the run directory) is touched:
    // bad input leaves everything as it was.
    let calcs = if is_csv {
        let columns = csv_import::Columns {
            geometry: csv.geometry_column.as_deref().unwrap_or("xyz"),
            id: csv.id_column.as_deref().unwrap_or("id"),
            charge: csv.charge_column.as_deref(),
            unpaired: csv.unpaired_column.as_deref(),
        };
        csv_import::calculations(file, &columns, &engine)?
    } else {
        if csv.geometry_column.is_some()
            || csv.id_column.is_some()
            || csv.charge_column.is_some()
            || csv.unpaired_column.is_some()
        {
            bail!("--geometry-column, --id-column, --charge-column and --unpaired-column are for CSV files (a name ending in .csv, or --format csv)");
        }
        extxyz_calculations(file, &engine)?
    };
    let _lock = RunLock::acquire(dir)?;
    let mut store = JobStore::open_or_create(dir)?;
    let s = store.import(&calcs)?;
    println!(
        "{} added, {} already present, in {}",
        plural(s.added as u64, "calculation", "calculations"),
        s.already_present,
        store.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

fn extxyz_calculations(file: &Path, engine: &EngineSpec) -> Result<Vec<autopipe_store::NewCalculation>> {
    let frames = read_extxyz_file(file)?;
    if frames.is_empty() {
        bail!("{} has no frames", file.display());
    }
    for (i, f) in frames.iter().enumerate() {
        if let Err(e) = f.structure.validate() {
            bail!("{}: frame {}: {e}", file.display(), i + 1);
        }
    }
    let origin = format!("import:{}", file.display());
    autopipe_workflow::new_calculations(frames.into_iter().map(|f| f.structure).collect(), &origin, 0, engine, |i| {
        format!("{}: frame {}", file.display(), i + 1)
    })
    .map_err(anyhow::Error::msg)
}

fn unknown_ids(ids: &[i64], store: &JobStore) -> String {
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    format!(
        "no {} {} in {}; nothing was changed",
        if ids.len() == 1 { "calculation" } else { "calculations" },
        list.join(", "),
        store.path().display()
    )
}

fn cancel(store: &mut JobStore, dir: &Path, ids: &[i64]) -> Result<ExitCode> {
    if ids.is_empty() {
        println!("nothing to cancel");
        return Ok(ExitCode::SUCCESS);
    }
    let report = store.cancel(ids)?;
    if !report.unknown.is_empty() {
        bail!(unknown_ids(&report.unknown, store));
    }
    // The orchestrator running them stops them too; this covers jobs left running by an
    // orchestrator that is gone (a local process group, a Slurm or Flux task).
    let stopped = autopipe_exec::stop_cancelled(dir, &report.cancelled)?;
    for c in &report.cancelled {
        let mut line = format!("cancelled calculation {} (it was {})", c.id, c.was.as_str());
        if stopped.contains(&c.id) {
            let how = match c.backend.as_deref() {
                Some("slurm") => format!(" (scancel {})", c.backend_id.as_deref().unwrap_or("")),
                Some("flux") => format!(" (flux cancel {})", c.backend_id.as_deref().unwrap_or("")),
                _ => String::new(),
            };
            line.push_str(&format!("; its job was stopped{how} and its result will not be used"));
        }
        println!("{line}");
    }
    for (id, s) in &report.skipped {
        let why = match s {
            CalcStatus::Done => "done: its label is kept (use `jobs forget` to remove it)",
            _ => "already cancelled",
        };
        println!("left calculation {id} as it is: {why}");
    }
    println!(
        "{} cancelled in {}; `autopipe jobs reset --dir {} --cancelled` brings them back",
        plural(report.cancelled.len() as u64, "calculation", "calculations"),
        store.path().display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn forget(store: &mut JobStore, dir: &Path, ids: &[i64]) -> Result<ExitCode> {
    let report = store.forget(ids)?;
    if !report.unknown.is_empty() {
        bail!(unknown_ids(&report.unknown, store));
    }
    if !report.running.is_empty() {
        let list: Vec<String> = report.running.iter().map(|i| i.to_string()).collect();
        bail!(
            "{} running; cancel first (`autopipe jobs cancel --dir {} {}`); nothing was changed",
            if list.len() == 1 {
                format!("calculation {} is", list[0])
            } else {
                format!("calculations {} are", list.join(", "))
            },
            dir.display(),
            list.join(" ")
        );
    }
    for f in &report.forgotten {
        println!(
            "forgot calculation {} ({}, {}, {}{}); its job directory is left on disk: {}",
            f.id,
            f.formula,
            f.status.as_str(),
            plural(f.attempts, "attempt", "attempts"),
            if f.structure_removed { "" } else { "; its structure stays, other calculations use it" },
            dir.join(f.job_dir.clone().unwrap_or_else(|| calc_dir_rel(f.id))).display()
        );
    }
    println!(
        "{} forgotten in {}",
        plural(report.forgotten.len() as u64, "calculation", "calculations"),
        store.path().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `jobs run` and `jobs submit`: the batch on the backend the flags (or `--config`) name.
fn run_batch(
    dir: &Path,
    exec: &ExecArgs,
    detach: bool,
    limit: Option<usize>,
    max_fail_count: Option<u32>,
) -> Result<ExitCode> {
    let (opts, settings) = exec.resolve()?;
    if detach && settings.kind == BackendKind::Local {
        bail!("--detach is for a scheduler's campaign (--backend slurm or flux): local jobs need this process to watch them");
    }
    // Shared: several `jobs run` may work on one database (leases keep their
    // calculations apart); `import`, `reset`, `forget` and `autopipe run` wait for them.
    let db = dir.join(autopipe_store::DB_FILE);
    if !db.is_file() {
        return Err(StoreError::Missing { path: db }.into());
    }
    let _lock = RunLock::acquire_shared(dir)?;
    let mut store = JobStore::open_existing(dir)?;
    let backend = settings.backend(detach, limit, max_fail_count);
    let mut observer = progress::Progress::new();
    let summary = backend.run_batch(&mut store, dir, &opts, &launcher()?, &mut observer)?;
    observer.finish();
    crate::report::refresh(dir);
    Ok(summary_exit(&summary))
}

fn summary_exit(s: &RunSummary) -> ExitCode {
    eprintln!(
        "batch of {}: {} done, {} failed, {} timed out{}",
        s.batch,
        s.done,
        s.failed,
        s.timeout,
        if s.cancelled > 0 { format!(", {} cancelled", s.cancelled) } else { String::new() }
    );
    if s.interrupted {
        ExitCode::from(130)
    } else if let Some(message) = &s.stopped {
        eprintln!("{message}");
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn engine_spec(args: &EngineArgs) -> Result<EngineSpec> {
    if let Some(path) = &args.oracle {
        return Ok(autopipe_workflow::load_oracle(path)?);
    }
    if let Some(path) = &args.config {
        if args.command.is_some() {
            bail!("--command and --config exclude each other");
        }
        return Ok(autopipe_workflow::load_config(path)?.oracle);
    }
    match (args.engine.as_str(), &args.command) {
        ("emt", None) => Ok(EngineSpec::Emt),
        ("emt", Some(_)) => bail!("--command is only for --engine command"),
        ("command", Some(c)) => Ok(EngineSpec::Command { command: c.clone(), label_params: Default::default() }),
        ("command", None) => bail!("--engine command needs --command \"...\""),
        ("qe" | "cp2k" | "orca" | "vasp", _) => bail!(
            "--engine {} needs its settings: give them with --oracle FILE (a TOML file with an [oracle] table) or --config",
            args.engine
        ),
        (other, _) => bail!(
            "unknown engine {other:?}; this version has: emt, command, and qe/cp2k/orca/vasp through --oracle or --config"
        ),
    }
}

/// The run lock of an existing run directory: a directory without a database is the
/// database's error (no run here), not a lock file created in a new directory.
fn lock_existing(dir: &Path) -> Result<RunLock, StoreError> {
    let db = dir.join(autopipe_store::DB_FILE);
    if !db.is_file() {
        return Err(StoreError::Missing { path: db });
    }
    RunLock::acquire(dir)
}

/// `jobs status --id ID`: everything about one calculation.
fn calculation_status(store: &JobStore, dir: &Path, id: i64, json: bool) -> Result<()> {
    let Some(c) = store.calculation(id)? else {
        bail!("no calculation {id} in {}", store.path().display());
    };
    let attempts = store.attempts(id)?;
    let calc_dir = dir.join(c.job_dir.clone().unwrap_or_else(|| calc_dir_rel(id)));
    let attempt_dirs: Vec<PathBuf> =
        attempts.iter().map(|a| attempt_dir(dir, c.job_dir.as_deref(), id, a.attempt)).collect();
    if json {
        let mut obj = serde_json::to_value(&c)?;
        let list: Vec<serde_json::Value> = attempts
            .iter()
            .zip(&attempt_dirs)
            .map(|(a, d)| {
                let mut v = serde_json::to_value(a).expect("attempts serialise");
                v["dir"] = serde_json::Value::String(d.display().to_string());
                v
            })
            .collect();
        obj["n_attempts"] = obj["attempts"].take();
        obj["attempts"] = serde_json::Value::Array(list);
        obj["calc_dir"] = serde_json::Value::String(calc_dir.display().to_string());
        println!("{}", serde_json::to_string_pretty(&obj)?);
        return Ok(());
    }
    let s = &c.structure;
    println!("calculation {id}: {}", c.status.as_str());
    println!("  engine        {} {}", c.engine, c.label_params);
    println!(
        "  structure     {} ({}), hash {}, from {}, generation {}",
        s.formula,
        plural(s.n_atoms, "atom", "atoms"),
        s.hash.get(..16).unwrap_or(&s.hash),
        s.origin,
        s.generation
    );
    println!("  job dir       {}", calc_dir.display());
    if let (Some(e), Some(f)) = (c.energy_ev, c.max_force_ev_per_a) {
        println!(
            "  result        energy {e:.6} eV, max force {f:.4} eV/Å{}",
            c.scf_steps.map(|n| format!(", {n} SCF steps")).unwrap_or_default()
        );
    }
    println!("  created       {}", utc(c.created_at_s));
    if let Some(t) = c.started_at_s {
        println!("  started       {}", utc(t));
    }
    if let Some(t) = c.finished_at_s {
        println!("  finished      {}", utc(t));
    }
    if let Some(w) = c.wall_time_s {
        println!("  wall time     {w:.3} s");
    }
    if let Some(m) = &c.message {
        println!("  message       {m}");
    }
    println!(
        "  {} ({} physics, {} infrastructure failures in the current budget):",
        plural(attempts.len() as u64, "attempt", "attempts"),
        c.physics_failures,
        c.infra_failures
    );
    for (a, d) in attempts.iter().zip(&attempt_dirs) {
        println!(
            "  attempt {}: {}{}{}",
            a.attempt,
            a.outcome.as_deref().unwrap_or("in flight"),
            a.message.as_deref().map(|m| format!(" — {m}")).unwrap_or_default(),
            a.changes.as_deref().map(|c| format!(" [next attempt: {c}]")).unwrap_or_default()
        );
        println!("    {}", d.display());
    }
    Ok(())
}
