//! Property goals (elastic, diffusion, hull) computed with a generation's model: one
//! row per (goal, generation), and the label-refit round that sends the structures a
//! property calculation was unsure of back to labelling.

use crate::learning::Phase;
use crate::{exec, import_in, now_s, JobStore, NewCalculation, Result, StoreError};
use rusqlite::params;
use serde::Serialize;

/// What follows a property computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyOutcome {
    /// The value stands (trusted or not, no more rounds are needed).
    Final,
    /// Its uncertain structures went to labelling; the value is recomputed after the refit.
    Relabel,
    /// Uncertain structures remain, and the round limit is reached: not trusted.
    Limit,
}

impl PropertyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyOutcome::Final => "final",
            PropertyOutcome::Relabel => "relabel",
            PropertyOutcome::Limit => "limit",
        }
    }

    fn parse(s: &str) -> Option<PropertyOutcome> {
        [PropertyOutcome::Final, PropertyOutcome::Relabel, PropertyOutcome::Limit].into_iter().find(|o| o.as_str() == s)
    }
}

/// One computation of a goal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PropertyRecord {
    pub goal: String,
    pub generation: i64,
    pub round: i64,
    /// Relative to the run directory.
    pub model_path: String,
    pub value: serde_json::Value,
    pub max_gamma: Option<f64>,
    pub n_uncertain: i64,
    pub trusted: bool,
    pub outcome: PropertyOutcome,
    pub created_at_s: f64,
}

impl JobStore {
    /// Record the goals computed with generation `generation`'s model, in one
    /// transaction; with `next_round`, also open generation `generation + 1` at labelling
    /// with those calculations (the structures the goals were unsure of).
    pub fn record_properties(
        &mut self,
        generation: i64,
        records: &[PropertyRecord],
        next_round: Option<&[NewCalculation]>,
    ) -> Result<()> {
        let now = now_s();
        self.write(|tx| {
            for r in records {
                exec(
                    tx,
                    "INSERT OR REPLACE INTO property_results (goal, generation, round, model_path, value_json, \
                     max_gamma, n_uncertain, trusted, outcome, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        r.goal,
                        r.generation,
                        r.round,
                        r.model_path,
                        r.value.to_string(),
                        r.max_gamma,
                        r.n_uncertain,
                        r.trusted as i64,
                        r.outcome.as_str(),
                        now
                    ],
                )?;
            }
            if let Some(calcs) = next_round {
                let next = generation + 1;
                import_in(tx, calcs)?;
                exec(tx, "UPDATE generations SET finished_at = ?2 WHERE generation = ?1", params![generation, now])?;
                exec(
                    tx,
                    "INSERT OR REPLACE INTO generations (generation, started_at, n_candidates, n_selected) \
                     VALUES (?1, ?2, ?3, ?3)",
                    params![next, now, calcs.len() as i64],
                )?;
                let why = format!("property goals: {} structures above gamma_select go to labelling", calcs.len());
                Self::set_phase_in(tx, next, Phase::Label, Some(&why))?;
            }
            Ok(())
        })
    }

    /// Every property computation, oldest first (none on a database older than
    /// migration 6, read without migrating it).
    pub fn properties(&self) -> Result<Vec<PropertyRecord>> {
        if self.schema_version()? < 6 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT goal, generation, round, model_path, value_json, max_gamma, n_uncertain, trusted, outcome, \
                 created_at FROM property_results ORDER BY generation, goal",
            )
            .map_err(self.sq())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, f64>(9)?,
                ))
            })
            .map_err(self.sq())?;
        let mut out = Vec::new();
        for row in rows {
            let (goal, generation, round, model_path, value, max_gamma, n_uncertain, trusted, outcome, at) =
                row.map_err(self.sq())?;
            let bad = |message: String| StoreError::BadRow { id: generation, message };
            out.push(PropertyRecord {
                value: serde_json::from_str(&value).map_err(|e| bad(format!("property {goal} value: {e}")))?,
                outcome: PropertyOutcome::parse(&outcome)
                    .ok_or_else(|| bad(format!("property outcome {outcome:?}")))?,
                goal,
                generation,
                round,
                model_path,
                max_gamma,
                n_uncertain,
                trusted: trusted != 0,
                created_at_s: at,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(goal: &str, generation: i64, outcome: PropertyOutcome) -> PropertyRecord {
        PropertyRecord {
            goal: goal.into(),
            generation,
            round: generation,
            model_path: format!("models/gen-{generation:03}.json"),
            value: serde_json::json!({"c_ij_gpa": [[1.0]]}),
            max_gamma: Some(3.5),
            n_uncertain: 2,
            trusted: false,
            outcome,
            created_at_s: 0.0,
        }
    }

    #[test]
    fn properties_round_trip_and_a_round_opens_the_next_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = JobStore::open_or_create(dir.path()).unwrap();
        s.start_loop(&[]).unwrap();
        s.record_properties(0, &[record("elastic", 0, PropertyOutcome::Relabel)], Some(&[])).unwrap();
        let state = s.loop_state().unwrap().unwrap();
        assert_eq!((state.generation, state.phase), (1, Phase::Label));
        s.record_properties(1, &[record("elastic", 1, PropertyOutcome::Limit)], None).unwrap();
        let all = s.properties().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].outcome, PropertyOutcome::Relabel);
        assert_eq!(all[1].value["c_ij_gpa"][0][0], 1.0);
        assert_eq!(all[1].max_gamma, Some(3.5));
        assert!(!all[1].trusted);
        assert_eq!(s.loop_state().unwrap().unwrap().generation, 1, "no round: the state stays");
    }
}
