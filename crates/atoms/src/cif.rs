//! CIF (Crystallographic Information File, 1.1, and the dotted tag names of CIF 2 /
//! mmCIF): the cell, the symmetry operations (`_symmetry_equiv_pos_as_xyz` or
//! `_space_group_symop_operation_xyz`) and the asymmetric unit (`_atom_site_fract_*`),
//! expanded by the operations into the full cell as ASE's `ase.io.read` does.
//!
//! Refused with an error naming the file, the line and the field: partial occupancies
//! (`_atom_site_occupancy` below 1; a disordered crystal is not a structure to compute),
//! a space group named without its operations (this reader carries no space-group
//! tables), unknown elements, unparsable numbers and operations, and two sites that the
//! operations put on the same place.
//!
//! The cell is ASE's `cellpar_to_cell`: a along x, b in the xy plane.

use crate::elements::Element;
use crate::poscar::{file_error, StructureFileError};
use crate::structure::{vec_mat, Mat3, Structure, Vec3};
use std::collections::HashMap;
use std::path::Path;

/// Read every data block with atom sites of a CIF file: `(block name, structure)`.
pub fn read_cif_file(path: &Path) -> Result<Vec<(String, Structure)>, StructureFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| file_error(&name, 0, "file", e.to_string()))?;
    read_cif(&text, &name)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Data(String),
    Loop,
    Tag(String),
    Value(String),
}

/// The tokens of a CIF with their 1-based line numbers.
fn tokenize(text: &str, source: &str) -> Result<Vec<(Token, usize)>, StructureFileError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut li = 0;
    while li < lines.len() {
        let line = lines[li].trim_end_matches('\r');
        let no = li + 1;
        li += 1;
        if let Some(rest) = line.strip_prefix(';') {
            // A text field, to the next line that starts with ';'.
            let mut value = rest.to_string();
            loop {
                if li >= lines.len() {
                    return Err(file_error(source, no, "text field", "the ';' text field is never closed"));
                }
                let l = lines[li].trim_end_matches('\r');
                li += 1;
                if l.starts_with(';') {
                    break;
                }
                value.push('\n');
                value.push_str(l);
            }
            out.push((Token::Value(value), no));
            continue;
        }
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            if b[i] == b'#' {
                break;
            }
            if b[i] == b'\'' || b[i] == b'"' {
                let q = b[i];
                let start = i + 1;
                let mut j = start;
                // A quote closes only when followed by whitespace or the end of the line.
                while j < b.len() && !(b[j] == q && (j + 1 == b.len() || b[j + 1].is_ascii_whitespace())) {
                    j += 1;
                }
                if j >= b.len() {
                    return Err(file_error(source, no, "value", "a quoted value is never closed on its line"));
                }
                out.push((Token::Value(line[start..j].to_string()), no));
                i = j + 1;
                continue;
            }
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            let word = &line[start..i];
            let lower = word.to_ascii_lowercase();
            let token = if lower.starts_with("data_") {
                Token::Data(word[5..].to_string())
            } else if lower == "loop_" {
                Token::Loop
            } else if word.starts_with('_') {
                Token::Tag(lower.replace('.', "_"))
            } else if lower.starts_with("save_") || lower.starts_with("global_") || lower == "stop_" {
                return Err(file_error(source, no, "block", format!("{word}: save frames are not supported")));
            } else {
                Token::Value(word.to_string())
            };
            out.push((token, no));
        }
    }
    Ok(out)
}

/// A loop: its tags and its rows of (value, line).
type Loop = (Vec<String>, Vec<Vec<(String, usize)>>);

/// One data block: single items and loops, each value with its line.
#[derive(Debug, Default)]
struct Block {
    name: String,
    line: usize,
    items: HashMap<String, (String, usize)>,
    loops: Vec<Loop>,
}

impl Block {
    /// The column `tag` of the loop that has it, with the loop's rows.
    fn loop_with(&self, tag: &str) -> Option<&Loop> {
        self.loops.iter().find(|(tags, _)| tags.iter().any(|t| t == tag))
    }
}

fn blocks(tokens: Vec<(Token, usize)>, source: &str) -> Result<Vec<Block>, StructureFileError> {
    let mut out: Vec<Block> = Vec::new();
    let mut it = tokens.into_iter().peekable();
    while let Some((tok, line)) = it.next() {
        match tok {
            Token::Data(name) => out.push(Block { name, line, ..Default::default() }),
            Token::Tag(tag) => {
                let block =
                    out.last_mut().ok_or_else(|| file_error(source, line, &tag, "a tag before any data_ block"))?;
                match it.next() {
                    Some((Token::Value(v), l)) => {
                        block.items.insert(tag, (v, l));
                    }
                    _ => return Err(file_error(source, line, &tag, "the tag has no value")),
                }
            }
            Token::Loop => {
                let block =
                    out.last_mut().ok_or_else(|| file_error(source, line, "loop_", "a loop before any data_ block"))?;
                let mut tags = Vec::new();
                while let Some((Token::Tag(_), _)) = it.peek() {
                    if let Some((Token::Tag(t), _)) = it.next() {
                        tags.push(t);
                    }
                }
                if tags.is_empty() {
                    return Err(file_error(source, line, "loop_", "a loop without tags"));
                }
                let mut values = Vec::new();
                while let Some((Token::Value(_), _)) = it.peek() {
                    if let Some((Token::Value(v), l)) = it.next() {
                        values.push((v, l));
                    }
                }
                if values.len() % tags.len() != 0 {
                    return Err(file_error(
                        source,
                        values.last().map_or(line, |v| v.1),
                        &tags[0],
                        format!(
                            "{} values for a loop of {} tags (not a whole number of rows)",
                            values.len(),
                            tags.len()
                        ),
                    ));
                }
                let rows = values.chunks(tags.len()).map(|c| c.to_vec()).collect();
                block.loops.push((tags, rows));
            }
            Token::Value(v) => {
                return Err(file_error(source, line, "value", format!("{v:?} belongs to no tag")));
            }
        }
    }
    Ok(out)
}

/// A CIF number: `4.1869(5)` -> 4.1869 (the standard uncertainty dropped).
fn number(v: &str, line: usize, field: &str, source: &str) -> Result<f64, StructureFileError> {
    let s = v.split('(').next().unwrap_or("");
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ if v == "." || v == "?" => {
            Err(file_error(source, line, field, format!("{v:?} (unknown or inapplicable) where a number is needed")))
        }
        _ => Err(file_error(source, line, field, format!("{v:?} is not a number"))),
    }
}

/// A symmetry operation `x' = R x + t` in fractional coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
struct SymOp {
    rot: [[f64; 3]; 3],
    trans: [f64; 3],
}

/// Parse `-x+1/2, y, z+0.25` and the like.
fn parse_symop(s: &str) -> Option<SymOp> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 3 {
        return None;
    }
    let mut op = SymOp { rot: [[0.0; 3]; 3], trans: [0.0; 3] };
    for (row, part) in parts.iter().enumerate() {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        if p.is_empty() {
            return None;
        }
        // Split into signed terms.
        let mut terms = Vec::new();
        let mut cur = String::new();
        for c in p.chars() {
            if (c == '+' || c == '-') && !cur.is_empty() && !cur.ends_with(['+', '-', '*']) {
                terms.push(std::mem::take(&mut cur));
            }
            cur.push(c);
        }
        terms.push(cur);
        for t in terms {
            let (sign, body) = match t.strip_prefix('-') {
                Some(b) => (-1.0, b),
                None => (1.0, t.strip_prefix('+').unwrap_or(&t)),
            };
            let var = body.chars().last()?;
            if let Some(axis) = "xyz".find(var) {
                let coef = body[..body.len() - 1].trim_end_matches('*');
                let c = if coef.is_empty() { 1.0 } else { fraction(coef)? };
                op.rot[row][axis] += sign * c;
            } else {
                op.trans[row] += sign * fraction(body)?;
            }
        }
    }
    Some(op)
}

fn fraction(s: &str) -> Option<f64> {
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (a.parse::<f64>().ok()?, b.parse::<f64>().ok()?);
            (b != 0.0).then(|| a / b)
        }
        None => s.parse::<f64>().ok().filter(|x| x.is_finite()),
    }
}

/// ASE's `cellpar_to_cell`: a along x, b in the xy plane; angles of exactly 90° give
/// exact zeros.
pub fn cellpar_to_cell(a: f64, b: f64, c: f64, alpha: f64, beta: f64, gamma: f64) -> Option<Mat3> {
    let eps = 2.0 * f64::EPSILON * 90.0;
    let cosd = |x: f64| if (x.abs() - 90.0).abs() < eps { 0.0 } else { (x * std::f64::consts::PI / 180.0).cos() };
    let (ca, cb, cg) = (cosd(alpha), cosd(beta), cosd(gamma));
    let sg = if (gamma - 90.0).abs() < eps {
        1.0
    } else if (gamma + 90.0).abs() < eps {
        -1.0
    } else {
        (gamma * std::f64::consts::PI / 180.0).sin()
    };
    let cy = (ca - cb * cg) / sg;
    let cz2 = 1.0 - cb * cb - cy * cy;
    if cz2.is_nan() || cz2 <= 0.0 {
        return None;
    }
    Some([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [c * cb, c * cy, c * cz2.sqrt()]])
}

/// The element of an atom-site type symbol or label: `Ca2+` -> Ca, `O1` -> O, `FE` -> Fe.
fn site_element(s: &str) -> Option<Element> {
    let mut chars = s.chars().filter(|c| c.is_ascii_alphabetic());
    let first = chars.next()?.to_ascii_uppercase();
    let two: String = [first].into_iter().chain(s.chars().skip(1).take(1).filter(|c| c.is_ascii_lowercase())).collect();
    Element::from_symbol(&two).or_else(|| Element::from_symbol(&first.to_string()))
}

/// Read CIF text; `source` names it in errors. Every data block with atom sites gives a
/// structure.
pub fn read_cif(text: &str, source: &str) -> Result<Vec<(String, Structure)>, StructureFileError> {
    let blocks = blocks(tokenize(text, source)?, source)?;
    let mut out = Vec::new();
    for block in &blocks {
        let Some((tags, rows)) = block.loop_with("_atom_site_fract_x") else {
            if block.loop_with("_atom_site_cartn_x").is_some() {
                return Err(file_error(
                    source,
                    block.line,
                    "_atom_site_Cartn_x",
                    "Cartesian atom sites are not supported (give _atom_site_fract_x/y/z)",
                ));
            }
            continue;
        };
        out.push((block.name.clone(), block_structure(block, tags, rows, source)?));
    }
    if out.is_empty() {
        return Err(file_error(source, 0, "_atom_site_fract_x", "no data block has atom sites"));
    }
    Ok(out)
}

fn block_structure(
    block: &Block,
    tags: &[String],
    rows: &[Vec<(String, usize)>],
    source: &str,
) -> Result<Structure, StructureFileError> {
    let item = |tag: &str| -> Result<f64, StructureFileError> {
        let (v, l) = block
            .items
            .get(tag)
            .ok_or_else(|| file_error(source, block.line, tag, format!("data_{} has no {tag}", block.name)))?;
        number(v, *l, tag, source)
    };
    let (a, b, c) = (item("_cell_length_a")?, item("_cell_length_b")?, item("_cell_length_c")?);
    let (al, be, ga) = (item("_cell_angle_alpha")?, item("_cell_angle_beta")?, item("_cell_angle_gamma")?);
    let cell_line = block.items.get("_cell_length_a").map_or(block.line, |x| x.1);
    if [a, b, c].iter().any(|&x| x <= 0.0) {
        return Err(file_error(source, cell_line, "_cell_length_a", "cell lengths must be positive"));
    }
    let cell = cellpar_to_cell(a, b, c, al, be, ga).ok_or_else(|| {
        file_error(source, cell_line, "_cell_angle_alpha", format!("the angles {al}, {be}, {ga} make no cell"))
    })?;
    // Symmetry operations.
    let op_tags = ["_symmetry_equiv_pos_as_xyz", "_space_group_symop_operation_xyz"];
    let mut ops: Vec<(String, usize)> = Vec::new();
    for tag in op_tags {
        if let Some((ltags, lrows)) = block.loop_with(tag) {
            let k = ltags.iter().position(|t| t == tag).unwrap();
            ops.extend(lrows.iter().map(|r| r[k].clone()));
        } else if let Some(v) = block.items.get(tag) {
            ops.push(v.clone());
        }
        if !ops.is_empty() {
            break;
        }
    }
    if ops.is_empty() {
        let names = ["_symmetry_space_group_name_h-m", "_space_group_name_h-m_alt"];
        let named = names.iter().find_map(|t| block.items.get(*t).map(|v| (t, v)));
        let number = ["_symmetry_int_tables_number", "_space_group_it_number"].iter().find_map(|t| block.items.get(*t));
        let is_p1 = named.is_none_or(|(_, (v, _))| v.replace(' ', "").eq_ignore_ascii_case("p1"))
            && number.is_none_or(|(v, _)| v.trim() == "1");
        if !is_p1 {
            let (tag, (v, l)) = match (named, number) {
                (Some((t, v)), _) => (*t, v.clone()),
                (None, Some(v)) => ("_space_group_it_number", v.clone()),
                (None, None) => unreachable!("is_p1 holds when nothing is named"),
            };
            return Err(file_error(
                source,
                l,
                tag,
                format!(
                    "space group {v:?} is named but its symmetry operations are not listed \
                     (_symmetry_equiv_pos_as_xyz or _space_group_symop_operation_xyz); this reader carries no \
                     space-group tables"
                ),
            ));
        }
        ops.push(("x,y,z".into(), block.line));
    }
    let ops: Vec<SymOp> = ops
        .iter()
        .map(|(s, l)| {
            parse_symop(s).ok_or_else(|| {
                file_error(source, *l, "_symmetry_equiv_pos_as_xyz", format!("{s:?} is not a symmetry operation"))
            })
        })
        .collect::<Result<_, _>>()?;
    // Asymmetric unit.
    let col = |t: &str| tags.iter().position(|x| x == t);
    let (fx, fy, fz) = (col("_atom_site_fract_x").unwrap(), col("_atom_site_fract_y"), col("_atom_site_fract_z"));
    let (Some(fy), Some(fz)) = (fy, fz) else {
        return Err(file_error(source, rows.first().map_or(block.line, |r| r[0].1), "_atom_site_fract_y", "missing"));
    };
    let type_col = col("_atom_site_type_symbol");
    let label_col = col("_atom_site_label");
    let occ_col = col("_atom_site_occupancy");
    let mut frac: Vec<Vec3> = Vec::new();
    let mut species: Vec<Element> = Vec::new();
    let mut site_of: Vec<usize> = Vec::new();
    let mut labels: Vec<String> = Vec::new();
    for (si, row) in rows.iter().enumerate() {
        let line = row[fx].1;
        let label = label_col.map(|k| row[k].0.clone()).unwrap_or_else(|| format!("site {}", si + 1));
        let (sym, field) = match type_col {
            Some(k) if row[k].0 != "?" && row[k].0 != "." => (row[k].0.as_str(), "_atom_site_type_symbol"),
            _ => (label.as_str(), "_atom_site_label"),
        };
        let element = site_element(sym)
            .ok_or_else(|| file_error(source, line, field, format!("{sym:?} names no chemical element")))?;
        if let Some(k) = occ_col {
            let (v, l) = &row[k];
            if v != "?" && v != "." {
                let occ = number(v, *l, "_atom_site_occupancy", source)?;
                if (occ - 1.0).abs() > 1e-3 {
                    return Err(file_error(
                        source,
                        *l,
                        "_atom_site_occupancy",
                        format!(
                            "site {label} ({element}) has occupancy {v}: partial occupancies describe a disordered \
                             crystal, which is not read; make an ordered model first (e.g. `autopipe build sqs`)"
                        ),
                    ));
                }
            }
        }
        let p = [
            number(&row[fx].0, row[fx].1, "_atom_site_fract_x", source)?,
            number(&row[fy].0, row[fy].1, "_atom_site_fract_y", source)?,
            number(&row[fz].0, row[fz].1, "_atom_site_fract_z", source)?,
        ];
        // Images of the site under every operation, wrapped into [0, 1), each place once.
        for op in &ops {
            let mut q = [0.0; 3];
            for (k, qk) in q.iter_mut().enumerate() {
                let x = op.rot[k][0] * p[0] + op.rot[k][1] * p[1] + op.rot[k][2] * p[2] + op.trans[k];
                let w = x - x.floor();
                *qk = if w > 1.0 - 1e-10 { 0.0 } else { w };
            }
            let same = |f: &Vec3| (0..3).all(|k| ((f[k] - q[k]) - (f[k] - q[k]).round()).abs() < 1e-3);
            match frac.iter().position(same) {
                Some(j) if site_of[j] == si => {}
                Some(j) => {
                    return Err(file_error(
                        source,
                        line,
                        "_atom_site_fract_x",
                        format!(
                            "site {label} lands on site {} at {q:?} under the symmetry operations",
                            labels[site_of[j]]
                        ),
                    ))
                }
                None => {
                    frac.push(q);
                    species.push(element);
                    site_of.push(si);
                }
            }
        }
        labels.push(label);
    }
    let positions = frac.iter().map(|f| vec_mat(f, &cell)).collect();
    Ok(Structure { cell_a: cell, positions_a: positions, species, pbc: [true; 3] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symops_parse() {
        let op = parse_symop("-x+1/2, 1/2+y , z-0.25").unwrap();
        assert_eq!(op.rot, [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(op.trans, [0.5, 0.5, -0.25]);
        let op = parse_symop("x-y,x,-z+2/3").unwrap();
        assert_eq!(op.rot[0], [1.0, -1.0, 0.0]);
        assert!(parse_symop("x,y").is_none() && parse_symop("x,y,q").is_none());
    }

    #[test]
    fn elements_of_site_symbols() {
        for (s, e) in [("Ca2+", "Ca"), ("O1", "O"), ("O2-", "O"), ("Fe", "Fe"), ("Co8", "Co"), ("C1", "C")] {
            assert_eq!(site_element(s), Element::from_symbol(e), "{s}");
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        let cif = "data_x\n_cell_length_a 4\n_cell_length_b 4\n_cell_length_c 4\n_cell_angle_alpha 90\n\
                   _cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'F m -3 m'\n\
                   loop_\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\nCu1 0 0 0\n";
        let e = read_cif(cif, "x.cif").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (8, "_symmetry_space_group_name_h-m"), "{e}");
        let p1 = cif.replace("'F m -3 m'", "'P 1'");
        let s = read_cif(&p1, "x.cif").unwrap();
        assert_eq!(s[0].1.len(), 1);
        let bad = p1.replace("Cu1 0 0 0", "Cu1 0 0.5(2 x");
        let e = read_cif(&bad, "x.cif").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (14, "_atom_site_fract_z"), "{e}");
    }
}
