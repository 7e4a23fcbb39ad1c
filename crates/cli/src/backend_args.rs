//! The flags that say where and how calculations run (`jobs run`, `jobs submit`): the
//! backend, its settings, the wall time and the retry budgets, from a configuration's
//! `[execution]` table (`--config`) with flags overriding it.

use anyhow::{bail, Result};
use autopipe_exec::{BackendKind, BackendSettings, LocalOptions};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Clone, Debug, Default)]
pub struct ExecArgs {
    /// Take `[execution]` (backend, its settings, workers, wall time, retries) from this
    /// configuration; flags given as well override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the calculations run: local (processes on this machine), slurm or flux.
    #[arg(long, value_parser = ["local", "slurm", "flux"])]
    pub backend: Option<String>,
    /// Concurrent job processes of the local backend (1 to 1024; default 2).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub workers: Option<u64>,
    /// Allocation mode (local backend): each worker's job is bound to its own this many
    /// cores (CPU affinity), with OMP_NUM_THREADS and the engine's ranks set to match.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub cores_per_worker: Option<u64>,
    /// Wall-time limit of one attempt, seconds (default 3600).
    #[arg(long, conflicts_with = "time")]
    pub walltime_s: Option<f64>,
    /// Wall-time limit of one attempt as Slurm writes it: [D-]HH:MM:SS, HH:MM or minutes.
    #[arg(long)]
    pub time: Option<String>,
    /// Retries after physics failures (0 to 100; default 2).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_physics_retries: Option<u32>,
    /// Retries after infrastructure failures (0 to 100; default 2).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_infra_retries: Option<u32>,
    /// Stop when more than this share of the batch has failed (default 0.5).
    #[arg(long)]
    pub failure_tolerance: Option<f64>,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm account.
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm quality of service.
    #[arg(long)]
    pub qos: Option<String>,
    /// Cores of each job (Slurm --cpus-per-task, Flux --cores-per-task).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub cpus_per_task: Option<u32>,
    /// Memory of each Slurm job, e.g. 4G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Slurm node features (--constraint).
    #[arg(long)]
    pub constraint: Option<String>,
    /// At most this many tasks of one Slurm job array run at once (--array=0-N%M).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100000))]
    pub array_throttle: Option<u32>,
    /// A further #SBATCH line, e.g. --sbatch=--exclusive (repeatable).
    #[arg(long = "sbatch", allow_hyphen_values = true)]
    pub extra_sbatch: Vec<String>,
    /// A shell line run before the engine in every job, e.g. --setup 'module load qe' (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    pub setup: Vec<String>,
    /// Seconds between two looks at the scheduler's queue (default 5).
    #[arg(long)]
    pub poll_s: Option<f64>,
}

/// A wall time in Slurm's forms, in seconds: "minutes", "minutes:seconds",
/// "hours:minutes:seconds", "days-hours", "days-hours:minutes", "days-hours:minutes:seconds".
pub fn parse_slurm_time(s: &str) -> Result<f64, String> {
    let bad = || format!("--time {s:?}: expected minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]");
    let num = |p: &str| p.trim().parse::<u64>().map_err(|_| bad());
    let (days, rest) = match s.split_once('-') {
        Some((d, r)) => (Some(num(d)?), r),
        None => (None, s),
    };
    let parts: Vec<u64> = rest.split(':').map(num).collect::<Result<_, _>>()?;
    let secs = match (days, parts.as_slice()) {
        (None, [m]) => m * 60,
        (None, [m, s]) => m * 60 + s,
        (None, [h, m, s]) => h * 3600 + m * 60 + s,
        (Some(d), [h]) => d * 86400 + h * 3600,
        (Some(d), [h, m]) => d * 86400 + h * 3600 + m * 60,
        (Some(d), [h, m, s]) => d * 86400 + h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(format!("--time {s:?}: the wall time must be positive"));
    }
    Ok(secs as f64)
}

impl ExecArgs {
    /// The options of the batch and where it runs, every value checked.
    pub fn resolve(&self) -> Result<(LocalOptions, BackendSettings)> {
        let (mut opts, mut backend) = match &self.config {
            Some(path) => {
                let x = autopipe_workflow::load_config(path)?.execution;
                (x.local_options(), x.backend)
            }
            None => (LocalOptions { workers: 2, ..LocalOptions::default() }, BackendSettings::default()),
        };
        if let Some(b) = &self.backend {
            backend.kind = BackendKind::parse(b).unwrap_or_default();
        }
        if let Some(w) = self.workers {
            opts.workers = w as usize;
        }
        if let Some(c) = self.cores_per_worker {
            opts.cores_per_worker = Some(c as usize);
        }
        let walltime_s = match (&self.time, self.walltime_s) {
            (Some(t), _) => Some(parse_slurm_time(t).map_err(anyhow::Error::msg)?),
            (None, w) => w,
        };
        if let Some(w) = walltime_s {
            if !(w.is_finite() && w > 0.0) {
                bail!("--walltime-s must be a positive number of seconds");
            }
            opts.walltime = Duration::from_secs_f64(w);
        }
        if let Some(n) = self.max_physics_retries {
            opts.max_physics_retries = n;
        }
        if let Some(n) = self.max_infra_retries {
            opts.max_infra_retries = n;
        }
        if let Some(t) = self.failure_tolerance {
            if !(0.0..=1.0).contains(&t) {
                bail!("--failure-tolerance must be between 0 and 1");
            }
            opts.failure_tolerance = t;
        }
        let s = &mut backend.slurm;
        for (dst, src) in [
            (&mut s.partition, &self.partition),
            (&mut s.account, &self.account),
            (&mut s.qos, &self.qos),
            (&mut s.mem, &self.mem),
            (&mut s.constraint, &self.constraint),
        ] {
            if src.is_some() {
                dst.clone_from(src);
            }
        }
        if let Some(c) = self.cpus_per_task {
            s.cpus_per_task = Some(c);
            backend.flux.cores_per_task = Some(c);
        }
        if self.array_throttle.is_some() {
            s.array_throttle = self.array_throttle;
        }
        s.extra_sbatch.extend(self.extra_sbatch.iter().cloned());
        s.setup.extend(self.setup.iter().cloned());
        backend.flux.setup.extend(self.setup.iter().cloned());
        if self.poll_s.is_some() {
            backend.poll_s = self.poll_s;
        }
        backend.validate().map_err(|m| {
            // "slurm.partition = ...: why" names the flag: "--partition = ...: why".
            let (key, rest) = m.split_once(' ').unwrap_or((m.as_str(), ""));
            let flag = key.rsplit('.').next().unwrap_or(key).replace('_', "-");
            anyhow::anyhow!("--{flag} {rest}")
        })?;
        if backend.kind != BackendKind::Local && opts.cores_per_worker.is_some() {
            bail!("--cores-per-worker is for the local backend (inside an allocation); a scheduler's jobs get --cpus-per-task");
        }
        Ok((opts, backend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_times_are_read_in_every_form_slurm_takes() {
        assert_eq!(parse_slurm_time("90").unwrap(), 5400.0);
        assert_eq!(parse_slurm_time("1:30").unwrap(), 90.0);
        assert_eq!(parse_slurm_time("01:00:05").unwrap(), 3605.0);
        assert_eq!(parse_slurm_time("2-1").unwrap(), 2.0 * 86400.0 + 3600.0);
        assert_eq!(parse_slurm_time("1-00:30").unwrap(), 86400.0 + 1800.0);
        assert_eq!(parse_slurm_time("1-00:00:01").unwrap(), 86401.0);
        for bad in ["", "a", "1:2:3:4", "0", "-1", "1-2-3"] {
            assert!(parse_slurm_time(bad).is_err(), "{bad}");
        }
    }
}
