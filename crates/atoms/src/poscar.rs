//! VASP POSCAR/CONTCAR: reading any of VASP 4 (species from the comment line), VASP 5
//! (species line, with POTCAR suffixes such as `Fe_pv` or VASP 6's `Fe/hash`), a
//! negative scale factor (the cell volume), three scale factors, `Selective dynamics`,
//! direct or Cartesian coordinates. Velocities and predictor blocks after the positions
//! (CONTCAR) are ignored. Errors name the file, the line and the field.

use crate::elements::Element;
use crate::structure::{det3, vec_mat, Mat3, Structure, Vec3};
use std::path::Path;

/// A structure file that cannot be read: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StructureFileError {
    /// The file (or the name given for a text).
    pub source_name: String,
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What was being read, e.g. `scale factor` or `_atom_site_occupancy`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for StructureFileError {
    /// `FILE:LINE: FIELD: message` (`FILE: FIELD: message` for the file as a whole).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}: {}", self.source_name, self.field, self.message)
        } else {
            write!(f, "{}:{}: {}: {}", self.source_name, self.line, self.field, self.message)
        }
    }
}

impl std::error::Error for StructureFileError {}

pub(crate) fn file_error(source: &str, line: usize, field: &str, message: impl Into<String>) -> StructureFileError {
    StructureFileError { source_name: source.to_string(), line, field: field.to_string(), message: message.into() }
}

/// Read a POSCAR/CONTCAR file.
pub fn read_poscar_file(path: &Path) -> Result<Structure, StructureFileError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| file_error(&name, 0, "file", e.to_string()))?;
    read_poscar(&text, &name)
}

/// The element of a POSCAR species token: `Fe`, `Fe_pv`, `Fe/abc123`, `Fe1+`.
fn species_token(tok: &str) -> Option<Element> {
    let base = tok.split(['_', '/']).next().unwrap_or("");
    let letters: String = base.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    Element::from_symbol(&letters)
}

/// Read POSCAR text; `source` names it in errors.
pub fn read_poscar(text: &str, source: &str) -> Result<Structure, StructureFileError> {
    let lines: Vec<&str> = text.lines().collect();
    let get = |i: usize, field: &str| -> Result<&str, StructureFileError> {
        lines.get(i).copied().ok_or_else(|| file_error(source, i + 1, field, "the file ends here"))
    };
    let floats = |i: usize, field: &str, n: usize| -> Result<Vec<f64>, StructureFileError> {
        let line = get(i, field)?;
        let toks: Vec<&str> = line.split_whitespace().take(n).collect();
        if toks.len() < n {
            return Err(file_error(source, i + 1, field, format!("expected {n} numbers, found {:?}", line.trim())));
        }
        toks.iter()
            .map(|t| match t.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(x),
                _ => Err(file_error(source, i + 1, field, format!("{t:?} is not a number"))),
            })
            .collect()
    };
    let comment = get(0, "comment")?;
    // Scale: one number (negative: the volume), or three.
    let scale_line = get(1, "scale factor")?;
    let n_scale = scale_line.split_whitespace().take_while(|t| t.parse::<f64>().is_ok()).count();
    let scale = floats(1, "scale factor", if n_scale >= 3 { 3 } else { 1 })?;
    let mut cell: Mat3 = [[0.0; 3]; 3];
    for (k, row) in cell.iter_mut().enumerate() {
        let v = floats(2 + k, "lattice vector", 3)?;
        *row = [v[0], v[1], v[2]];
    }
    let scale3: [f64; 3] = if scale.len() == 3 {
        if scale.iter().any(|&s| s <= 0.0) {
            return Err(file_error(source, 2, "scale factor", "three scale factors must all be positive"));
        }
        [scale[0], scale[1], scale[2]]
    } else if scale[0] > 0.0 {
        [scale[0]; 3]
    } else if scale[0] < 0.0 {
        let v = det3(&cell).abs();
        if v < 1e-12 {
            return Err(file_error(source, 3, "lattice vector", "the lattice vectors are linearly dependent"));
        }
        [(-scale[0] / v).cbrt(); 3]
    } else {
        return Err(file_error(source, 2, "scale factor", "0 is not a scale factor"));
    };
    for row in &mut cell {
        for k in 0..3 {
            row[k] *= scale3[k];
        }
    }
    if det3(&cell).abs() < 1e-12 {
        return Err(file_error(source, 3, "lattice vector", "the lattice vectors are linearly dependent"));
    }
    // Species line (VASP 5) or counts directly (VASP 4).
    let mut i = 5;
    let line = get(i, "species or counts")?;
    let first = line.split_whitespace().next().unwrap_or("");
    let names: Option<Vec<(String, Element)>> = if first.parse::<usize>().is_ok() {
        None
    } else {
        let mut v = Vec::new();
        for t in line.split_whitespace() {
            if t.starts_with('!') || t.starts_with('#') {
                break;
            }
            let e = species_token(t)
                .ok_or_else(|| file_error(source, i + 1, "species", format!("{t:?} is not a chemical symbol")))?;
            v.push((t.to_string(), e));
        }
        i += 1;
        Some(v)
    };
    let count_line = get(i, "counts")?;
    let mut counts = Vec::new();
    for t in count_line.split_whitespace() {
        match t.parse::<usize>() {
            Ok(n) => counts.push(n),
            Err(_) if !counts.is_empty() => break,
            Err(_) => return Err(file_error(source, i + 1, "counts", format!("{t:?} is not a number of atoms"))),
        }
    }
    let count_line_no = i + 1;
    i += 1;
    let species: Vec<Element> = match names {
        Some(v) => {
            if v.len() != counts.len() {
                return Err(file_error(
                    source,
                    count_line_no,
                    "counts",
                    format!("{} counts for {} species on the line before", counts.len(), v.len()),
                ));
            }
            v.into_iter().map(|(_, e)| e).collect()
        }
        None => {
            // VASP 4: the species may be the first words of the comment line (as ASE reads them).
            let from_comment: Vec<Element> =
                comment.split_whitespace().take(counts.len()).filter_map(species_token).collect();
            if from_comment.len() != counts.len() {
                return Err(file_error(
                    source,
                    count_line_no - 1,
                    "species",
                    "VASP 4 format without chemical symbols: add the species line of VASP 5 (e.g. `Fe O`) \
                     above the counts",
                ));
            }
            from_comment
        }
    };
    let n: usize = counts.iter().sum();
    if n == 0 {
        return Err(file_error(source, count_line_no, "counts", "no atoms"));
    }
    let mut mode = get(i, "coordinate mode")?.trim_start();
    if mode.starts_with(['s', 'S']) {
        i += 1;
        mode = get(i, "coordinate mode")?.trim_start();
    }
    let cartesian = mode.starts_with(['c', 'C', 'k', 'K']);
    if !cartesian && !mode.starts_with(['d', 'D']) {
        return Err(file_error(
            source,
            i + 1,
            "coordinate mode",
            format!("{:?}: expected Direct or Cartesian", mode.trim()),
        ));
    }
    i += 1;
    let mut positions: Vec<Vec3> = Vec::with_capacity(n);
    for k in 0..n {
        let v = floats(i + k, "position", 3).map_err(|mut e| {
            if e.message == "the file ends here" {
                e.message = format!("the counts promise {n} atoms, the file ends after {k}");
            }
            e
        })?;
        let p = [v[0], v[1], v[2]];
        positions.push(if cartesian {
            [p[0] * scale3[0], p[1] * scale3[1], p[2] * scale3[2]]
        } else {
            vec_mat(&p, &cell)
        });
    }
    let species = species.iter().zip(&counts).flat_map(|(e, &c)| std::iter::repeat(*e).take(c)).collect();
    Ok(Structure { cell_a: cell, positions_a: positions, species, pbc: [true; 3] })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SI: &str = "Si\n-40.0\n0 2.7 2.7\n2.7 0 2.7\n2.7 2.7 0\nSi_GW/abc\n2\nSelective dynamics\nCartesian\n0 0 0 T T T\n1.35 1.35 1.35 F F F\n\n0 0 0\n0 0 0\n";

    #[test]
    fn negative_scale_is_volume_and_suffixes_are_stripped() {
        let s = read_poscar(SI, "SI").unwrap();
        assert!((s.volume_a3() - 40.0).abs() < 1e-9);
        assert_eq!(s.formula(), "Si2");
        let f = (40.0f64 / (2.0 * 2.7f64.powi(3))).cbrt();
        assert!((s.positions_a[1][0] - 1.35 * f).abs() < 1e-12);
    }

    #[test]
    fn errors_name_line_and_field() {
        let bad = SI.replace("2.7 2.7 0", "2.7 x 0");
        let e = read_poscar(&bad, "POSCAR").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (5, "lattice vector"), "{e}");
        let short = SI.lines().take(10).collect::<Vec<_>>().join("\n");
        let e = read_poscar(&short, "POSCAR").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (11, "position"), "{e}");
        assert!(e.to_string().starts_with("POSCAR:11: position: the counts promise 2 atoms"), "{e}");
        let e = read_poscar(&SI.replace("Si_GW/abc", "Qq"), "POSCAR").unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (6, "species"), "{e}");
    }
}
