//! Administration of calculations by the user: cancel, forget, and the detail of one
//! calculation. Each command is one transaction: ids that do not exist (or a calculation
//! that may not be forgotten) leave the database as it was.
//!
//! `cancel` may run while `autopipe jobs run` runs in another process: a running
//! calculation becomes `cancelled` here, and the orchestrator, which notices the change
//! (`data_version`), stops the job and never harvests it.

use crate::{exec, now_s, CalcStatus, JobStore, Result, StoreError};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// A calculation that `cancel` stopped.
#[derive(Clone, Debug, Serialize)]
pub struct CancelledCalc {
    pub id: i64,
    /// Its status before.
    pub was: CalcStatus,
    /// Job directory recorded for it (relative to the run directory).
    pub job_dir: Option<String>,
    /// Number of its latest attempt.
    pub attempt: u32,
    /// Process group id (or scheduler id) of its running attempt.
    pub backend_id: Option<String>,
    /// Who ran it: `local`, `slurm`, `flux`.
    pub backend: Option<String>,
}

/// What `cancel` did. When `unknown` is not empty nothing was changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CancelReport {
    pub unknown: Vec<i64>,
    pub cancelled: Vec<CancelledCalc>,
    /// Left as they were: done (a finished label is kept) or already cancelled.
    pub skipped: Vec<(i64, CalcStatus)>,
}

/// A calculation that `forget` removed.
#[derive(Clone, Debug, Serialize)]
pub struct ForgottenCalc {
    pub id: i64,
    pub status: CalcStatus,
    pub formula: String,
    pub attempts: u32,
    /// Job directory recorded for it, left on disk.
    pub job_dir: Option<String>,
    /// Whether its structure went too (no other calculation refers to it).
    pub structure_removed: bool,
}

/// What `forget` did. When `unknown` or `running` is not empty nothing was changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgetReport {
    pub unknown: Vec<i64>,
    /// In flight: refused (cancel them first).
    pub running: Vec<i64>,
    pub forgotten: Vec<ForgottenCalc>,
}

/// The structure of a calculation, as `jobs status --id` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StructureInfo {
    pub id: i64,
    pub formula: String,
    pub n_atoms: u64,
    pub hash: String,
    pub origin: String,
    pub generation: i64,
}

/// Everything the database knows about one calculation (times in unix seconds, energy in
/// eV, forces in eV/Å).
#[derive(Clone, Debug, Serialize)]
pub struct CalcDetail {
    pub id: i64,
    pub status: CalcStatus,
    pub engine: String,
    pub label_params: serde_json::Value,
    pub structure: StructureInfo,
    /// Job directory recorded for it, relative to the run directory.
    pub job_dir: Option<String>,
    pub attempts: u32,
    pub physics_failures: u32,
    pub infra_failures: u32,
    pub backend_id: Option<String>,
    pub energy_ev: Option<f64>,
    pub max_force_ev_per_a: Option<f64>,
    pub scf_steps: Option<u32>,
    pub created_at_s: f64,
    pub started_at_s: Option<f64>,
    pub finished_at_s: Option<f64>,
    pub wall_time_s: Option<f64>,
    pub message: Option<String>,
}

/// (id, status) of the calculations found, and the ids that do not exist.
type Statuses = (Vec<(i64, CalcStatus)>, Vec<i64>);

/// Ids from `ids` with their status, and the ids that do not exist.
fn statuses_of(tx: &rusqlite::Connection, ids: &[i64]) -> rusqlite::Result<Statuses> {
    let mut st = tx.prepare_cached("SELECT status FROM calculations WHERE id = ?1")?;
    let (mut found, mut unknown) = (Vec::new(), Vec::new());
    for &id in ids {
        match st.query_row([id], |r| r.get::<_, String>(0)).optional()? {
            Some(s) => found.push((id, CalcStatus::parse(&s).unwrap_or(CalcStatus::Failed))),
            None => unknown.push(id),
        }
    }
    Ok((found, unknown))
}

fn dedup(ids: &[i64]) -> Vec<i64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

impl JobStore {
    /// A number that changes whenever another connection (another process) commits to
    /// the database: a cheap way for a long-running orchestrator to notice `cancel`.
    pub fn data_version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).map_err(self.sq())
    }

    /// The status of one calculation, `None` when there is no such calculation.
    pub fn status_of(&self, id: i64) -> Result<Option<CalcStatus>> {
        let s: Option<String> = self
            .conn
            .prepare_cached("SELECT status FROM calculations WHERE id = ?1")
            .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional())
            .map_err(self.sq())?;
        Ok(s.and_then(|s| CalcStatus::parse(&s)))
    }

    /// Calculations that must never run: pending, running, failed and timed-out ones
    /// become `cancelled` (a running attempt is recorded as `cancelled`; stopping its
    /// process is the executor's part). Done and already cancelled ones are left as they
    /// are. Unknown ids change nothing.
    pub fn cancel(&mut self, ids: &[i64]) -> Result<CancelReport> {
        let ids = dedup(ids);
        let now = now_s();
        self.write(|tx| {
            let (found, unknown) = statuses_of(tx, &ids)?;
            let mut report = CancelReport { unknown, ..Default::default() };
            if !report.unknown.is_empty() {
                return Ok(report);
            }
            for (id, was) in found {
                if matches!(was, CalcStatus::Done | CalcStatus::Cancelled) {
                    report.skipped.push((id, was));
                    continue;
                }
                #[allow(clippy::type_complexity)]
                let (job_dir, backend_id, attempt, backend): (
                    Option<String>,
                    Option<String>,
                    u32,
                    Option<String>,
                ) = tx.query_row(
                    "SELECT job_dir, backend_id, attempts, backend FROM calculations WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                exec(
                    tx,
                    "UPDATE calculations SET status = 'cancelled', finished_at = ?2, message = 'cancelled by the user'
                     WHERE id = ?1",
                    params![id, now],
                )?;
                exec(
                    tx,
                    "UPDATE attempts SET finished_at = ?2, outcome = 'cancelled', message = 'cancelled by the user'
                     WHERE calculation_id = ?1 AND finished_at IS NULL",
                    params![id, now],
                )?;
                exec(
                    tx,
                    "INSERT INTO events (at, calculation_id, kind, message) VALUES (?1, ?2, 'cancel', ?3)",
                    params![now, id, format!("calculation {id} cancelled (it was {})", was.as_str())],
                )?;
                report.cancelled.push(CancelledCalc { id, was, job_dir, attempt, backend_id, backend });
            }
            Ok(report)
        })
    }

    /// Remove calculations with their attempts (and their structure when no other
    /// calculation refers to it). Running ones are refused; unknown ids and refused ones
    /// change nothing. Job directories stay on disk.
    pub fn forget(&mut self, ids: &[i64]) -> Result<ForgetReport> {
        let ids = dedup(ids);
        self.write(|tx| {
            let (found, unknown) = statuses_of(tx, &ids)?;
            let running: Vec<i64> = found
                .iter()
                .filter(|(_, s)| matches!(s, CalcStatus::Running | CalcStatus::Submitted))
                .map(|(id, _)| *id)
                .collect();
            let mut report = ForgetReport { unknown, running, ..Default::default() };
            if !report.unknown.is_empty() || !report.running.is_empty() {
                return Ok(report);
            }
            for (id, status) in found {
                let (sid, formula, attempts, job_dir): (i64, String, u32, Option<String>) = tx.query_row(
                    "SELECT c.structure_id, s.formula, c.attempts, c.job_dir
                     FROM calculations c JOIN structures s ON s.id = c.structure_id WHERE c.id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?;
                exec(tx, "DELETE FROM attempts WHERE calculation_id = ?1", [id])?;
                exec(tx, "DELETE FROM calculations WHERE id = ?1", [id])?;
                let structure_removed = exec(
                    tx,
                    "DELETE FROM structures WHERE id = ?1
                     AND NOT EXISTS (SELECT 1 FROM calculations WHERE structure_id = ?1)",
                    [sid],
                )? == 1;
                exec(
                    tx,
                    "INSERT INTO events (at, calculation_id, kind, message) VALUES (?1, ?2, 'forget', ?3)",
                    params![now_s(), id, format!("calculation {id} ({formula}, {}) forgotten", status.as_str())],
                )?;
                report.forgotten.push(ForgottenCalc { id, status, formula, attempts, job_dir, structure_removed });
            }
            Ok(report)
        })
    }

    /// Everything about one calculation, `None` when there is no such calculation.
    pub fn calculation(&self, id: i64) -> Result<Option<CalcDetail>> {
        let bad = |message: String| StoreError::BadRow { id, message };
        let row = self
            .conn
            .query_row(
                "SELECT c.status, c.engine, c.label_params_json, c.job_dir, c.attempts, c.physics_failures,
                        c.infra_failures, c.backend_id, c.energy_ev, c.max_force_ev_per_a, c.scf_steps,
                        c.created_at, c.started_at, c.finished_at, c.wall_time_s, c.message,
                        s.id, s.formula, s.n_atoms, s.hash, s.origin, s.generation
                 FROM calculations c JOIN structures s ON s.id = c.structure_id WHERE c.id = ?1",
                [id],
                |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?),
                        (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?),
                        (r.get(8)?, r.get(9)?, r.get(10)?),
                        (r.get(11)?, r.get(12)?, r.get(13)?, r.get(14)?, r.get(15)?),
                        StructureInfo {
                            id: r.get(16)?,
                            formula: r.get(17)?,
                            n_atoms: r.get(18)?,
                            hash: r.get(19)?,
                            origin: r.get(20)?,
                            generation: r.get(21)?,
                        },
                    ))
                },
            )
            .optional()
            .map_err(self.sq())?;
        let Some((
            (status, engine, label_params, job_dir),
            (attempts, physics_failures, infra_failures, backend_id),
            (energy_ev, max_force_ev_per_a, scf_steps),
            (created_at_s, started_at_s, finished_at_s, wall_time_s, message),
            structure,
        )) = row
        else {
            return Ok(None);
        };
        Ok(Some(CalcDetail {
            id,
            status: CalcStatus::parse(&status).ok_or_else(|| bad(format!("unknown status {status:?}")))?,
            engine,
            label_params: serde_json::from_str(&label_params).map_err(|e| bad(format!("label params: {e}")))?,
            structure,
            job_dir,
            attempts,
            physics_failures,
            infra_failures,
            backend_id,
            energy_ev,
            max_force_ev_per_a,
            scf_steps,
            created_at_s,
            started_at_s,
            finished_at_s,
            wall_time_s,
            message,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::{CalcStatus, JobStore, NewCalculation};
    use autopipe_atoms::{Element, Structure};

    fn store_with(n: usize) -> (tempfile::TempDir, JobStore) {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JobStore::open_or_create(tmp.path()).unwrap();
        let items: Vec<_> = (0..n)
            .map(|i| NewCalculation {
                structure: Structure::new(
                    [[3.0 + i as f64 * 0.1, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]],
                    vec![[0.0; 3]],
                    vec![Element::from_symbol("Cu").unwrap()],
                    [true; 3],
                )
                .unwrap(),
                origin: "test".into(),
                generation: 0,
                engine: "emt".into(),
                label_params: serde_json::json!({}),
                run_spec: serde_json::json!("emt"),
            })
            .collect();
        store.import(&items).unwrap();
        (tmp, store)
    }

    #[test]
    fn cancel_with_an_unknown_id_changes_nothing() {
        let (_tmp, mut store) = store_with(2);
        let report = store.cancel(&[1, 7]).unwrap();
        assert_eq!(report.unknown, [7]);
        assert_eq!(store.status_of(1).unwrap(), Some(CalcStatus::Pending));
        let report = store.cancel(&[1]).unwrap();
        assert_eq!(report.cancelled.len(), 1);
        assert_eq!(store.counts().unwrap().cancelled, 1);
        assert_eq!(store.pending_ids(10).unwrap(), [2]);
    }

    #[test]
    fn forget_removes_rows_and_refuses_running_ones() {
        let (_tmp, mut store) = store_with(2);
        store.start_attempt(2, "local", "jobs/000/000002/attempt-1").unwrap();
        let report = store.forget(&[1, 2]).unwrap();
        assert_eq!(report.running, [2]);
        assert!(report.forgotten.is_empty());
        assert!(store.calculation(1).unwrap().is_some());
        let report = store.forget(&[1]).unwrap();
        assert!(report.forgotten[0].structure_removed);
        assert!(store.calculation(1).unwrap().is_none());
        assert_eq!(store.counts().unwrap().total(), 1);
    }
}
