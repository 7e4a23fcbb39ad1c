//! `autopipe property hull`: the convex hull of a CSV of entries (`name,formula,energy_ev`),
//! or of candidates built and relaxed with a potential (`--elements A,B`).

use crate::property_calc::{with_calculator, CalculatorArgs};
use anyhow::{bail, Context, Result};
use autopipe_atoms::Element;
use autopipe_property::hull::{parse_entries_csv, PhaseDiagram};
use autopipe_workflow::goals::{hull_json, hull_of_candidates, HullGoal};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct HullArgs {
    /// CSV with the columns name,formula,energy_ev (the total energy of the formula as
    /// written, eV).
    #[arg(required_unless_present = "elements")]
    entries: Option<PathBuf>,
    /// Build, relax and evaluate candidates of these elements (two or more) instead.
    #[arg(long, value_delimiter = ',', conflicts_with = "entries")]
    elements: Vec<String>,
    #[command(flatten)]
    calculator: CalculatorArgs,
    /// Seed of the SQS candidates.
    #[arg(long, default_value_t = autopipe_workflow::goals::HULL_SEED)]
    seed: u64,
    /// Relax each candidate until every force is below this (eV/Å).
    #[arg(long, default_value_t = autopipe_workflow::goals::HULL_FMAX_EV_PER_A)]
    fmax_ev_per_a: f64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: HullArgs) -> Result<ExitCode> {
    if a.entries.is_some() && a.calculator.given() {
        bail!("a CSV of entries needs no calculator (--emt, --model, --dir are for --elements)");
    }
    let (mut out, workflow) = match &a.entries {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let entries = parse_entries_csv(&text, &path.display().to_string())?;
            let pd = PhaseDiagram::new(entries).with_context(|| path.display().to_string())?;
            (hull_json(&pd, None)?, None)
        }
        None => {
            let (value, w) = candidates(&a.elements, a.seed, a.fmax_ev_per_a, &a.calculator)?;
            (value, Some(w))
        }
    };
    if a.json {
        if let Some(w) = &workflow {
            out["max_gamma"] = serde_json::to_value(w.max_gamma)?;
            out["uncertain"] = w.uncertain.into();
        }
        println!("{out}");
    } else {
        print_table(&out["entries"]);
        if let Some(w) = &workflow {
            println!(
                "max_gamma {} ({} uncertain structures)",
                w.max_gamma.map_or("-".into(), |g| format!("{g:.3}")),
                w.uncertain
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What the candidates' relaxations said besides their energies.
struct Workflow {
    max_gamma: Option<f64>,
    uncertain: usize,
}

/// Candidates of `elements` built, relaxed and evaluated with the calculator (those of
/// the run's hull goal, `autopipe_workflow::goals::HullGoal`, with SQS and ordered
/// prototypes).
fn candidates(
    elements: &[String],
    seed: u64,
    fmax_ev_per_a: f64,
    calculator: &CalculatorArgs,
) -> Result<(serde_json::Value, Workflow)> {
    let elements: Vec<Element> = elements
        .iter()
        .map(|s| s.parse::<Element>().map_err(anyhow::Error::msg).context("--elements"))
        .collect::<Result<_>>()?;
    if !(fmax_ev_per_a.is_finite() && fmax_ev_per_a > 0.0) {
        bail!("--fmax-ev-per-a {fmax_ev_per_a} must be > 0");
    }
    let goal = HullGoal { elements: elements.clone(), seed, fmax_ev_per_a, ordered: true, sqs: true };
    let list = goal.candidates()?;
    with_calculator(calculator, "property:hull", |ff, known| {
        for c in &list {
            known.check(&c.structure, &c.name)?;
        }
        eprintln!("hull: relaxing {} candidates of {}", list.len(), a_list(&elements));
        let value = hull_of_candidates(ff, &list, fmax_ev_per_a, &mut |r| {
            eprintln!(
                "  {:<14} {:>12.5} eV/atom {}",
                r.name,
                r.energy_ev / r.atoms as f64,
                if r.converged { "" } else { "(not converged)" }
            )
        })
        .context("the candidates")?;
        Ok((value, Workflow { max_gamma: ff.max_gamma(), uncertain: ff.uncertain().len() }))
    })
}

fn a_list(elements: &[Element]) -> String {
    elements.iter().map(|e| e.symbol()).collect::<Vec<_>>().join("-")
}

/// The entries of a hull's JSON as a table.
fn print_table(entries: &serde_json::Value) {
    let results = entries.as_array().map(Vec::as_slice).unwrap_or_default();
    let text = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or("").to_string();
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let w = results.iter().map(|r| text(r, "name").len()).max().unwrap_or(4).max(4);
    let f = results.iter().map(|r| text(r, "formula").len()).max().unwrap_or(7).max(7);
    println!(
        "{:<w$} {:<f$} {:>14} {:>14} {:>6}  decomposition",
        "name", "formula", "E_f (eV/at)", "E_hull (eV/at)", "stable"
    );
    for r in results {
        let decomposition = r["decomposition"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{:.4} {}", num(p, "fraction"), text(p, "name")))
            .collect::<Vec<_>>()
            .join(" + ");
        println!(
            "{:<w$} {:<f$} {:>14.6} {:>14.6} {:>6}  {}",
            text(r, "name"),
            text(r, "formula"),
            num(r, "formation_energy_ev_per_atom"),
            num(r, "e_above_hull_ev_per_atom"),
            if r["stable"] == true { "yes" } else { "no" },
            decomposition
        );
    }
}
