//! The calculator of a property workflow (`--emt`, `--model FILE`, `--dir RUN`), behind
//! the uncertainty guard, and the default starting structures built from element data.

use anyhow::{bail, Context, Result};
use autopipe_atoms::{Element, Structure};
use autopipe_build::{bulk, supercell};
use autopipe_md::ForceField;
use autopipe_property::guard::{Uncertain, Watched};
use autopipe_workflow::config::{default_lattice_constant_a, natural_lattice};
use autopipe_workflow::learn::ModelForceField;
use autopipe_workflow::models;
use autopipe_workflow::property_runs;
use autopipe_workflow::Config;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args, Default)]
pub struct CalculatorArgs {
    /// The built-in EMT (no extrapolation grade).
    #[arg(long, conflicts_with_all = ["model", "dir"])]
    pub emt: bool,
    /// A SNAP model file.
    #[arg(long, conflicts_with = "dir")]
    pub model: Option<PathBuf>,
    /// A run directory: its latest model.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Structures whose extrapolation grade reaches this are uncertain: counted, and
    /// written to --uncertain-out.
    #[arg(long, default_value_t = 2.0)]
    pub gamma_select: f64,
    /// Extended XYZ file for the uncertain structures (to label and refit with).
    #[arg(long)]
    pub uncertain_out: Option<PathBuf>,
    /// With --dir RUN: queue the uncertain structures (the most uncertain, at most the
    /// run's loop.per_generation) into RUN as its next generation's labels; the next
    /// `autopipe run` labels them and refits. The loop must have ended.
    #[arg(long, requires = "dir")]
    pub feed: bool,
}

impl CalculatorArgs {
    /// Whether any calculator was named.
    pub fn given(&self) -> bool {
        self.emt || self.model.is_some() || self.dir.is_some()
    }

    /// The elements the calculator knows (None: EMT's, checked per element).
    fn model_path(&self) -> Result<Option<PathBuf>> {
        match (&self.model, &self.dir, self.emt) {
            (Some(p), None, false) => Ok(Some(p.clone())),
            (None, Some(d), false) => Ok(Some(models::run_model_path(d, None)?)),
            (None, None, true) => Ok(None),
            _ => bail!("give one calculator: --emt, --model FILE or --dir RUN"),
        }
    }
}

/// The elements a calculator can evaluate.
pub struct Known {
    model: Option<(PathBuf, Vec<Element>)>,
}

impl Known {
    pub fn elements(&self) -> Option<&[Element]> {
        self.model.as_ref().map(|m| m.1.as_slice())
    }

    /// Every element of `s` must be the model's (or EMT's).
    pub fn check(&self, s: &Structure, what: &str) -> Result<()> {
        for (i, e) in s.species.iter().enumerate() {
            match &self.model {
                Some((path, known)) if !known.contains(e) => bail!(
                    "{what}: atom {} is {e}, which is not one of the elements of the model {} ({})",
                    i + 1,
                    path.display(),
                    known.iter().map(|e| e.symbol()).collect::<Vec<_>>().join(", ")
                ),
                None if !autopipe_engines::emt::Emt::supports(*e) => {
                    bail!("{what}: atom {} is {e}, which the built-in EMT has no parameters for", i + 1)
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Runs `f` with the calculator, watched: `f` gets the force field and the elements it
/// knows. Afterwards, writes the uncertain structures to `--uncertain-out`, and with
/// `--feed` queues them into the run as calculations of origin `origin`.
pub fn with_calculator<R>(
    args: &CalculatorArgs,
    origin: &str,
    f: impl FnOnce(&mut Watched<&mut dyn ForceField>, &Known) -> Result<R>,
) -> Result<R> {
    if !(args.gamma_select.is_finite() && args.gamma_select >= 1.0) {
        bail!("--gamma-select {} must be >= 1", args.gamma_select);
    }
    // Checked before the work: the loop must have ended.
    let feed = match (&args.dir, args.feed) {
        (Some(dir), true) => Some((dir, property_runs::check_feedable(dir)?)),
        _ => None,
    };
    const MAX_KEPT: usize = 1000;
    let result;
    let uncertain;
    match args.model_path()? {
        None => {
            let mut emt = models::EmtForceField(autopipe_engines::emt::Emt::new());
            let mut watched = Watched::new(&mut emt as &mut dyn ForceField, args.gamma_select, MAX_KEPT);
            result = f(&mut watched, &Known { model: None })?;
            uncertain = watched.take_uncertain();
        }
        Some(path) => {
            let model = models::read_model(&path)?;
            let elements = model.params.elements.iter().map(|e| e.element).collect();
            let evaluator = model.evaluator().with_context(|| format!("{}: not a usable model", path.display()))?;
            let mut ff = ModelForceField { evaluator };
            let mut watched = Watched::new(&mut ff as &mut dyn ForceField, args.gamma_select, MAX_KEPT);
            result = f(&mut watched, &Known { model: Some((path.clone(), elements)) })?;
            uncertain = watched.take_uncertain();
        }
    }
    let uncertain_for_feed = if feed.is_some() { uncertain.clone() } else { Vec::new() };
    if let Some(out) = &args.uncertain_out {
        let frames: Vec<autopipe_atoms::Frame> = uncertain
            .into_iter()
            .map(|u| {
                let mut f = autopipe_atoms::Frame::from_structure(u.structure);
                f.info.insert("max_gamma".into(), autopipe_atoms::InfoValue::Float(u.max_gamma));
                f
            })
            .collect();
        autopipe_atoms::extxyz::write_extxyz_file(out, &frames)?;
        eprintln!("{} uncertain structures written to {}", frames.len(), out.display());
    }
    if let Some((dir, (config, generation))) = feed {
        feed_run(dir, &config, generation, uncertain_for_feed, origin)?;
    }
    Ok(result)
}

/// `--feed`: the uncertain structures into `dir`, and what to do next.
pub fn feed_run(dir: &Path, config: &Config, generation: i64, uncertain: Vec<Uncertain>, origin: &str) -> Result<()> {
    let n = property_runs::queue_uncertain(config, dir, uncertain, origin, generation)?;
    if n == 0 {
        eprintln!("no uncertain structure: nothing queued into {}", dir.display());
    } else {
        eprintln!(
            "{n} structures queued into {} (generation {}): run `autopipe run` to label them and refit",
            dir.display(),
            generation + 1
        );
    }
    Ok(())
}

/// The element's own lattice at its experimental lattice constant, repeated to at least
/// `min_atoms` atoms (the same repetition along each axis).
pub fn default_bulk(e: Element, min_atoms: usize) -> Result<Structure> {
    let (Some(lattice), Some(a)) =
        (natural_lattice(e), natural_lattice(e).and_then(|l| default_lattice_constant_a(e, l)))
    else {
        bail!("no lattice data for {e}: give a starting structure (--structure FILE)")
    };
    let cell = bulk(lattice, e, a);
    let n = (1..=20).find(|n| cell.len() * n * n * n >= min_atoms).unwrap_or(20);
    Ok(supercell(&cell, [n, n, n]))
}

/// The last frame of an extended XYZ file.
pub fn read_structure(path: &Path) -> Result<Structure> {
    let frames = crate::read_frames(path)?;
    Ok(frames.into_iter().last().expect("read_frames refuses empty files").structure)
}
