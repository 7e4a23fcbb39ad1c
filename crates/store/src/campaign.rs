//! The job manager of a campaign (`autopipe jobs status --metrics|--failed|--chronic`,
//! `jobs reset --max-fail-count`, `jobs reset --stalled`, `jobs update`): aggregate
//! metrics computed in SQL, listings of troubled calculations, and the transitions that
//! bring them back or record attempts run outside the orchestrator.
//!
//! `fail_count` is the history of a calculation: it counts every failed attempt and is
//! never cleared (a reset gives fresh retry budgets, `physics_failures` and
//! `infra_failures`, but keeps `fail_count`). A calculation whose `fail_count` reaches a
//! limit is *chronic*: `reset --max-fail-count K` leaves it as it is.

use crate::{exec, now_s, CalcResult, CalcStatus, Claimed, Counts, JobStore, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Mean, median, minimum and maximum of one quantity over finished calculations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValueStats {
    /// How many calculations have a value.
    pub n: u64,
    pub mean: f64,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Metrics of the finished (`done`) calculations of one engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EngineMetrics {
    pub engine: String,
    pub done: u64,
    pub max_force_ev_per_a: Option<ValueStats>,
    pub scf_steps: Option<ValueStats>,
    pub energy_ev: Option<ValueStats>,
    pub wall_time_s: Option<ValueStats>,
    /// Sum of wall time × cores of the finished calculations, hours.
    pub core_hours: f64,
}

/// Metrics of a campaign, per engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CampaignMetrics {
    pub engines: Vec<EngineMetrics>,
    /// All engines together, hours.
    pub core_hours: f64,
}

/// One calculation in a listing (`--failed`, `--chronic`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalcBrief {
    pub id: i64,
    pub status: CalcStatus,
    pub engine: String,
    /// Where the structure came from (`import:FILE#ID` for a CSV row).
    pub origin: String,
    pub attempts: u32,
    pub fail_count: u32,
    /// The last message recorded for it (the last failure's, for a failed one).
    pub message: Option<String>,
}

/// A running calculation and its latest attempt.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunningCalc {
    pub id: i64,
    pub attempt_id: i64,
    pub attempt: u32,
    pub backend_id: Option<String>,
    /// Job directory recorded for it, relative to the run directory.
    pub job_dir: Option<String>,
    pub started_at_s: f64,
    pub fail_count: u32,
}

/// A calculation `jobs update` may find finished in its job directory.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateCandidate {
    pub id: i64,
    pub status: CalcStatus,
    pub attempts: u32,
    pub job_dir: Option<String>,
    /// The latest attempt's row id, for a running calculation.
    pub attempt_id: Option<i64>,
}

/// What a reset did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResetReport {
    /// Calculations put back to pending.
    pub reset: Vec<i64>,
    /// Left as they are: their fail_count reached the limit (id, fail_count).
    pub chronic: Vec<(i64, u32)>,
}

/// The columns `--metrics` summarises, each with an index of its own (migration 4) so
/// that aggregates and medians are index scans.
const METRIC_COLUMNS: [&str; 4] = ["max_force_ev_per_a", "scf_steps", "energy_ev", "wall_time_s"];

fn brief(r: &rusqlite::Row) -> rusqlite::Result<CalcBrief> {
    Ok(CalcBrief {
        id: r.get(0)?,
        status: CalcStatus::parse(&r.get::<_, String>(1)?).unwrap_or(CalcStatus::Failed),
        engine: r.get(2)?,
        origin: r.get(3)?,
        attempts: r.get(4)?,
        fail_count: r.get(5)?,
        message: r.get(6)?,
    })
}

const BRIEF_SELECT: &str = "SELECT c.id, c.status, c.engine, s.origin, c.attempts, c.fail_count, c.message
     FROM calculations c JOIN structures s ON s.id = c.structure_id";

/// Median of the non-null values of `column` among the `n` finished calculations of
/// `engine` that have one: the middle value (mean of the two middle ones for even n).
fn median(conn: &Connection, column: &str, engine: &str, n: u64) -> rusqlite::Result<f64> {
    let sql = format!(
        "SELECT {column} FROM calculations WHERE status = 'done' AND engine = ?1 AND {column} IS NOT NULL
         ORDER BY {column} LIMIT ?2 OFFSET ?3"
    );
    let take = if n.is_multiple_of(2) { 2 } else { 1 };
    let mut st = conn.prepare_cached(&sql)?;
    let values = st
        .query_map(params![engine, take, ((n - 1) / 2) as i64], |r| r.get::<_, f64>(0))?
        .collect::<rusqlite::Result<Vec<f64>>>()?;
    Ok(values.iter().sum::<f64>() / values.len().max(1) as f64)
}

/// The triggers of migration 4 that keep `calc_totals`.
pub const TOTALS_TRIGGERS: [&str; 3] = ["calc_totals_insert", "calc_totals_delete", "calc_totals_update"];

/// Minimum or maximum of `column` among the finished calculations of `engine`: one seek
/// in the column's index.
fn extreme(conn: &Connection, which: &str, column: &str, engine: &str) -> rusqlite::Result<Option<f64>> {
    let sql = format!("SELECT {which}({column}) FROM calculations WHERE status = 'done' AND engine = ?1");
    conn.prepare_cached(&sql)?.query_row([engine], |r| r.get(0))
}

/// Running totals of one engine's finished calculations: (count, sum) per column of
/// [`METRIC_COLUMNS`], and core-seconds.
struct Totals {
    engine: String,
    done: u64,
    sums: [(u64, f64); 4],
    core_s: f64,
}

impl JobStore {
    /// Whether the running totals of migration 4 are kept (its triggers exist).
    fn totals_kept(&self) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN (?1, ?2, ?3)",
                TOTALS_TRIGGERS,
                |r| r.get(0),
            )
            .map_err(self.sq())?;
        Ok(n == TOTALS_TRIGGERS.len() as i64)
    }

    /// Counts by status, from the running totals when they are kept (without a scan),
    /// else as [`JobStore::counts`].
    pub fn campaign_counts(&self) -> Result<Counts> {
        if !self.totals_kept()? {
            return self.counts();
        }
        let mut counts = Counts::default();
        let mut st =
            self.conn.prepare_cached("SELECT status, sum(n) FROM calc_totals GROUP BY status").map_err(self.sq())?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).map_err(self.sq())?;
        for row in rows {
            let (status, n) = row.map_err(self.sq())?;
            let n = n.max(0) as u64;
            if let Some(status) = CalcStatus::parse(&status) {
                counts.set(status, n);
            }
        }
        Ok(counts)
    }

    /// Per engine: finished count, (count, sum) of each metric column, core-seconds;
    /// from the running totals when kept, else by scanning the metric indexes.
    fn done_totals(&self) -> Result<Vec<Totals>> {
        let conn = &self.conn;
        if self.totals_kept()? {
            let mut st = conn
                .prepare_cached(
                    "SELECT engine, n, n_force, sum_force, n_scf, sum_scf, n_energy, sum_energy, n_wall, sum_wall, core_s
                     FROM calc_totals WHERE status = 'done' AND n > 0 ORDER BY engine",
                )
                .map_err(self.sq())?;
            let rows = st
                .query_map([], |r| {
                    Ok(Totals {
                        engine: r.get(0)?,
                        done: r.get(1)?,
                        sums: [
                            (r.get(2)?, r.get(3)?),
                            (r.get(4)?, r.get(5)?),
                            (r.get(6)?, r.get(7)?),
                            (r.get(8)?, r.get(9)?),
                        ],
                        core_s: r.get(10)?,
                    })
                })
                .map_err(self.sq())?;
            return rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq());
        }
        let engines: Vec<(String, u64)> = conn
            .prepare_cached(
                "SELECT engine, count(*) FROM calculations WHERE status = 'done' GROUP BY engine ORDER BY engine",
            )
            .and_then(|mut st| st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for (engine, done) in engines {
            let mut t = Totals { engine, done, sums: [(0, 0.0); 4], core_s: 0.0 };
            for (k, column) in METRIC_COLUMNS.iter().enumerate() {
                let sql = format!(
                    "SELECT count({column}), coalesce(sum({column}), 0) FROM calculations
                     WHERE status = 'done' AND engine = ?1"
                );
                t.sums[k] = conn
                    .prepare_cached(&sql)
                    .and_then(|mut st| st.query_row([&t.engine], |r| Ok((r.get(0)?, r.get(1)?))))
                    .map_err(self.sq())?;
            }
            t.core_s = conn
                .prepare_cached(
                    "SELECT coalesce(sum(wall_time_s * cores), 0) FROM calculations WHERE status = 'done' AND engine = ?1",
                )
                .and_then(|mut st| st.query_row([&t.engine], |r| r.get(0)))
                .map_err(self.sq())?;
            out.push(t);
        }
        Ok(out)
    }

    /// Metrics of the finished calculations per engine (max force, SCF steps, final
    /// energy, wall time: mean, median, min, max; core-hours), all computed by SQLite:
    /// counts and sums from running totals, minimum and maximum by index seeks, medians
    /// by index skips.
    pub fn campaign_metrics(&self) -> Result<CampaignMetrics> {
        let conn = &self.conn;
        let mut out = CampaignMetrics { engines: Vec::new(), core_hours: 0.0 };
        for t in self.done_totals()? {
            let mut stats: [Option<ValueStats>; 4] = Default::default();
            for (k, column) in METRIC_COLUMNS.iter().enumerate() {
                let (n, sum) = t.sums[k];
                if n == 0 {
                    continue;
                }
                let min = extreme(conn, "min", column, &t.engine).map_err(self.sq())?;
                let max = extreme(conn, "max", column, &t.engine).map_err(self.sq())?;
                if let (Some(min), Some(max)) = (min, max) {
                    let median = median(conn, column, &t.engine, n).map_err(self.sq())?;
                    stats[k] = Some(ValueStats { n, mean: sum / n as f64, median, min, max });
                }
            }
            let [max_force_ev_per_a, scf_steps, energy_ev, wall_time_s] = stats;
            let core_hours = t.core_s / 3600.0;
            out.core_hours += core_hours;
            out.engines.push(EngineMetrics {
                engine: t.engine,
                done: t.done,
                max_force_ev_per_a,
                scf_steps,
                energy_ev,
                wall_time_s,
                core_hours,
            });
        }
        Ok(out)
    }

    /// Every failed and timed-out calculation with its last message, in id order.
    pub fn failed_calculations(&self) -> Result<Vec<CalcBrief>> {
        let sql = format!("{BRIEF_SELECT} WHERE c.status IN ('failed', 'timeout') ORDER BY c.id");
        self.conn.prepare(&sql).and_then(|mut st| st.query_map([], brief)?.collect()).map_err(self.sq())
    }

    /// Calculations that failed at least `min_fail_count` times (whatever their status
    /// now), in id order.
    pub fn chronic_calculations(&self, min_fail_count: u32) -> Result<Vec<CalcBrief>> {
        let sql = format!("{BRIEF_SELECT} WHERE c.fail_count >= ?1 ORDER BY c.id");
        self.conn.prepare(&sql).and_then(|mut st| st.query_map([min_fail_count], brief)?.collect()).map_err(self.sq())
    }

    /// Running calculations (not those only submitted to a scheduler) with their latest
    /// attempt, in id order.
    pub fn running_calculations(&self) -> Result<Vec<RunningCalc>> {
        self.conn
            .prepare(
                "SELECT c.id, a.id, a.attempt, c.backend_id, c.job_dir, a.started_at, c.fail_count
                 FROM calculations c JOIN attempts a ON a.calculation_id = c.id AND a.attempt = c.attempts
                 WHERE c.status = 'running' ORDER BY c.id",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok(RunningCalc {
                        id: r.get(0)?,
                        attempt_id: r.get(1)?,
                        attempt: r.get(2)?,
                        backend_id: r.get(3)?,
                        job_dir: r.get(4)?,
                        started_at_s: r.get(5)?,
                        fail_count: r.get(6)?,
                    })
                })?
                .collect()
            })
            .map_err(self.sq())
    }

    /// Calculations of the given statuses back to `pending` with fresh retry budgets;
    /// `fail_count` is kept. With `max_fail_count`, those whose `fail_count` reached it
    /// are chronic and left as they are. One transaction.
    pub fn reset_counted(&mut self, statuses: &[CalcStatus], max_fail_count: Option<u32>) -> Result<ResetReport> {
        let limit = max_fail_count.map(i64::from).unwrap_or(i64::MAX);
        self.write(|tx| {
            let mut report = ResetReport::default();
            for s in statuses {
                let mut st =
                    tx.prepare_cached("SELECT id, fail_count FROM calculations WHERE status = ?1 ORDER BY id")?;
                let rows = st
                    .query_map([s.as_str()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?)))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for (id, fail_count) in rows {
                    if i64::from(fail_count) >= limit {
                        report.chronic.push((id, fail_count));
                    } else {
                        report.reset.push(id);
                    }
                }
                exec(
                    tx,
                    "UPDATE calculations SET status = 'pending', physics_failures = 0, infra_failures = 0,
                         finished_at = NULL WHERE status = ?1 AND fail_count < ?2",
                    params![s.as_str(), limit],
                )?;
            }
            report.reset.sort_unstable();
            log_reset(tx, &report, "")?;
            Ok(report)
        })
    }

    /// A stalled running attempt (its job already stopped or gone) given up: the attempt
    /// is recorded as `stalled`, the calculation goes back to `pending` with fresh retry
    /// budgets and one more failure in `fail_count`. False (nothing changed) when the
    /// calculation is no longer running that attempt.
    pub fn reset_stalled(&mut self, id: i64, attempt_id: i64, message: &str) -> Result<bool> {
        let now = now_s();
        self.write(|tx| {
            let n = exec(
                tx,
                "UPDATE calculations SET status = 'pending', fail_count = fail_count + 1, physics_failures = 0,
                     infra_failures = 0, backend_id = NULL, finished_at = NULL, message = ?3
                 WHERE id = ?1 AND status = 'running'
                   AND attempts = (SELECT attempt FROM attempts WHERE id = ?2 AND calculation_id = ?1)",
                params![id, attempt_id, message],
            )?;
            if n == 0 {
                return Ok(false);
            }
            exec(
                tx,
                "UPDATE attempts SET finished_at = ?2, outcome = 'stalled', message = ?3 WHERE id = ?1",
                params![attempt_id, now, message],
            )?;
            let report = ResetReport { reset: vec![id], chronic: Vec::new() };
            log_reset(tx, &report, " (stalled)")?;
            Ok(true)
        })
    }

    /// Calculations that are not finished (pending, running, failed, timeout), in id
    /// order, with what `jobs update` needs to find their job directory. Calculations
    /// submitted to a scheduler are the scheduler reconciliation's, not listed here.
    pub fn update_candidates(&self) -> Result<Vec<UpdateCandidate>> {
        self.conn
            .prepare(
                "SELECT c.id, c.status, c.attempts, c.job_dir, a.id
                 FROM calculations c LEFT JOIN attempts a
                   ON a.calculation_id = c.id AND a.attempt = c.attempts AND c.status = 'running'
                 WHERE c.status IN ('pending', 'running', 'failed', 'timeout') ORDER BY c.id",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok(UpdateCandidate {
                        id: r.get(0)?,
                        status: CalcStatus::parse(&r.get::<_, String>(1)?).unwrap_or(CalcStatus::Failed),
                        attempts: r.get(2)?,
                        job_dir: r.get(3)?,
                        attempt_id: r.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(self.sq())
    }

    /// An attempt that ran outside the orchestrator (found finished by `jobs update`):
    /// a pending, failed or timed-out calculation becomes `running` with one more
    /// attempt (backend `external`), ready to be completed or failed like any attempt.
    pub fn start_external_attempt(&mut self, id: i64, job_dir: &str) -> Result<Claimed> {
        let now = now_s();
        let (row, attempt, attempt_id) = self
            .write(|tx| {
                let row = crate::CalcRow::read(tx, id)?;
                let Some(row) = row else { return Ok(None) };
                if !matches!(row.status.as_str(), "pending" | "failed" | "timeout") {
                    return Ok(Some((row, 0, 0)));
                }
                let attempt = row.attempts + 1;
                exec(
                    tx,
                    "UPDATE calculations SET status = 'running', attempts = ?2, backend = 'external',
                         backend_id = NULL, job_dir = ?3, started_at = ?4, submitted_at = ?4, finished_at = NULL
                     WHERE id = ?1",
                    params![id, attempt, job_dir, now],
                )?;
                exec(
                    tx,
                    "INSERT INTO attempts (calculation_id, attempt, backend, started_at)
                     VALUES (?1, ?2, 'external', ?3)",
                    params![id, attempt, now],
                )?;
                Ok(Some((row, attempt, tx.last_insert_rowid())))
            })?
            .ok_or(StoreError::NoSuchCalculation(id))?;
        if attempt == 0 {
            return Err(StoreError::WrongState { id, expected: "pending, failed or timeout", found: row.status });
        }
        row.into_claimed(id, attempt_id, attempt)
    }

    /// `running -> done` with the result of an attempt found finished by `jobs update`,
    /// as [`JobStore::complete`]; `wall_known` false when the output gave no wall time
    /// (it is then unknown, NULL, not zero, and does not count in the metrics).
    pub fn complete_found(&mut self, id: i64, attempt_id: i64, result: &CalcResult, wall_known: bool) -> Result<()> {
        let now = now_s();
        let done = self.write(|tx| {
            if crate::set_done(tx, id, CalcStatus::Running, now, result, None)? == 0 {
                return Ok(false);
            }
            if !wall_known {
                exec(tx, "UPDATE calculations SET wall_time_s = NULL WHERE id = ?1", [id])?;
            }
            exec(tx, "UPDATE attempts SET finished_at = ?2, outcome = 'done' WHERE id = ?1", params![attempt_id, now])?;
            Ok(true)
        })?;
        if !done {
            return Err(self.wrong_state(id, "running"));
        }
        Ok(())
    }

    /// Forget the wall time of a calculation (unknown, NULL).
    #[cfg(test)]
    fn forget_wall_time(&mut self, id: i64) -> Result<()> {
        self.write(|tx| exec(tx, "UPDATE calculations SET wall_time_s = NULL WHERE id = ?1", [id]).map(|_| ()))
    }

    /// The stored engine settings (run spec) of a calculation (None when there is none).
    pub fn run_spec_of(&self, id: i64) -> Result<Option<serde_json::Value>> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT run_spec_json FROM calculations WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.sq())?;
        text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::BadRow { id, message: format!("run spec: {e}") }))
            .transpose()
    }

    /// The fail_count of a calculation (None when there is none).
    pub fn fail_count(&self, id: i64) -> Result<Option<u32>> {
        self.conn
            .query_row("SELECT fail_count FROM calculations WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(self.sq())
    }

    /// Fill the database with `n` synthetic calculations in one transaction, for
    /// `autopipe bench` (`status_metrics_ms_1m`): 90 % done with results spread over
    /// two engines, the rest pending, failed or running; one attempt each but for the
    /// pending ones. Not for real runs.
    pub fn fill_synthetic(&mut self, n: usize) -> Result<()> {
        let now = now_s();
        // A large page cache for the bulk insert (random keys in seven indexes).
        self.conn.execute_batch("PRAGMA cache_size = -262144").map_err(self.sq())?;
        let cu = autopipe_atoms::Element::from_symbol("Cu").expect("Cu is an element");
        let cell = autopipe_atoms::Structure::new(
            [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]],
            vec![[0.0; 3]],
            vec![cu],
            [true; 3],
        )
        .expect("a one-atom cell is valid");
        let atoms = serde_json::to_string(&cell).expect("structures serialise");
        self.write(|tx| {
            // A bulk load: the running totals are computed once at the end (one scan)
            // rather than kept row by row, and the secondary indexes are built once at the
            // end (a sort) rather than row by row: triggers and indexes are set aside.
            let set_aside = |kind: &str| -> rusqlite::Result<Vec<String>> {
                let sql = format!(
                    "SELECT name, sql FROM sqlite_master WHERE type = '{kind}' AND sql IS NOT NULL
                     AND tbl_name IN ('calculations', 'attempts')"
                );
                let found: Vec<(String, String)> =
                    tx.prepare(&sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
                for (name, _) in &found {
                    tx.execute_batch(&format!("DROP {} {name}", kind.to_uppercase()))?;
                }
                Ok(found.into_iter().map(|(_, sql)| sql).collect())
            };
            let triggers = set_aside("trigger")?;
            let indexes = set_aside("index")?;
            exec(
                tx,
                "INSERT INTO structures (hash, generation, origin, formula, n_atoms, atoms_json, status, created_at)
                 VALUES ('synthetic', 0, 'bench', 'Cu', 1, ?1, 'selected', ?2)",
                params![atoms, now],
            )?;
            let sid = tx.last_insert_rowid();
            let mut calc = tx.prepare(
                "INSERT INTO calculations (key, structure_id, engine, label_params_json, run_spec_json, status, attempts,
                     fail_count, cores, created_at, started_at, finished_at, wall_time_s, energy_ev, forces_json,
                     max_force_ev_per_a, scf_steps, message)
                 VALUES (?1, ?2, ?3, '{}', '{\"engine\":\"emt\"}', ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let mut attempt = tx.prepare(
                "INSERT INTO attempts (calculation_id, attempt, backend, started_at, finished_at, outcome)
                 VALUES (?1, 1, 'local', ?2, ?3, ?4)",
            )?;
            for i in 0..n {
                let x = (i as f64 * 0.618_033_988_75).fract();
                let (status, outcome) = match i % 20 {
                    0 => ("pending", None),
                    1 => ("failed", Some("physics")),
                    _ if i % 1000 == 2 => ("running", None),
                    _ => ("done", Some("done")),
                };
                let done = status == "done";
                let engine = if i % 3 == 0 { "orca" } else { "qe" };
                let wall = 10.0 + 100.0 * x;
                calc.execute(params![
                    format!("synthetic-{i}"),
                    sid,
                    engine,
                    status,
                    if status == "pending" { 0 } else { 1 },
                    if status == "failed" { 1 } else { 0 },
                    1 + (i % 4) as i64,
                    now,
                    done.then_some(now),
                    done.then_some(wall),
                    done.then_some(-100.0 - x),
                    done.then_some("[[0,0,0]]"),
                    done.then_some(x),
                    done.then_some(5 + (i % 30) as i64),
                    (status == "failed").then_some("SCF NOT CONVERGED"),
                ])?;
                if status != "pending" {
                    let finished = (status != "running").then_some(now);
                    attempt.execute(params![tx.last_insert_rowid(), now, finished, outcome])?;
                }
            }
            if !triggers.is_empty() {
                tx.execute_batch(
                    "DELETE FROM calc_totals;
                     INSERT INTO calc_totals
                        SELECT engine, status, count(*),
                               count(max_force_ev_per_a), coalesce(sum(max_force_ev_per_a), 0),
                               count(scf_steps), coalesce(sum(scf_steps), 0),
                               count(energy_ev), coalesce(sum(energy_ev), 0),
                               count(wall_time_s), coalesce(sum(wall_time_s), 0),
                               coalesce(sum(wall_time_s * cores), 0)
                        FROM calculations GROUP BY engine, status;",
                )?;
            }
            for sql in indexes.iter().chain(&triggers) {
                tx.execute_batch(sql)?;
            }
            Ok(())
        })?;
        // The bulk insert went through the write-ahead log whole; copy it into the
        // database and empty it, as a campaign's steady state has it (readers would
        // otherwise look every page up in a log of the whole database).
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(self.sq())
    }
}

fn log_reset(tx: &Connection, report: &ResetReport, what: &str) -> rusqlite::Result<()> {
    let mut message = format!("{} calculations reset to pending{what}", report.reset.len());
    if !report.chronic.is_empty() {
        message.push_str(&format!("; {} chronic ones left as they are", report.chronic.len()));
    }
    exec(tx, "INSERT INTO events (at, kind, message) VALUES (?1, 'reset', ?2)", params![now_s(), message])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{CalcResult, CalcStatus, FailureKind, JobStore, NewCalculation};
    use autopipe_atoms::{Element, Structure};

    fn store_with(n: usize, engine: &str) -> (tempfile::TempDir, JobStore) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JobStore::open_or_create(tmp.path()).unwrap();
        add(&mut store, n, engine, 0);
        (tmp, store)
    }

    fn add(store: &mut JobStore, n: usize, engine: &str, offset: usize) {
        let items: Vec<_> = (0..n)
            .map(|i| NewCalculation {
                structure: Structure::new(
                    [[3.0 + (i + offset) as f64 * 0.1, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]],
                    vec![[0.0; 3]],
                    vec![Element::from_symbol("Cu").unwrap()],
                    [true; 3],
                )
                .unwrap(),
                origin: "test".into(),
                generation: 0,
                engine: engine.into(),
                label_params: serde_json::json!({}),
                run_spec: serde_json::json!("emt"),
            })
            .collect();
        store.import(&items).unwrap();
    }

    fn finish(store: &mut JobStore, id: i64, energy_ev: f64, force: f64, scf: Option<u32>, wall: f64) {
        let c = store.start_attempt(id, "local", "x").unwrap();
        let result = CalcResult {
            energy_ev,
            forces_ev_per_a: vec![[force, 0.0, 0.0]],
            stress_ev_per_a3: None,
            max_force_ev_per_a: force,
            scf_steps: scf,
            wall_time_s: wall,
        };
        store.complete(id, c.attempt_id, &result).unwrap();
    }

    #[test]
    fn metrics_are_those_computed_by_hand() {
        let (_tmp, mut store) = store_with(5, "qe");
        add(&mut store, 2, "orca", 10);
        // qe: 4 finished (even count: the median is the mean of the middle two), 1 pending
        let qe = [
            (-10.0, 0.5, Some(12), 60.0),
            (-12.0, 0.1, Some(8), 120.0),
            (-11.0, 0.3, None, 30.0),
            (-9.0, 0.2, Some(9), 90.0),
        ];
        for (k, (e, f, s, w)) in qe.into_iter().enumerate() {
            finish(&mut store, k as i64 + 1, e, f, s, w);
        }
        finish(&mut store, 6, -100.0, 1.5, Some(20), 3600.0);
        let m = store.campaign_metrics().unwrap();
        assert_eq!(m.engines.len(), 2);
        let (orca, qe) = (&m.engines[0], &m.engines[1]);
        assert_eq!((orca.engine.as_str(), orca.done), ("orca", 1));
        assert_eq!((qe.engine.as_str(), qe.done), ("qe", 4));
        let f = qe.max_force_ev_per_a.as_ref().unwrap();
        assert_eq!((f.n, f.min, f.max), (4, 0.1, 0.5));
        assert!((f.mean - 0.275).abs() < 1e-12 && (f.median - 0.25).abs() < 1e-12, "{f:?}");
        let s = qe.scf_steps.as_ref().unwrap();
        // three values: 8, 9, 12 (odd count: the middle one)
        assert_eq!((s.n, s.median, s.min, s.max), (3, 9.0, 8.0, 12.0));
        assert!((s.mean - 29.0 / 3.0).abs() < 1e-12);
        let e = qe.energy_ev.as_ref().unwrap();
        assert_eq!((e.median, e.min, e.max, e.mean), (-10.5, -12.0, -9.0, -10.5));
        let w = qe.wall_time_s.as_ref().unwrap();
        assert_eq!((w.median, w.mean), (75.0, 75.0));
        assert!((qe.core_hours - 300.0 / 3600.0).abs() < 1e-12);
        assert!((orca.core_hours - 1.0).abs() < 1e-12);
        assert!((m.core_hours - (1.0 + 300.0 / 3600.0)).abs() < 1e-12);
        // the aggregates run on the indexes of migration 4
        let plan: String = store
            .conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT count(energy_ev), avg(energy_ev) FROM calculations WHERE status = 'done' AND engine = 'qe'",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("COVERING INDEX calculations_metric_energy"), "{plan}");

        // The running totals follow every change (a calculation forgotten, a reset, a
        // wall time dropped) and agree with full scans (the path without the triggers).
        store.forget(&[6]).unwrap();
        store.forget_wall_time(3).unwrap();
        let c = store.start_attempt(5, "local", "x").unwrap();
        store.fail_attempt(5, c.attempt_id, FailureKind::Crashed, "boom", false, None).unwrap();
        let kept = store.campaign_metrics().unwrap();
        assert_eq!(kept.engines.len(), 1);
        assert_eq!(kept.engines[0].wall_time_s.as_ref().unwrap().n, 3);
        assert!((kept.core_hours - 270.0 / 3600.0).abs() < 1e-12);
        let counts = store.campaign_counts().unwrap();
        assert_eq!(counts, store.counts().unwrap());
        assert_eq!((counts.done, counts.failed, counts.total()), (4, 1, 6));
        for t in super::TOTALS_TRIGGERS {
            store.conn.execute_batch(&format!("DROP TRIGGER {t}")).unwrap();
        }
        let scanned = store.campaign_metrics().unwrap();
        assert_eq!(format!("{kept:.9?}"), format!("{scanned:.9?}"));
        assert_eq!(store.campaign_counts().unwrap(), counts);
    }

    #[test]
    fn reset_keeps_fail_count_and_leaves_chronic_failures() {
        let (_tmp, mut store) = store_with(3, "emt");
        // 1 fails twice (retried once), 2 fails once, 3 stays pending
        let c = store.start_attempt(1, "local", "x").unwrap();
        store.fail_attempt(1, c.attempt_id, FailureKind::Physics, "scf", true, None).unwrap();
        let c = store.start_attempt(1, "local", "x").unwrap();
        store.fail_attempt(1, c.attempt_id, FailureKind::Physics, "scf", false, None).unwrap();
        let c = store.start_attempt(2, "local", "x").unwrap();
        store.fail_attempt(2, c.attempt_id, FailureKind::Crashed, "boom", false, None).unwrap();
        assert_eq!(store.failed_calculations().unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(store.chronic_calculations(2).unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
        let r = store.reset_counted(&[CalcStatus::Failed], Some(2)).unwrap();
        assert_eq!((r.reset, r.chronic), (vec![2], vec![(1, 2)]));
        assert_eq!(store.status_of(1).unwrap(), Some(CalcStatus::Failed));
        assert_eq!(store.status_of(2).unwrap(), Some(CalcStatus::Pending));
        assert_eq!(store.fail_count(2).unwrap(), Some(1), "a reset keeps the fail count");
        let detail = store.calculation(2).unwrap().unwrap();
        assert_eq!((detail.physics_failures, detail.infra_failures), (0, 0), "fresh budgets");
        // a stalled attempt given up counts as one more failure
        let c = store.start_attempt(2, "local", "x").unwrap();
        assert!(store.reset_stalled(2, c.attempt_id, "stalled").unwrap());
        assert!(!store.reset_stalled(2, c.attempt_id, "stalled").unwrap(), "only a running attempt");
        assert_eq!(store.fail_count(2).unwrap(), Some(2));
        assert_eq!(store.attempts(2).unwrap()[1].outcome.as_deref(), Some("stalled"));
        // an attempt run outside the orchestrator, recorded afterwards
        let c = store.start_external_attempt(3, "jobs/000/000003").unwrap();
        assert_eq!(c.attempt, 1);
        assert_eq!(store.status_of(3).unwrap(), Some(CalcStatus::Running));
        assert!(store.start_external_attempt(3, "jobs/000/000003").is_err());
    }

    #[test]
    fn synthetic_fill_for_the_bench() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JobStore::open_or_create(tmp.path()).unwrap();
        let schema = |store: &JobStore| -> Vec<String> {
            let mut st =
                store.conn.prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").unwrap();
            st.query_map([], |r| r.get(0)).unwrap().collect::<rusqlite::Result<_>>().unwrap()
        };
        let before = schema(&store);
        store.fill_synthetic(2000).unwrap();
        assert_eq!(schema(&store), before, "indexes and triggers are back after the bulk insert");
        let counts = store.counts().unwrap();
        assert_eq!(counts.total(), 2000);
        assert_eq!((counts.pending, counts.failed, counts.running), (100, 100, 2));
        let m = store.campaign_metrics().unwrap();
        assert_eq!(m.engines.iter().map(|e| e.done).sum::<u64>(), counts.done);
        assert!(store.totals_kept().unwrap(), "the triggers are back after the bulk insert");
        assert_eq!(store.campaign_counts().unwrap(), counts);
        // and they keep the totals again
        let c = store.start_attempt(1, "local", "x").unwrap();
        store.fail_attempt(1, c.attempt_id, FailureKind::Crashed, "boom", false, None).unwrap();
        assert_eq!(store.campaign_counts().unwrap(), store.counts().unwrap());
    }
}
