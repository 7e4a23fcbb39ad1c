//! Recovery into a fresh database: finished labels found elsewhere (the job
//! directories' `result.json`) become `done` calculations, in one transaction.

use crate::{
    calculation_key, exec, import_in, now_s, set_done, CalcResult, CalcStatus, JobStore, NewCalculation, Result,
};
use rusqlite::{params, OptionalExtension};

impl JobStore {
    /// Add each calculation (when its idempotency key is new) as `done` with its
    /// result; returns how many were added.
    pub fn import_done(&mut self, items: &[(NewCalculation, CalcResult)]) -> Result<usize> {
        let now = now_s();
        self.write(|tx| {
            let key = |c: &NewCalculation| calculation_key(&c.structure.content_hash(), &c.engine, &c.label_params);
            let id_of = |k: &str| {
                tx.query_row("SELECT id FROM calculations WHERE key = ?1", [k], |r| r.get::<_, i64>(0)).optional()
            };
            // Only calculations new here get the recovered label; one already present keeps
            // whatever it has.
            let mut new = Vec::new();
            for (calc, result) in items {
                let k = key(calc);
                if id_of(&k)?.is_none() && !new.iter().any(|(nk, _, _)| *nk == k) {
                    new.push((k, calc.clone(), result));
                }
            }
            let calcs: Vec<NewCalculation> = new.iter().map(|(_, c, _)| c.clone()).collect();
            import_in(tx, &calcs)?;
            for (k, _, result) in &new {
                let id = id_of(k)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
                set_done(tx, id, CalcStatus::Pending, now, result, Some("recovered from its job directory"))?;
                exec(tx, "UPDATE calculations SET attempts = 1 WHERE id = ?1", [id])?;
            }
            let added = new.len();
            exec(
                tx,
                "INSERT INTO events (at, kind, message) VALUES (?1, 'recover', ?2)",
                params![now, format!("{added} labels recovered from job directories")],
            )?;
            Ok(added)
        })
    }
}
