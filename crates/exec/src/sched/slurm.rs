//! Slurm through its command-line tools: `sbatch --parsable` (one job array per
//! submission, throttled with `%M`), `squeue` (one call per poll for every job of the
//! campaign), `scontrol show job` and `sacct` (final states of jobs that left the queue,
//! one call per submission), `scancel`.
//!
//! The text of the job script and of the commands' outputs is handled by pure functions
//! (snapshot- and fixture-tested); only [`Slurm`]'s trait methods start programs.

use super::{check_token, run_tool, Ended, QueuedTask, SchedError, SchedState, Scheduler, Submission};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What every Slurm job of a campaign asks for (`[execution.slurm]`, or `jobs run` flags).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmSettings {
    pub partition: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub nodes: Option<u32>,
    pub ntasks: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. "4G".
    pub mem: Option<String>,
    pub constraint: Option<String>,
    /// Further `#SBATCH` lines, e.g. "--exclusive" or "#SBATCH --gres=gpu:1".
    pub extra_sbatch: Vec<String>,
    /// Shell lines run before the engine, e.g. "module load qe/7.2".
    pub setup: Vec<String>,
    /// At most this many tasks of one array run at once (`--array=0-N%M`).
    pub array_throttle: Option<u32>,
    /// Most tasks in one array (the cluster's MaxArraySize - 1 at most).
    pub max_array_size: Option<u32>,
}

impl SlurmSettings {
    /// Every value that goes into the job script is a plain token: no whitespace, no
    /// quotes, no shell metacharacters (extra lines and setup lines are the user's own
    /// shell and go in as they are, one line each, but never with a newline inside).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
            ("mem", &self.mem),
            ("constraint", &self.constraint),
        ] {
            if let Some(v) = value {
                check_token(name, v)?;
            }
        }
        for (name, value) in [
            ("nodes", self.nodes),
            ("ntasks", self.ntasks),
            ("cpus_per_task", self.cpus_per_task),
            ("array_throttle", self.array_throttle),
            ("max_array_size", self.max_array_size),
        ] {
            if value == Some(0) {
                return Err(format!("{name} must be at least 1"));
            }
        }
        for (name, lines) in [("extra_sbatch", &self.extra_sbatch), ("setup", &self.setup)] {
            if let Some(l) = lines.iter().find(|l| l.contains(['\n', '\r', '\0'])) {
                return Err(format!("{name}: a line may not contain a line break: {l:?}"));
            }
        }
        Ok(())
    }
}

/// `--time` for a wall time: `D-HH:MM:SS`, rounded up to whole seconds.
pub fn slurm_time(walltime_s: f64) -> String {
    let s = walltime_s.max(1.0).ceil() as u64;
    let (d, h, m, s) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// The job script of one submission: a job array whose task K runs the attempt
/// directory on line K+1 of the manifest.
pub fn script(settings: &SlurmSettings, sub: &Submission) -> String {
    let mut o = String::from("#!/bin/bash\n");
    let mut d = |line: String| {
        o.push_str("#SBATCH ");
        o.push_str(&line);
        o.push('\n');
    };
    d(format!("--job-name={}", sub.name));
    let last = sub.tasks.saturating_sub(1);
    match settings.array_throttle {
        Some(m) => d(format!("--array=0-{last}%{m}")),
        None => d(format!("--array=0-{last}")),
    }
    d(format!("--time={}", slurm_time(sub.walltime_s)));
    for (flag, value) in [
        ("partition", &settings.partition),
        ("account", &settings.account),
        ("qos", &settings.qos),
        ("mem", &settings.mem),
        ("constraint", &settings.constraint),
    ] {
        if let Some(v) = value {
            d(format!("--{flag}={v}"));
        }
    }
    for (flag, value) in
        [("nodes", settings.nodes), ("ntasks", settings.ntasks), ("cpus-per-task", settings.cpus_per_task)]
    {
        if let Some(v) = value {
            d(format!("--{flag}={v}"));
        }
    }
    for line in &settings.extra_sbatch {
        let line = line.trim();
        match line.strip_prefix("#SBATCH") {
            Some(rest) => d(rest.trim().to_string()),
            None => d(line.to_string()),
        }
    }
    o.push_str("set -u\n");
    for line in &settings.setup {
        o.push_str(line);
        o.push('\n');
    }
    let cores = settings.cpus_per_task.unwrap_or(1);
    o.push_str(&format!("export OMP_NUM_THREADS={cores} AUTOPIPE_CORES={cores}\n"));
    o.push_str(&super::task_body(sub, "SLURM_ARRAY_TASK_ID"));
    o
}

/// The arguments of `sbatch` for a submission (paths go here, never through a shell).
pub fn sbatch_args(sub: &Submission, script_path: &Path) -> Vec<String> {
    vec![
        "--parsable".into(),
        format!("--output={}", sub.log_pattern("%a").display()),
        format!("--chdir={}", sub.run_dir.display()),
        script_path.display().to_string(),
    ]
}

/// The job id `sbatch --parsable` printed ("123" or "123;cluster").
pub fn parse_sbatch(stdout: &str) -> Result<String, String> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let id = line.split(';').next().unwrap_or("").trim();
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(id.to_string())
    } else {
        Err(format!("sbatch printed no job id: {:?}", stdout.trim()))
    }
}

/// A Slurm state word (`RUNNING`, `CANCELLED by 0`, `TIMEOUT` ...) as ours.
pub fn state_of(word: &str) -> SchedState {
    let word = word.split_whitespace().next().unwrap_or("").trim_end_matches('+');
    match word {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" | "SUSPENDED"
        | "STOPPED" | "RESIZING" | "SIGNALING" => SchedState::Queued,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" => SchedState::Running,
        "COMPLETED" => SchedState::Ended(Ended::Completed),
        "TIMEOUT" | "DEADLINE" => SchedState::Ended(Ended::Timeout(word.to_string())),
        "NODE_FAIL" | "BOOT_FAIL" | "PREEMPTED" | "OUT_OF_MEMORY" | "CANCELLED" | "REVOKED" | "SPECIAL_EXIT" => {
            SchedState::Ended(Ended::Killed(word.to_string()))
        }
        "FAILED" => SchedState::Ended(Ended::Failed(word.to_string())),
        other => SchedState::Ended(Ended::Failed(if other.is_empty() { "UNKNOWN".into() } else { other.into() })),
    }
}

/// The output of `squeue -h -r -o '%i|%j|%T'`: the tasks of jobs whose name starts with
/// `prefix`.
pub fn parse_squeue(stdout: &str, prefix: &str) -> Vec<QueuedTask> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, '|');
            let (id, name, state) = (f.next()?.trim(), f.next()?.trim(), f.next()?.trim());
            if !name.starts_with(prefix) || id.is_empty() {
                return None;
            }
            Some(QueuedTask { id: id.to_string(), name: name.to_string(), state: state_of(state) })
        })
        .collect()
}

/// `scontrol -o show job ID` (one line per job or array task): task id -> final state,
/// for the tasks that have ended.
pub fn parse_scontrol(stdout: &str) -> HashMap<String, (SchedState, String)> {
    let mut out = HashMap::new();
    for line in stdout.lines() {
        let fields: HashMap<&str, &str> = line.split_whitespace().filter_map(|t| t.split_once('=')).collect();
        let Some(state) = fields.get("JobState") else { continue };
        let id = match (fields.get("ArrayJobId"), fields.get("ArrayTaskId")) {
            (Some(a), Some(t)) if t.bytes().all(|b| b.is_ascii_digit()) => format!("{a}_{t}"),
            (Some(_), Some(_)) => continue, // the record of tasks not yet split off
            _ => match fields.get("JobId") {
                Some(j) => j.to_string(),
                None => continue,
            },
        };
        let mut detail = format!("JobState={state}");
        for key in ["Reason", "ExitCode"] {
            if let Some(v) = fields.get(key) {
                detail.push_str(&format!(" {key}={v}"));
            }
        }
        out.insert(id, (state_of(state), detail));
    }
    out
}

/// `sacct -n -P -X -o JobID,State,ExitCode`: task id -> state.
pub fn parse_sacct(stdout: &str) -> HashMap<String, (SchedState, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.trim().split('|');
            let (id, state) = (f.next()?.trim(), f.next()?.trim());
            let exit = f.next().unwrap_or("").trim();
            if id.is_empty() || state.is_empty() {
                return None;
            }
            Some((id.to_string(), (state_of(state), format!("State={state} ExitCode={exit}"))))
        })
        .collect()
}

/// The Slurm backend: the settings of its jobs.
#[derive(Clone, Debug, Default)]
pub struct Slurm {
    pub settings: SlurmSettings,
}

impl Scheduler for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn max_tasks(&self) -> usize {
        self.settings.max_array_size.unwrap_or(1000) as usize
    }

    fn script(&self, sub: &Submission) -> String {
        script(&self.settings, sub)
    }

    fn submit(&self, sub: &Submission, script_path: &Path) -> Result<Vec<String>, SchedError> {
        let out = run_tool("sbatch", &sbatch_args(sub, script_path))?;
        let id = parse_sbatch(&out).map_err(|m| SchedError::new("sbatch", m))?;
        Ok((0..sub.tasks).map(|k| format!("{id}_{k}")).collect())
    }

    fn queue(&self, prefix: &str) -> Result<Vec<QueuedTask>, SchedError> {
        let args = ["--me", "-h", "-r", "-o", "%i|%j|%T"].map(String::from);
        Ok(parse_squeue(&run_tool("squeue", &args)?, prefix))
    }

    fn final_states(&self, ids: &[String]) -> Result<HashMap<String, (SchedState, String)>, SchedError> {
        let mut found = HashMap::new();
        // One `scontrol` per array job (it lists every task), not per task.
        let mut arrays: Vec<&str> = ids.iter().map(|i| i.split('_').next().unwrap_or(i)).collect();
        arrays.sort_unstable();
        arrays.dedup();
        for a in arrays {
            // Unknown (aged out of the controller's memory): an error, not a failure.
            if let Ok(out) = run_tool("scontrol", &["-o".into(), "show".into(), "job".into(), a.into()]) {
                found.extend(parse_scontrol(&out));
            }
        }
        let missing: Vec<&String> = ids.iter().filter(|i| !found.contains_key(*i)).collect();
        if !missing.is_empty() {
            let list = missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
            // Without an accounting database sacct says so and gives nothing.
            let args = ["-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j"].map(String::from);
            let mut args = args.to_vec();
            args.push(list);
            if let Ok(out) = run_tool("sacct", &args) {
                found.extend(parse_sacct(&out));
            }
        }
        found.retain(|k, _| ids.contains(k));
        Ok(found)
    }

    fn cancel(&self, ids: &[String]) -> Result<(), SchedError> {
        if ids.is_empty() {
            return Ok(());
        }
        run_tool("scancel", ids).map(|_| ())
    }

    fn describe(&self) -> String {
        let mut s = "Slurm".to_string();
        if let Some(p) = &self.settings.partition {
            s.push_str(&format!(" (partition {p})"));
        }
        s
    }
}
