//! `autopipe property elastic STRUCTURE.xyz (--emt | --model FILE | --dir RUN) [--no-relax] [--json]`:
//! the elastic constants of the structure (its last frame), with EMT or a SNAP model;
//! with a model every evaluation is watched by the uncertainty guard, and a result met
//! above `gamma_select` is reported as not trusted.

use anyhow::{bail, Context, Result};
use autopipe_engines::emt::Emt;
use autopipe_property::elastic::{elastic_constants, elastic_from_stresses, Elastic, ElasticSettings, VOIGT_NAMES};
use autopipe_workflow::goals::{elastic_json, elastic_with_model};
use autopipe_workflow::models;
use autopipe_workflow::property_runs;
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ElasticArgs {
    /// The crystal (extended XYZ; its last frame), periodic in three directions.
    structure: PathBuf,
    /// With the built-in EMT.
    #[arg(long, conflicts_with_all = ["model", "dir"])]
    emt: bool,
    /// With this SNAP model.
    #[arg(long, conflicts_with = "dir")]
    model: Option<PathBuf>,
    /// With the latest model of this run directory (and its gamma_select).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// No relaxation: the structure as given, clamped ions at each strain.
    #[arg(long)]
    no_relax: bool,
    /// Strain amplitudes, each applied with both signs to each of the six components.
    #[arg(long, value_delimiter = ',', default_value = "0.005,0.01")]
    strains: Vec<f64>,
    /// The extrapolation grade above which a model evaluation is uncertain (default: the
    /// run's explore.gamma_select with --dir, else 2.0).
    #[arg(long)]
    gamma_select: Option<f64>,
    /// With --dir RUN: the cells of the fit (the relaxed cell and its strained copies,
    /// positions as the model relaxed them) also go to RUN's [oracle] as jobs through its
    /// [execution] backend; the oracle's own C_ij is reported beside the model's.
    #[arg(long)]
    with_oracle: bool,
    /// With --dir RUN: queue the structures met above gamma_select (the most uncertain,
    /// at most loop.per_generation) into RUN as its next generation's labels.
    #[arg(long)]
    feed: bool,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(a: ElasticArgs) -> Result<ExitCode> {
    let frames = crate::read_frames(&a.structure)?;
    let structure = frames.last().expect("read_frames gives at least one").structure.clone();
    let file = a.structure.display();
    if structure.pbc != [true; 3] {
        bail!("{file}: the structure must be periodic in all three directions (pbc = T T T) for elastic constants");
    }
    let base = if a.no_relax { ElasticSettings::unrelaxed() } else { ElasticSettings::default() };
    let settings = ElasticSettings { amplitudes: a.strains.clone(), ..base };
    settings.validate().map_err(|e| anyhow::anyhow!("--strains: {e}"))?;
    if let Some(g) = a.gamma_select.filter(|g| !(g.is_finite() && *g > 0.0)) {
        bail!("--gamma-select {g}: must be a positive number");
    }
    if a.dir.is_none() && (a.with_oracle || a.feed) {
        bail!(
            "{} needs --dir RUN: the cells go to that run's [oracle] through its [execution] backend, and the \
             uncertain structures into its database",
            if a.with_oracle { "--with-oracle" } else { "--feed" }
        );
    }
    // Checked before the work: the run's configuration (its oracle), and for --feed an
    // ended loop.
    let run = match &a.dir {
        Some(dir) if a.feed => Some(property_runs::check_feedable(dir)?),
        Some(dir) if a.with_oracle => Some((property_runs::run_config(dir)?, -1)),
        _ => None,
    };

    let mut oracle = None;
    let (elastic, relaxed, guard, source) = if a.emt {
        if let Some((i, e)) = structure.species.iter().enumerate().find(|(_, e)| !Emt::supports(**e)) {
            bail!("{file}: atom {} is {e}, for which EMT has no parameters", i + 1);
        }
        let mut ff = models::EmtForceField(Emt::new());
        let (e, s) = elastic_constants(&mut ff, &structure, &settings).with_context(|| format!("{file}"))?;
        (e, s, None, "emt".to_string())
    } else {
        let (path, gamma_default) = match (&a.model, &a.dir) {
            (Some(p), None) => (p.clone(), 2.0),
            (None, Some(dir)) => (models::run_model_path(dir, None)?, run_gamma_select(dir)?),
            _ => bail!("give --emt, --model MODEL or --dir RUN"),
        };
        let gamma_select = a.gamma_select.unwrap_or(gamma_default);
        let model = models::read_model(&path)?;
        crate::check_model_elements(&model, &path, &frames[frames.len() - 1..], &a.structure)?;
        let max_kept = run.as_ref().filter(|_| a.feed).map_or(0, |(c, _)| c.loop_.per_generation);
        let r = elastic_with_model(&model, &structure, &settings, gamma_select, max_kept)
            .with_context(|| format!("{file} with {}", path.display()))?;
        let trusted = r.trusted(gamma_select);
        // The oracle first: its batch would also run the calculations fed to the run.
        if let (Some(dir), Some((config, _)), true) = (&a.dir, &run, a.with_oracle) {
            oracle = Some(oracle_constants(dir, config, &r, &settings)?);
        }
        if let (Some(dir), Some((config, generation)), true) = (&a.dir, &run, a.feed) {
            crate::property_calc::feed_run(dir, config, *generation, r.uncertain.clone(), "property:elastic")?;
        }
        let guard = json!({
            "max_gamma": r.max_gamma,
            "gamma_select": gamma_select,
            "n_uncertain": r.n_uncertain,
            "trusted": trusted,
        });
        (r.elastic, r.structure, Some(guard), path.display().to_string())
    };

    let mut out = elastic_json(&elastic, &relaxed);
    out["structure"] = json!(a.structure);
    out["calculator"] = json!(source);
    out["relaxed"] = json!(!a.no_relax);
    out["max_gamma"] = guard.as_ref().map(|g| g["max_gamma"].clone()).unwrap_or(serde_json::Value::Null);
    // EMT is the reference itself; a model is trusted only inside its domain.
    out["trusted"] = guard.as_ref().map(|g| g["trusted"].clone()).unwrap_or(json!(true));
    out["guard"] = guard.clone().unwrap_or(serde_json::Value::Null);
    if let Some(o) = oracle {
        out["oracle"] = oracle_json(&elastic, &o);
    }
    // Pretty-printed JSON stays one object (tools read the whole stdout).
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&elastic, &out);
        if let Some(o) = out["oracle"].as_object() {
            println!("the oracle's ({}) C_ij (GPa), on the same cells:", o["engine"].as_str().unwrap_or("?"));
            for row in o["c_ij_gpa"].as_array().into_iter().flatten() {
                let row: Vec<String> = row
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| format!("{:9.2}", c.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                println!("  {}", row.join(" "));
            }
            println!(
                "model - oracle: largest |difference| {:.2} GPa; oracle bulk modulus (Hill) {:.2} GPa, Born {}; \
                 {} calculations added, {} executed",
                o["max_abs_difference_gpa"].as_f64().unwrap_or(f64::NAN),
                o["bulk_modulus_gpa"]["hill"].as_f64().unwrap_or(f64::NAN),
                if o["born_stable"] == true { "stable" } else { "UNSTABLE" },
                o["calculations_added"],
                o["executions"]
            );
        }
    }
    if let Some(g) = guard.as_ref().filter(|g| g["trusted"] != true) {
        eprintln!(
            "warning: NOT TRUSTED: the model extrapolates here (max gamma {} >= gamma_select {}, {} uncertain \
             evaluations); label such structures and refit, e.g. with [goals] elastic in the run configuration",
            g["max_gamma"], g["gamma_select"], g["n_uncertain"]
        );
    }
    if !elastic.born_stable {
        bail!(
            "{file}: mechanically unstable: C has the eigenvalue {:.2} GPa (Born criterion: all eigenvalues > 0); \
             the constants above describe a cell that would deform spontaneously",
            elastic.eigenvalues_gpa[0]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The oracle's constants on the model's cells.
struct OracleElastic {
    elastic: Elastic,
    engine: String,
    added: usize,
    executed: usize,
}

/// The cells of the model's fit labelled by the run's oracle (a cell labelled before is
/// not computed again), and the same least-squares fit on the oracle's stresses.
fn oracle_constants(
    dir: &std::path::Path,
    config: &autopipe_workflow::Config,
    r: &autopipe_workflow::goals::GuardedElastic,
    settings: &ElasticSettings,
) -> Result<OracleElastic> {
    let engine = config.oracle.name().to_string();
    eprintln!(
        "oracle: {} cells of the fit go to {engine} through the {} backend of {}",
        r.cells.len(),
        format!("{:?}", config.execution.backend.kind).to_lowercase(),
        dir.display()
    );
    let cells: Vec<_> = r.cells.iter().map(|c| c.structure.clone()).collect();
    let mut observer = crate::progress::Progress::new();
    let labels = property_runs::label_with_run_oracle(
        config,
        dir,
        cells,
        "property:elastic",
        &crate::launcher()?,
        &mut observer,
    )?;
    observer.finish();
    let samples = r
        .cells
        .iter()
        .zip(&labels.results)
        .enumerate()
        .map(|(i, (c, l))| match l.stress_ev_per_a3 {
            Some(stress) => Ok((c.strain, stress)),
            None => bail!("cell {}: the oracle {engine} gave no stress (elastic constants need it)", i + 1),
        })
        .collect::<Result<Vec<_>>>()?;
    let elastic = elastic_from_stresses(&samples, &settings.amplitudes, settings.internal.is_some());
    Ok(OracleElastic { elastic, engine, added: labels.added, executed: labels.executed })
}

/// The `oracle` object of the JSON: its constants and the model's difference from them.
fn oracle_json(model: &Elastic, o: &OracleElastic) -> serde_json::Value {
    let mut difference = [[0.0; 6]; 6];
    let mut largest: f64 = 0.0;
    for (i, row) in difference.iter_mut().enumerate() {
        for (j, d) in row.iter_mut().enumerate() {
            *d = model.c_ij_gpa[i][j] - o.elastic.c_ij_gpa[i][j];
            largest = largest.max(d.abs());
        }
    }
    json!({
        "engine": o.engine,
        "c_ij_gpa": o.elastic.c_ij_gpa,
        "bulk_modulus_gpa": o.elastic.bulk_modulus_gpa,
        "shear_modulus_gpa": o.elastic.shear_modulus_gpa,
        "young_modulus_gpa": o.elastic.young_modulus_gpa,
        "poisson_ratio": o.elastic.poisson_ratio,
        "born_stable": o.elastic.born_stable,
        "fit_rms_residual_gpa": o.elastic.fit_rms_residual_gpa,
        "difference_gpa": difference,
        "max_abs_difference_gpa": largest,
        "positions": if o.elastic.internal_relaxation {
            "relaxed by the model at each strain (the oracle labels the model's cells as they are)"
        } else {
            "as strained (clamped ions)"
        },
        "calculations_added": o.added,
        "executions": o.executed,
    })
}

/// The run's `explore.gamma_select`, from the configuration it goes by.
fn run_gamma_select(dir: &std::path::Path) -> Result<f64> {
    let store = autopipe_store::JobStore::open_read_only(dir)?;
    match store.current_config()? {
        Some(c) => {
            let config = autopipe_workflow::parse_config(&c.text, std::path::Path::new(&c.file))
                .with_context(|| format!("{}: the run's recorded configuration", dir.display()))?;
            Ok(config.explore.gamma_select)
        }
        None => Ok(2.0),
    }
}

fn print_text(e: &Elastic, out: &serde_json::Value) {
    println!("elastic constants C_ij (GPa), Voigt order {}:", VOIGT_NAMES.join(" "));
    for row in &e.c_ij_gpa {
        println!("  {}", row.iter().map(|c| format!("{c:9.2}")).collect::<Vec<_>>().join(" "));
    }
    let vrh = |v: &autopipe_property::elastic::Vrh| {
        let o = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into());
        format!("Voigt {:.2}, Reuss {}, Hill {}", v.voigt, o(v.reuss), o(v.hill))
    };
    println!("bulk modulus (GPa): {}", vrh(&e.bulk_modulus_gpa));
    println!("shear modulus (GPa): {}", vrh(&e.shear_modulus_gpa));
    println!("Young's modulus {:.2} GPa, Poisson ratio {:.4}", e.young_modulus_gpa, e.poisson_ratio);
    println!(
        "Born stability: {} (eigenvalues of C: {} GPa)",
        if e.born_stable { "stable" } else { "UNSTABLE" },
        e.eigenvalues_gpa.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "fit residuals: rms {:.4} GPa, max {:.4} GPa; asymmetry {:.4} GPa; residual stress {} GPa",
        e.fit_rms_residual_gpa,
        e.fit_max_residual_gpa,
        e.asymmetry_gpa,
        e.residual_stress_gpa.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(" ")
    );
    println!(
        "strains ±{} per component, internal relaxation {}, {} evaluations",
        e.strain_amplitudes.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ±"),
        if e.internal_relaxation { "on" } else { "off" },
        e.evaluations
    );
    match out["guard"].as_object() {
        Some(g) => println!(
            "uncertainty guard: max gamma {}, gamma_select {}, {} uncertain evaluations: {}",
            g["max_gamma"],
            g["gamma_select"],
            g["n_uncertain"],
            if g["trusted"] == true { "trusted" } else { "NOT TRUSTED" }
        ),
        None => println!("calculator: {} (no extrapolation grade)", out["calculator"].as_str().unwrap_or("")),
    }
}
