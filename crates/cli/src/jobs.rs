//! `autopipe jobs ...`: the job manager (import, run, status, export, reset, cancel,
//! forget).

use crate::{launcher, progress};
use anyhow::{bail, Result};
use autopipe_atoms::extxyz::{read_extxyz_file, write_extxyz_file};
use autopipe_engines::EngineSpec;
use autopipe_exec::local::attempt_dir;
use autopipe_exec::{calc_dir_rel, plural, run_local, LocalOptions, RunSummary};
use autopipe_store::{utc, CalcStatus, JobStore, RunLock, StoreError};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Add one calculation per structure of an extended XYZ file (creates RUN if needed).
    /// A structure already present with the same engine settings is not added twice.
    Import {
        file: PathBuf,
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run every pending calculation; resumes after a crash.
    Run {
        #[arg(long)]
        dir: PathBuf,
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
        #[arg(long)]
        id: Option<i64>,
    },
    /// Write every finished label as extended XYZ (energy, forces, stress).
    Export {
        #[arg(long)]
        dir: PathBuf,
        out: PathBuf,
    },
    /// Put failed (and timed-out, or cancelled) calculations back to pending with fresh
    /// retry budgets.
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
    },
    /// Calculations that must never run: pending, failed or timed-out ones become
    /// cancelled; a running one is stopped (its process group killed) and never harvested,
    /// also while `jobs run` runs in another terminal. `reset --cancelled` undoes it.
    Cancel {
        #[arg(long)]
        dir: PathBuf,
        /// Calculation ids.
        #[arg(required_unless_present_any = ["pending", "failed", "timeout"])]
        ids: Vec<i64>,
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
    /// for qe and cp2k, give a configuration with --config.
    #[arg(long, default_value = "emt", conflicts_with = "config")]
    engine: String,
    /// Take the engine and its settings from the [oracle] table of this configuration.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The command line for --engine command, run with `sh -c` in the attempt's directory
    /// (AUTOPIPE_CALCULATION_ID and AUTOPIPE_ATTEMPT are set).
    #[arg(long)]
    command: Option<String>,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Concurrent job processes (1 to 1024).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    workers: u64,
    /// Wall-time limit of one attempt, seconds.
    #[arg(long, default_value_t = 3600.0)]
    walltime_s: f64,
    /// Retries after physics failures (0 to 100).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    max_physics_retries: u32,
    /// Retries after infrastructure failures (0 to 100).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    max_infra_retries: u32,
    /// Stop when more than this share of the batch has failed.
    #[arg(long, default_value_t = 0.5)]
    failure_tolerance: f64,
}

pub fn run(command: JobsCommand) -> Result<ExitCode> {
    match command {
        JobsCommand::Import { file, dir, engine } => import(&file, &dir, &engine),
        JobsCommand::Run { dir, exec } => {
            if !(exec.walltime_s.is_finite() && exec.walltime_s > 0.0) {
                bail!("--walltime-s must be a positive number of seconds");
            }
            if !(0.0..=1.0).contains(&exec.failure_tolerance) {
                bail!("--failure-tolerance must be between 0 and 1");
            }
            let _lock = lock_existing(&dir)?;
            let mut store = JobStore::open_existing(&dir)?;
            let opts = LocalOptions {
                workers: exec.workers as usize,
                walltime: Duration::from_secs_f64(exec.walltime_s),
                max_physics_retries: exec.max_physics_retries,
                max_infra_retries: exec.max_infra_retries,
                failure_tolerance: exec.failure_tolerance,
            };
            let mut observer = progress::Progress::new();
            let summary = run_local(&mut store, &dir, &opts, &launcher()?, &mut observer)?;
            observer.finish();
            crate::report::refresh(&dir);
            Ok(summary_exit(&summary))
        }
        JobsCommand::Status { dir, json, id } => {
            let store = JobStore::open_read_only(&dir)?;
            match id {
                Some(id) => calculation_status(&store, &dir, id, json)?,
                None => status(&store, json)?,
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
        JobsCommand::Reset { dir, failed, timeout, cancelled } => {
            let _lock = lock_existing(&dir)?;
            let mut store = JobStore::open_existing(&dir)?;
            let statuses = match (failed, timeout, cancelled) {
                (false, false, false) => vec![CalcStatus::Failed, CalcStatus::Timeout],
                _ => [(failed, CalcStatus::Failed), (timeout, CalcStatus::Timeout), (cancelled, CalcStatus::Cancelled)]
                    .into_iter()
                    .filter_map(|(on, s)| on.then_some(s))
                    .collect(),
            };
            let n = store.reset(&statuses)?;
            println!("{} back to pending", plural(n as u64, "calculation", "calculations"));
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel { dir, ids, pending, failed, timeout } => {
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
                for (on, s) in
                    [(pending, CalcStatus::Pending), (failed, CalcStatus::Failed), (timeout, CalcStatus::Timeout)]
                {
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

fn import(file: &Path, dir: &Path, engine: &EngineArgs) -> Result<ExitCode> {
    let engine = engine_spec(engine)?;
    // Read and check everything before the database (or the run directory) is touched:
    // bad input leaves everything as it was.
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
    let calcs = autopipe_workflow::new_calculations(
        frames.into_iter().map(|f| f.structure).collect(),
        &origin,
        0,
        &engine,
        |i| format!("{}: frame {}", file.display(), i + 1),
    )
    .map_err(anyhow::Error::msg)?;
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
    for c in &report.cancelled {
        let mut line = format!("cancelled calculation {} (it was {})", c.id, c.was.as_str());
        if matches!(c.was, CalcStatus::Running | CalcStatus::Submitted) {
            // The orchestrator running it stops it too; this covers a job left running
            // by an orchestrator that is gone.
            autopipe_exec::local::stop_job(dir, c.job_dir.as_deref(), c.id, c.attempt, c.backend_id.as_deref());
            line.push_str("; its job was stopped and its result will not be used");
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
        ("qe" | "cp2k", _) => bail!("--engine {} needs its settings: pass a configuration with --config", args.engine),
        (other, _) => bail!("unknown engine {other:?}; this version has: emt, command, and qe/cp2k through --config"),
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

fn status(store: &JobStore, json: bool) -> Result<()> {
    let counts = store.counts()?;
    let executions = store.executions()?;
    if json {
        let out = serde_json::json!({
            "counts": counts,
            "executions": executions,
            "pending_ids": store.ids_with_status(CalcStatus::Pending)?,
            "running_ids": store.ids_with_status(CalcStatus::Running)?,
            "done_ids": store.ids_with_status(CalcStatus::Done)?,
            "failed_ids": store.ids_with_status(CalcStatus::Failed)?,
            "timeout_ids": store.ids_with_status(CalcStatus::Timeout)?,
            "cancelled_ids": store.ids_with_status(CalcStatus::Cancelled)?,
        });
        println!("{out}");
        return Ok(());
    }
    println!("{}", store.path().display());
    for (name, n) in [
        ("pending", counts.pending),
        ("running", counts.running + counts.submitted),
        ("done", counts.done),
        ("failed", counts.failed),
        ("timeout", counts.timeout),
        ("cancelled", counts.cancelled),
    ] {
        println!("  {name:<10}{n:>10}");
    }
    println!("  {:<10}{:>10}   ({} engine executions, all attempts)", "total", counts.total(), executions);
    let failures = store.failures(20)?;
    if !failures.is_empty() {
        println!("failures (first {}; `--id N` shows every attempt):", failures.len());
        for f in failures {
            println!(
                "  #{:<8} {:<8} after {}: {}",
                f.calculation_id,
                f.status.as_str(),
                plural(f.attempts, "attempt", "attempts"),
                f.message.unwrap_or_default()
            );
        }
    }
    let events = store.recent_events(5)?;
    if !events.is_empty() {
        println!("recent events:");
        for (_, _, kind, message) in events {
            println!("  {kind:<8} {message}");
        }
    }
    Ok(())
}
