//! Flux through its command-line tools: `flux submit --cc=0-N` (one job per task, each
//! with `FLUX_JOB_CC` set to its index), `flux jobs` (one call per poll; inactive jobs
//! stay listed with their result), `flux cancel`.
//!
//! Flux is not installable on the machines this is developed on: the outputs these
//! functions read are recorded from Flux's documentation (flux-jobs(1), flux-submit(1))
//! and tested as fixtures.

use super::{check_token, run_tool, Ended, QueuedTask, SchedError, SchedState, Scheduler, Submission};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// What every Flux job of a campaign asks for (`[execution.flux]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FluxSettings {
    pub queue: Option<String>,
    pub nodes: Option<u32>,
    /// Tasks (`-n`) and cores per task (`-c`) of each job.
    pub ntasks: Option<u32>,
    pub cores_per_task: Option<u32>,
    /// Shell lines run before the engine.
    pub setup: Vec<String>,
    /// Most jobs submitted by one `flux submit --cc`.
    pub max_batch: Option<u32>,
}

impl FluxSettings {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(q) = &self.queue {
            check_token("queue", q)?;
        }
        for (name, v) in [
            ("nodes", self.nodes),
            ("ntasks", self.ntasks),
            ("cores_per_task", self.cores_per_task),
            ("max_batch", self.max_batch),
        ] {
            if v == Some(0) {
                return Err(format!("{name} must be at least 1"));
            }
        }
        if let Some(l) = self.setup.iter().find(|l| l.contains(['\n', '\r', '\0'])) {
            return Err(format!("setup: a line may not contain a line break: {l:?}"));
        }
        Ok(())
    }
}

/// The job script: run by every job of a submission, task index in `FLUX_JOB_CC`.
pub fn script(settings: &FluxSettings, sub: &Submission) -> String {
    let mut o = String::from("#!/bin/bash\nset -u\n");
    for line in &settings.setup {
        o.push_str(line);
        o.push('\n');
    }
    let cores = settings.cores_per_task.unwrap_or(1);
    o.push_str(&format!("export OMP_NUM_THREADS={cores} AUTOPIPE_CORES={cores}\n"));
    o.push_str(&super::task_body(sub, "FLUX_JOB_CC"));
    o
}

/// Flux Standard Duration for a wall time, whole seconds rounded up.
pub fn flux_duration(walltime_s: f64) -> String {
    format!("{}s", walltime_s.max(1.0).ceil() as u64)
}

/// The arguments of `flux submit` for a submission.
pub fn submit_args(settings: &FluxSettings, sub: &Submission, script_path: &Path) -> Vec<String> {
    let mut a = vec![
        format!("--cc=0-{}", sub.tasks.saturating_sub(1)),
        format!("--job-name={}", sub.name),
        format!("--time-limit={}", flux_duration(sub.walltime_s)),
        format!("--output={}", sub.log_pattern("{cc}").display()),
        format!("--cwd={}", sub.run_dir.display()),
    ];
    if let Some(q) = &settings.queue {
        a.push(format!("--queue={q}"));
    }
    if let Some(n) = settings.nodes {
        a.push(format!("--nodes={n}"));
    }
    a.push(format!("--ntasks={}", settings.ntasks.unwrap_or(1)));
    a.push(format!("--cores-per-task={}", settings.cores_per_task.unwrap_or(1)));
    a.push("bash".into());
    a.push(script_path.display().to_string());
    a
}

/// The job ids `flux submit --cc` printed, one per line, in index order.
pub fn parse_submit(stdout: &str, tasks: usize) -> Result<Vec<String>, String> {
    let ids: Vec<String> = stdout.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if ids.len() != tasks {
        return Err(format!("flux submit printed {} job ids for {tasks} jobs: {:?}", ids.len(), stdout.trim()));
    }
    Ok(ids)
}

/// A Flux state and result (`RUN`, `INACTIVE` + `TIMEOUT` ...) as ours.
pub fn state_of(state: &str, result: &str) -> SchedState {
    match state {
        "DEPEND" | "PRIORITY" | "SCHED" | "NEW" => SchedState::Queued,
        "RUN" | "CLEANUP" => SchedState::Running,
        _ => match result {
            "COMPLETED" => SchedState::Ended(Ended::Completed),
            "TIMEOUT" => SchedState::Ended(Ended::Timeout("TIMEOUT".into())),
            "CANCELED" | "CANCELLED" => SchedState::Ended(Ended::Killed("CANCELED".into())),
            "" => SchedState::Ended(Ended::Failed("INACTIVE".into())),
            other => SchedState::Ended(Ended::Failed(other.to_string())),
        },
    }
}

/// The format `flux jobs` is asked for.
pub const JOBS_FORMAT: &str = "{id.f58}|{name}|{state}|{result}|{returncode}";

/// `flux jobs -a -n --format=JOBS_FORMAT`: every job whose name starts with `prefix`
/// (pending, running, and inactive with its result).
pub fn parse_jobs(stdout: &str, prefix: &str) -> Vec<(QueuedTask, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.trim().split('|').map(str::trim).collect();
            if f.len() < 4 || !f[1].starts_with(prefix) {
                return None;
            }
            let detail = format!("state={} result={} returncode={}", f[2], f[3], f.get(4).unwrap_or(&""));
            Some((QueuedTask { id: f[0].to_string(), name: f[1].to_string(), state: state_of(f[2], f[3]) }, detail))
        })
        .collect()
}

/// The Flux backend.
#[derive(Clone, Debug, Default)]
pub struct Flux {
    pub settings: FluxSettings,
}

impl Scheduler for Flux {
    fn name(&self) -> &'static str {
        "flux"
    }

    fn max_tasks(&self) -> usize {
        self.settings.max_batch.unwrap_or(1000) as usize
    }

    fn script(&self, sub: &Submission) -> String {
        script(&self.settings, sub)
    }

    fn submit(&self, sub: &Submission, script_path: &Path) -> Result<Vec<String>, SchedError> {
        let out =
            run_tool("flux", &[vec!["submit".to_string()], submit_args(&self.settings, sub, script_path)].concat())?;
        parse_submit(&out, sub.tasks).map_err(|m| SchedError::new("flux submit", m))
    }

    fn queue(&self, prefix: &str) -> Result<Vec<QueuedTask>, SchedError> {
        let args = ["jobs", "-n", "--filter=pending,running"].map(String::from);
        let mut args = args.to_vec();
        args.push(format!("--format={JOBS_FORMAT}"));
        Ok(parse_jobs(&run_tool("flux", &args)?, prefix).into_iter().map(|(t, _)| t).collect())
    }

    fn final_states(&self, ids: &[String]) -> Result<HashMap<String, (SchedState, String)>, SchedError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut args = vec!["jobs".to_string(), "-n".into(), format!("--format={JOBS_FORMAT}")];
        args.extend(ids.iter().cloned());
        let out = run_tool("flux", &args)?;
        Ok(parse_jobs(&out, "").into_iter().map(|(t, d)| (t.id, (t.state, d))).collect())
    }

    fn cancel(&self, ids: &[String]) -> Result<(), SchedError> {
        if ids.is_empty() {
            return Ok(());
        }
        run_tool("flux", &[vec!["cancel".to_string()], ids.to_vec()].concat()).map(|_| ())
    }

    fn describe(&self) -> String {
        "Flux".into()
    }
}
