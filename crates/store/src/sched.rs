//! Transitions of calculations run by a batch scheduler (Slurm, Flux).
//!
//! Submission is two-phase, so that a kill of the orchestrator between the scheduler's
//! `sbatch` and the database never leads to a second submission of the same attempt:
//!
//! 1. `submit_attempts` records the intent in one transaction: each calculation goes
//!    `pending -> submitted` with a new attempt whose backend id is the submission's
//!    *intent* (`?NAME`, NAME being the scheduler job name of the submission);
//! 2. the job is submitted under that name;
//! 3. `confirm_submitted` replaces the intent by the scheduler's ids in one transaction.
//!
//! A restarted orchestrator that finds an intent asks the scheduler for a job of that
//! name: found, the attempt is adopted with its ids; not found, nothing was submitted
//! (or it ended and left its result in the job directory).

use crate::{exec, now_s, sqlite_error, CalcRow, Claimed, JobStore, Result};
use rusqlite::{params, TransactionBehavior};

/// The prefix of a backend id that records an intent to submit, not a scheduler id.
pub const INTENT_PREFIX: &str = "?";

impl JobStore {
    /// Phase 1 of a submission: `pending -> submitted` for each of `ids` still pending
    /// (others, cancelled meanwhile, are skipped), each with a new attempt whose backend id
    /// is `?intent`, in one transaction. `job_dir(id)` is the calculation's directory.
    pub fn submit_attempts(
        &mut self,
        ids: &[i64],
        backend: &str,
        intent: &str,
        job_dir: impl Fn(i64) -> String,
    ) -> Result<Vec<Claimed>> {
        let path = self.path.clone();
        let sq = |source| sqlite_error(&path, source);
        let now = now_s();
        let marker = format!("{INTENT_PREFIX}{intent}");
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sq)?;
        let mut rows = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(row) = CalcRow::read(&tx, id).map_err(sq)? else { continue };
            if row.status != "pending" {
                continue;
            }
            let attempt = row.attempts + 1;
            exec(
                &tx,
                "UPDATE calculations SET status = 'submitted', attempts = ?2, backend = ?3, backend_id = ?4,
                     job_dir = ?5, submitted_at = ?6, started_at = NULL WHERE id = ?1",
                params![id, attempt, backend, marker, job_dir(id), now],
            )
            .map_err(sq)?;
            exec(
                &tx,
                "INSERT INTO attempts (calculation_id, attempt, backend, backend_id, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, attempt, backend, marker, now],
            )
            .map_err(sq)?;
            rows.push((id, tx.last_insert_rowid(), attempt, row));
        }
        tx.commit().map_err(sq)?;
        rows.into_iter().map(|(id, attempt_id, attempt, row)| row.into_claimed(id, attempt_id, attempt)).collect()
    }

    /// Phase 3 of a submission: the scheduler's id of each attempt, in one transaction:
    /// `(calculation id, attempt id, backend id)`. A calculation cancelled meanwhile keeps
    /// its status; its attempt still gets the id (so that its job can be stopped).
    pub fn confirm_submitted(&mut self, ids: &[(i64, i64, String)]) -> Result<()> {
        self.write(|tx| {
            for (id, attempt_id, backend_id) in ids {
                exec(tx, "UPDATE calculations SET backend_id = ?2 WHERE id = ?1", params![id, backend_id])?;
                exec(tx, "UPDATE attempts SET backend_id = ?2 WHERE id = ?1", params![attempt_id, backend_id])?;
            }
            Ok(())
        })
    }

    /// `submitted -> running` for calculations the scheduler has started, in one
    /// transaction; returns how many changed.
    pub fn mark_running(&mut self, ids: &[i64]) -> Result<usize> {
        let now = now_s();
        self.write(|tx| {
            let mut n = 0;
            for id in ids {
                n += exec(
                    tx,
                    "UPDATE calculations SET status = 'running', started_at = ?2 WHERE id = ?1 AND status = 'submitted'",
                    params![id, now],
                )?;
            }
            Ok(n)
        })
    }

    /// Pending calculations to submit next: oldest first, at most `limit`, skipping those
    /// that failed `max_fail_count` times or more (chronic failures) when it is given.
    pub fn pending_ids_below(&self, limit: usize, max_fail_count: Option<u32>) -> Result<Vec<i64>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id FROM calculations WHERE status = 'pending' AND fail_count < ?2 ORDER BY id LIMIT ?1",
            )
            .map_err(self.sq())?;
        let cap = max_fail_count.map(i64::from).unwrap_or(i64::MAX);
        let rows = st.query_map(params![limit as i64, cap], |r| r.get(0)).map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<i64>>>().map_err(self.sq())
    }

    /// A calculation's status and backend id now (another process may have changed it).
    pub fn backend_state(&self, id: i64) -> Result<Option<(String, Option<String>)>> {
        use rusqlite::OptionalExtension;
        self.conn
            .prepare_cached("SELECT status, backend_id FROM calculations WHERE id = ?1")
            .and_then(|mut st| st.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(self.sq())
    }
}
