//! `autopipe property hull`: the convex hull of a CSV of entries (`name,formula,energy_ev`),
//! or of candidates built and relaxed with a potential (`--elements A,B`).

use anyhow::{bail, Context, Result};
use autopipe_property::hull::{parse_entries_csv, EntryResult, PhaseDiagram};
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
    calculator: crate::property_calc::CalculatorArgs,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn run(a: HullArgs) -> Result<ExitCode> {
    if a.entries.is_some() && a.calculator.given() {
        bail!("a CSV of entries needs no calculator (--emt, --model, --dir are for --elements)");
    }
    let (entries, source) = match &a.entries {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            (parse_entries_csv(&text, &path.display().to_string())?, path.display().to_string())
        }
        None => (candidates(&a.elements, &a.calculator)?, "the candidates".to_string()),
    };
    let pd = PhaseDiagram::new(entries).with_context(|| source)?;
    let results = pd.results()?;
    if a.json {
        let out = serde_json::json!({
            "elements": pd.elements.iter().map(|e| e.symbol()).collect::<Vec<_>>(),
            "entries": results,
            "stable": pd.stable_indices().iter().map(|&i| &pd.entries[i].name).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        print_table(&results);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(results: &[EntryResult]) {
    let w = results.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let f = results.iter().map(|r| r.formula.len()).max().unwrap_or(7).max(7);
    println!(
        "{:<w$} {:<f$} {:>14} {:>14} {:>6}  decomposition",
        "name", "formula", "E_f (eV/at)", "E_hull (eV/at)", "stable"
    );
    for r in results {
        let decomposition =
            r.decomposition.iter().map(|p| format!("{:.4} {}", p.fraction, p.name)).collect::<Vec<_>>().join(" + ");
        println!(
            "{:<w$} {:<f$} {:>14.6} {:>14.6} {:>6}  {}",
            r.name,
            r.formula,
            r.formation_energy_ev_per_atom,
            r.e_above_hull_ev_per_atom,
            if r.stable { "yes" } else { "no" },
            decomposition
        );
    }
}

/// Candidates of `elements` built, relaxed and evaluated with the calculator.
fn candidates(
    _elements: &[String],
    _calculator: &crate::property_calc::CalculatorArgs,
) -> Result<Vec<autopipe_property::hull::Entry>> {
    bail!("building candidates is not there yet")
}
