//! Extended XYZ, compatible with ASE (`ase.io.extxyz`, checked against ASE 3.29) in both
//! directions.
//!
//! Reading follows ASE's parser closely:
//! * the comment line is tokenised exactly like `key_val_str_to_dict` (quotes `"`, `'`,
//!   `{}`, `[]`, backslash escapes, `key = value` with spaces, keys without a value are
//!   `True`, a plain-XYZ comment line becomes a set of `True` keys);
//! * values become ints, floats, arrays thereof (split on whitespace and commas), bools
//!   (`T F True False true false TRUE FALSE`), `_JSON ...` values or strings; the key `uid`
//!   is never converted;
//! * `Lattice` is 9 numbers, one lattice vector after the other (rows of the cell);
//!   `pbc` defaults to true in all directions iff `Lattice` is present;
//! * `Properties` defaults to `species:S:1:pos:R:3`; `species` symbols are capitalised
//!   (`CU` -> `Cu`); a `Z` column, when present, wins over `species` (as in ASE);
//! * `energy`, `free_energy`, `stress` (9 numbers, Fortran order, taken as ASE does:
//!   Voigt `[s00, s11, s22, s12, s02, s01]`) and the `forces` column become the labels of
//!   the frame. A 6-number `stress` (Voigt order) is also accepted here, although ASE
//!   itself refuses it.
//! * `virial` must be 9 numbers (as in ASE) and is kept in `info` as the 9 numbers in
//!   file order.
//!
//! Where ASE is silently lenient we raise an error instead: atom lines with extra
//! columns, logical values other than T/F/True/False, a blank line followed by more data
//! (ASE stops reading there), incomplete `Properties` triplets.
//!
//! Writing produces what ASE writes for an `Atoms` with a `SinglePointCalculator`
//! (`energy`, `free_energy`, `stress` as 9 numbers, a `forces` column, `pbc="T T F"`,
//! `Lattice` only when the cell is not all zero), but with every float in Python's
//! shortest round-trip `repr` so that ASE reads back identical `f64` values.

use crate::elements::Element;
use crate::frame::{ArrayValue, Frame, InfoValue};
use crate::structure::{Structure, Vec3};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What went wrong while parsing, for callers that want to branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtxyzErrorKind {
    /// The file ends in the middle of a frame.
    Truncated,
    /// The atom-count line is not a non-negative integer, or the count does not match
    /// the atom lines.
    AtomCount,
    /// A number (in an atom line or a known key) does not parse.
    BadNumber,
    /// `Lattice` is not 9 numbers.
    BadLattice,
    /// A chemical symbol or atomic number that is not an element.
    UnknownElement,
    /// `Properties` is malformed or lacks a needed column.
    BadProperties,
    /// An atom line does not match `Properties`.
    BadAtomLine,
    /// The comment line (key=value pairs) is malformed, or a known key has a bad value.
    BadInfo,
    /// A blank line followed by more data.
    BlankLine,
}

#[derive(Debug, thiserror::Error)]
pub enum ExtxyzError {
    /// A parse error. `frame` is 0-based in the value, shown 1-based (as editors
    /// number); `line` is 1-based.
    #[error("{file}:{line}: frame {}: {message}", .frame + 1)]
    Parse { file: String, frame: usize, line: usize, kind: ExtxyzErrorKind, message: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// A frame that cannot be written faithfully (see [`check_frame`]). `frame` is
    /// 0-based in the value, shown 1-based.
    #[error("cannot write frame {}: {message}", .frame + 1)]
    InvalidFrame { frame: usize, message: String },
}

impl ExtxyzError {
    /// The kind of a parse error (None for I/O and write errors).
    pub fn kind(&self) -> Option<ExtxyzErrorKind> {
        match self {
            ExtxyzError::Parse { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// Reads a file (the only reader that does I/O).
pub fn read_extxyz_file(path: &Path) -> Result<Vec<Frame>, ExtxyzError> {
    let text = std::fs::read_to_string(path).map_err(|err| ExtxyzError::Io { path: path.to_path_buf(), err })?;
    read_extxyz(&text, &path.display().to_string())
}

/// Parses every frame of an extended XYZ text. `source` names the file in errors.
pub fn read_extxyz(text: &str, source: &str) -> Result<Vec<Frame>, ExtxyzError> {
    let lines = split_lines(text);
    let mut frames = Vec::new();
    let mut i = 0; // 0-based index of the next line
    while i < lines.len() {
        let frame_index = frames.len();
        let err = |line0: usize, kind: ExtxyzErrorKind, message: String| ExtxyzError::Parse {
            file: source.to_string(),
            frame: frame_index,
            line: line0 + 1,
            kind,
            message,
        };
        let count_line = lines[i];
        if count_line.trim().is_empty() {
            if let Some(j) = (i..lines.len()).find(|&j| !lines[j].trim().is_empty()) {
                return Err(err(
                    i,
                    ExtxyzErrorKind::BlankLine,
                    format!(
                        "blank line where an atom count was expected, but more data follows at \
                         line {} (ASE would silently stop reading here)",
                        j + 1
                    ),
                ));
            }
            break;
        }
        let natoms: usize = count_line.trim().parse().map_err(|_| {
            let hint =
                if frame_index > 0 { " (the previous frame may have more atom lines than its count says)" } else { "" };
            err(
                i,
                ExtxyzErrorKind::AtomCount,
                format!("expected the number of atoms, got {:?}{hint}", count_line.trim()),
            )
        })?;
        if i + 1 >= lines.len() {
            return Err(err(
                i,
                ExtxyzErrorKind::Truncated,
                "file ends after the atom-count line, no comment line (truncated?)".into(),
            ));
        }
        let comment_line0 = i + 1;
        let available = lines.len() - (i + 2);
        if available < natoms {
            // Count only the non-blank tail lines as atom lines for the message.
            let got = lines[i + 2..].iter().filter(|l| !l.trim().is_empty()).count().min(available);
            return Err(err(
                lines.len().saturating_sub(1).max(i + 1),
                ExtxyzErrorKind::Truncated,
                format!("file ends after {got} of {natoms} atom lines (truncated?)"),
            ));
        }
        let atom_lines = &lines[i + 2..i + 2 + natoms];
        // Trailing blank lines inside the atom block: the file is truncated.
        if let Some(k) = atom_lines.iter().position(|l| l.trim().is_empty()) {
            if lines[i + 2 + k..].iter().all(|l| l.trim().is_empty()) {
                return Err(err(
                    i + 2 + k,
                    ExtxyzErrorKind::Truncated,
                    format!("file ends after {k} of {natoms} atom lines (truncated?)"),
                ));
            }
        }
        let frame = parse_frame(lines[comment_line0], atom_lines, comment_line0)
            .map_err(|(line0, kind, message)| err(line0, kind, message))?;
        frames.push(frame);
        i += 2 + natoms;
    }
    Ok(frames)
}

/// Splits on `\n`, `\r\n` and lone `\r` (Python's universal newlines). A final line
/// terminator does not start a new line.
fn split_lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut k = 0;
    while k < bytes.len() {
        match bytes[k] {
            b'\n' => {
                out.push(&text[start..k]);
                start = k + 1;
            }
            b'\r' => {
                out.push(&text[start..k]);
                if k + 1 < bytes.len() && bytes[k + 1] == b'\n' {
                    k += 1;
                }
                start = k + 1;
            }
            _ => {}
        }
        k += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

type LocalError = (usize, ExtxyzErrorKind, String);

/// One parsed comment-line value, as ASE's `key_val_str_to_dict` would produce it.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Int(i64),
    Float(f64),
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
    Bool(bool),
    BoolArray(Vec<bool>),
    Str(String),
    Json(Json),
}

impl Value {
    /// The numbers of a numeric value (scalar or array).
    fn numbers(&self) -> Option<Vec<f64>> {
        match self {
            Value::Int(x) => Some(vec![*x as f64]),
            Value::Float(x) => Some(vec![*x]),
            Value::IntArray(v) => Some(v.iter().map(|&x| x as f64).collect()),
            Value::FloatArray(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Str(s) => format!("the string {s:?}"),
            Value::Bool(b) => format!("the boolean {}", if *b { "T" } else { "F" }),
            Value::BoolArray(v) => format!("{} booleans", v.len()),
            Value::Json(_) => "a _JSON value".into(),
            Value::IntArray(v) => format!("{} numbers", v.len()),
            Value::FloatArray(v) => format!("{} numbers", v.len()),
            Value::Int(_) | Value::Float(_) => "1 number".into(),
        }
    }

    fn into_info(self) -> InfoValue {
        match self {
            Value::Int(x) => InfoValue::Int(x),
            Value::Float(x) => InfoValue::Float(x),
            Value::IntArray(v) => InfoValue::IntArray(v),
            Value::FloatArray(v) => InfoValue::FloatArray(v),
            Value::Bool(b) => InfoValue::Bool(b),
            Value::BoolArray(v) => InfoValue::BoolArray(v),
            Value::Str(s) => InfoValue::Str(s),
            Value::Json(j) => json_to_info(j),
        }
    }
}

/// Tokenises a comment line exactly like ASE's `key_val_str_to_dict` and returns the
/// (key, raw value) pairs in order.
fn split_key_values(line: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs: Vec<Vec<String>> = vec![vec![String::new()]];
    let mut cur_delimiter: Option<char> = None;
    let mut escaped = false;
    fn last(pairs: &mut [Vec<String>]) -> &mut String {
        pairs.last_mut().and_then(|p| p.last_mut()).expect("non-empty")
    }
    for ch in line.trim().chars() {
        if escaped {
            last(&mut pairs).push(ch);
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if let Some(d) = cur_delimiter {
            if ch == d {
                cur_delimiter = None;
            } else {
                last(&mut pairs).push(ch);
            }
        } else if let Some(close) = match ch {
            '\'' => Some('\''),
            '"' => Some('"'),
            '{' => Some('}'),
            '[' => Some(']'),
            _ => None,
        } {
            cur_delimiter = Some(close);
        } else if ch.is_whitespace() {
            if last(&mut pairs).is_empty() {
                continue;
            }
            pairs.push(vec![String::new()]);
        } else if ch == '=' {
            if pairs.last().is_some_and(|p| p.len() == 1 && p[0].is_empty()) {
                pairs.pop();
            }
            match pairs.last_mut() {
                Some(p) => p.push(String::new()),
                None => return Err("'=' without a key before it".into()),
            }
        } else {
            last(&mut pairs).push(ch);
        }
    }
    let mut out = Vec::new();
    for pair in pairs {
        match pair.len() {
            0 => {}
            1 => {
                if !pair[0].is_empty() {
                    out.push((pair[0].clone(), "T".to_string()));
                }
            }
            _ => out.push((pair[0].clone(), pair[1..].join("="))),
        }
    }
    Ok(out)
}

/// Python's `float()` on a token (what ASE uses for `R` columns and info values).
/// Rust's parser accepts the same forms (`1e-3`, `1.0E+02`, `.5`, `-0.0`, `inf`, `nan`),
/// except Python's digit-group underscores, which we strip where Python allows them.
/// Fortran `1.0D+00` is rejected, as Python does.
fn parse_f64(token: &str) -> Option<f64> {
    match token.parse::<f64>() {
        Ok(x) => Some(x),
        Err(_) if valid_underscores(token) => token.replace('_', "").parse().ok(),
        Err(_) => None,
    }
}

/// Python's `int()` on a token: optional sign, decimal digits (underscores between digits).
fn parse_i64(token: &str) -> Option<i64> {
    match token.parse::<i64>() {
        Ok(x) => Some(x),
        Err(_) if valid_underscores(token) => token.replace('_', "").parse().ok(),
        Err(_) => None,
    }
}

/// Python allows single underscores only between two digits.
fn valid_underscores(token: &str) -> bool {
    let b = token.as_bytes();
    token.contains('_')
        && b.iter().enumerate().all(|(k, &c)| {
            c != b'_' || (k > 0 && k + 1 < b.len() && b[k - 1].is_ascii_digit() && b[k + 1].is_ascii_digit())
        })
}

fn split_value_parts(value: &str) -> Vec<&str> {
    value.split(|c: char| c.is_whitespace() || c == ',').filter(|s| !s.is_empty()).collect()
}

/// Converts a raw value string like ASE does (ints, floats, arrays, bools, `_JSON`).
fn convert_value(key: &str, raw: String) -> Result<Value, String> {
    if key.to_lowercase() == "uid" {
        return Ok(Value::Str(raw));
    }
    let parts = split_value_parts(&raw);
    if let Some(ints) = parts.iter().map(|p| parse_i64(p)).collect::<Option<Vec<i64>>>() {
        return Ok(if ints.len() == 1 { Value::Int(ints[0]) } else { Value::IntArray(ints) });
    }
    if let Some(floats) = parts.iter().map(|p| parse_f64(p)).collect::<Option<Vec<f64>>>() {
        return Ok(if floats.len() == 1 { Value::Float(floats[0]) } else { Value::FloatArray(floats) });
    }
    let to_bool = |s: &str| match s {
        "T" | "true" | "True" | "TRUE" => Some(true),
        "F" | "false" | "False" | "FALSE" => Some(false),
        _ => None,
    };
    if let Some(bools) = parts.iter().map(|p| to_bool(p)).collect::<Option<Vec<bool>>>() {
        return Ok(if bools.len() == 1 { Value::Bool(bools[0]) } else { Value::BoolArray(bools) });
    }
    if let Some(json_text) = raw.strip_prefix("_JSON ") {
        let json = parse_json(json_text).map_err(|e| format!("invalid _JSON value for {key}: {e}"))?;
        return Ok(Value::Json(json));
    }
    Ok(Value::Str(raw))
}

/// Parses one frame. `comment_line0` is the 0-based index of the comment line; atom lines
/// follow it.
fn parse_frame(comment: &str, atom_lines: &[&str], comment_line0: usize) -> Result<Frame, LocalError> {
    use ExtxyzErrorKind as K;
    let cerr = |kind: ExtxyzErrorKind, message: String| (comment_line0, kind, message);

    // Comment line -> ordered key/value pairs (later duplicates win, like a dict).
    let raw_pairs = split_key_values(comment).map_err(|m| cerr(K::BadInfo, m))?;
    let mut pairs: Vec<(String, Value)> = Vec::new();
    for (key, raw) in raw_pairs {
        let value = convert_value(&key, raw).map_err(|m| cerr(K::BadInfo, m))?;
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => pairs.push((key, value)),
        }
    }
    let mut take = |name: &str| -> Option<Value> {
        let k = pairs.iter().position(|(k, _)| k == name)?;
        Some(pairs.remove(k).1)
    };

    let lattice = take("Lattice");
    let cell = match &lattice {
        None => [[0.0; 3]; 3],
        Some(v) => match v.numbers() {
            Some(n) if n.len() == 9 => [[n[0], n[1], n[2]], [n[3], n[4], n[5]], [n[6], n[7], n[8]]],
            Some(n) => return Err(cerr(K::BadLattice, format!("Lattice has {} numbers, expected 9", n.len()))),
            None => return Err(cerr(K::BadLattice, format!("Lattice must be 9 numbers, got {}", v.describe()))),
        },
    };
    let pbc = match take("pbc") {
        None => [lattice.is_some(); 3],
        Some(Value::Bool(b)) => [b; 3],
        Some(Value::Int(x)) => [x != 0; 3],
        Some(Value::BoolArray(v)) if v.len() == 3 => [v[0], v[1], v[2]],
        Some(Value::IntArray(v)) if v.len() == 3 => [v[0] != 0, v[1] != 0, v[2] != 0],
        Some(other) => {
            return Err(cerr(K::BadInfo, format!("pbc must be 3 booleans like \"T T F\", got {}", other.describe())))
        }
    };
    let properties = match take("Properties") {
        None => "species:S:1:pos:R:3".to_string(),
        Some(Value::Str(s)) => s,
        Some(other) => {
            return Err(cerr(K::BadProperties, format!("Properties must be a string, got {}", other.describe())))
        }
    };
    let columns = parse_properties(&properties).map_err(|m| cerr(K::BadProperties, m))?;
    for c in &columns {
        let want = match c.name.as_str() {
            "species" => "species:S:1",
            "Z" => "Z:I:1",
            "pos" => "pos:R:3",
            "forces" => "forces:R:3",
            _ => continue,
        };
        if format!("{}:{}:{}", c.name, c.ptype, c.cols) != want {
            return Err(cerr(
                K::BadProperties,
                format!("column {} is {}:{}:{}, expected {want}", c.name, c.name, c.ptype, c.cols),
            ));
        }
    }
    if !columns.iter().any(|c| c.name == "species" || c.name == "Z") {
        return Err(cerr(K::BadProperties, format!("Properties has no species:S:1 (or Z:I:1) column: {properties}")));
    }
    if !columns.iter().any(|c| c.name == "pos") {
        return Err(cerr(K::BadProperties, format!("Properties has no pos:R:3 column: {properties}")));
    }

    let scalar = |name: &str, v: Option<Value>| -> Result<Option<f64>, LocalError> {
        match v {
            None => Ok(None),
            Some(Value::Int(x)) => Ok(Some(x as f64)),
            Some(Value::Float(x)) => Ok(Some(x)),
            Some(other) => Err(cerr(K::BadNumber, format!("{name} must be one number, got {}", other.describe()))),
        }
    };
    let energy_ev = scalar("energy", take("energy"))?;
    let free_energy_ev = scalar("free_energy", take("free_energy"))?;
    let stress_ev_per_a3 = match take("stress") {
        None => None,
        Some(v) => match v.numbers() {
            // ASE: reshape((3, 3), order='F'), then Voigt [s00, s11, s22, s12, s02, s01].
            Some(f) if f.len() == 9 => Some([f[0], f[4], f[8], f[7], f[6], f[3]]),
            Some(f) if f.len() == 6 => Some([f[0], f[1], f[2], f[3], f[4], f[5]]),
            Some(f) => {
                return Err(cerr(
                    K::BadNumber,
                    format!("stress has {} numbers, expected 9 (3x3) or 6 (Voigt)", f.len()),
                ))
            }
            None => return Err(cerr(K::BadNumber, format!("stress must be 9 numbers, got {}", v.describe()))),
        },
    };
    let mut info = BTreeMap::new();
    for (key, value) in pairs {
        if key == "virial" && !matches!(value.numbers(), Some(n) if n.len() == 9) {
            return Err(cerr(K::BadInfo, format!("virial must be 9 numbers, got {}", value.describe())));
        }
        info.insert(key, value.into_info());
    }

    // Atom lines.
    let total_cols: usize = columns.iter().map(|c| c.cols).sum();
    let natoms = atom_lines.len();
    let mut raw_columns: Vec<Vec<&str>> = columns.iter().map(|c| Vec::with_capacity(natoms * c.cols)).collect();
    for (a, line) in atom_lines.iter().enumerate() {
        let line0 = comment_line0 + 1 + a;
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() < total_cols {
            // Name the first property that is short.
            let mut start = 0;
            for c in &columns {
                if tokens.len() < start + c.cols {
                    let got = tokens.len().saturating_sub(start);
                    let mut message = format!(
                        "atom {a}: expected {} {} for {}, got {got} (line has {} columns, Properties declares {total_cols})",
                        c.cols,
                        c.type_name(c.cols != 1),
                        c.name,
                        tokens.len()
                    );
                    if tokens.len() == 1 && parse_i64(tokens[0]).is_some() {
                        message.push_str(
                            "; this looks like the next frame's atom count: the count line may say more atoms than there are",
                        );
                    } else if tokens.is_empty() {
                        message.push_str("; blank atom line (wrong atom count?)");
                    }
                    return Err((line0, K::BadAtomLine, message));
                }
                start += c.cols;
            }
        }
        if tokens.len() > total_cols {
            return Err((
                line0,
                K::BadAtomLine,
                format!(
                    "atom {a}: line has {} columns but Properties declares {total_cols} ({properties})",
                    tokens.len()
                ),
            ));
        }
        let mut start = 0;
        for (c, col) in columns.iter().zip(raw_columns.iter_mut()) {
            col.extend_from_slice(&tokens[start..start + c.cols]);
            start += c.cols;
        }
    }
    let line_of = |k: usize, cols: usize| comment_line0 + 1 + k / cols;

    let mut species: Option<Vec<Element>> = None;
    let mut numbers: Option<Vec<Element>> = None;
    let mut positions: Option<Vec<Vec3>> = None;
    let mut forces: Option<Vec<Vec3>> = None;
    let mut arrays = BTreeMap::new();
    for (c, raw) in columns.iter().zip(raw_columns) {
        let bad = |k: usize, what: &str| {
            (
                line_of(k, c.cols),
                K::BadNumber,
                format!("atom {}: cannot parse {:?} as {what} for {}", k / c.cols, raw[k], c.name),
            )
        };
        match (c.name.as_str(), c.ptype, c.cols) {
            ("species", 'S', 1) => {
                let mut v = Vec::with_capacity(natoms);
                for (k, s) in raw.iter().enumerate() {
                    let cap = capitalize(s);
                    let e = Element::from_symbol(&cap).ok_or_else(|| {
                        (line_of(k, 1), K::UnknownElement, format!("atom {k}: unknown element '{s}'"))
                    })?;
                    v.push(e);
                }
                species = Some(v);
            }
            ("Z", 'I', 1) => {
                let mut v = Vec::with_capacity(natoms);
                for (k, s) in raw.iter().enumerate() {
                    let z = parse_i64(s).ok_or_else(|| bad(k, "an integer"))?;
                    let e = u8::try_from(z).ok().and_then(Element::from_z).ok_or_else(|| {
                        (line_of(k, 1), K::UnknownElement, format!("atom {k}: unknown element with Z = {z}"))
                    })?;
                    v.push(e);
                }
                numbers = Some(v);
            }
            ("pos", 'R', 3) | ("forces", 'R', 3) => {
                let mut v = Vec::with_capacity(natoms);
                for k in 0..natoms {
                    let mut p = [0.0; 3];
                    for d in 0..3 {
                        p[d] = parse_f64(raw[3 * k + d]).ok_or_else(|| bad(3 * k + d, "a float"))?;
                    }
                    v.push(p);
                }
                if c.name == "pos" {
                    positions = Some(v);
                } else {
                    forces = Some(v);
                }
            }
            (_, ptype, cols) => {
                let value = match ptype {
                    'R' => ArrayValue::Real {
                        columns: cols,
                        values: raw
                            .iter()
                            .enumerate()
                            .map(|(k, s)| parse_f64(s).ok_or_else(|| bad(k, "a float")))
                            .collect::<Result<_, _>>()?,
                    },
                    'I' => ArrayValue::Int {
                        columns: cols,
                        values: raw
                            .iter()
                            .enumerate()
                            .map(|(k, s)| parse_i64(s).ok_or_else(|| bad(k, "an integer")))
                            .collect::<Result<_, _>>()?,
                    },
                    'L' => ArrayValue::Bool {
                        columns: cols,
                        values: raw
                            .iter()
                            .enumerate()
                            .map(|(k, s)| match *s {
                                "T" | "True" => Ok(true),
                                "F" | "False" => Ok(false),
                                _ => Err(bad(k, "a logical (T/F/True/False)")),
                            })
                            .collect::<Result<_, _>>()?,
                    },
                    _ => ArrayValue::Str { columns: cols, values: raw.iter().map(|s| s.to_string()).collect() },
                };
                arrays.insert(c.name.clone(), value);
            }
        }
    }
    let species = match numbers.or(species) {
        Some(s) => s,
        None => {
            return Err(cerr(
                K::BadProperties,
                format!("Properties has no species:S:1 (or Z:I:1) column: {properties}"),
            ))
        }
    };
    let positions =
        positions.ok_or_else(|| cerr(K::BadProperties, format!("Properties has no pos:R:3 column: {properties}")))?;
    Ok(Frame {
        structure: Structure { cell_a: cell, positions_a: positions, species, pbc },
        energy_ev,
        free_energy_ev,
        forces_ev_per_a: forces,
        stress_ev_per_a3,
        info,
        arrays,
    })
}

/// Python's `str.capitalize()` (first character upper case, the rest lower case).
fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars.flat_map(|c| c.to_lowercase())).collect(),
        None => String::new(),
    }
}

struct Column {
    name: String,
    ptype: char,
    cols: usize,
}

impl Column {
    fn type_name(&self, plural: bool) -> &'static str {
        match (self.ptype, plural) {
            ('R', false) => "float",
            ('R', true) => "floats",
            ('I', false) => "integer",
            ('I', true) => "integers",
            ('L', false) => "logical",
            ('L', true) => "logicals",
            (_, false) => "string",
            (_, true) => "strings",
        }
    }
}

fn parse_properties(s: &str) -> Result<Vec<Column>, String> {
    let fields: Vec<&str> = s.split(':').collect();
    if !fields.chunks_exact(3).remainder().is_empty() {
        return Err(format!(
            "Properties={s} has {} ':'-separated fields, not a multiple of 3 (name:type:columns)",
            fields.len()
        ));
    }
    let mut out: Vec<Column> = Vec::new();
    for t in fields.chunks(3) {
        let (name, ptype, cols) = (t[0], t[1], t[2]);
        if name.is_empty() {
            return Err(format!("Properties={s} has an empty property name"));
        }
        let ptype = match ptype {
            "R" | "I" | "S" | "L" => ptype.chars().next().unwrap_or('S'),
            _ => return Err(format!("Properties: unknown type {ptype:?} for {name} (expected R, I, S or L)")),
        };
        let cols: usize = match cols.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("Properties: column count {cols:?} for {name} is not a positive integer")),
        };
        if out.iter().any(|c| c.name == name) {
            return Err(format!("Properties: {name} appears twice"));
        }
        out.push(Column { name: name.to_string(), ptype, cols });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// A small JSON parser: exact f64 parsing (serde_json without `float_roundtrip` may be one
// ulp off), and Python's NaN / Infinity.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn parse_json(text: &str) -> Result<Json, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut p = JsonParser { c: &chars, k: 0, depth: 0 };
    let v = p.value()?;
    p.ws();
    if p.k != chars.len() {
        return Err(format!("unexpected {:?} after the JSON value", chars[p.k]));
    }
    Ok(v)
}

struct JsonParser<'a> {
    c: &'a [char],
    k: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.k < self.c.len() && matches!(self.c[self.k], ' ' | '\t' | '\n' | '\r') {
            self.k += 1;
        }
    }
    fn peek(&self) -> Option<char> {
        self.c.get(self.k).copied()
    }
    fn eat(&mut self, word: &str) -> bool {
        let w: Vec<char> = word.chars().collect();
        if self.c.len() >= self.k + w.len() && self.c[self.k..self.k + w.len()] == w[..] {
            self.k += w.len();
            true
        } else {
            false
        }
    }
    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        self.depth += 1;
        if self.depth > 200 {
            return Err("JSON nested too deeply".into());
        }
        let v = match self.peek() {
            None => Err("unexpected end of JSON".to_string()),
            Some('{') => {
                self.k += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some('}') {
                    self.k += 1;
                } else {
                    loop {
                        self.ws();
                        if self.peek() != Some('"') {
                            return Err("expected a string key in JSON object".into());
                        }
                        let key = self.string()?;
                        self.ws();
                        if !self.eat(":") {
                            return Err("expected ':' in JSON object".into());
                        }
                        let v = self.value()?;
                        items.push((key, v));
                        self.ws();
                        if self.eat(",") {
                            continue;
                        }
                        if self.eat("}") {
                            break;
                        }
                        return Err("expected ',' or '}' in JSON object".into());
                    }
                }
                Ok(Json::Object(items))
            }
            Some('[') => {
                self.k += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(']') {
                    self.k += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        if self.eat(",") {
                            continue;
                        }
                        if self.eat("]") {
                            break;
                        }
                        return Err("expected ',' or ']' in JSON array".into());
                    }
                }
                Ok(Json::Array(items))
            }
            Some('"') => self.string().map(Json::Str),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) if self.eat("NaN") => Ok(Json::Float(f64::NAN)),
            Some(_) if self.eat("Infinity") => Ok(Json::Float(f64::INFINITY)),
            Some(_) if self.eat("-Infinity") => Ok(Json::Float(f64::NEG_INFINITY)),
            Some(_) => {
                let start = self.k;
                while self.k < self.c.len() && matches!(self.c[self.k], '0'..='9' | '-' | '+' | '.' | 'e' | 'E') {
                    self.k += 1;
                }
                let s: String = self.c[start..self.k].iter().collect();
                if s.is_empty() {
                    return Err(format!("unexpected {:?} in JSON", self.c[start]));
                }
                if !s.contains(['.', 'e', 'E']) {
                    if let Ok(i) = s.parse::<i64>() {
                        return Ok(Json::Int(i));
                    }
                }
                s.parse::<f64>().map(Json::Float).map_err(|_| format!("bad JSON number {s:?}"))
            }
        };
        self.depth -= 1;
        v
    }
    fn string(&mut self) -> Result<String, String> {
        self.k += 1; // opening quote
        let mut out = String::new();
        loop {
            let ch = self.peek().ok_or("unterminated JSON string")?;
            self.k += 1;
            match ch {
                '"' => return Ok(out),
                '\\' => {
                    let e = self.peek().ok_or("unterminated JSON string")?;
                    self.k += 1;
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        '/' => out.push('/'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                        }
                        other => return Err(format!("bad escape \\{other} in JSON string")),
                    }
                }
                c => out.push(c),
            }
        }
    }
    fn hex4(&mut self) -> Result<u32, String> {
        if self.k + 4 > self.c.len() {
            return Err("truncated \\u escape in JSON".into());
        }
        let s: String = self.c[self.k..self.k + 4].iter().collect();
        self.k += 4;
        u32::from_str_radix(&s, 16).map_err(|_| format!("bad \\u escape {s:?} in JSON"))
    }
}

/// What ASE keeps after `np.array(json.loads(...))`: numeric/bool arrays and scalars, or
/// the decoded object itself.
fn json_to_info(j: Json) -> InfoValue {
    match j {
        Json::Bool(b) => InfoValue::Bool(b),
        Json::Int(i) => InfoValue::Int(i),
        Json::Float(x) => InfoValue::Float(x),
        Json::Str(s) => InfoValue::Str(s),
        Json::Array(items) if items.iter().all(|x| matches!(x, Json::Bool(_) | Json::Int(_) | Json::Float(_))) => {
            if items.is_empty() {
                InfoValue::FloatArray(vec![])
            } else if items.iter().all(|x| matches!(x, Json::Bool(_))) {
                InfoValue::BoolArray(items.iter().map(|x| matches!(x, Json::Bool(true))).collect())
            } else if items.iter().all(|x| !matches!(x, Json::Float(_))) {
                InfoValue::IntArray(
                    items
                        .iter()
                        .map(|x| match x {
                            Json::Int(i) => *i,
                            Json::Bool(b) => *b as i64,
                            _ => 0,
                        })
                        .collect(),
                )
            } else {
                InfoValue::FloatArray(
                    items
                        .iter()
                        .map(|x| match x {
                            Json::Int(i) => *i as f64,
                            Json::Float(f) => *f,
                            Json::Bool(b) => *b as i64 as f64,
                            _ => 0.0,
                        })
                        .collect(),
                )
            }
        }
        other => InfoValue::Json(json_to_serde(other)),
    }
}

fn json_to_serde(j: Json) -> serde_json::Value {
    use serde_json::Value as V;
    match j {
        Json::Null => V::Null,
        Json::Bool(b) => V::Bool(b),
        Json::Int(i) => V::from(i),
        Json::Float(x) => serde_json::Number::from_f64(x).map(V::Number).unwrap_or(V::Null),
        Json::Str(s) => V::String(s),
        Json::Array(a) => V::Array(a.into_iter().map(json_to_serde).collect()),
        Json::Object(o) => V::Object(o.into_iter().map(|(k, v)| (k, json_to_serde(v))).collect()),
    }
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Writes frames to a file: `-` is standard output, a link or device is written
/// through, a plain file is replaced atomically (see [`crate::output::write_output`]).
/// Frames are checked with [`check_frame`] first.
pub fn write_extxyz_file(path: &Path, frames: &[Frame]) -> Result<(), ExtxyzError> {
    for (k, f) in frames.iter().enumerate() {
        check_frame(f).map_err(|message| ExtxyzError::InvalidFrame { frame: k, message })?;
    }
    let text = write_extxyz(frames);
    crate::output::write_output(path, text.as_bytes()).map_err(|err| ExtxyzError::Io { path: path.to_path_buf(), err })
}

/// All frames as extended XYZ text.
pub fn write_extxyz(frames: &[Frame]) -> String {
    let mut out = String::new();
    for f in frames {
        write_frame(&mut out, f);
    }
    out
}

/// Checks that a frame can be written and read back faithfully: consistent lengths,
/// per-atom strings without whitespace, info keys and strings without line breaks.
pub fn check_frame(frame: &Frame) -> Result<(), String> {
    let n = frame.structure.len();
    if frame.structure.species.len() != n {
        return Err(format!("{} positions but {} species", n, frame.structure.species.len()));
    }
    if let Some(f) = &frame.forces_ev_per_a {
        if f.len() != n {
            return Err(format!("{n} atoms but {} forces", f.len()));
        }
    }
    for (name, a) in &frame.arrays {
        check_key(name)?;
        if name.contains(':') || name.chars().any(char::is_whitespace) {
            return Err(format!("array name {name:?} contains ':' or whitespace"));
        }
        if a.columns() == 0 || a.n_values() != n * a.columns() {
            return Err(format!("array {name}: {} values for {n} atoms x {} columns", a.n_values(), a.columns()));
        }
        if let ArrayValue::Str { values, .. } = a {
            if let Some(s) = values.iter().find(|s| s.is_empty() || s.chars().any(char::is_whitespace)) {
                return Err(format!("array {name}: string {s:?} is empty or contains whitespace"));
            }
        }
    }
    for (key, v) in &frame.info {
        check_key(key)?;
        if let InfoValue::Str(s) = v {
            if s.contains(['\n', '\r']) {
                return Err(format!("info {key}: string contains a line break"));
            }
        }
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains(['\n', '\r', '=']) {
        return Err(format!("key {key:?} is empty or contains '=' or a line break"));
    }
    Ok(())
}

/// Appends one frame. Panics if the lengths are inconsistent (see [`check_frame`]);
/// strings that cannot be represented are sanitised (line breaks in info strings become
/// spaces, whitespace in per-atom strings becomes `_`).
pub fn write_frame(out: &mut String, frame: &Frame) {
    let s = &frame.structure;
    let n = s.len();
    assert_eq!(s.species.len(), n, "extxyz: {} positions but {} species", n, s.species.len());
    let forces = frame.forces_ev_per_a.as_ref().inspect(|f| {
        assert_eq!(f.len(), n, "extxyz: {n} atoms but {} forces", f.len());
    });
    let arrays: Vec<(&String, &ArrayValue)> = frame
        .arrays
        .iter()
        .filter(|(k, _)| {
            !(matches!(k.as_str(), "species" | "pos" | "Z") || (k.as_str() == "forces" && forces.is_some()))
        })
        .inspect(|(k, a)| {
            assert!(
                a.columns() > 0 && a.n_values() == n * a.columns(),
                "extxyz: array {k}: {} values for {n} atoms x {} columns",
                a.n_values(),
                a.columns()
            )
        })
        .collect();

    let _ = writeln!(out, "{n}");
    let mut header = String::new();
    if s.cell_a.iter().flatten().any(|&x| x != 0.0) {
        let l: Vec<String> = s.cell_a.iter().flatten().map(|&x| py_repr(x)).collect();
        let _ = write!(header, "Lattice=\"{}\" ", l.join(" "));
    }
    header.push_str("Properties=species:S:1:pos:R:3");
    if forces.is_some() {
        header.push_str(":forces:R:3");
    }
    for (name, a) in &arrays {
        let _ = write!(header, ":{}:{}:{}", sanitize_word(name), a.type_letter(), a.columns());
    }
    if let Some(e) = frame.energy_ev {
        let _ = write!(header, " energy={}", py_repr(e));
    }
    if let Some(e) = frame.free_energy_ev {
        let _ = write!(header, " free_energy={}", py_repr(e));
    }
    if let Some(v) = frame.stress_ev_per_a3 {
        // Voigt [xx, yy, zz, yz, xz, xy] -> full symmetric 3x3 (Fortran order = row order).
        let m = [v[0], v[5], v[4], v[5], v[1], v[3], v[4], v[3], v[2]];
        let m: Vec<String> = m.iter().map(|&x| py_repr(x)).collect();
        let _ = write!(header, " stress=\"{}\"", m.join(" "));
    }
    for (key, value) in &frame.info {
        let reserved = match key.as_str() {
            "Lattice" | "Properties" | "pbc" | "" => true,
            "energy" => frame.energy_ev.is_some(),
            "free_energy" => frame.free_energy_ev.is_some(),
            "stress" => frame.stress_ev_per_a3.is_some(),
            _ => false,
        };
        if reserved {
            continue;
        }
        let text = match value {
            // ASE never converts `uid` values: write them verbatim.
            InfoValue::Str(v) if key.to_lowercase() == "uid" => escape(v),
            _ => info_to_string(value),
        };
        let _ = write!(header, " {}={}", escape(&key.replace(['\n', '\r', '='], "_")), text);
    }
    let tf = |b: bool| if b { "T" } else { "F" };
    let _ = writeln!(header, " pbc=\"{} {} {}\"", tf(s.pbc[0]), tf(s.pbc[1]), tf(s.pbc[2]));
    out.push_str(&header);

    for a in 0..n {
        let _ = write!(out, "{:<2}", s.species[a].symbol());
        for x in s.positions_a[a] {
            let _ = write!(out, " {:>16}", py_repr(x));
        }
        if let Some(f) = forces {
            for x in f[a] {
                let _ = write!(out, " {:>16}", py_repr(x));
            }
        }
        for (_, arr) in &arrays {
            let c = arr.columns();
            for k in a * c..(a + 1) * c {
                let _ = match arr {
                    ArrayValue::Real { values, .. } => write!(out, " {:>16}", py_repr(values[k])),
                    ArrayValue::Int { values, .. } => write!(out, " {:>8}", values[k]),
                    ArrayValue::Bool { values, .. } => write!(out, " {}", tf(values[k])),
                    ArrayValue::Str { values, .. } => write!(out, " {}", sanitize_word(&values[k])),
                };
            }
        }
        out.push('\n');
    }
}

fn sanitize_word(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    s.chars().map(|c| if c.is_whitespace() { '_' } else { c }).collect()
}

/// Quotes a key or value when ASE's tokenizer would otherwise split or mangle it.
fn escape(s: &str) -> String {
    let needs = s.is_empty() || s.chars().any(|c| c.is_whitespace() || "\"'{}[]\\=".contains(c));
    if !needs {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

fn info_to_string(v: &InfoValue) -> String {
    let tf = |b: bool| if b { "T" } else { "F" };
    let json_list = |items: Vec<String>| escape(&format!("_JSON [{}]", items.join(", ")));
    match v {
        InfoValue::Bool(b) => tf(*b).to_string(),
        InfoValue::Int(i) => i.to_string(),
        InfoValue::Float(x) => py_repr(*x),
        InfoValue::Str(s) => str_to_string(s),
        // One-element and empty arrays go through _JSON: ASE would read "1.5" back as a scalar.
        InfoValue::IntArray(v) if v.len() < 2 => json_list(v.iter().map(|x| x.to_string()).collect()),
        InfoValue::FloatArray(v) if v.len() < 2 => json_list(v.iter().map(|&x| json_float(x)).collect()),
        InfoValue::BoolArray(v) if v.len() < 2 => json_list(v.iter().map(|&b| b.to_string()).collect()),
        InfoValue::IntArray(v) => escape(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")),
        InfoValue::FloatArray(v) => escape(&v.iter().map(|&x| py_repr(x)).collect::<Vec<_>>().join(" ")),
        InfoValue::BoolArray(v) => escape(&v.iter().map(|&b| tf(b)).collect::<Vec<_>>().join(" ")),
        InfoValue::Json(j) => escape(&format!("_JSON {}", serde_json::to_string(j).unwrap_or_else(|_| "null".into()))),
    }
}

/// A string value. Strings that ASE would read back as something else (numbers, bools,
/// empty, `_JSON ...`) are written as a JSON string, `"_JSON \"T\""`, which ASE reads
/// back as the plain string.
fn str_to_string(s: &str) -> String {
    let s = s.replace(['\n', '\r'], " ");
    match convert_value("", s.clone()) {
        Ok(Value::Str(_)) if !s.starts_with("_JSON") => escape(&s),
        _ => escape(&format!("_JSON {}", serde_json::Value::String(s))),
    }
}

fn json_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        py_repr(x)
    }
}

/// Python's `repr(float)`: shortest round-trip digits, always with a `.` or an exponent
/// (so that ASE never reads a float back as an int), exponent form below 1e-4 and from
/// 1e16 on.
pub fn py_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = x.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let mut s = format!("{x}");
        if !s.contains('.') {
            s.push_str(".0");
        }
        s
    } else {
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        format!("{mantissa}e{sign}{digits:0>2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SI2: &str = "2\nLattice=\"5.43 0.0 0.0 0.0 5.43 0.0 0.0 0.0 5.43\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\nSi 0.0 0.0 0.0\nSi 1.3575 1.3575 1.3575\n";

    fn parse_err(text: &str) -> (ExtxyzErrorKind, usize, usize, String) {
        match read_extxyz(text, "t.xyz") {
            Err(e @ ExtxyzError::Parse { .. }) => {
                let s = e.to_string();
                assert!(s.starts_with("t.xyz:"), "{s}");
                match e {
                    ExtxyzError::Parse { kind, frame, line, message, .. } => (kind, frame, line, message),
                    _ => unreachable!(),
                }
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn reads_simple_periodic() {
        let f = read_extxyz(SI2, "t.xyz").unwrap();
        assert_eq!(f.len(), 1);
        let s = &f[0].structure;
        assert_eq!(s.cell_a, [[5.43, 0.0, 0.0], [0.0, 5.43, 0.0], [0.0, 0.0, 5.43]]);
        assert_eq!(s.pbc, [true; 3]);
        assert_eq!(s.positions_a[1], [1.3575; 3]);
        assert_eq!(s.species[0].symbol(), "Si");
        assert!(f[0].info.is_empty() && f[0].arrays.is_empty());
    }

    #[test]
    fn triclinic_lattice_rows_are_vectors() {
        let t = "1\nLattice=\"1 2 3 4 5 6 7 8 10\"\nH 0 0 0\n";
        let f = read_extxyz(t, "t").unwrap();
        assert_eq!(f[0].structure.cell_a, [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 10.0]]);
        assert_eq!(f[0].structure.pbc, [true; 3], "pbc defaults to T when Lattice is present");
    }

    #[test]
    fn defaults_without_lattice_or_properties() {
        let t = "2\nwater-ish molecule\nO 0 0 0\nh 0.96 0 0\n";
        let f = read_extxyz(t, "t").unwrap();
        assert_eq!(f[0].structure.pbc, [false; 3]);
        assert_eq!(f[0].structure.cell_a, [[0.0; 3]; 3]);
        assert_eq!(f[0].structure.species[1].symbol(), "H", "species are capitalised like ASE");
        // ASE turns a plain comment into True-valued keys.
        assert_eq!(f[0].info.get("molecule"), Some(&InfoValue::Bool(true)));
        assert_eq!(f[0].info.get("water-ish"), Some(&InfoValue::Bool(true)));
        // empty comment line
        let f = read_extxyz("1\n\nAr 0 0 0\n", "t").unwrap();
        assert!(f[0].info.is_empty());
    }

    #[test]
    fn labels_and_stress_layout() {
        let t = "1\nLattice=\"3 0 0 0 3 0 0 0 3\" Properties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 free_energy=-1.25 stress=\"1 6 5 16 2 4 15 14 3\" pbc=\"T T F\"\nCu 0 0 0 0.1 -0.2 3e-1\n";
        let f = &read_extxyz(t, "t").unwrap()[0];
        assert_eq!(f.energy_ev, Some(-1.5));
        assert_eq!(f.free_energy_ev, Some(-1.25));
        assert_eq!(f.forces_ev_per_a.as_ref().unwrap()[0], [0.1, -0.2, 0.3]);
        assert_eq!(f.structure.pbc, [true, true, false]);
        // Fortran reshape: S[i][j] = flat[i + 3j]; Voigt [S00 S11 S22 S12 S02 S01]
        assert_eq!(f.stress_ev_per_a3, Some([1.0, 2.0, 3.0, 14.0, 15.0, 16.0]));
        // 6 numbers: Voigt as is.
        let t6 = t.replace("\"1 6 5 16 2 4 15 14 3\"", "\"1 2 3 4 5 6\"");
        assert_eq!(read_extxyz(&t6, "t").unwrap()[0].stress_ev_per_a3, Some([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert!(f.info.is_empty(), "{:?}", f.info);
    }

    #[test]
    fn info_value_types_like_ase() {
        let t = "1\na=1 b=2.5 c=T d=False e=\"1 2 3\" f=\"1.5 2\" g=\"T F T\" h=hello i=\"two words\" j k = 7 l=1,2,3 m=1.0D+00 uid=123 n=\"_JSON [[1, 2], [3, 4]]\" o=\"_JSON {\\\"x\\\": \\\"y z\\\"}\" p={4 5} q=\"_JSON [1.5]\" r=99999999999999999999 s=x=y t=1e-3 v=-0.0 w=nan u=\"\" y=1 z=\"\"\nH 0 0 0\n";
        let f = &read_extxyz(t, "t").unwrap()[0];
        let i = &f.info;
        use InfoValue::*;
        assert_eq!(i["a"], Int(1));
        assert_eq!(i["b"], Float(2.5));
        assert_eq!(i["c"], Bool(true));
        assert_eq!(i["d"], Bool(false));
        assert_eq!(i["e"], IntArray(vec![1, 2, 3]));
        assert_eq!(i["f"], FloatArray(vec![1.5, 2.0]));
        assert_eq!(i["g"], BoolArray(vec![true, false, true]));
        assert_eq!(i["h"], Str("hello".into()));
        assert_eq!(i["i"], Str("two words".into()));
        assert_eq!(i["j"], Bool(true));
        assert_eq!(i["k"], Int(7));
        assert_eq!(i["l"], IntArray(vec![1, 2, 3]));
        assert_eq!(i["m"], Str("1.0D+00".into()), "Python's float() rejects Fortran D exponents");
        assert_eq!(i["uid"], Str("123".into()));
        assert_eq!(i["n"], Json(serde_json::json!([[1, 2], [3, 4]])));
        assert_eq!(i["o"], Json(serde_json::json!({"x": "y z"})));
        assert_eq!(i["p"], IntArray(vec![4, 5]));
        assert_eq!(i["q"], FloatArray(vec![1.5]));
        assert_eq!(i["r"], Float(1e20));
        assert_eq!(i["s"], Str("x=y".into()));
        assert_eq!(i["t"], Float(1e-3));
        assert_eq!(i["u"], Str("y=1".into()), "ASE: an empty value swallows the next token");
        assert_eq!(i["z"], IntArray(vec![]), "ASE: empty value at the end -> empty int array");
        match i["v"] {
            Float(x) => assert!(x == 0.0 && x.is_sign_negative()),
            ref o => panic!("{o:?}"),
        }
        assert!(matches!(i["w"], Float(x) if x.is_nan()));
    }

    #[test]
    fn number_formats_and_line_endings() {
        let t = "1\r\nProperties=species:S:1:pos:R:3:q:R:1:n:I:2:ok:L:1:tag:S:1\r\nFe 1e-3 1.0E+02 -0.0 .5 -7 +8 True x\r\n\r\n";
        let f = &read_extxyz(t, "t").unwrap()[0];
        assert_eq!(f.structure.positions_a[0], [1e-3, 100.0, -0.0]);
        assert!(f.structure.positions_a[0][2].is_sign_negative());
        assert_eq!(f.arrays["q"], ArrayValue::Real { columns: 1, values: vec![0.5] });
        assert_eq!(f.arrays["n"], ArrayValue::Int { columns: 2, values: vec![-7, 8] });
        assert_eq!(f.arrays["ok"], ArrayValue::Bool { columns: 1, values: vec![true] });
        assert_eq!(f.arrays["tag"], ArrayValue::Str { columns: 1, values: vec!["x".into()] });
        // lone \r line endings too
        let f = read_extxyz(&SI2.replace('\n', "\r"), "t").unwrap();
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn z_column_wins_over_species() {
        let t = "1\nProperties=species:S:1:pos:R:3:Z:I:1\nH 0 0 0 29\n";
        let f = &read_extxyz(t, "t").unwrap()[0];
        assert_eq!(f.structure.species[0].symbol(), "Cu");
        assert!(f.arrays.is_empty());
    }

    #[test]
    fn multi_frame_and_trailing_blank_lines() {
        let text = format!("{SI2}{SI2}\n\n");
        let f = read_extxyz(&text, "t").unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(read_extxyz("", "t").unwrap().len(), 0);
        assert_eq!(read_extxyz("\n\n", "t").unwrap().len(), 0);
    }

    #[test]
    fn error_truncated() {
        let cut: String = SI2.lines().take(3).map(|l| format!("{l}\n")).collect();
        let (kind, frame, _line, msg) = parse_err(&format!("{SI2}{cut}"));
        assert_eq!(kind, ExtxyzErrorKind::Truncated);
        assert_eq!(frame, 1);
        assert!(msg.contains("file ends after 1 of 2 atom lines (truncated?)"), "{msg}");
        let (kind, frame, line, msg) = parse_err(&format!("{SI2}{cut}\n\n"));
        assert_eq!((kind, frame, line), (ExtxyzErrorKind::Truncated, 1, 8));
        assert!(msg.contains("file ends after 1 of 2 atom lines (truncated?)"), "{msg}");
        let (kind, _, line, _) = parse_err("3\n");
        assert_eq!((kind, line), (ExtxyzErrorKind::Truncated, 1));
    }

    #[test]
    fn error_wrong_atom_count() {
        // count says 3 but only 2 atoms, then another frame: the next count line is read
        // as an atom line.
        let text = format!("{}{SI2}", SI2.replacen('2', "3", 1));
        let (kind, frame, line, msg) = parse_err(&text);
        assert_eq!((kind, frame, line), (ExtxyzErrorKind::BadAtomLine, 0, 5));
        assert!(
            msg.contains("expected 1 string for species, got 1") || msg.contains("next frame's atom count"),
            "{msg}"
        );
        // count says 1 but 2 atom lines: the extra line is read as the next count.
        let text = SI2.replacen('2', "1", 1);
        let (kind, frame, line, msg) = parse_err(&text);
        assert_eq!((kind, frame, line), (ExtxyzErrorKind::AtomCount, 1, 4));
        assert!(msg.contains("expected the number of atoms"), "{msg}");
        let (kind, _, line, _) = parse_err("two\nx\n");
        assert_eq!((kind, line), (ExtxyzErrorKind::AtomCount, 1));
        let (kind, ..) = parse_err("-1\nx\n");
        assert_eq!(kind, ExtxyzErrorKind::AtomCount);
    }

    #[test]
    fn error_bad_number_and_short_line() {
        let text = SI2.replace("1.3575 1.3575 1.3575", "1.3575 abc 1.3575");
        let (kind, frame, line, msg) = parse_err(&text);
        assert_eq!((kind, frame, line), (ExtxyzErrorKind::BadNumber, 0, 4));
        assert!(msg.contains("\"abc\"") && msg.contains("pos"), "{msg}");
        let text = SI2.replace("1.3575 1.3575 1.3575", "1.3575 1.3575");
        let (kind, _, line, msg) = parse_err(&text);
        assert_eq!((kind, line), (ExtxyzErrorKind::BadAtomLine, 4));
        assert!(msg.contains("expected 3 floats for pos, got 2"), "{msg}");
        let text = SI2.replace("1.3575 1.3575 1.3575", "1.3575 1.3575 1.3575 9");
        let (kind, ..) = parse_err(&text);
        assert_eq!(kind, ExtxyzErrorKind::BadAtomLine);
        let (kind, _, line, msg) = parse_err("1\nenergy=abc\nH 0 0 0\n");
        assert_eq!((kind, line), (ExtxyzErrorKind::BadNumber, 2));
        assert!(msg.contains("energy"), "{msg}");
        let (kind, ..) = parse_err("1\nProperties=species:S:1:pos:R:3:fix:L:1\nH 0 0 0 X\n");
        assert_eq!(kind, ExtxyzErrorKind::BadNumber);
        let (kind, ..) = parse_err("1\nstress=\"1 2 3 4 5\"\nH 0 0 0\n");
        assert_eq!(kind, ExtxyzErrorKind::BadNumber);
        let (_, _, _, msg) = parse_err("1\n\nH 1.0D+00 0 0\n");
        assert!(msg.contains("1.0D+00"), "{msg}");
    }

    #[test]
    fn error_bad_lattice() {
        let text = SI2.replace("5.43 0.0 0.0 0.0 5.43 0.0 0.0 0.0 5.43", "5.43 0.0 0.0 0.0 5.43 0.0 0.0 0.0");
        let (kind, frame, line, msg) = parse_err(&text);
        assert_eq!((kind, frame, line), (ExtxyzErrorKind::BadLattice, 0, 2));
        assert!(msg.contains("Lattice has 8 numbers"), "{msg}");
        let (kind, ..) = parse_err("1\nLattice=\"a b c d e f g h i\"\nH 0 0 0\n");
        assert_eq!(kind, ExtxyzErrorKind::BadLattice);
    }

    #[test]
    fn error_unknown_element() {
        let (kind, _, line, msg) = parse_err(&SI2.replace("Si 1.3575", "Xx 1.3575"));
        assert_eq!((kind, line), (ExtxyzErrorKind::UnknownElement, 4));
        assert!(msg.contains("unknown element 'Xx'"), "{msg}");
        let (kind, ..) = parse_err("1\nProperties=Z:I:1:pos:R:3\n0 0 0 0\n");
        assert_eq!(kind, ExtxyzErrorKind::UnknownElement);
    }

    #[test]
    fn error_properties() {
        for props in [
            "species:S:1",
            "pos:R:3",
            "species:S:1:pos:R",
            "species:S:1:pos:X:3",
            "species:S:1:pos:R:0",
            "species:S:1:pos:R:2",
            "species:S:1:pos:R:3:pos:R:3",
            "species:S:1:pos:R:3:forces:R:2",
        ] {
            let text = format!("1\nProperties={props}\nH 0 0 0 0 0 0\n");
            let (kind, _, line, msg) = parse_err(&text);
            assert_eq!((kind, line), (ExtxyzErrorKind::BadProperties, 2), "{props}: {msg}");
        }
    }

    #[test]
    fn error_blank_line_then_data_and_bad_info() {
        let (kind, frame, line, _) = parse_err(&format!("{SI2}\n{SI2}"));
        assert_eq!((kind, frame, line), (ExtxyzErrorKind::BlankLine, 1, 5));
        let (kind, ..) = parse_err("1\npbc=\"T T\"\nH 0 0 0\n");
        assert_eq!(kind, ExtxyzErrorKind::BadInfo);
        let (kind, ..) = parse_err("1\n=5\nH 0 0 0\n");
        assert_eq!(kind, ExtxyzErrorKind::BadInfo);
        let (kind, ..) = parse_err("1\nx=\"_JSON [1,\"\nH 0 0 0\n");
        assert_eq!(kind, ExtxyzErrorKind::BadInfo);
    }

    #[test]
    fn never_panics_on_prefixes_and_garbage() {
        let mut frame = Frame::from_structure(
            Structure::new(
                [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 0.0, 3.0]],
                vec![[0.0, 0.0, 0.0], [1.5, 1.5, 1.5]],
                vec![Element::from_symbol("Cu").unwrap(); 2],
                [true, true, false],
            )
            .unwrap(),
        );
        frame.energy_ev = Some(-3.25);
        frame.info.insert("s".into(), InfoValue::Str("a \"b\" {c}".into()));
        let text = write_extxyz(&[frame.clone(), frame]);
        for end in 0..text.len() {
            if text.is_char_boundary(end) {
                let _ = read_extxyz(&text[..end], "t");
            }
        }
        for garbage in [
            "\u{0}",
            "1\n\"",
            "1\n\\",
            "1\n{",
            "1\nProperties=::",
            "1\nProperties=a:S:99999999999999999999",
            "18446744073709551616\n",
        ] {
            let _ = read_extxyz(garbage, "t");
        }
    }

    #[test]
    fn write_read_round_trip() {
        let cu = Element::from_symbol("Cu").unwrap();
        let mut f = Frame::from_structure(Structure {
            cell_a: [[3.61, 0.1, 0.0], [0.2, 3.62, 0.0], [0.1, 0.3, 20.0]],
            positions_a: vec![[0.1, 1.0 / 3.0, 1e-20], [-0.0, 2.0f64.sqrt(), 1e17]],
            species: vec![cu, Element::from_symbol("Au").unwrap()],
            pbc: [true, true, false],
        });
        f.energy_ev = Some(-7.123456789012345);
        f.free_energy_ev = Some(-7.2);
        f.forces_ev_per_a = Some(vec![[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]]);
        f.stress_ev_per_a3 = Some([0.01, 0.02, 0.03, 0.004, 0.005, 0.006]);
        use InfoValue::*;
        for (k, v) in [
            ("b", Bool(false)),
            ("i", Int(-42)),
            ("x", Float(5.0)),
            ("tiny", Float(1.25e-7)),
            ("s", Str("hello world \"quoted\" back\\slash".into())),
            ("w", Str("word".into())),
            ("empty", Str("".into())),
            ("looks_bool", Str("T".into())),
            ("looks_num", Str("1.5".into())),
            ("looks_arr", Str("1,2".into())),
            ("looks_json", Str("_JSON [1]".into())),
            ("ia", IntArray(vec![1, 2, 3])),
            ("ia1", IntArray(vec![7])),
            ("fa", FloatArray(vec![0.1, 0.2])),
            ("fa1", FloatArray(vec![0.1])),
            ("ba", BoolArray(vec![true, false])),
            ("ba1", BoolArray(vec![true])),
            ("j", Json(serde_json::json!({"a": [1, 2], "b": "c d"}))),
            ("my key", Int(3)),
            ("UID", Str("007".into())),
        ] {
            f.info.insert(k.into(), v);
        }
        f.arrays.insert("q".into(), ArrayValue::Real { columns: 1, values: vec![0.5, -0.5] });
        f.arrays.insert("tags".into(), ArrayValue::Int { columns: 2, values: vec![1, 2, 3, 4] });
        f.arrays
            .insert("fix".into(), ArrayValue::Bool { columns: 3, values: vec![true, false, true, false, true, false] });
        f.arrays.insert("label".into(), ArrayValue::Str { columns: 1, values: vec!["a".into(), "b".into()] });
        let mut mol = Frame::from_structure(Structure {
            cell_a: [[0.0; 3]; 3],
            positions_a: vec![[0.0, 0.0, 0.0]],
            species: vec![Element::from_symbol("He").unwrap()],
            pbc: [false; 3],
        });
        mol.info.insert("note".into(), Str("isolated".into()));
        let frames = vec![f, mol];
        check_frame(&frames[0]).unwrap();
        let text = write_extxyz(&frames);
        let back = read_extxyz(&text, "t").unwrap();
        assert_eq!(back.len(), 2);
        // -0.0 == 0.0 in PartialEq; compare bits for positions.
        for (a, b) in frames.iter().zip(&back) {
            for (p, q) in a.structure.positions_a.iter().zip(&b.structure.positions_a) {
                for d in 0..3 {
                    assert_eq!(p[d].to_bits(), q[d].to_bits(), "{text}");
                }
            }
        }
        assert_eq!(back, frames, "{text}");
    }

    #[test]
    fn file_round_trip_is_atomic_and_errors_name_the_path() {
        let dir = std::env::temp_dir().join(format!("extxyz-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.xyz");
        let frames = read_extxyz(SI2, "t").unwrap();
        write_extxyz_file(&path, &frames).unwrap();
        assert_eq!(read_extxyz_file(&path).unwrap(), frames);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 1);
        let e = read_extxyz_file(&dir.join("missing.xyz")).unwrap_err();
        assert!(e.to_string().contains("missing.xyz"));
        std::fs::write(&path, "1\nLattice=\"1 2\"\nH 0 0 0\n").unwrap();
        let e = read_extxyz_file(&path).unwrap_err().to_string();
        assert!(e.contains("a.xyz:2: frame 1"), "{e}");
        let mut bad = frames[0].clone();
        bad.forces_ev_per_a = Some(vec![]);
        assert!(matches!(write_extxyz_file(&path, &[bad]), Err(ExtxyzError::InvalidFrame { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn py_repr_matches_python() {
        assert_eq!(py_repr(1.0), "1.0");
        assert_eq!(py_repr(-0.0), "-0.0");
        assert_eq!(py_repr(0.1), "0.1");
        assert_eq!(py_repr(1e-4), "0.0001");
        assert_eq!(py_repr(1e-5), "1e-05");
        assert_eq!(py_repr(1.5e-7), "1.5e-07");
        assert_eq!(py_repr(1e16), "1e+16");
        assert_eq!(py_repr(123456789012345.6), "123456789012345.6");
        assert_eq!(py_repr(1.7976931348623157e308), "1.7976931348623157e+308");
        assert_eq!(py_repr(f64::NAN), "nan");
    }
}
