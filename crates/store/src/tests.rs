use super::*;
use autopipe_atoms::Element;

fn structure(x: f64) -> Structure {
    let cu = Element::from_symbol("Cu").unwrap();
    Structure::new(
        [[3.6, 0.0, 0.0], [0.0, 3.6, 0.0], [0.0, 0.0, 3.6]],
        vec![[x, 0.0, 0.0], [1.8, 1.8, 0.0]],
        vec![cu, cu],
        [true; 3],
    )
    .unwrap()
}

pub(crate) fn new_calc(x: f64) -> NewCalculation {
    NewCalculation {
        structure: structure(x),
        origin: "test".into(),
        generation: 0,
        engine: "emt".into(),
        label_params: serde_json::json!({}),
        run_spec: serde_json::json!({"engine": "emt"}),
    }
}

fn result() -> CalcResult {
    CalcResult {
        energy_ev: -1.0,
        forces_ev_per_a: vec![[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]],
        stress_ev_per_a3: Some([1e-3, 0.0, 0.0, 0.0, 0.0, 0.0]),
        max_force_ev_per_a: 0.1,
        scf_steps: None,
        wall_time_s: 0.01,
    }
}

#[test]
fn import_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = JobStore::open_or_create(dir.path()).unwrap();
    let items: Vec<_> = (0..5).map(|i| new_calc(i as f64 * 0.01)).collect();
    assert_eq!(s.import(&items).unwrap(), ImportSummary { added: 5, already_present: 0 });
    assert_eq!(s.import(&items).unwrap(), ImportSummary { added: 0, already_present: 5 });
    // Different label-defining parameters make a different calculation of the same structure.
    let mut other = new_calc(0.0);
    other.label_params = serde_json::json!({"cutoff": 1});
    assert_eq!(s.import(&[other]).unwrap().added, 1);
    assert_eq!(s.counts().unwrap().pending, 6);
}

#[test]
fn lifecycle_and_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = JobStore::open_or_create(dir.path()).unwrap();
    s.import(&[new_calc(0.0), new_calc(0.1)]).unwrap();
    let ids = s.pending_ids(10).unwrap();
    let c = s.start_attempt(ids[0], "local", "jobs/1").unwrap();
    assert_eq!(c.attempt, 1);
    assert!(matches!(s.start_attempt(ids[0], "local", "x"), Err(StoreError::WrongState { .. })));
    s.set_backend_id(ids[0], c.attempt_id, "1234").unwrap();
    assert_eq!(s.in_flight().unwrap()[0].backend_id.as_deref(), Some("1234"));
    s.fail_attempt(ids[0], c.attempt_id, FailureKind::Killed, "killed by signal 9", true, None).unwrap();
    let c2 = s.start_attempt(ids[0], "local", "jobs/1").unwrap();
    assert_eq!(c2.attempt, 2);
    s.complete(ids[0], c2.attempt_id, &result()).unwrap();
    assert!(matches!(s.complete(ids[0], c2.attempt_id, &result()), Err(StoreError::WrongState { .. })));
    let c3 = s.start_attempt(ids[1], "local", "jobs/2").unwrap();
    s.fail_attempt(ids[1], c3.attempt_id, FailureKind::Timeout, "wall time 1 s exceeded", false, None).unwrap();
    let counts = s.counts().unwrap();
    assert_eq!((counts.done, counts.timeout, counts.pending), (1, 1, 0));
    assert_eq!(s.executions().unwrap(), 3);
    let labels = s.labels().unwrap();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels[0].result, result());
    assert_eq!(s.attempts(ids[0]).unwrap().len(), 2);
    assert_eq!(s.reset(&[CalcStatus::Timeout]).unwrap(), 1);
    assert_eq!(s.counts().unwrap().pending, 1);
}

#[test]
fn lost_attempt_keeps_budgets() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = JobStore::open_or_create(dir.path()).unwrap();
    s.import(&[new_calc(0.0)]).unwrap();
    let c = s.start_attempt(1, "local", "jobs/1").unwrap();
    s.requeue_lost(1, c.attempt_id, "orchestrator restarted").unwrap();
    assert_eq!(s.counts().unwrap().pending, 1);
    let c2 = s.start_attempt(1, "local", "jobs/1").unwrap();
    assert_eq!(c2.physics_failures, 0);
    assert_eq!(s.attempts(1).unwrap()[0].outcome.as_deref(), Some("lost"));
}

#[test]
fn corrupted_file_is_reported_and_left_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let garbage: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let err = JobStore::open_existing(dir.path()).err().expect("a damaged file must not open");
    let msg = err.to_string();
    assert!(msg.contains(DB_FILE) && msg.contains("not an MLIP-AutoPipe database"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[test]
fn reopening_keeps_schema() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = JobStore::open_or_create(dir.path()).unwrap();
        s.import(&[new_calc(0.0)]).unwrap();
    }
    let s = JobStore::open_existing(dir.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::MIGRATIONS.len() as i64);
    assert_eq!(s.counts().unwrap().pending, 1);
}

#[test]
fn loop_phases_are_recorded_with_their_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = JobStore::open_or_create(dir.path()).unwrap();
    assert_eq!(s.loop_state().unwrap(), None);
    s.start_loop(&[new_calc(0.0), new_calc(0.1)]).unwrap();
    s.start_loop(&[new_calc(0.5)]).unwrap(); // a second start changes nothing
    assert_eq!(s.counts().unwrap().pending, 2);
    let st = s.loop_state().unwrap().unwrap();
    assert_eq!((st.generation, st.phase), (0, Phase::Label));
    for id in s.pending_ids(10).unwrap() {
        let c = s.start_attempt(id, "local", "x").unwrap();
        s.complete(id, c.attempt_id, &result()).unwrap();
    }
    s.finish_labelling(0).unwrap();
    assert_eq!(s.generations().unwrap()[0].n_labelled, 2);
    let model = ModelRecord {
        generation: 0,
        path: "models/gen-000.json".into(),
        n_train: 2,
        n_test: 0,
        metrics: serde_json::json!({"f": 0.1}),
    };
    s.record_model(&model).unwrap();
    assert_eq!(s.model(None).unwrap(), Some(model));
    assert_eq!(s.loop_state().unwrap().unwrap().phase, Phase::Explore);
    let seg = SegmentRecord {
        generation: 0,
        name: "T300".into(),
        temperature_k: 300.0,
        pressure_gpa: None,
        seed: 1,
        steps_done: 100,
        stop_reason: None,
        max_gamma: Some(3.0),
        n_uncertain: 2,
    };
    assert!(!s.segment_done(0, "T300").unwrap());
    let added = s.record_segment(&seg, &[(structure(0.2), 3.0), (structure(0.3), 2.5)]).unwrap();
    assert_eq!(added, 2);
    assert!(s.segment_done(0, "T300").unwrap());
    let cands = s.candidates(1).unwrap();
    assert_eq!(cands.len(), 2);
    let chosen = vec![(cands[0].0, NewCalculation { structure: cands[0].1.clone(), generation: 1, ..new_calc(0.0) })];
    s.advance(0, &chosen, &serde_json::json!({"max": 3.0})).unwrap();
    let st = s.loop_state().unwrap().unwrap();
    assert_eq!((st.generation, st.phase), (1, Phase::Label));
    assert_eq!(s.counts().unwrap().pending, 1);
    assert!(s.candidates(1).unwrap().is_empty(), "the other candidate is rejected");
    let g = s.generations().unwrap();
    assert_eq!((g[1].n_candidates, g[1].n_selected), (2, 1));
    assert_eq!(g[0].gamma, Some(serde_json::json!({"max": 3.0})));
}

#[test]
fn import_done_labels_exactly_the_new_calculations() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = JobStore::open_or_create(dir.path()).unwrap();
    // Two calculations exist already (one pending); an event row is logged in between,
    // so calculation and event ids no longer go in step.
    s.import(&[new_calc(0.0), new_calc(0.01)]).unwrap();
    s.log_event(None, "note", "an event").unwrap();
    let with_energy = |e: f64| CalcResult { energy_ev: e, ..result() };
    let items: Vec<_> = (0..4).map(|i| (new_calc(i as f64 * 0.01), with_energy(-(i as f64) - 1.0))).collect();
    // The two already present stay as they were (pending): only the two new ones are done.
    assert_eq!(s.import_done(&items).unwrap(), 2);
    assert_eq!(s.import_done(&items).unwrap(), 0, "a second recovery adds nothing");
    let labels = s.labels().unwrap();
    assert_eq!(labels.len(), 2);
    for l in &labels {
        let k = items.iter().position(|(c, _)| c.structure == l.structure).unwrap();
        assert!(k >= 2, "calculation {} was not new", l.calculation_id);
        assert_eq!(l.result.energy_ev, items[k].1.energy_ev, "each label on its own calculation");
    }
    assert_eq!(s.counts().unwrap().pending, 2);
}

#[test]
fn a_new_database_appears_whole_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = JobStore::open_or_create(dir.path()).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::MIGRATIONS.len() as i64);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n.starts_with(DB_FILE)), "no building file is left: {names:?}");
    // A reader opening it at once finds the whole schema.
    let r = JobStore::open_read_only(dir.path()).unwrap();
    assert_eq!(r.counts().unwrap().total(), 0);
    drop(s);
    // Opening it again (it exists now) keeps it: nothing is created twice.
    let mut again = JobStore::open_or_create(dir.path()).unwrap();
    again.import(&[new_calc(0.0)]).unwrap();
    assert_eq!(JobStore::open_or_create(dir.path()).unwrap().counts().unwrap().pending, 1);
}
