//! Read-only aggregates for the report and the live page: counts, costs and outcomes
//! grouped in SQL (so a run of 100,000 calculations is summarised without loading it),
//! the loop's phase history, the exploration's candidates and the per-calculation
//! figures that make the distributions of a `jobs` campaign. Nothing here writes.

use crate::{now_s, JobStore, Result};
use serde::Serialize;

/// Attempts of one (generation, engine, outcome): how many and what they cost.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttemptGroup {
    /// Generation of the calculated structure (0 for a plain `jobs` campaign).
    pub generation: i64,
    pub engine: String,
    /// done, physics, timeout, killed, crashed, setup, input, lost, cancelled, or
    /// `running` for an attempt still in flight.
    pub outcome: String,
    pub n: u64,
    /// Wall time of the attempts (an attempt in flight counts until now), seconds.
    pub wall_s: f64,
    /// Wall time x cores, hours.
    pub core_hours: f64,
}

/// Calculations of one (generation, status).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatusGroup {
    pub generation: i64,
    pub status: String,
    pub n: u64,
}

/// A remediation step (the change applied before a retry) and how often it was taken.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RemediationGroup {
    pub generation: i64,
    pub changes: String,
    pub n: u64,
}

/// A structure found by exploration: the generation it was found in (its model's), the
/// segment, its extrapolation grade and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CandidatePoint {
    /// The generation whose exploration found it.
    pub explored_in: i64,
    pub segment: String,
    pub gamma: Option<f64>,
    /// candidate, selected, rejected, labelled, failed.
    pub status: String,
}

/// A loop event (`generation G: PHASE (message)`), in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoopEvent {
    pub at_s: f64,
    pub message: String,
}

/// A finished label for a parity plot: (calculation id, structure, energy eV, forces eV/Å).
pub type LabelData = (i64, autopipe_atoms::Structure, f64, Vec<[f64; 3]>);

/// Figures of one finished calculation (for distributions).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct DoneFigures {
    pub wall_time_s: Option<f64>,
    pub scf_steps: Option<u32>,
    pub max_force_ev_per_a: Option<f64>,
}

impl JobStore {
    /// Every attempt, grouped by (generation, engine, outcome), with its cost.
    pub fn attempt_groups(&self) -> Result<Vec<AttemptGroup>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.generation, c.engine, coalesce(a.outcome, 'running'), count(*),
                        sum(max(coalesce(a.finished_at, ?1) - a.started_at, 0)),
                        sum(max(coalesce(a.finished_at, ?1) - a.started_at, 0) * c.cores) / 3600.0
                 FROM attempts a JOIN calculations c ON c.id = a.calculation_id
                 JOIN structures s ON s.id = c.structure_id
                 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([now_s()], |r| {
                Ok(AttemptGroup {
                    generation: r.get(0)?,
                    engine: r.get(1)?,
                    outcome: r.get(2)?,
                    n: r.get::<_, i64>(3)? as u64,
                    wall_s: r.get::<_, Option<f64>>(4)?.unwrap_or(0.0),
                    core_hours: r.get::<_, Option<f64>>(5)?.unwrap_or(0.0),
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Calculations grouped by (generation of their structure, status).
    pub fn status_groups(&self) -> Result<Vec<StatusGroup>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.generation, c.status, count(*) FROM calculations c
                 JOIN structures s ON s.id = c.structure_id GROUP BY 1, 2 ORDER BY 1, 2",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(StatusGroup { generation: r.get(0)?, status: r.get(1)?, n: r.get::<_, i64>(2)? as u64 })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Remediation steps taken (attempts that changed convergence knobs for the next
    /// one), grouped by generation and change, most frequent first; at most `limit`.
    pub fn remediation_groups(&self, limit: usize) -> Result<Vec<RemediationGroup>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT s.generation, a.changes, count(*) FROM attempts a
                 JOIN calculations c ON c.id = a.calculation_id JOIN structures s ON s.id = c.structure_id
                 WHERE a.changes IS NOT NULL AND a.changes != '' GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT ?1",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok(RemediationGroup { generation: r.get(0)?, changes: r.get(1)?, n: r.get::<_, i64>(2)? as u64 })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Every structure that an exploration found (origin `md:GEN:SEGMENT`).
    pub fn exploration_candidates(&self) -> Result<Vec<CandidatePoint>> {
        let mut st = self
            .conn
            .prepare("SELECT origin, status, score FROM structures WHERE origin LIKE 'md:%' ORDER BY id")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<f64>>(2)?)))
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (origin, status, gamma) = row.map_err(self.sq())?;
            // md:GEN:SEGMENT; anything else (an older or foreign origin) is skipped.
            let mut parts = origin.splitn(3, ':').skip(1);
            let (Some(generation), segment) = (parts.next().and_then(|g| g.parse().ok()), parts.next()) else {
                continue;
            };
            out.push(CandidatePoint {
                explored_in: generation,
                segment: segment.unwrap_or("").to_string(),
                gamma: gamma.filter(|g| g.is_finite()),
                status,
            });
        }
        Ok(out)
    }

    /// Every MD segment of every generation, in order.
    pub fn all_segments(&self) -> Result<Vec<crate::SegmentRecord>> {
        let mut out = Vec::new();
        for g in self.generations()? {
            out.extend(self.segments(g.generation)?);
        }
        Ok(out)
    }

    /// The loop's phase changes, oldest first.
    pub fn loop_events(&self) -> Result<Vec<LoopEvent>> {
        let mut st =
            self.conn.prepare("SELECT at, message FROM events WHERE kind = 'loop' ORDER BY id").map_err(self.sq())?;
        let rows = st.query_map([], |r| Ok(LoopEvent { at_s: r.get(0)?, message: r.get(1)? })).map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// When the loop state last changed (unix seconds), None without a loop.
    pub fn loop_updated_at(&self) -> Result<Option<f64>> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row("SELECT updated_at FROM loop_state WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(self.sq())
    }

    /// Wall time, SCF steps and largest force of every finished calculation.
    pub fn done_figures(&self) -> Result<Vec<DoneFigures>> {
        let mut st = self
            .conn
            .prepare("SELECT wall_time_s, scf_steps, max_force_ev_per_a FROM calculations WHERE status = 'done'")
            .map_err(self.sq())?;
        let rows = st
            .query_map([], |r| {
                Ok(DoneFigures {
                    wall_time_s: r.get(0)?,
                    scf_steps: r.get::<_, Option<i64>>(1)?.map(|n| n.clamp(0, u32::MAX as i64) as u32),
                    max_force_ev_per_a: r.get(2)?,
                })
            })
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// Finished labels of one engine and label-defining settings, without their data:
    /// (calculation id, structure content hash, structure generation), by id.
    pub fn label_keys(&self, engine: &str, label_params: &serde_json::Value) -> Result<Vec<(i64, String, i64)>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT c.id, s.hash, s.generation FROM calculations c JOIN structures s ON s.id = c.structure_id
                 WHERE c.status = 'done' AND c.engine = ?1 AND c.label_params_json = ?2 ORDER BY c.id",
            )
            .map_err(self.sq())?;
        let rows = st
            .query_map(rusqlite::params![engine, label_params.to_string()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.sq())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sq())
    }

    /// The structure, energy (eV) and forces (eV/Å) of finished calculations, by id
    /// (ids that are not finished are left out).
    pub fn label_data(&self, ids: &[i64]) -> Result<Vec<LabelData>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT s.atoms_json, c.energy_ev, c.forces_json FROM calculations c
                 JOIN structures s ON s.id = c.structure_id WHERE c.id = ?1 AND c.status = 'done'",
            )
            .map_err(self.sq())?;
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            use rusqlite::OptionalExtension;
            let row = st
                .query_row([id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<f64>>(1)?, r.get::<_, Option<String>>(2)?))
                })
                .optional()
                .map_err(self.sq())?;
            let Some((atoms, Some(energy), Some(forces))) = row else { continue };
            let bad = |message: String| crate::StoreError::BadRow { id, message };
            let structure = serde_json::from_str(&atoms).map_err(|e| bad(format!("atoms: {e}")))?;
            let forces = serde_json::from_str(&forces).map_err(|e| bad(format!("forces: {e}")))?;
            out.push((id, structure, energy, forces));
        }
        Ok(out)
    }

    /// A number that changes whenever anything the report shows changes: the largest
    /// ids of events and attempts, the calculations' finishing times and the loop state.
    /// Cheap (indexed maxima), for a live page to tell whether to redraw.
    pub fn change_marker(&self) -> Result<String> {
        self.conn
            .query_row(
                "SELECT (SELECT coalesce(max(id), 0) FROM events), (SELECT coalesce(max(id), 0) FROM attempts),
                        (SELECT coalesce(max(finished_at), 0) FROM attempts),
                        (SELECT coalesce(max(updated_at), 0) FROM loop_state),
                        (SELECT count(*) FROM calculations), (SELECT count(*) FROM md_segments)",
                [],
                |r| {
                    Ok(format!(
                        "{}-{}-{}-{}-{}-{}",
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, f64>(2)?,
                        r.get::<_, f64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?
                    ))
                },
            )
            .map_err(self.sq())
    }
}

#[cfg(test)]
mod tests {
    use crate::{CalcResult, FailureKind, JobStore, NewCalculation};
    use autopipe_atoms::{Element, Structure};

    fn calc(i: usize) -> NewCalculation {
        NewCalculation {
            structure: Structure::new(
                [[3.0 + i as f64 * 0.1, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]],
                vec![[0.0; 3]],
                vec![Element::from_symbol("Cu").unwrap()],
                [true; 3],
            )
            .unwrap(),
            origin: "test".into(),
            generation: (i % 2) as i64,
            engine: "emt".into(),
            label_params: serde_json::json!({}),
            run_spec: serde_json::json!("emt"),
        }
    }

    #[test]
    fn aggregates_group_attempts_and_statuses_by_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = JobStore::open_or_create(tmp.path()).unwrap();
        store.import(&(0..4).map(calc).collect::<Vec<_>>()).unwrap();
        let before = store.change_marker().unwrap();
        let result = CalcResult {
            energy_ev: -1.0,
            forces_ev_per_a: vec![[0.0; 3]],
            stress_ev_per_a3: None,
            max_force_ev_per_a: 0.25,
            scf_steps: Some(12),
            wall_time_s: 2.0,
        };
        // Calculation 1 is i = 0 (generation 0), calculation 2 is i = 1 (generation 1).
        let a = store.start_attempt(1, "local", "j1").unwrap();
        store.complete(1, a.attempt_id, &result).unwrap();
        let a = store.start_attempt(2, "local", "j2").unwrap();
        let spec = serde_json::json!("emt");
        store
            .fail_attempt(2, a.attempt_id, FailureKind::Physics, "SCF", true, Some((&spec, "mixing_beta 0.3")))
            .unwrap();
        assert_ne!(store.change_marker().unwrap(), before);

        let groups = store.attempt_groups().unwrap();
        let outcome = |g: i64, o: &str| groups.iter().find(|x| x.generation == g && x.outcome == o).map(|x| x.n);
        assert_eq!(outcome(0, "done"), Some(1));
        assert_eq!(outcome(1, "physics"), Some(1));
        let statuses = store.status_groups().unwrap();
        let n = |g: i64, s: &str| statuses.iter().find(|x| x.generation == g && x.status == s).map(|x| x.n);
        assert_eq!(n(0, "done"), Some(1));
        assert_eq!(n(0, "pending"), Some(1));
        assert_eq!(n(1, "pending"), Some(2), "a failed attempt with a retry left is pending again");
        let rem = store.remediation_groups(10).unwrap();
        assert_eq!(rem.len(), 1);
        assert_eq!(rem[0].changes, "mixing_beta 0.3");
        let figures = store.done_figures().unwrap();
        assert_eq!(figures.len(), 1);
        assert_eq!(figures[0].scf_steps, Some(12));
        assert!(store.exploration_candidates().unwrap().is_empty());
    }
}
