//! `autopipe jobs status` (counts, percentages, completion bar, `--metrics`,
//! `--failed`, `--stalled`, `--chronic`), `jobs reset` and `jobs update`: what they
//! print.

use anyhow::Result;
use autopipe_exec::campaign::{self, Stalled, StalledReset, UpdateOptions};
use autopipe_exec::plural;
use autopipe_store::{CalcBrief, CalcStatus, CampaignMetrics, JobStore, ResetReport, ValueStats};
use std::path::Path;

/// The optional sections of `jobs status`.
pub struct Sections {
    pub metrics: bool,
    pub failed: bool,
    /// `--stalled`: the idle time beyond which a running job is stalled, seconds.
    pub stalled_after_s: Option<f64>,
    pub chronic: Option<u32>,
}

const BAR_WIDTH: usize = 40;

/// `[#########.....]  64.0 %` for a share between 0 and 1.
pub fn completion_bar(share: f64) -> String {
    let share = if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.0 };
    let filled = (share * BAR_WIDTH as f64).round() as usize;
    format!("[{}{}] {:5.1} %", "#".repeat(filled), ".".repeat(BAR_WIDTH - filled), share * 100.0)
}

fn percent(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * n as f64 / total as f64
    }
}

pub fn status(store: &JobStore, dir: &Path, json: bool, sections: &Sections) -> Result<()> {
    let counts = store.campaign_counts()?;
    let total = counts.total();
    let executions = store.executions()?;
    let rows = [
        (CalcStatus::Pending, counts.pending),
        (CalcStatus::Submitted, counts.submitted),
        (CalcStatus::Running, counts.running),
        (CalcStatus::Done, counts.done),
        (CalcStatus::Failed, counts.failed),
        (CalcStatus::Timeout, counts.timeout),
        (CalcStatus::Cancelled, counts.cancelled),
    ];
    let metrics = if sections.metrics { Some(store.campaign_metrics()?) } else { None };
    let failed = if sections.failed { Some(store.failed_calculations()?) } else { None };
    let stalled = match sections.stalled_after_s {
        Some(s) => Some(campaign::stalled(store, dir, s)?),
        None => None,
    };
    let chronic = match sections.chronic {
        Some(k) => Some(store.chronic_calculations(k)?),
        None => None,
    };
    if json {
        let shares: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(s, n)| (s.as_str().to_string(), percent(*n, total).into())).collect();
        let mut out = serde_json::json!({
            "counts": counts,
            "total": total,
            "percent": shares,
            "completion_percent": percent(counts.done, total),
            "executions": executions,
            "pending_ids": store.ids_with_status(CalcStatus::Pending)?,
            "running_ids": store.ids_with_status(CalcStatus::Running)?,
            "done_ids": store.ids_with_status(CalcStatus::Done)?,
            "failed_ids": store.ids_with_status(CalcStatus::Failed)?,
            "timeout_ids": store.ids_with_status(CalcStatus::Timeout)?,
            "cancelled_ids": store.ids_with_status(CalcStatus::Cancelled)?,
        });
        if let Some(m) = &metrics {
            out["metrics"] = serde_json::to_value(m)?;
        }
        if let Some(f) = &failed {
            out["failed"] = serde_json::to_value(f)?;
        }
        if let Some(s) = &stalled {
            out["stalled"] = serde_json::to_value(s)?;
        }
        if let Some(c) = &chronic {
            out["chronic"] = serde_json::to_value(c)?;
        }
        println!("{out}");
        return Ok(());
    }
    println!("{}", store.path().display());
    for (s, n) in rows {
        if n > 0 || !matches!(s, CalcStatus::Submitted | CalcStatus::Cancelled) {
            println!("  {:<10}{n:>10} {:>6.1} %", s.as_str(), percent(n, total));
        }
    }
    println!("  {:<10}{:>10}   ({} engine executions, all attempts)", "total", total, executions);
    println!("  {} done", completion_bar(if total == 0 { 0.0 } else { counts.done as f64 / total as f64 }));
    if let Some(m) = &metrics {
        print_metrics(m);
    }
    if let Some(list) = &failed {
        println!("failed and timed-out calculations ({}):", list.len());
        print_briefs(list);
    }
    if let Some(list) = &stalled {
        let after_h = sections.stalled_after_s.unwrap_or(0.0) / 3600.0;
        println!("stalled: running, nothing changed in the job directory for more than {after_h} h ({}):", list.len());
        print_stalled(list);
    }
    if let (Some(list), Some(k)) = (&chronic, sections.chronic) {
        println!("chronic: failed at least {} ({}):", plural(k, "time", "times"), list.len());
        print_briefs(list);
    }
    if !sections.failed {
        let failures = store.failures(20)?;
        if !failures.is_empty() {
            println!("failures (first {}; `--failed` lists all, `--id N` shows every attempt):", failures.len());
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

fn print_metrics(m: &CampaignMetrics) {
    println!("metrics of finished calculations:");
    if m.engines.is_empty() {
        println!("  none finished yet");
    }
    for e in &m.engines {
        println!("  {}: {} done, {:.4} core-hours", e.engine, e.done, e.core_hours);
        println!("    {:<20}{:>10}{:>16}{:>16}{:>16}{:>16}", "", "n", "mean", "median", "min", "max");
        for (what, stats) in [
            ("max force (eV/Å)", &e.max_force_ev_per_a),
            ("SCF steps", &e.scf_steps),
            ("final energy (eV)", &e.energy_ev),
            ("wall time (s)", &e.wall_time_s),
        ] {
            match stats {
                Some(ValueStats { n, mean, median, min, max }) => {
                    println!("    {what:<20}{n:>10}{mean:>16.6}{median:>16.6}{min:>16.6}{max:>16.6}")
                }
                None => println!("    {what:<20}{:>10}", "-"),
            }
        }
    }
    println!("  total: {:.4} core-hours (wall time × cores of the finished calculations)", m.core_hours);
}

fn print_briefs(list: &[CalcBrief]) {
    for c in list {
        println!(
            "  #{:<8} {:<9} {:<6} {}, fail count {}, {}: {}",
            c.id,
            c.status.as_str(),
            c.engine,
            plural(c.attempts, "attempt", "attempts"),
            c.fail_count,
            c.origin,
            c.message.as_deref().unwrap_or("(no message)")
        );
    }
}

fn print_stalled(list: &[Stalled]) {
    for s in list {
        println!(
            "  #{:<8} attempt {}, idle {:.1} h, {}: {}",
            s.id,
            s.attempt,
            s.idle_s / 3600.0,
            if s.lock_held { "its job still holds its lock" } else { "no live job holds its lock" },
            s.dir.display()
        );
    }
}

/// What `jobs reset` did.
pub fn print_reset(counted: &ResetReport, stalled: Option<&StalledReset>, max_fail_count: Option<u32>) {
    let mut n = counted.reset.len();
    let mut chronic = counted.chronic.clone();
    if let Some(s) = stalled {
        n += s.reset.len();
        chronic.extend(s.chronic.iter().copied());
        for id in &s.stopped {
            println!("stopped the stalled job of calculation {id}");
        }
        for id in &s.not_stopped {
            println!(
                "left calculation {id} running: its job still holds its lock and could not be stopped from here \
                 (stop it where it runs, then reset again)"
            );
        }
    }
    println!("{} back to pending", plural(n as u64, "calculation", "calculations"));
    if !chronic.is_empty() {
        chronic.sort_unstable();
        let list: Vec<String> = chronic.iter().map(|(id, k)| format!("#{id} ({k})")).collect();
        println!(
            "{} left as {} (chronic: fail count >= {}): {}",
            plural(chronic.len() as u64, "calculation", "calculations"),
            if chronic.len() == 1 { "it is" } else { "they are" },
            max_fail_count.unwrap_or(0),
            list.join(", ")
        );
    }
}

/// `jobs update`: rescan and print what was found.
pub fn update(store: &mut JobStore, dir: &Path, opts: &UpdateOptions) -> Result<()> {
    let r = campaign::update(store, dir, opts)?;
    for (id, source) in &r.done {
        println!("calculation {id}: done (from {source})");
    }
    for (id, status, message) in &r.failed {
        let what = if *status == CalcStatus::Pending { "failed, back to pending for a retry" } else { "failed" };
        println!("calculation {id}: {what}: {message}");
    }
    for (id, file) in &r.incomplete {
        println!("calculation {id}: {} stops mid-run; left as it is", file.display());
    }
    for (id, why) in &r.problems {
        println!("calculation {id}: not updated: {why}");
    }
    println!(
        "{} with a job directory looked at: {} done, {} failed, {} still running, {} incomplete, {} not readable",
        plural(r.scanned as u64, "calculation", "calculations"),
        r.done.len(),
        r.failed.len(),
        r.running.len(),
        r.incomplete.len(),
        r.problems.len()
    );
    Ok(())
}
