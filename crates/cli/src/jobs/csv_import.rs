//! `autopipe jobs import FILE.csv`: one calculation per row of a CSV file, each row a
//! molecule: an id, an XYZ geometry block, optionally its charge and its number of
//! unpaired electrons (multiplicity = unpaired + 1).
//!
//! Every row is read and checked before anything else happens; the first bad row is
//! reported with the file, the line it starts on (1-based, as an editor numbers lines;
//! the header is line 1) and the column.

use anyhow::{bail, Result};
use autopipe_atoms::{Element, Structure};
use autopipe_engines::EngineSpec;
use autopipe_store::NewCalculation;
use std::collections::HashMap;
use std::path::Path;

/// Which columns hold what.
pub struct Columns<'a> {
    pub geometry: &'a str,
    pub id: &'a str,
    pub charge: Option<&'a str>,
    pub unpaired: Option<&'a str>,
}

/// The geometry of an XYZ block: lines `El x y z` (Å), optionally preceded by the atom
/// count and a comment line (the whole XYZ file format). Blank lines before and after
/// are ignored. The molecule is not periodic. Errors name the line of the block.
pub fn parse_xyz_block(text: &str) -> Result<Structure, String> {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.iter().position(|l| !l.trim().is_empty()).ok_or("the geometry is empty")?;
    let last = lines.iter().rposition(|l| !l.trim().is_empty()).unwrap_or(first);
    let mut body = first..last + 1;
    let mut expected = None;
    if let Ok(n) = lines[first].trim().parse::<usize>() {
        // count line, then a comment line (which may be empty or absent when n = 0)
        expected = Some(n);
        body = (first + 2).min(last + 1)..last + 1;
    }
    let mut species = Vec::new();
    let mut positions = Vec::new();
    for i in body {
        let line = lines[i].trim();
        let at = |m: String| format!("geometry line {}: {m}", i + 1);
        if line.is_empty() {
            return Err(at("empty line between atoms".into()));
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 4 {
            return Err(at(format!("{line:?} is not `Element x y z` ({} fields)", fields.len())));
        }
        let symbol = normalise_symbol(fields[0]);
        let element = Element::from_symbol(&symbol).ok_or_else(|| at(format!("{:?} is not an element", fields[0])))?;
        let mut p = [0.0; 3];
        for (k, f) in fields[1..].iter().enumerate() {
            p[k] = f
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| at(format!("{} coordinate {f:?} is not a finite number", ["x", "y", "z"][k])))?;
        }
        species.push(element);
        positions.push(p);
    }
    if let Some(n) = expected {
        if n != species.len() {
            return Err(format!("the count line says {n} atoms, the block has {}", species.len()));
        }
    }
    if species.is_empty() {
        return Err("the geometry has no atoms".into());
    }
    Structure::new([[0.0; 3]; 3], positions, species, [false; 3]).map_err(|e| e.to_string())
}

/// `CL` or `cl` -> `Cl` (XYZ files written by some programs use upper case).
fn normalise_symbol(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// The calculations of every row of `file`, all checked (geometry, charge and
/// multiplicity against the engine, ids unique), or the first problem found.
pub fn calculations(file: &Path, columns: &Columns, engine: &EngineSpec) -> Result<Vec<NewCalculation>> {
    let name = file.display();
    let text = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => bail!("{name}: cannot read: {e}"),
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(&text[..]);
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => bail!("{name}: line 1 (the header): {}", csv_error(&e)),
    };
    let names: Vec<String> = headers.iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_string()).collect();
    let index = |column: &str, option: &str| -> Result<usize> {
        match names.iter().position(|h| h == column) {
            Some(i) => Ok(i),
            None => bail!(
                "{name}: line 1 (the header): no column {column:?} (given by {option}); the columns are: {}",
                names.join(", ")
            ),
        }
    };
    let geometry_col = index(columns.geometry, "--geometry-column")?;
    let id_col = index(columns.id, "--id-column")?;
    let charge_col = columns.charge.map(|c| index(c, "--charge-column")).transpose()?;
    let unpaired_col = columns.unpaired.map(|c| index(c, "--unpaired-column")).transpose()?;

    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                bail!("{name}: line {line}: {}; nothing was imported", csv_error(&e));
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let bad = |column: &str, m: String| {
            anyhow::anyhow!("{name}: line {line}, column {column:?}: {m}; nothing was imported")
        };
        let field = |i: usize| record.get(i).unwrap_or("");
        let id = field(id_col).trim().to_string();
        if id.is_empty() {
            return Err(bad(columns.id, "the id is empty".into()));
        }
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(bad(columns.id, format!("id {id:?} repeats the one on line {first}")));
        }
        let structure = parse_xyz_block(field(geometry_col)).map_err(|m| bad(columns.geometry, m))?;
        let charge: Option<i32> = match (charge_col, columns.charge) {
            (Some(i), Some(c)) => Some(
                field(i)
                    .trim()
                    .parse()
                    .map_err(|_| bad(c, format!("charge {:?} is not a whole number", field(i).trim())))?,
            ),
            _ => None,
        };
        let unpaired: Option<u32> = match (unpaired_col, columns.unpaired) {
            (Some(i), Some(c)) => Some(field(i).trim().parse().map_err(|_| {
                bad(c, format!("{:?} is not a number of unpaired electrons (0, 1, 2 ...)", field(i).trim()))
            })?),
            _ => None,
        };
        engine.check_structure(&structure).map_err(|m| bad(columns.geometry, m))?;
        let spec = match engine {
            EngineSpec::Orca(settings) => {
                let mut s = settings.clone();
                if let Some(c) = charge {
                    s.charge = c;
                }
                if let Some(u) = unpaired {
                    s.multiplicity = u
                        .checked_add(1)
                        .ok_or_else(|| bad(columns.unpaired.unwrap_or(""), "too many unpaired electrons".into()))?;
                }
                // The ORCA input writer's own checks (electron count and multiplicity).
                if let Err(e) = autopipe_engines::orca::write_orca_input(&structure, &s) {
                    let cols: Vec<String> =
                        columns.charge.iter().chain(columns.unpaired.iter()).map(|c| format!("{c:?}")).collect();
                    let hint = if columns.unpaired.is_none() {
                        " (give unpaired electrons with --unpaired-column)"
                    } else {
                        ""
                    };
                    let columns = match cols.len() {
                        0 => format!("column {:?}", columns.geometry),
                        1 => format!("column {}", cols[0]),
                        _ => format!("columns {}", cols.join(" and ")),
                    };
                    bail!("{name}: line {line}, {columns}: {e}{hint}; nothing was imported");
                }
                EngineSpec::Orca(s)
            }
            other => {
                for (value, column) in
                    [(charge.unwrap_or(0) as i64, columns.charge), (unpaired.unwrap_or(0) as i64, columns.unpaired)]
                {
                    if value != 0 {
                        return Err(bad(
                            column.unwrap_or(""),
                            format!(
                                "engine {} takes no molecular charge or spin from here (only orca does); this value must be 0",
                                other.name()
                            ),
                        ));
                    }
                }
                other.clone()
            }
        };
        out.push(NewCalculation {
            structure,
            origin: format!("import:{name}#{id}"),
            generation: 0,
            engine: spec.name().to_string(),
            label_params: spec.label_params(),
            run_spec: serde_json::to_value(&spec).expect("engine settings serialise"),
        });
    }
    if out.is_empty() {
        bail!("{name} has a header but no rows");
    }
    Ok(out)
}

/// A CSV error without the crate's own position prefix (the caller names the line).
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("{len} fields, but the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8 text (field {})", err.field() + 1),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xyz_blocks_with_and_without_count_and_comment() {
        let bare = parse_xyz_block("O 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n").unwrap();
        let full = parse_xyz_block("\n3\nwater, from a file\nO 0 0 0\nH 0.96 0 0\nh -0.24 0.93 0\n\n").unwrap();
        assert_eq!(bare, full);
        assert_eq!(bare.pbc, [false; 3]);
        assert_eq!(bare.positions_a[2], [-0.24, 0.93, 0.0]);
        let e = parse_xyz_block("O 0 0 0\nH 0.96 zero 0").unwrap_err();
        assert!(e.contains("geometry line 2") && e.contains("y coordinate \"zero\""), "{e}");
        assert!(parse_xyz_block("2\n\nO 0 0 0\n").unwrap_err().contains("says 2 atoms"));
        assert!(parse_xyz_block("Xx 0 0 0").unwrap_err().contains("not an element"));
        assert!(parse_xyz_block("O 0 0").unwrap_err().contains("3 fields"));
        assert!(parse_xyz_block("O 0 0 nan").unwrap_err().contains("finite"));
        assert!(parse_xyz_block("  \n").unwrap_err().contains("empty"));
    }
}
