//! The candidates of a phase diagram built from element names: each element in fcc, bcc
//! and hcp, and for every pair of elements the ordered prototypes L1_2 (both ways), B2 and
//! L1_0 and fcc special quasirandom structures at 25, 50 and 75 %; each relaxed (positions
//! and cell) with a force field and turned into an [`Entry`].
//!
//! Lattice constants: each element's fcc-equivalent `a` (same volume per atom) from the
//! caller; mixtures by Vegard's law; bcc cells at the same volume per atom
//! (`a_bcc = a_fcc / 2^(1/3)`), hcp at the ideal c/a (`a_hcp = a_fcc / √2`).

use super::{Entry, HullError};
use crate::relax::{relax, CellMode, RelaxSettings};
use autopipe_atoms::{Element, Structure};
use autopipe_build::sqs::{SqsProblem, Sublattice};
use autopipe_build::{supercell, Prototype};
use autopipe_md::ForceField;
use serde::Serialize;

/// A structure to relax and put on the diagram.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// e.g. `Cu3Au-L12`, `CuAu-SQS50`, `Cu-bcc`.
    pub name: String,
    pub structure: Structure,
    pub kind: CandidateKind,
}

/// Which family a candidate belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandidateKind {
    /// A pure element in fcc, bcc or hcp (the references of the formation energies).
    Element,
    /// An ordered prototype of a pair (L1_2, B2, L1_0).
    Ordered,
    /// A special quasirandom structure of a pair.
    Sqs,
}

/// Compositions (fraction of the second element) of the SQS of each pair.
pub const SQS_FRACTIONS: [f64; 3] = [0.25, 0.5, 0.75];

/// The candidates of `elements` (two or more, distinct); `fcc_a` gives each element's
/// fcc-equivalent lattice constant (Å). SQS are 32-atom fcc cells (2x2x2), three shells,
/// annealed with `seed`.
pub fn prototype_candidates(
    elements: &[Element],
    fcc_a: &dyn Fn(Element) -> Option<f64>,
    seed: u64,
) -> Result<Vec<Candidate>, HullError> {
    let input = |message: String| HullError::Input { file: "--elements".into(), message };
    if elements.len() < 2 {
        return Err(input("a phase diagram needs two elements or more".into()));
    }
    for (i, e) in elements.iter().enumerate() {
        if elements[..i].contains(e) {
            return Err(input(format!("{e} is listed twice")));
        }
    }
    let a: Vec<f64> = elements
        .iter()
        .map(|&e| fcc_a(e).ok_or_else(|| input(format!("no lattice constant known for {e}"))))
        .collect::<Result<_, _>>()?;
    let build = |p: Prototype, els: &[Element], a_fcc: f64| -> Result<Structure, HullError> {
        let a = match p {
            Prototype::Bcc | Prototype::B2 => a_fcc / 2f64.cbrt(),
            Prototype::Hcp => a_fcc / 2f64.sqrt(),
            _ => a_fcc,
        };
        p.build(els, a, None).map_err(|e| HullError::Internal(format!("building {}: {e}", p.name())))
    };
    let mut out = Vec::new();
    for (e, &a_e) in elements.iter().zip(&a) {
        for p in [Prototype::Fcc, Prototype::Bcc, Prototype::Hcp] {
            out.push(Candidate {
                name: format!("{e}-{}", p.name()),
                structure: build(p, &[*e], a_e)?,
                kind: CandidateKind::Element,
            });
        }
    }
    for i in 0..elements.len() {
        for j in i + 1..elements.len() {
            let (x, y) = (elements[i], elements[j]);
            let mix = |fy: f64| (1.0 - fy) * a[i] + fy * a[j];
            // L1_2 puts its first element on the face centres (3 of 4 sites).
            for (name, p, els, fy) in [
                (format!("{x}3{y}-L12"), Prototype::L12, [x, y], 0.25),
                (format!("{x}{y}3-L12"), Prototype::L12, [y, x], 0.75),
                (format!("{x}{y}-B2"), Prototype::B2, [x, y], 0.5),
                (format!("{x}{y}-L10"), Prototype::L10, [x, y], 0.5),
            ] {
                out.push(Candidate { name, structure: build(p, &els, mix(fy))?, kind: CandidateKind::Ordered });
            }
            for (k, &fy) in SQS_FRACTIONS.iter().enumerate() {
                let parent = supercell(&build(Prototype::Fcc, &[x], mix(fy))?, [2, 2, 2]);
                let sub = Sublattice {
                    sites: (0..parent.len()).collect(),
                    species: vec![x, y],
                    fractions: vec![1.0 - fy, fy],
                };
                let problem = SqsProblem::new(&parent, &[sub], 3)
                    .map_err(|e| HullError::Internal(format!("SQS of {x}-{y}: {e}")))?;
                let sqs = problem.anneal(20_000, seed.wrapping_add(k as u64));
                out.push(Candidate {
                    name: format!("{x}{y}-SQS{}", (fy * 100.0).round()),
                    structure: sqs.structure,
                    kind: CandidateKind::Sqs,
                });
            }
        }
    }
    Ok(out)
}

/// How a candidate's relaxation went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelaxedCandidate {
    pub name: String,
    pub formula: String,
    pub energy_ev: f64,
    pub atoms: usize,
    pub volume_per_atom_a3: f64,
    pub converged: bool,
    pub evaluations: usize,
}

/// Relaxes every candidate (positions and cell, forces below `fmax_ev_per_a`, stress
/// below 0.005 eV/Å³ ≈ 0.8 GPa) and makes the entries of the diagram. `progress` hears
/// one line per candidate.
pub fn relax_candidates<F: ForceField + ?Sized>(
    ff: &mut F,
    candidates: &[Candidate],
    fmax_ev_per_a: f64,
    progress: &mut dyn FnMut(&RelaxedCandidate),
) -> Result<(Vec<Entry>, Vec<RelaxedCandidate>), HullError> {
    let settings = RelaxSettings { cell: CellMode::Full, max_steps: 1000, ..RelaxSettings::full(fmax_ev_per_a, 0.005) };
    let mut entries = Vec::new();
    let mut report = Vec::new();
    for c in candidates {
        let r = relax(ff, &c.structure, &settings)
            .map_err(|e| HullError::Relax { name: c.name.clone(), message: e.to_string() })?;
        let formula = c.structure.formula();
        let item = RelaxedCandidate {
            name: c.name.clone(),
            formula: formula.clone(),
            energy_ev: r.evaluation.energy_ev,
            atoms: c.structure.len(),
            volume_per_atom_a3: r.structure.volume_a3().abs() / c.structure.len() as f64,
            converged: r.converged,
            evaluations: r.evaluations,
        };
        progress(&item);
        entries.push(Entry::new(&c.name, &formula, r.evaluation.energy_ev).map_err(HullError::Internal)?);
        report.push(item);
    }
    Ok((entries, report))
}
