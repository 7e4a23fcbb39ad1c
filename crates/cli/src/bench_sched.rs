//! Figures of the scheduler backends: submission into a real Slurm (when `sinfo`
//! answers), reconciliation of 10,000 tracked calculations, and the share of a Slurm
//! campaign's wall time the orchestrator spends outside the engines.

use anyhow::{ensure, Result};
use autopipe_engines::EngineSpec;
use autopipe_exec::sched::{run_scheduled, QueuedTask, SchedError, SchedOptions, SchedState, Scheduler, Submission};
use autopipe_exec::{LocalOptions, RunSummary};
use autopipe_store::JobStore;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{figure, tempfile_dir, tiny_cells};

/// Reconciliation of `reconcile_n` calculations; a Slurm campaign of `campaign_n`.
pub fn run(reconcile_n: usize, campaign_n: usize) -> Result<()> {
    reconcile(reconcile_n)?;
    let slurm_up = Command::new("sinfo")
        .args(["-h", "-o", "%t"])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false);
    if slurm_up {
        slurm_campaign(campaign_n)?;
    } else {
        eprintln!("bench: no Slurm answers (sinfo): slurm_submit_calcs_per_s and slurm_overhead_share skipped");
    }
    Ok(())
}

/// A scheduler whose queue lists every task of the campaign as running: what a real
/// `squeue` prints for a campaign in full flight, without the cluster.
struct AllRunning {
    tasks: Vec<QueuedTask>,
}

impl Scheduler for AllRunning {
    fn name(&self) -> &'static str {
        "slurm"
    }
    fn max_tasks(&self) -> usize {
        1000
    }
    fn script(&self, _: &Submission) -> String {
        String::new()
    }
    fn submit(&self, sub: &Submission, _: &Path) -> Result<Vec<String>, SchedError> {
        Ok((0..sub.tasks).map(|k| format!("9{k}")).collect())
    }
    fn queue(&self, _: &str) -> Result<Vec<QueuedTask>, SchedError> {
        Ok(self.tasks.clone())
    }
    fn final_states(&self, _: &[String]) -> Result<HashMap<String, (SchedState, String)>, SchedError> {
        Ok(HashMap::new())
    }
    fn cancel(&self, _: &[String]) -> Result<(), SchedError> {
        Ok(())
    }
    fn describe(&self) -> String {
        "bench".into()
    }
}

/// `reconcile_10k_s`: a restarted orchestrator checks 10,000 calculations the database
/// holds as submitted against the queue (one listing of 10,000 tasks) and adopts them.
fn reconcile(n: usize) -> Result<()> {
    let tmp = tempfile_dir("reconcile")?;
    let mut store = JobStore::open_or_create(&tmp)?;
    let calcs = autopipe_workflow::new_calculations(tiny_cells(n), "bench", 0, &EngineSpec::Emt, |i| {
        format!("bench structure {i}")
    })
    .map_err(anyhow::Error::msg)?;
    store.import(&calcs)?;
    let ids = store.pending_ids(n)?;
    let mut tasks = Vec::with_capacity(n);
    for chunk in ids.chunks(1000) {
        let name = format!("ap-bench-{}", chunk[0]);
        let claimed = store.submit_attempts(chunk, "slurm", &name, autopipe_exec::calc_dir_rel)?;
        let confirmed: Vec<(i64, i64, String)> = claimed
            .iter()
            .enumerate()
            .map(|(k, c)| (c.calculation_id, c.attempt_id, format!("{}_{k}", 1000 + chunk[0])))
            .collect();
        store.confirm_submitted(&confirmed)?;
        tasks.extend(confirmed.iter().map(|(_, _, id)| QueuedTask {
            id: id.clone(),
            name: name.clone(),
            state: SchedState::Running,
        }));
    }
    let sched = AllRunning { tasks };
    let opts = SchedOptions { detach: true, ..SchedOptions::default() };
    let start = Instant::now();
    let mut quiet = |_: &autopipe_exec::ExecEvent| {};
    let summary: RunSummary =
        run_scheduled(&mut store, &tmp, &LocalOptions::default(), &sched, &opts, &crate::launcher()?, &mut quiet)?;
    let s = start.elapsed().as_secs_f64();
    ensure!(summary.in_flight == n as u64, "reconcile adopted {} of {n}", summary.in_flight);
    let label = if n == 10_000 { "reconcile_10k_s".to_string() } else { format!("reconcile_{n}_s") };
    figure(&label, s, "s");
    std::fs::remove_dir_all(&tmp).ok();
    Ok(())
}

/// CPU seconds (user + system) used by this process's finished children so far.
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage fills a struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// `slurm_submit_calcs_per_s`: `jobs submit` of `n` calculations into the Slurm the
/// environment points at (one job array per 1,000); then the campaign runs to its end
/// with `jobs run`, and `slurm_overhead_share` is the orchestrator's CPU time (polling,
/// harvesting, the database) over the campaign's wall time.
fn slurm_campaign(n: usize) -> Result<()> {
    let tmp = tempfile_dir("slurm")?;
    let exe = std::env::current_exe()?;
    let cells = tmp.join("cells.xyz");
    let frames: Vec<autopipe_atoms::Frame> =
        tiny_cells(n).into_iter().map(autopipe_atoms::Frame::from_structure).collect();
    autopipe_atoms::extxyz::write_extxyz_file(&cells, &frames)?;
    let dir = tmp.join("run");
    let quiet = |c: &mut Command| c.stdout(Stdio::null()).stderr(Stdio::null()).status();
    ensure!(quiet(Command::new(&exe).args(["jobs", "import"]).arg(&cells).arg("--dir").arg(&dir))?.success());
    let start = Instant::now();
    let submitted = quiet(
        Command::new(&exe)
            .args(["jobs", "submit", "--backend", "slurm", "--batch-size"])
            .arg(n.to_string())
            .arg("--dir")
            .arg(&dir),
    )?;
    let submit_s = start.elapsed().as_secs_f64();
    ensure!(submitted.success(), "jobs submit failed");
    figure("slurm_submit_calcs_per_s", n as f64 / submit_s, "calculations/s");
    let cpu0 = children_cpu_s();
    let start = Instant::now();
    let ran =
        quiet(Command::new(&exe).args(["jobs", "run", "--backend", "slurm", "--poll-s", "1", "--dir"]).arg(&dir))?;
    let wall = start.elapsed().as_secs_f64() + submit_s;
    ensure!(ran.success(), "jobs run failed");
    let cpu = children_cpu_s() - cpu0;
    let store = JobStore::open_read_only(&dir)?;
    ensure!(store.counts()?.done == n as u64, "the campaign did not finish");
    figure("slurm_campaign_s", wall, "s");
    figure("slurm_overhead_share", cpu / wall, "fraction");
    drop(store);
    std::thread::sleep(Duration::from_millis(10));
    std::fs::remove_dir_all(&tmp).ok();
    Ok(())
}
