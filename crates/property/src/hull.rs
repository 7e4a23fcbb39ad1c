//! Phase stability: formation energies against elemental references, the lower convex
//! hull in any number of components, the energy above the hull and the decomposition
//! products of every entry, and the stable set.
//!
//! Conventions follow pymatgen's `PhaseDiagram` (the test compares against it): an entry
//! is a formula and the total energy of that formula as written (`PDEntry`); the
//! reference of each element is its lowest-energy-per-atom pure entry; compositions are
//! atomic fractions; decomposition amounts are atomic fractions of the products.
//!
//! The hull energy at a composition `x` is the linear programme
//! `min Σ λ_j e_j  subject to  Σ λ_j x_j = x, λ ≥ 0` over the entries' compositions `x_j`
//! and formation energies `e_j` (eV/atom). This is exact in any number of components and
//! needs no special case for degenerate input: collinear or coplanar entries,
//! duplicate compositions and entries exactly on a facet are just ties of the
//! programme. It is solved by the revised simplex method (Bland's rule, so degenerate
//! pivots cannot cycle), starting from the pure elements, whose columns are the
//! identity. The stable set — the vertices of the lower hull — is found first, so that
//! the programme of every entry runs over the few hull vertices only
//! ([`PhaseDiagram::new`]: one pass adding every entry below the hull of those kept so
//! far, one pass removing every kept entry that the others reach).

use autopipe_atoms::Element;
use serde::Serialize;
use std::collections::BTreeMap;

pub mod candidates;

/// Energies closer than this (eV/atom) are equal: an entry this close to the hull of the
/// others is on it, not a vertex of it.
pub const TOLERANCE_EV_PER_ATOM: f64 = 1e-8;

/// Why a set of entries has no phase diagram.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HullError {
    #[error("{file}: row {row}: {message}")]
    Row { file: String, row: usize, message: String },
    #[error("{file}: {message}")]
    Input { file: String, message: String },
    #[error("no entry of pure {0}: every element needs at least one elemental reference")]
    MissingReference(Element),
    #[error("no entries")]
    Empty,
    #[error("relaxing {name}: {message}")]
    Relax { name: String, message: String },
    #[error("internal error of the hull's linear programme ({0}); please report")]
    Internal(String),
}

/// A formula's amounts of each element (the formula as written, not reduced).
pub type Composition = BTreeMap<Element, f64>;

/// One input entry: a name, a formula and the total energy of that formula.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    pub formula: String,
    pub composition: Composition,
    pub energy_ev: f64,
}

impl Entry {
    /// An entry from a formula such as `Cu3Au`, `Cu0.5Au0.5` or `Ca(OH)2`.
    pub fn new(name: &str, formula: &str, energy_ev: f64) -> Result<Entry, String> {
        let composition = parse_formula(formula)?;
        if !energy_ev.is_finite() {
            return Err(format!("energy {energy_ev} is not a finite number"));
        }
        Ok(Entry { name: name.to_string(), formula: formula.to_string(), composition, energy_ev })
    }

    pub fn n_atoms(&self) -> f64 {
        self.composition.values().sum()
    }

    pub fn energy_per_atom_ev(&self) -> f64 {
        self.energy_ev / self.n_atoms()
    }
}

/// Amounts of each element in a formula: symbols (exact case) with optional, possibly
/// fractional, counts, and parenthesised groups with a count (`Ca(OH)2`).
pub fn parse_formula(formula: &str) -> Result<Composition, String> {
    fn number(chars: &[char], i: &mut usize) -> Option<f64> {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_digit() || chars[*i] == '.') {
            *i += 1;
        }
        (*i > start).then(|| chars[start..*i].iter().collect::<String>().parse().ok()).flatten()
    }
    fn group(chars: &[char], i: &mut usize, depth: usize, formula: &str) -> Result<Composition, String> {
        let mut out = Composition::new();
        while *i < chars.len() {
            let c = chars[*i];
            let (part, count) = if c == '(' {
                *i += 1;
                let inner = group(chars, i, depth + 1, formula)?;
                if *i >= chars.len() || chars[*i] != ')' {
                    return Err(format!("formula {formula:?}: unclosed '('"));
                }
                *i += 1;
                (inner, number(chars, i).unwrap_or(1.0))
            } else if c == ')' {
                if depth == 0 {
                    return Err(format!("formula {formula:?}: ')' without '('"));
                }
                return Ok(out);
            } else if c.is_ascii_uppercase() {
                let start = *i;
                *i += 1;
                while *i < chars.len() && chars[*i].is_ascii_lowercase() {
                    *i += 1;
                }
                let symbol: String = chars[start..*i].iter().collect();
                let e = Element::from_symbol(&symbol)
                    .ok_or_else(|| format!("formula {formula:?}: unknown element {symbol:?}"))?;
                (Composition::from([(e, 1.0)]), number(chars, i).unwrap_or(1.0))
            } else {
                return Err(format!("formula {formula:?}: unexpected {c:?} (symbols such as Cu3Au are expected)"));
            };
            if !(count.is_finite() && count >= 0.0) {
                return Err(format!("formula {formula:?}: bad count"));
            }
            for (e, n) in part {
                *out.entry(e).or_insert(0.0) += n * count;
            }
        }
        if depth > 0 {
            return Err(format!("formula {formula:?}: unclosed '('"));
        }
        Ok(out)
    }
    let chars: Vec<char> = formula.trim().chars().collect();
    if chars.is_empty() {
        return Err("empty formula".into());
    }
    let mut i = 0;
    let mut c = group(&chars, &mut i, 0, formula)?;
    c.retain(|_, n| *n > 0.0);
    if c.is_empty() {
        return Err(format!("formula {formula:?} has no atoms"));
    }
    Ok(c)
}

/// Entries from CSV text with the header `name,formula,energy_ev` (columns in any order,
/// extra columns ignored). `source` names the file in errors; rows are counted as in a
/// spreadsheet (the header is row 1).
pub fn parse_entries_csv(text: &str, source: &str) -> Result<Vec<Entry>, HullError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).comment(Some(b'#')).from_reader(text.as_bytes());
    let input = |message: String| HullError::Input { file: source.to_string(), message };
    let headers = reader.headers().map_err(|e| input(format!("cannot read the header: {e}")))?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            input(format!(
                "no column `{name}` in the header ({}); expected name,formula,energy_ev",
                headers.iter().collect::<Vec<_>>().join(",")
            ))
        })
    };
    let (name_col, formula_col, energy_col) = (column("name")?, column("formula")?, column("energy_ev")?);
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let row = e.position().map_or(0, |p| p.line() as usize);
            HullError::Row { file: source.to_string(), row, message: e.to_string() }
        })?;
        let row = record.position().map_or(entries.len() + 2, |p| p.line() as usize);
        let bad = |message: String| HullError::Row { file: source.to_string(), row, message };
        let field = |col: usize, what: &str| {
            record.get(col).filter(|s| !s.is_empty()).ok_or_else(|| bad(format!("column `{what}` is empty")))
        };
        let name = field(name_col, "name")?;
        let formula = field(formula_col, "formula")?;
        let energy_text = field(energy_col, "energy_ev")?;
        let energy: f64 = energy_text
            .parse()
            .map_err(|_| bad(format!("energy_ev {energy_text:?} is not a number (eV, the formula's total energy)")))?;
        let entry = Entry::new(name, formula, energy).map_err(|m| bad(format!("{name}: {m}")))?;
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(input("no entries (only a header?)".into()));
    }
    Ok(entries)
}

/// What the phase diagram says about one entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EntryResult {
    pub name: String,
    pub formula: String,
    pub formation_energy_ev_per_atom: f64,
    pub e_above_hull_ev_per_atom: f64,
    /// A vertex of the lower hull (for each composition at most one entry is).
    pub stable: bool,
    /// The stable entries this one's composition splits into, with atomic fractions
    /// (the entry itself with 1 when it is stable).
    pub decomposition: Vec<Product>,
}

/// One decomposition product.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Product {
    pub name: String,
    pub formula: String,
    /// Atomic fraction of the composition this product takes.
    pub fraction: f64,
}

/// The phase diagram of a set of entries.
#[derive(Clone, Debug)]
pub struct PhaseDiagram {
    pub elements: Vec<Element>,
    pub entries: Vec<Entry>,
    /// Per entry: atomic fractions in the order of `elements`.
    fractions: Vec<Vec<f64>>,
    /// Per entry: formation energy, eV/atom.
    formation_ev_per_atom: Vec<f64>,
    /// Indices of the hull vertices (the stable entries), elemental references first.
    vertices: Vec<usize>,
}

impl PhaseDiagram {
    /// The hull of `entries`: every element that occurs needs a pure entry.
    pub fn new(entries: Vec<Entry>) -> Result<PhaseDiagram, HullError> {
        if entries.is_empty() {
            return Err(HullError::Empty);
        }
        let mut elements: Vec<Element> = Vec::new();
        for e in &entries {
            for el in e.composition.keys() {
                if !elements.contains(el) {
                    elements.push(*el);
                }
            }
        }
        elements.sort();
        let fractions: Vec<Vec<f64>> = entries
            .iter()
            .map(|e| {
                let n = e.n_atoms();
                elements.iter().map(|el| e.composition.get(el).copied().unwrap_or(0.0) / n).collect()
            })
            .collect();
        // The reference of each element: its lowest pure entry (the first of equals).
        let mut references = Vec::with_capacity(elements.len());
        for (k, el) in elements.iter().enumerate() {
            let best = (0..entries.len())
                .filter(|&i| fractions[i][k] == 1.0)
                .min_by(|&a, &b| entries[a].energy_per_atom_ev().total_cmp(&entries[b].energy_per_atom_ev()))
                .ok_or(HullError::MissingReference(*el))?;
            references.push(best);
        }
        let mu: Vec<f64> = references.iter().map(|&i| entries[i].energy_per_atom_ev()).collect();
        let formation_ev_per_atom: Vec<f64> = (0..entries.len())
            .map(|i| entries[i].energy_per_atom_ev() - fractions[i].iter().zip(&mu).map(|(x, m)| x * m).sum::<f64>())
            .collect();
        let mut pd = PhaseDiagram { elements, entries, fractions, formation_ev_per_atom, vertices: references };
        pd.find_vertices()?;
        Ok(pd)
    }

    fn n_refs(&self) -> usize {
        self.elements.len()
    }

    /// The hull vertices: entries below the hull of the vertices kept so far are added
    /// (lowest formation energy first, so the true vertices tend to come early and the
    /// set stays small), then every kept entry that the other kept ones reach is removed.
    fn find_vertices(&mut self) -> Result<(), HullError> {
        let n_refs = self.n_refs();
        // Lowest entry per composition first among equals; above 0 nothing is a vertex.
        let mut order: Vec<usize> = (0..self.entries.len())
            .filter(|i| !self.vertices.contains(i) && self.formation_ev_per_atom[*i] < -TOLERANCE_EV_PER_ATOM)
            .collect();
        order.sort_by(|&a, &b| self.formation_ev_per_atom[a].total_cmp(&self.formation_ev_per_atom[b]).then(a.cmp(&b)));
        for i in order {
            let (e_hull, _) = self.solve(&self.fractions[i], &self.vertices, None)?;
            if self.formation_ev_per_atom[i] < e_hull - TOLERANCE_EV_PER_ATOM {
                self.vertices.push(i);
            }
        }
        // Remove the kept entries that are not vertices (below an earlier partial hull
        // but above the final one, or on it).
        let mut k = n_refs;
        while k < self.vertices.len() {
            let i = self.vertices[k];
            let (e_hull, _) = self.solve(&self.fractions[i], &self.vertices, Some(i))?;
            if self.formation_ev_per_atom[i] >= e_hull - TOLERANCE_EV_PER_ATOM {
                self.vertices.remove(k);
            } else {
                k += 1;
            }
        }
        Ok(())
    }

    /// The indices of the stable entries (hull vertices), elemental references first.
    pub fn stable_indices(&self) -> &[usize] {
        &self.vertices
    }

    /// Formation energy of entry `i`, eV/atom.
    pub fn formation_energy_ev_per_atom(&self, i: usize) -> f64 {
        self.formation_ev_per_atom[i]
    }

    /// The hull energy (eV/atom, formation) at a composition given as atomic fractions in
    /// the order of [`PhaseDiagram::elements`], and its decomposition: (entry index,
    /// atomic fraction) of hull vertices.
    pub fn hull_energy(&self, fractions: &[f64]) -> Result<(f64, Vec<(usize, f64)>), HullError> {
        self.solve(fractions, &self.vertices, None)
    }

    /// Every entry's result, in input order.
    pub fn results(&self) -> Result<Vec<EntryResult>, HullError> {
        (0..self.entries.len()).map(|i| self.result(i)).collect()
    }

    /// Entry `i`'s formation energy, energy above hull, stability and decomposition.
    pub fn result(&self, i: usize) -> Result<EntryResult, HullError> {
        let e = &self.entries[i];
        let stable = self.vertices.contains(&i);
        let (e_hull, decomposition) = if stable {
            (self.formation_ev_per_atom[i], vec![(i, 1.0)])
        } else {
            self.hull_energy(&self.fractions[i])?
        };
        let product = |(j, fraction): (usize, f64)| Product {
            name: self.entries[j].name.clone(),
            formula: self.entries[j].formula.clone(),
            fraction,
        };
        Ok(EntryResult {
            name: e.name.clone(),
            formula: e.formula.clone(),
            formation_energy_ev_per_atom: self.formation_ev_per_atom[i],
            e_above_hull_ev_per_atom: (self.formation_ev_per_atom[i] - e_hull).max(0.0),
            stable,
            decomposition: decomposition.into_iter().map(product).collect(),
        })
    }

    /// `min Σ λ_j e_j` s.t. `Σ λ_j x_j = target`, `λ ≥ 0`, over the columns `cols`
    /// (without `skip`). The first `n` columns must be the elemental references (the
    /// starting basis, the identity). Returns the minimum and the basic columns with
    /// λ > 0, as (entry index, λ).
    fn solve(
        &self,
        target: &[f64],
        cols: &[usize],
        skip: Option<usize>,
    ) -> Result<(f64, Vec<(usize, f64)>), HullError> {
        let n = self.n_refs();
        let x = |j: usize| &self.fractions[j];
        let c = |j: usize| self.formation_ev_per_atom[j];
        // Basis: positions in `cols`; the references are the identity.
        let mut basis: Vec<usize> = (0..n).collect();
        let mut lambda: Vec<f64> = target.to_vec();
        let mut b = vec![vec![0.0; n]; n]; // basis matrix, column k = x of basis[k]
        let max_iterations = 50 * (cols.len() + n);
        for _ in 0..max_iterations {
            for (k, &p) in basis.iter().enumerate() {
                for (row, v) in b.iter_mut().zip(x(cols[p])) {
                    row[k] = *v;
                }
            }
            // Duals: Bᵀ y = c_B.
            let cb: Vec<f64> = basis.iter().map(|&p| c(cols[p])).collect();
            let y = solve_transposed(&b, &cb).ok_or_else(|| HullError::Internal("singular basis".into()))?;
            // Entering column: Bland's rule (the first with a negative reduced cost).
            let entering = (0..cols.len()).find(|&p| {
                !basis.contains(&p)
                    && Some(cols[p]) != skip
                    && c(cols[p]) - y.iter().zip(x(cols[p])).map(|(a, b)| a * b).sum::<f64>() < -1e-12
            });
            let Some(q) = entering else {
                let value = basis.iter().zip(&lambda).map(|(&p, l)| l * c(cols[p])).sum();
                let mut products: Vec<(usize, f64)> =
                    basis.iter().zip(&lambda).filter(|(_, l)| **l > 1e-10).map(|(&p, &l)| (cols[p], l)).collect();
                let total: f64 = products.iter().map(|p| p.1).sum();
                products.iter_mut().for_each(|p| p.1 /= total);
                products.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                return Ok((value, products));
            };
            // Direction: B d = x_q; ratio test (Bland: smallest basis index among ties).
            let d = solve(&b, x(cols[q])).ok_or_else(|| HullError::Internal("singular basis".into()))?;
            let mut leave: Option<(usize, f64)> = None;
            for k in 0..n {
                if d[k] > 1e-12 {
                    let t = lambda[k].max(0.0) / d[k];
                    let better = match leave {
                        None => true,
                        Some((l, tl)) => t < tl - 1e-15 || (t <= tl + 1e-15 && basis[k] < basis[l]),
                    };
                    if better {
                        leave = Some((k, t));
                    }
                }
            }
            // Unbounded cannot happen: the columns are fractions summing to 1.
            let (k, t) = leave.ok_or_else(|| HullError::Internal("unbounded".into()))?;
            for r in 0..n {
                lambda[r] -= t * d[r];
            }
            lambda[k] = t;
            basis[k] = q;
        }
        Err(HullError::Internal("the simplex method did not finish".into()))
    }
}

/// Solves `A z = rhs` (small, dense; partial pivoting). None when singular.
fn solve(a: &[Vec<f64>], rhs: &[f64]) -> Option<Vec<f64>> {
    let n = rhs.len();
    let mut m: Vec<Vec<f64>> = a.iter().zip(rhs).map(|(row, r)| row.iter().copied().chain([*r]).collect()).collect();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))?;
        if m[piv][col].abs() < 1e-14 {
            return None;
        }
        m.swap(col, piv);
        let pivot_row = m[col].clone();
        for (r, row) in m.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                if f != 0.0 {
                    for (v, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                        *v -= f * p;
                    }
                }
            }
        }
    }
    Some((0..n).map(|i| m[i][n] / m[i][i]).collect())
}

/// Solves `Aᵀ z = rhs`.
fn solve_transposed(a: &[Vec<f64>], rhs: &[f64]) -> Option<Vec<f64>> {
    let n = rhs.len();
    let t: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| a[j][i]).collect()).collect();
    solve(&t, rhs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, formula: &str, e: f64) -> Entry {
        Entry::new(name, formula, e).unwrap()
    }

    #[test]
    fn formulas() {
        let cu = Element::from_symbol("Cu").unwrap();
        let au = Element::from_symbol("Au").unwrap();
        assert_eq!(parse_formula("Cu3Au").unwrap(), Composition::from([(cu, 3.0), (au, 1.0)]));
        assert_eq!(parse_formula("Cu0.5Au0.5").unwrap(), Composition::from([(cu, 0.5), (au, 0.5)]));
        let o = Element::from_symbol("O").unwrap();
        let h = Element::from_symbol("H").unwrap();
        let ca = Element::from_symbol("Ca").unwrap();
        assert_eq!(parse_formula("Ca(OH)2").unwrap(), Composition::from([(ca, 1.0), (o, 2.0), (h, 2.0)]));
        assert!(parse_formula("Xx2").unwrap_err().contains("unknown element \"Xx\""));
        assert!(parse_formula("Cu(Au").is_err());
        assert!(parse_formula("Cu)").is_err());
        assert!(parse_formula("cu").is_err());
        assert!(parse_formula("").is_err());
    }

    /// A binary with a collinear middle entry, a duplicate composition and an entry above.
    #[test]
    fn binary_by_hand() {
        let pd = PhaseDiagram::new(vec![
            entry("a", "Cu", -3.0),
            entry("b", "Au", -4.0),
            entry("ab", "CuAu", -7.0 - 0.4),        // -0.2 eV/atom formation
            entry("a3b", "Cu3Au", -13.0 - 0.4),     // -0.1 eV/atom: on the line a-ab
            entry("ab-dup", "Cu2Au2", -14.0 - 0.4), // -0.1: 0.1 above
            entry("ab3", "CuAu3", -15.0 - 0.6),     // -0.15: on the hull vertex? line ab-b: -0.1 -> below
        ])
        .unwrap();
        let r = pd.results().unwrap();
        let by = |n: &str| r.iter().find(|x| x.name == n).unwrap();
        assert!(by("ab").stable && by("a").stable && by("b").stable && by("ab3").stable);
        assert!(!by("a3b").stable, "on the hull but not a vertex");
        assert!(by("a3b").e_above_hull_ev_per_atom.abs() < 1e-9);
        assert!((by("ab-dup").e_above_hull_ev_per_atom - 0.1).abs() < 1e-9);
        let d = &by("a3b").decomposition;
        assert_eq!(d.len(), 2);
        assert!(d.iter().any(|p| p.name == "a" && (p.fraction - 0.5).abs() < 1e-9), "{d:?}");
        assert!(d.iter().any(|p| p.name == "ab" && (p.fraction - 0.5).abs() < 1e-9), "{d:?}");
        assert_eq!(
            by("ab-dup").decomposition,
            vec![Product { name: "ab".into(), formula: "CuAu".into(), fraction: 1.0 }]
        );
    }

    #[test]
    fn missing_reference_and_empty() {
        assert_eq!(
            PhaseDiagram::new(vec![entry("x", "CuAu", -1.0), entry("a", "Cu", 0.0)]).unwrap_err(),
            HullError::MissingReference(Element::from_symbol("Au").unwrap())
        );
        assert_eq!(PhaseDiagram::new(vec![]).unwrap_err(), HullError::Empty);
    }

    #[test]
    fn csv_errors_name_the_row() {
        let ok = "name,formula,energy_ev\na,Cu,-3\nb,Au,-4\n";
        assert_eq!(parse_entries_csv(ok, "e.csv").unwrap().len(), 2);
        let e = parse_entries_csv("name,formula,energy_ev\na,Cu,-3\nb,Qq,-4\n", "e.csv").unwrap_err().to_string();
        assert!(e.starts_with("e.csv: row 3: ") && e.contains("unknown element \"Qq\""), "{e}");
        let e = parse_entries_csv("name,formula,energy_ev\na,Cu,abc\n", "e.csv").unwrap_err().to_string();
        assert!(e.starts_with("e.csv: row 2: ") && e.contains("not a number"), "{e}");
        let e = parse_entries_csv("name,formula\na,Cu\n", "e.csv").unwrap_err().to_string();
        assert!(e.contains("no column `energy_ev`"), "{e}");
        let e = parse_entries_csv("name,formula,energy_ev\na,Cu\n", "e.csv").unwrap_err().to_string();
        assert!(e.starts_with("e.csv: row 2"), "{e}");
    }

    /// Invariance: adding a constant per-atom energy to one element's entries (a shift
    /// of its chemical potential) changes no formation energy.
    #[test]
    fn reference_shift_invariance() {
        let make = |shift: f64| {
            let es = vec![
                entry("a", "Cu", -3.0 + shift),
                entry("b", "Au", -4.0),
                entry("c", "Ni", -5.0),
                entry("ab", "CuAu", -7.3 + shift),
                entry("abc", "CuAuNi", -12.5 + shift),
                entry("a2c", "Cu2Ni", -11.2 + 2.0 * shift),
            ];
            PhaseDiagram::new(es).unwrap().results().unwrap()
        };
        let (r0, r1) = (make(0.0), make(1.7));
        for (a, b) in r0.iter().zip(&r1) {
            assert!((a.formation_energy_ev_per_atom - b.formation_energy_ev_per_atom).abs() < 1e-12);
            assert!((a.e_above_hull_ev_per_atom - b.e_above_hull_ev_per_atom).abs() < 1e-12);
            assert_eq!(a.stable, b.stable);
        }
    }
}
