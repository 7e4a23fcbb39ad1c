//! `autopipe bench`: the figures of merit, one `name value unit` line each, measured
//! on this machine in temporary directories.

use anyhow::{Context, Result};
use autopipe_atoms::Element;
use autopipe_build::{bulk, rattle, rng_from_seed, supercell, Lattice};
use autopipe_engines::emt::Emt;
use autopipe_engines::EngineSpec;
use autopipe_exec::{run_local, ExecEvent, LocalOptions};
use autopipe_store::{CalcResult, JobStore, NewCalculation};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn figure(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.6} {unit}");
    let _ = std::io::stdout().flush();
}

/// How much each measurement does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// The figures of merit (about a minute).
    Full,
    /// Smaller sizes, for a quick look.
    Quick,
    /// Every measurement once at toy sizes (seconds; the numbers mean nothing), for tests.
    Smoke,
}

/// The work of every measurement at one [`Size`].
struct Sizes {
    /// rounds x calls of SNAP descriptors with gradients
    desc: (usize, usize),
    /// EMT-labelled cells the MD models are fitted to, and MD steps
    md_training_cells: usize,
    md_steps: u64,
    /// labelled cells of the fit figure
    fit_cells: usize,
    /// size of the parser input, and timing rounds
    parse_bytes: usize,
    parse_rounds: usize,
    emt_seconds: f64,
    store_calculations: usize,
    /// short jobs, then long (CPU-bound) jobs of `long_job_s` each, through the pool
    pool_short_jobs: usize,
    pool_long_jobs: usize,
    long_job_s: f64,
    /// steps of LAMMPS's timed runs (None: the script's own)
    lammps_steps: Option<usize>,
    /// calculations a restarted orchestrator reconciles with a queue, and of the Slurm
    /// campaign (when a Slurm answers)
    reconcile_calculations: usize,
    slurm_campaign_calculations: usize,
    /// calculations of the database `jobs status --metrics` summarises
    status_metrics_calculations: usize,
}

impl Size {
    fn sizes(self) -> Sizes {
        match self {
            Size::Full => Sizes {
                desc: (5, 20),
                md_training_cells: 40,
                md_steps: 100,
                fit_cells: 300,
                parse_bytes: 10_000_000,
                parse_rounds: 3,
                emt_seconds: 2.0,
                store_calculations: 100_000,
                pool_short_jobs: 500,
                pool_long_jobs: 8,
                long_job_s: 1.0,
                lammps_steps: None,
                reconcile_calculations: 10_000,
                slurm_campaign_calculations: 1000,
                status_metrics_calculations: 1_000_000,
            },
            Size::Quick => Sizes {
                desc: (5, 5),
                md_training_cells: 20,
                md_steps: 20,
                fit_cells: 60,
                emt_seconds: 0.3,
                store_calculations: 10_000,
                pool_short_jobs: 100,
                pool_long_jobs: 4,
                reconcile_calculations: 2_000,
                slurm_campaign_calculations: 100,
                status_metrics_calculations: 100_000,
                ..Size::Full.sizes()
            },
            Size::Smoke => Sizes {
                desc: (1, 1),
                md_training_cells: 8,
                md_steps: 5,
                fit_cells: 12,
                parse_bytes: 1_000_000,
                parse_rounds: 1,
                emt_seconds: 0.05,
                store_calculations: 200,
                pool_short_jobs: 10,
                pool_long_jobs: 2,
                long_job_s: 0.1,
                lammps_steps: Some(3),
                reconcile_calculations: 200,
                slurm_campaign_calculations: 4,
                status_metrics_calculations: 1_000,
            },
        }
    }
}

/// The groups of measurements, in the order they run (`bench --only`).
pub const GROUPS: [&str; 13] = [
    "fit", "parse", "snap", "emt", "store", "status", "pool", "sched", "build", "elastic", "property", "explore",
    "pace",
];

/// Runs every group, or only those named in `only` (each checked against [`GROUPS`]).
pub fn run(size: Size, only: &[String]) -> Result<()> {
    if let Some(bad) = only.iter().find(|g| !GROUPS.contains(&g.as_str())) {
        anyhow::bail!("bench --only: unknown group {bad:?}; the groups are {}", GROUPS.join(", "));
    }
    let wanted = |g: &str| only.is_empty() || only.iter().any(|o| o == g);
    let sizes = size.sizes();
    if wanted("fit") {
        crate::bench_fit::run(if size == Size::Smoke { 8 } else { 1 })?;
    }
    if wanted("parse") {
        parse_speed(&sizes)?;
    }
    if wanted("snap") {
        snap_figures(&sizes)?;
    }
    if wanted("emt") {
        emt_speed(sizes.emt_seconds)?;
    }
    if wanted("store") {
        store_speed(sizes.store_calculations)?;
    }
    if wanted("status") {
        status_metrics(sizes.status_metrics_calculations)?;
    }
    if wanted("pool") {
        local_pool(&sizes)?;
    }
    if wanted("sched") {
        crate::bench_sched::run(sizes.reconcile_calculations, sizes.slurm_campaign_calculations)?;
    }
    if wanted("build") {
        crate::bench_build::run(size)?;
    }
    if wanted("elastic") {
        crate::bench_elastic::run(size)?;
    }
    if wanted("property") {
        crate::bench_property::run(size)?;
    }
    if wanted("explore") {
        crate::bench_explore::run(size)?;
    }
    if wanted("pace") {
        crate::bench_pace::run(size)?;
    }
    Ok(())
}

/// The Cu SNAP parameters of the figures (cutoff 4.7 Å, radius 0.5, weight 1).
pub(crate) fn cu_snap_params(twojmax: usize) -> autopipe_potential::SnapParams {
    use autopipe_potential::{SnapElement, SnapParams};
    SnapParams {
        twojmax,
        rcutfac: 4.7,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![SnapElement { element: Element::from_symbol("Cu").unwrap(), radius: 0.5, weight: 1.0 }],
    }
}

/// Distinct one-atom cells (simple cubic Cu with a different lattice constant each).
pub fn tiny_cells(n: usize) -> Vec<autopipe_atoms::Structure> {
    let cu = Element::from_symbol("Cu").unwrap();
    (0..n).map(|i| bulk(Lattice::Sc, cu, 2.4 + 0.4 * i as f64 / n as f64)).collect()
}

fn calculations(structures: Vec<autopipe_atoms::Structure>, engine: &EngineSpec) -> Vec<NewCalculation> {
    autopipe_workflow::new_calculations(structures, "bench", 0, engine, |i| format!("bench structure {i}"))
        .expect("bench structures are valid")
}

/// EMT energy + forces (+ stress) of a rattled 500-atom fcc Cu cell on one core.
fn emt_speed(seconds: f64) -> Result<()> {
    let cu = Element::from_symbol("Cu").unwrap();
    let s = rattle(&supercell(&bulk(Lattice::Fcc, cu, 3.61), [5, 5, 5]), 0.05, &mut rng_from_seed(1));
    let emt = Emt::new();
    emt.calculate(&s)?; // warm up
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        std::hint::black_box(emt.calculate(std::hint::black_box(&s))?);
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / calls as f64;
    figure("emt_atoms_per_s", s.len() as f64 / per_call, "atoms/s");
    figure("emt_ms_per_500_atoms", per_call * 1e3, "ms");
    Ok(())
}

/// Durable state transitions on SQLite (each its own committed transaction), then
/// `jobs status` on the resulting database of `n` finished calculations.
fn store_speed(n: usize) -> Result<()> {
    let tmp = tempfile_dir("store")?;
    let mut store = JobStore::open_or_create(&tmp)?;
    let start = Instant::now();
    // Spread over the 20 generations of the report's benchmark (the import is the same).
    let calcs = calculations(tiny_cells(n), &EngineSpec::Emt)
        .into_iter()
        .enumerate()
        .map(|(i, c)| NewCalculation { generation: (i * REPORT_GENERATIONS / n) as i64, ..c })
        .collect::<Vec<_>>();
    store.import(&calcs)?;
    figure("store_import_per_s", n as f64 / start.elapsed().as_secs_f64(), "calculations/s");
    let result = CalcResult {
        energy_ev: -3.5,
        forces_ev_per_a: vec![[0.0; 3]],
        stress_ev_per_a3: Some([0.01, 0.01, 0.01, 0.0, 0.0, 0.0]),
        max_force_ev_per_a: 0.0,
        scf_steps: None,
        wall_time_s: 0.001,
    };
    let ids = store.pending_ids(n)?;
    let start = Instant::now();
    for &id in &ids {
        let claimed = store.start_attempt(id, "local", &autopipe_exec::local::job_dir_rel(id))?;
        store.complete(id, claimed.attempt_id, &result)?;
    }
    let transitions = 2 * ids.len();
    figure("store_transitions_per_s", transitions as f64 / start.elapsed().as_secs_f64(), "transitions/s");
    drop(store);

    let exe = std::env::current_exe()?;
    for (name, json) in [("status_ms", true), ("status_table_ms", false)] {
        let mut times = Vec::new();
        for _ in 0..7 {
            let mut cmd = Command::new(&exe);
            cmd.args(["jobs", "status", "--dir"]).arg(&tmp).stdout(Stdio::null());
            if json {
                cmd.arg("--json");
            }
            let start = Instant::now();
            let status = cmd.status()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(status.success(), "jobs status failed");
        }
        times.sort_by(f64::total_cmp);
        let label = if n == 100_000 { format!("{name}_100k") } else { format!("{name}_{n}") };
        figure(&label, times[times.len() / 2], "ms");
    }
    report_speed(&tmp, n)?;
    std::fs::remove_dir_all(&tmp).ok();
    Ok(())
}

/// `jobs status --metrics` (whole process) on a campaign of `n` calculations (90 %
/// done, over two engines), built in one transaction.
fn status_metrics(n: usize) -> Result<()> {
    let tmp = tempfile_dir("metrics")?;
    let start = Instant::now();
    JobStore::open_or_create(&tmp)?.fill_synthetic(n)?;
    let build_s = start.elapsed().as_secs_f64();
    let exe = std::env::current_exe()?;
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let status = Command::new(&exe)
            .args(["jobs", "status", "--metrics", "--dir"])
            .arg(&tmp)
            .stdout(Stdio::null())
            .status()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(status.success(), "jobs status --metrics failed");
    }
    times.sort_by(f64::total_cmp);
    let label = if n == 1_000_000 { "1m".to_string() } else { n.to_string() };
    figure(&format!("status_metrics_ms_{label}"), times[times.len() / 2], "ms");
    eprintln!("(the {n}-calculation database was built in {build_s:.1} s)");
    std::fs::remove_dir_all(&tmp).ok();
    Ok(())
}

const REPORT_GENERATIONS: usize = 20;

/// `autopipe report` of a loop of 20 generations over the `n` finished calculations of
/// `dir`: each generation with a model (a real SNAP file, evaluated on its test split
/// for the parity plots), two MD segments and 60 candidate frames. Time of the whole
/// command (median of 3) and size of the page.
fn report_speed(dir: &Path, n: usize) -> Result<()> {
    use autopipe_store::{ModelRecord, Phase, SegmentRecord};
    let mut store = JobStore::open_existing(dir)?;
    store.start_loop(&[])?;
    let frames = emt_labelled_cu(6, 3)?;
    let fitted = autopipe_potential::fit(
        &frames,
        autopipe_workflow::models::default_snap_params(&frames, 4, 4.7),
        &autopipe_potential::FitOptions::default(),
    )?;
    let cu = Element::from_symbol("Cu").unwrap();
    for g in 0..REPORT_GENERATIONS as i64 {
        store.finish_labelling(g)?;
        let rel = format!("models/gen-{g:03}.json");
        let mut model = serde_json::to_value(&fitted.model)?;
        model["provenance"] =
            serde_json::json!({ "oracle": "emt", "oracle_label_params": EngineSpec::Emt.label_params() });
        std::fs::create_dir_all(dir.join("models"))?;
        std::fs::write(dir.join(&rel), serde_json::to_vec(&model)?)?;
        let scale = 1.0 / (1.0 + g as f64);
        let metrics = serde_json::json!({
            "train": { "energy_ev_per_atom": { "rmse": 0.002 * scale }, "forces_ev_per_a": { "rmse": 0.05 * scale } },
            "test": { "energy_ev_per_atom": { "rmse": 0.003 * scale }, "forces_ev_per_a": { "rmse": 0.07 * scale } },
        });
        let n_labels = ((g + 1) as usize * n / REPORT_GENERATIONS) as i64;
        let record =
            ModelRecord { generation: g, path: rel, n_train: n_labels * 9 / 10, n_test: n_labels / 10, metrics };
        store.record_model(&record)?;
        for (k, t) in [300.0, 900.0].into_iter().enumerate() {
            let candidates: Vec<(autopipe_atoms::Structure, f64)> = (0..30)
                .map(|c| {
                    let a = 3.0 + 1e-6 * (g as f64 * 1000.0 + k as f64 * 100.0 + c as f64);
                    (bulk(Lattice::Sc, cu, a), 1.0 + 20.0 * scale * (c as f64 / 30.0))
                })
                .collect();
            let segment = SegmentRecord {
                generation: g,
                name: format!("T{t}"),
                temperature_k: t,
                pressure_gpa: None,
                seed: 1,
                steps_done: 1000,
                stop_reason: None,
                max_gamma: Some(21.0 * scale),
                n_uncertain: 10,
            };
            store.record_segment(&segment, &candidates)?;
        }
        store.set_phase(g, Phase::Select, None)?;
        let stats = serde_json::json!({ "max": 21.0 * scale, "n_uncertain": 20, "n_candidates": 60 });
        if g + 1 < REPORT_GENERATIONS as i64 {
            store.advance(g, &[], &stats)?;
        } else {
            store.conclude(g, Phase::Finished, &stats, "max_generations reached")?;
        }
    }
    drop(store);
    let exe = std::env::current_exe()?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let status = Command::new(&exe).args(["report", "--dir"]).arg(dir).stdout(Stdio::null()).status()?;
        times.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(status.success(), "autopipe report failed");
    }
    times.sort_by(f64::total_cmp);
    let page = std::fs::read_to_string(dir.join("report").join("index.html"))?;
    // The figure includes the parity plots (the model evaluated on its test split).
    // (400 test frames at most are evaluated; fewer in a smaller benchmark.)
    let marks = page
        .split(r#"data-plot="parity-energy" data-marks=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    anyhow::ensure!(marks > 0, "the benchmark's report has no parity plot");
    let size = page.len();
    let tag = if n == 100_000 { "100k".to_string() } else { n.to_string() };
    figure(&format!("report_{tag}_s"), times[1], "s");
    figure(&format!("report_{tag}_mb"), size as f64 / 1e6, "MB");
    Ok(())
}

/// Throughput of trivially short jobs through the local pool with 2 workers, and the
/// speedup of 2 workers over 1 on CPU-bound jobs of `long_job_s` each (a second).
fn local_pool(sizes: &Sizes) -> Result<()> {
    let (short_jobs, long_jobs) = (sizes.pool_short_jobs, sizes.pool_long_jobs);
    let launcher = crate::launcher()?;
    let mut quiet = |_: &ExecEvent| {};
    let opts = |workers| LocalOptions { workers, walltime: Duration::from_secs(600), ..LocalOptions::default() };

    let tmp = tempfile_dir("pool")?;
    let mut store = JobStore::open_or_create(&tmp)?;
    store.import(&calculations(tiny_cells(short_jobs), &EngineSpec::Emt))?;
    let start = Instant::now();
    let summary = run_local(&mut store, &tmp, &opts(2), &launcher, &mut quiet)?;
    anyhow::ensure!(summary.done == short_jobs as u64, "only {} of {short_jobs} bench jobs finished", summary.done);
    figure("jobs_per_s_local", short_jobs as f64 / start.elapsed().as_secs_f64(), "jobs/s");
    std::fs::remove_dir_all(&tmp).ok();

    // A CPU-bound shell loop calibrated to about `long_job_s` on this machine.
    let iterations = (calibrate_busy_loop()? as f64 * sizes.long_job_s).round() as u64;
    let command = format!(
        "i=0; while [ $i -lt {iterations} ]; do i=$((i+1)); done; \
         printf '1\\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1 pbc=\"T T T\"\\nCu 0 0 0 0 0 0\\n' > output.xyz"
    );
    let engine = EngineSpec::Command { command, label_params: Default::default() };
    let mut seconds = [0.0; 2];
    for (k, workers) in [1usize, 2].into_iter().enumerate() {
        let tmp = tempfile_dir("speedup")?;
        let mut store = JobStore::open_or_create(&tmp)?;
        store.import(&calculations(tiny_cells(long_jobs), &engine))?;
        let start = Instant::now();
        let summary = run_local(&mut store, &tmp, &opts(workers), &launcher, &mut quiet)?;
        anyhow::ensure!(summary.done == long_jobs as u64, "only {} of {long_jobs} bench jobs finished", summary.done);
        seconds[k] = start.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&tmp).ok();
    }
    figure("job_seconds_each", seconds[0] / long_jobs as f64, "s");
    figure("speedup_2_workers", seconds[0] / seconds[1], "x");
    Ok(())
}

fn calibrate_busy_loop() -> Result<u64> {
    let time = |n: u64| -> Result<f64> {
        let start = Instant::now();
        let status =
            Command::new("sh").arg("-c").arg(format!("i=0; while [ $i -lt {n} ]; do i=$((i+1)); done")).status()?;
        anyhow::ensure!(status.success(), "sh busy loop failed");
        Ok(start.elapsed().as_secs_f64())
    };
    let n0 = 100_000;
    let t0 = time(n0)?.max(1e-3);
    Ok(((n0 as f64) / t0).round() as u64)
}

pub fn tempfile_dir(tag: &str) -> Result<std::path::PathBuf> {
    let base = std::env::temp_dir().join(format!("autopipe-bench-{tag}-{}", std::process::id()));
    if Path::new(&base).exists() {
        std::fs::remove_dir_all(&base)?;
    }
    std::fs::create_dir_all(&base).with_context(|| format!("cannot create {}", base.display()))?;
    Ok(base)
}

/// The Python that has LAMMPS (`AUTOPIPE_LAMMPS_PYTHON`, or the venvs the test script makes).
fn lammps_python() -> Option<std::path::PathBuf> {
    let candidates = std::env::var_os("AUTOPIPE_LAMMPS_PYTHON")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(["/opt/autopipe-venv/bin/python", "/opt/lammps-venv/bin/python"].map(std::path::PathBuf::from));
    candidates.into_iter().find(|p| p.exists())
}

/// Run scripts/bench_lammps.py (timed runs of `steps` steps, or the script's own); its
/// `name value unit` lines are printed and the value of the last one returned.
fn lammps_bench(args: &[&str], steps: Option<usize>) -> Option<f64> {
    let python = lammps_python()?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench_lammps.py");
    let lib = python.parent()?.join("../lib");
    let mut cmd = Command::new(&python);
    cmd.arg(&script).args(args).env("LD_LIBRARY_PATH", lib);
    if let Some(steps) = steps {
        cmd.env("AUTOPIPE_BENCH_LAMMPS_STEPS", steps.to_string());
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!("LAMMPS bench failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    print!("{text}");
    text.lines().last()?.split_whitespace().nth(1)?.parse().ok()
}

/// Best time per call over `rounds` rounds of `calls` calls.
fn best_time(rounds: usize, calls: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..calls {
            f()?;
        }
        best = best.min(start.elapsed().as_secs_f64() / calls as f64);
    }
    Ok(best)
}

/// Cu cells labelled by EMT: strained, rattled 32-atom fcc supercells.
pub(crate) fn emt_labelled_cu(count: usize, seed: u64) -> Result<Vec<autopipe_atoms::Frame>> {
    let cu = Element::from_symbol("Cu").unwrap();
    let recipe = autopipe_build::BulkRecipe {
        lattice: Lattice::Fcc,
        elements: vec![cu],
        lattice_constant_a: 3.61,
        supercell: [2, 2, 2],
        count,
        max_strain: 0.03,
        rattle_a: 0.12,
        vacancy_fraction: 0.0,
        seed,
    };
    let emt = Emt::new();
    autopipe_build::generate_bulk(&recipe)
        .into_iter()
        .map(|s| {
            let mut f = autopipe_atoms::Frame::from_structure(s);
            autopipe_workflow::models::label_with_emt(&emt, &mut f)?;
            Ok(f)
        })
        .collect()
}

/// SNAP: descriptors with gradients (vs LAMMPS compute snad/atom), MD with fitted models
/// (vs LAMMPS pair_style snap), and fit time.
fn snap_figures(sizes: &Sizes) -> Result<()> {
    use autopipe_potential::{fit, FitOptions, Snap, SnapElement, SnapParams};
    let w = Element::from_symbol("W").unwrap();
    let cell = supercell(&bulk(Lattice::Bcc, w, 3.1652), [4, 4, 4]);
    let params = SnapParams {
        twojmax: 8,
        rcutfac: 4.73442,
        rfac0: 0.99363,
        rmin0: 0.0,
        switchflag: true,
        bzeroflag: true,
        quadraticflag: false,
        elements: vec![SnapElement { element: w, radius: 0.5, weight: 1.0 }],
    };
    let snap = Snap::new(&params)?;
    let t = best_time(sizes.desc.0, sizes.desc.1, || {
        let d = snap.descriptors_with_gradients(std::hint::black_box(&cell))?;
        std::hint::black_box(d.force_rows());
        Ok(())
    })?;
    let ours = cell.len() as f64 / t;
    figure("snap_desc_grad_atoms_per_s", ours, "atoms/s");
    if let Some(lammps) = lammps_bench(&["snad"], sizes.lammps_steps) {
        figure("snap_desc_grad_vs_lammps", ours / lammps, "x");
    }

    // MD with fitted Cu models on a 108-atom cell, NVE, one core, no gamma (as LAMMPS).
    let training = emt_labelled_cu(sizes.md_training_cells, 11)?;
    let cu = Element::from_symbol("Cu").unwrap();
    let md_cell = supercell(&bulk(Lattice::Fcc, cu, 3.61), [3, 3, 3]);
    let tmp = tempfile_dir("snap")?;
    for twojmax in [6usize, 8] {
        let params = cu_snap_params(twojmax);
        let opts = FitOptions { active_set: false, test_fraction: 0.0, threads: 1, ..FitOptions::default() };
        let model = fit(&training, params, &opts)?.model;
        let steps = sizes.md_steps;
        let md_speed = |threads: usize| -> Result<f64> {
            let evaluator = model.evaluator()?.with_threads(threads);
            let mut ff = autopipe_workflow::learn::ModelForceField { evaluator };
            let velocities = autopipe_md::maxwell_boltzmann(&md_cell, 600.0, &mut rng_from_seed(7));
            let mut state = autopipe_md::MdState::new(md_cell.clone(), velocities);
            let settings = autopipe_md::MdSettings::new(2.0, steps, autopipe_md::Ensemble::Nve, 7);
            let start = Instant::now();
            autopipe_md::run_md(&mut state, &mut ff, &settings, &mut [])?;
            Ok(md_cell.len() as f64 * steps as f64 / start.elapsed().as_secs_f64())
        };
        let ours = md_speed(1)?;
        let name = format!("snap_md_2j{twojmax}");
        figure(&format!("{name}_atom_steps_per_s"), ours, "atom-steps/s");
        figure(&format!("{name}_atom_steps_per_s_2_threads"), md_speed(2)?, "atom-steps/s");
        let files = autopipe_workflow::models::export_lammps(&model, &tmp)?;
        let (coeff, param) = (files[0].to_str().unwrap_or_default(), files[1].to_str().unwrap_or_default());
        if let Some(lammps) = lammps_bench(&["md", coeff, param, &format!("2j{twojmax}"), "3"], sizes.lammps_steps) {
            figure(&format!("{name}_vs_lammps"), ours / lammps, "x");
        }
    }
    std::fs::remove_dir_all(&tmp).ok();

    // Fit: 300 labelled 32-atom cells with forces and stress, 2J=8.
    let n = sizes.fit_cells;
    let frames = emt_labelled_cu(n, 3)?;
    let params = cu_snap_params(8);
    for threads in [1usize, 2] {
        let opts = FitOptions { threads, ..FitOptions::default() };
        let start = Instant::now();
        fit(&frames, params.clone(), &opts)?;
        let label = if n == 300 { "fit_s".to_string() } else { format!("fit_s_{n}_cells") };
        figure(
            &format!("{label}_{threads}_thread{}", if threads > 1 { "s" } else { "" }),
            start.elapsed().as_secs_f64(),
            "s",
        );
    }
    Ok(())
}

/// Parser speed on a ~10 MB output made of the real fixtures of the test suite,
/// concatenated with the program banners of all but the first removed, so the parser
/// reads all 10 MB as one long run (it reports only the last run of a file).
fn parse_speed(sizes: &Sizes) -> Result<()> {
    use autopipe_engines::{cp2k::parse_cp2k_output, output::ParseError, output::ParsedOutput, qe::parse_pw_output};
    type Parser = fn(&str, &str) -> std::result::Result<ParsedOutput, ParseError>;
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../engines/tests/data");
    for (engine, parse, banner) in [
        ("qe", parse_pw_output as Parser, "Program PWSCF"),
        ("cp2k", parse_cp2k_output as Parser, "PROGRAM STARTED AT"),
    ] {
        let mut parts = Vec::new();
        for f in ["si8.out", "si2.out", "relax_not_converged.out", "cu1.out"] {
            match std::fs::read_to_string(data.join(engine).join(f)) {
                Ok(t) => parts.push(t),
                Err(_) => {
                    eprintln!(
                        "{engine} fixtures not found under {} (run from the source tree); parse speed skipped",
                        data.display()
                    );
                    return Ok(());
                }
            }
        }
        let mut big = String::new();
        while big.len() < sizes.parse_bytes {
            for t in &parts {
                big.push_str(&if big.is_empty() { t.clone() } else { t.replace(banner, "(banner removed)") });
            }
        }
        let t = best_time(sizes.parse_rounds, sizes.parse_rounds, || {
            std::hint::black_box(parse(std::hint::black_box(&big), "bench")?);
            Ok(())
        })?;
        figure(&format!("{engine}_parse_mb_per_s"), big.len() as f64 / 1e6 / t, "MB/s");
    }
    Ok(())
}
