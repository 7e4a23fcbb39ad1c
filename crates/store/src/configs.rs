//! The configurations a loop ran with: the first one and every accepted change, each
//! with its text and hashes, so that a later invocation can tell what changed.

use crate::{exec, now_s, JobStore, Result};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// One configuration a run accepted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunConfigRecord {
    pub id: i64,
    pub at_s: f64,
    /// Where it was read from.
    pub file: String,
    /// The TOML text as given.
    pub text: String,
    /// Hash of the validated configuration as a whole.
    pub hash: String,
    /// Hash of its label-defining part (the oracle's label settings and the elements).
    pub label_hash: String,
    /// Labelling lineage: 0 for the first configuration, +1 at each accepted
    /// label-defining change.
    pub lineage: i64,
    pub note: Option<String>,
}

impl JobStore {
    /// The configuration the run goes by now (the latest accepted), if any was recorded.
    pub fn current_config(&self) -> Result<Option<RunConfigRecord>> {
        self.conn
            .query_row(
                "SELECT id, at, file, text, hash, label_hash, lineage, note FROM run_configs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(RunConfigRecord {
                        id: r.get(0)?,
                        at_s: r.get(1)?,
                        file: r.get(2)?,
                        text: r.get(3)?,
                        hash: r.get(4)?,
                        label_hash: r.get(5)?,
                        lineage: r.get(6)?,
                        note: r.get(7)?,
                    })
                },
            )
            .optional()
            .map_err(self.sq())
    }

    /// Record an accepted configuration (and an event saying what changed), in one
    /// transaction; returns its id.
    pub fn record_config(
        &mut self,
        file: &str,
        text: &str,
        hash: &str,
        label_hash: &str,
        lineage: i64,
        note: Option<&str>,
    ) -> Result<i64> {
        let now = now_s();
        self.write(|tx| {
            exec(
                tx,
                "INSERT INTO run_configs (at, file, text, hash, label_hash, lineage, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![now, file, text, hash, label_hash, lineage, note],
            )?;
            let id = tx.last_insert_rowid();
            exec(
                tx,
                "INSERT INTO events (at, kind, message) VALUES (?1, 'config', ?2)",
                params![now, note.map(str::to_string).unwrap_or_else(|| format!("configuration {file} recorded"))],
            )?;
            Ok(id)
        })
    }
}
