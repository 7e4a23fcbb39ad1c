//! Recovery into a fresh database: finished labels found elsewhere (the job
//! directories' `result.json`) become `done` calculations, in one transaction.

use crate::{exec, import_in, now_s, CalcResult, JobStore, NewCalculation, Result};
use rusqlite::params;

impl JobStore {
    /// Add each calculation (when its idempotency key is new) as `done` with its
    /// result; returns how many were added.
    pub fn import_done(&mut self, items: &[(NewCalculation, CalcResult)]) -> Result<usize> {
        let now = now_s();
        self.write(|tx| {
            let mut added = 0;
            for (calc, result) in items {
                if import_in(tx, std::slice::from_ref(calc))?.added == 0 {
                    continue;
                }
                let id = tx.last_insert_rowid();
                exec(
                    tx,
                    "UPDATE calculations SET status = 'done', attempts = 1, finished_at = ?2, wall_time_s = ?3,
                         energy_ev = ?4, forces_json = ?5, stress_json = ?6, max_force_ev_per_a = ?7, scf_steps = ?8,
                         message = 'recovered from its job directory'
                     WHERE id = ?1",
                    params![
                        id,
                        now,
                        result.wall_time_s,
                        result.energy_ev,
                        serde_json::to_string(&result.forces_ev_per_a).expect("forces serialise"),
                        result.stress_ev_per_a3.map(|s| serde_json::to_string(&s).expect("stress serialises")),
                        result.max_force_ev_per_a,
                        result.scf_steps,
                    ],
                )?;
                exec(tx, "UPDATE structures SET status = 'labelled' WHERE id = (SELECT structure_id FROM calculations WHERE id = ?1)", [id])?;
                added += 1;
            }
            exec(
                tx,
                "INSERT INTO events (at, kind, message) VALUES (?1, 'recover', ?2)",
                params![now, format!("{added} labels recovered from job directories")],
            )?;
            Ok(added)
        })
    }
}
