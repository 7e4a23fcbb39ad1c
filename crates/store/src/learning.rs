//! The learning loop's durable state: which generation and phase the run is in, the
//! models, the MD segments already explored and the candidates they found. Every phase
//! change is one transaction together with the results that justify it, so a crash
//! never leaves a phase half-recorded.

use crate::{exec, import_in, now_s, JobStore, NewCalculation, Result, StoreError};
use autopipe_atoms::Structure;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Where a generation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Labelling the generation's selected structures.
    Label,
    /// Fitting a model on every label so far.
    Fit,
    /// Molecular dynamics with the model, collecting uncertain frames.
    Explore,
    /// Choosing the next generation's structures among the candidates.
    Select,
    /// Nothing uncertain found and the error targets met.
    Converged,
    /// `max_generations` reached without converging.
    Finished,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Label => "label",
            Phase::Fit => "fit",
            Phase::Explore => "explore",
            Phase::Select => "select",
            Phase::Converged => "converged",
            Phase::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [Phase::Label, Phase::Fit, Phase::Explore, Phase::Select, Phase::Converged, Phase::Finished]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Phase::Converged | Phase::Finished)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoopState {
    pub generation: i64,
    pub phase: Phase,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelRecord {
    pub generation: i64,
    /// Relative to the run directory.
    pub path: String,
    pub n_train: i64,
    pub n_test: i64,
    pub metrics: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentRecord {
    pub generation: i64,
    pub name: String,
    pub temperature_k: f64,
    pub pressure_gpa: Option<f64>,
    pub seed: u64,
    pub steps_done: u64,
    pub stop_reason: Option<String>,
    pub max_gamma: Option<f64>,
    pub n_uncertain: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerationRecord {
    pub generation: i64,
    pub started_at_s: f64,
    pub finished_at_s: Option<f64>,
    pub n_candidates: i64,
    pub n_selected: i64,
    pub n_labelled: i64,
    pub n_failed: i64,
    pub metrics: Option<serde_json::Value>,
    pub gamma: Option<serde_json::Value>,
    pub core_hours: f64,
}

fn json_col(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

impl JobStore {
    /// The loop's state, or None when no loop was started in this run directory.
    pub fn loop_state(&self) -> Result<Option<LoopState>> {
        let row = self
            .conn
            .query_row("SELECT generation, phase, message FROM loop_state WHERE id = 1", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
            })
            .optional()
            .map_err(self.sq())?;
        Ok(row.map(|(generation, phase, message)| LoopState {
            generation,
            phase: Phase::parse(&phase).unwrap_or(Phase::Label),
            message,
        }))
    }

    /// Start the loop: generation 0's calculations, its record and the state
    /// `(0, label)`, in one transaction. Does nothing when a loop exists.
    pub fn start_loop(&mut self, generation_zero: &[NewCalculation]) -> Result<()> {
        let now = now_s();
        self.write(|tx| {
            let exists: bool = tx.query_row("SELECT count(*) FROM loop_state", [], |r| r.get::<_, i64>(0))? > 0;
            if !exists {
                let summary = import_in(tx, generation_zero)?;
                exec(
                    tx,
                    "INSERT INTO generations (generation, started_at, n_candidates, n_selected) VALUES (0, ?1, ?2, ?2)",
                    params![now, summary.added + summary.already_present],
                )?;
                exec(
                    tx,
                    "INSERT INTO loop_state (id, generation, phase, updated_at) VALUES (1, 0, 'label', ?1)",
                    params![now],
                )?;
                exec(
                    tx,
                    "INSERT INTO events (at, kind, message) VALUES (?1, 'loop', 'generation 0: label')",
                    params![now],
                )?;
            }
            Ok(())
        })
    }

    pub(crate) fn set_phase_in(
        tx: &rusqlite::Connection,
        generation: i64,
        phase: Phase,
        message: Option<&str>,
    ) -> rusqlite::Result<()> {
        let now = now_s();
        exec(
            tx,
            "UPDATE loop_state SET generation = ?1, phase = ?2, message = ?3, updated_at = ?4 WHERE id = 1",
            params![generation, phase.as_str(), message, now],
        )?;
        exec(
            tx,
            "INSERT INTO events (at, kind, message) VALUES (?1, 'loop', ?2)",
            params![
                now,
                format!(
                    "generation {generation}: {}{}",
                    phase.as_str(),
                    message.map(|m| format!(" ({m})")).unwrap_or_default()
                )
            ],
        )?;
        if phase.is_final() {
            exec(tx, "UPDATE generations SET finished_at = ?2 WHERE generation = ?1", params![generation, now])?;
        }
        Ok(())
    }

    /// Move to `phase` (for transitions that carry no results of their own).
    pub fn set_phase(&mut self, generation: i64, phase: Phase, message: Option<&str>) -> Result<()> {
        self.write(|tx| {
            Self::set_phase_in(tx, generation, phase, message)?;
            Ok(())
        })
    }

    /// Labelling of `generation` is over: record its counts and core-hours, go to `fit`.
    pub fn finish_labelling(&mut self, generation: i64) -> Result<()> {
        self.write(|tx| {
            exec(
                tx,
                "UPDATE generations SET
                    n_labelled = (SELECT count(*) FROM calculations c JOIN structures s ON s.id = c.structure_id
                                  WHERE s.generation = ?1 AND c.status = 'done'),
                    n_failed = (SELECT count(*) FROM calculations c JOIN structures s ON s.id = c.structure_id
                                WHERE s.generation = ?1 AND c.status IN ('failed', 'timeout')),
                    core_hours = (SELECT coalesce(sum(coalesce(c.wall_time_s, 0) * c.cores), 0) / 3600.0
                                  FROM calculations c JOIN structures s ON s.id = c.structure_id WHERE s.generation = ?1)
                 WHERE generation = ?1",
                params![generation],
            )?;
            Self::set_phase_in(tx, generation, Phase::Fit, None)?;
            Ok(())
        })
    }

    /// A model was fitted (its file already written): record it and go to `explore`.
    pub fn record_model(&mut self, record: &ModelRecord) -> Result<()> {
        self.write(|tx| {
            let metrics = record.metrics.to_string();
            exec(
                tx,
                "INSERT OR REPLACE INTO models (generation, path, n_train, n_test, metrics_json, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![record.generation, record.path, record.n_train, record.n_test, metrics, now_s()],
            )?;
            exec(
                tx,
                "UPDATE generations SET metrics_json = ?2 WHERE generation = ?1",
                params![record.generation, metrics],
            )?;
            Self::set_phase_in(tx, record.generation, Phase::Explore, None)?;
            Ok(())
        })
    }

    /// The model fitted in `generation`, or the latest one when None.
    pub fn model(&self, generation: Option<i64>) -> Result<Option<ModelRecord>> {
        let sql = "SELECT generation, path, n_train, n_test, metrics_json FROM models
                   WHERE ?1 IS NULL OR generation = ?1 ORDER BY generation DESC LIMIT 1";
        self.conn
            .query_row(sql, params![generation], |r| {
                Ok(ModelRecord {
                    generation: r.get(0)?,
                    path: r.get(1)?,
                    n_train: r.get(2)?,
                    n_test: r.get(3)?,
                    metrics: json_col(r.get(4)?).unwrap_or(serde_json::Value::Null),
                })
            })
            .optional()
            .map_err(self.sq())
    }

    /// Whether an MD segment of `generation` was already explored and recorded.
    pub fn segment_done(&self, generation: i64, name: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) FROM md_segments WHERE generation = ?1 AND name = ?2",
                params![generation, name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(self.sq())
    }

    /// An MD segment finished: its record and the uncertain frames it found (as
    /// candidates of the next generation, scored by their extrapolation grade), in one
    /// transaction. Returns how many new candidates were added.
    pub fn record_segment(&mut self, segment: &SegmentRecord, candidates: &[(Structure, f64)]) -> Result<usize> {
        let now = now_s();
        self.write(|tx| {
            let mut added = 0;
            for (s, score) in candidates {
                let atoms = serde_json::to_string(s).expect("structures serialise");
                added += exec(
                    tx,
                    "INSERT OR IGNORE INTO structures (hash, generation, origin, formula, n_atoms, atoms_json, status, created_at, score)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'candidate', ?7, ?8)",
                    params![
                        s.content_hash(),
                        segment.generation + 1,
                        format!("md:{}:{}", segment.generation, segment.name),
                        s.formula(),
                        s.len() as i64,
                        atoms,
                        now,
                        score
                    ],
                )?;
            }
            exec(
                tx,
                "INSERT INTO md_segments (generation, name, temperature_k, pressure_gpa, seed, steps_done, stop_reason,
                     max_gamma, n_uncertain, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    segment.generation,
                    segment.name,
                    segment.temperature_k,
                    segment.pressure_gpa,
                    segment.seed as i64,
                    segment.steps_done as i64,
                    segment.stop_reason,
                    segment.max_gamma,
                    segment.n_uncertain as i64,
                    now
                ],
            )?;
            Ok(added)
        })
    }

    /// The MD segments recorded for `generation`.
    pub fn segments(&self, generation: i64) -> Result<Vec<SegmentRecord>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT generation, name, temperature_k, pressure_gpa, seed, steps_done, stop_reason, max_gamma, n_uncertain
                 FROM md_segments WHERE generation = ?1 ORDER BY id",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([generation], |r| {
                Ok(SegmentRecord {
                    generation: r.get(0)?,
                    name: r.get(1)?,
                    temperature_k: r.get(2)?,
                    pressure_gpa: r.get(3)?,
                    seed: r.get::<_, i64>(4)? as u64,
                    steps_done: r.get::<_, i64>(5)? as u64,
                    stop_reason: r.get(6)?,
                    max_gamma: r.get(7)?,
                    n_uncertain: r.get::<_, i64>(8)? as u64,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Candidates of `generation` not yet selected or rejected: (structure id, atoms, score).
    pub fn candidates(&self, generation: i64) -> Result<Vec<(i64, Structure, f64)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, atoms_json, coalesce(score, 0) FROM structures
                 WHERE generation = ?1 AND status = 'candidate' ORDER BY id",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([generation], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?)))
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, atoms, score) = row.map_err(self.sq())?;
            let s = serde_json::from_str(&atoms)
                .map_err(|e| StoreError::BadRow { id, message: format!("structure atoms: {e}") })?;
            out.push((id, s, score));
        }
        Ok(out)
    }

    /// Close `generation` and open the next one in one transaction: the chosen
    /// candidates become calculations, the others are rejected, the exploration
    /// statistics are recorded, and the state becomes `(generation + 1, label)`.
    pub fn advance(
        &mut self,
        generation: i64,
        selected: &[(i64, NewCalculation)],
        gamma_stats: &serde_json::Value,
    ) -> Result<()> {
        let now = now_s();
        let next = generation + 1;
        self.write(|tx| {
            let calcs: Vec<NewCalculation> = selected.iter().map(|(_, c)| c.clone()).collect();
            import_in(tx, &calcs)?;
            for (id, _) in selected {
                exec(tx, "UPDATE structures SET status = 'selected' WHERE id = ?1", params![id])?;
            }
            exec(
                tx,
                "UPDATE structures SET status = 'rejected' WHERE generation = ?1 AND status = 'candidate'",
                params![next],
            )?;
            let n_candidates: i64 = tx
                .query_row(
                    "SELECT count(*) FROM structures WHERE generation = ?1 AND origin LIKE 'md:%'",
                    params![next],
                    |r| r.get(0),
                )?;
            exec(
                tx,
                "UPDATE generations SET finished_at = ?2, gamma_json = ?3 WHERE generation = ?1",
                params![generation, now, gamma_stats.to_string()],
            )?;
            exec(
                tx,
                "INSERT OR REPLACE INTO generations (generation, started_at, n_candidates, n_selected) VALUES (?1, ?2, ?3, ?4)",
                params![next, now, n_candidates, selected.len() as i64],
            )?;
            Self::set_phase_in(tx, next, Phase::Label, None)?;
            Ok(())
        })
    }

    /// Record the exploration statistics of the last generation and end the loop.
    pub fn conclude(
        &mut self,
        generation: i64,
        phase: Phase,
        gamma_stats: &serde_json::Value,
        message: &str,
    ) -> Result<()> {
        self.write(|tx| {
            exec(
                tx,
                "UPDATE generations SET gamma_json = ?2 WHERE generation = ?1",
                params![generation, gamma_stats.to_string()],
            )?;
            Self::set_phase_in(tx, generation, phase, Some(message))?;
            Ok(())
        })
    }

    /// Start `generation` over from labelling (a new labelling lineage): calculations
    /// for the new settings are added, its model record and MD segments are dropped
    /// (the next fit and exploration redo them) and the candidates its exploration
    /// found are rejected; one transaction. Returns how many calculations were added.
    pub fn restart_generation(&mut self, generation: i64, calcs: &[NewCalculation], why: &str) -> Result<usize> {
        self.write(|tx| {
            let summary = import_in(tx, calcs)?;
            exec(tx, "DELETE FROM models WHERE generation = ?1", params![generation])?;
            exec(tx, "DELETE FROM md_segments WHERE generation = ?1", params![generation])?;
            exec(
                tx,
                "UPDATE structures SET status = 'rejected' WHERE generation = ?1 AND status = 'candidate'",
                params![generation + 1],
            )?;
            exec(tx, "UPDATE generations SET finished_at = NULL WHERE generation = ?1", params![generation])?;
            Self::set_phase_in(tx, generation, Phase::Label, Some(why))?;
            Ok(summary.added)
        })
    }

    /// Every generation's record, oldest first.
    pub fn generations(&self) -> Result<Vec<GenerationRecord>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT generation, started_at, finished_at, n_candidates, n_selected, n_labelled, n_failed,
                        metrics_json, gamma_json, core_hours FROM generations ORDER BY generation",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(GenerationRecord {
                    generation: r.get(0)?,
                    started_at_s: r.get(1)?,
                    finished_at_s: r.get(2)?,
                    n_candidates: r.get(3)?,
                    n_selected: r.get(4)?,
                    n_labelled: r.get(5)?,
                    n_failed: r.get(6)?,
                    metrics: json_col(r.get(7)?),
                    gamma: json_col(r.get(8)?),
                    core_hours: r.get(9)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }
}
