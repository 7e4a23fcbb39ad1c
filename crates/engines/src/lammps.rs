//! LAMMPS outputs (pure): the parsers of its log (any thermo style, several runs,
//! warnings, the `Loop time` line) and of its text dumps (custom columns, orthogonal and
//! triclinic boxes, `x`/`xs`/`xu`/`xsu` coordinates, atoms in any order). The data file
//! and LAMMPS's frame are `autopipe_atoms::lammps_data`'s.

use autopipe_atoms::{Element, Structure};
use std::collections::BTreeMap;

/// A LAMMPS file that does not read as one, with the line (1-based) where it went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LammpsParseError {
    pub line: usize,
    pub message: String,
}

fn perr<T>(line: usize, message: impl Into<String>) -> Result<T, LammpsParseError> {
    Err(LammpsParseError { line, message: message.into() })
}

type Mat3 = [[f64; 3]; 3];

// ------------------------------------------------------------------------- log

/// One `run` (or `minimize`) of a log: its thermo table and the `Loop time` line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogRun {
    /// Column names as LAMMPS printed them (`Step`, `Temp`, `c_gamma_max` ...).
    pub columns: Vec<String>,
    /// One row per thermo output, values in column order.
    pub rows: Vec<Vec<f64>>,
    /// From `Loop time of T on P procs for N steps with A atoms` (absent when the run
    /// did not finish).
    pub loop_time_s: Option<f64>,
    pub procs: Option<usize>,
    pub steps: Option<u64>,
    pub atoms: Option<usize>,
}

impl LogRun {
    /// The values of column `name` (None when the table has no such column).
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        let k = self.columns.iter().position(|c| c == name)?;
        Some(self.rows.iter().map(|r| r[k]).collect())
    }

    /// The last `Step` printed.
    pub fn last_step(&self) -> Option<u64> {
        self.column("Step")?.last().map(|&s| s as u64)
    }
}

/// What a LAMMPS log says.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LammpsLog {
    pub version: Option<String>,
    pub runs: Vec<LogRun>,
    /// `WARNING: ...` lines, without the prefix.
    pub warnings: Vec<String>,
    /// The first `ERROR: ...` line, without the prefix.
    pub error: Option<String>,
    /// `Total wall time: H:MM:SS`, in seconds.
    pub total_wall_time_s: Option<f64>,
}

fn numbers(line: &str) -> Option<Vec<f64>> {
    line.split_whitespace().map(|t| t.parse::<f64>().ok()).collect()
}

/// Parse a LAMMPS log (or screen output). Thermo tables of the one-line styles (`one`,
/// `custom`, with any columns) and of `thermo_style multi` are read; a table ends at its
/// `Loop time` line, or at the end of the file for a run that was cut short.
pub fn parse_log(text: &str) -> Result<LammpsLog, LammpsParseError> {
    let mut log = LammpsLog::default();
    let mut current: Option<LogRun> = None;
    let mut multi_row: Option<(usize, BTreeMap<String, f64>)> = None;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        let line = raw.trim();
        if log.version.is_none() {
            if let Some(v) = line.strip_prefix("LAMMPS (") {
                log.version = Some(v.trim_end_matches(')').to_string());
                continue;
            }
        }
        if let Some(w) = line.strip_prefix("WARNING:") {
            log.warnings.push(w.trim().to_string());
            continue;
        }
        if let Some(e) = line.strip_prefix("ERROR:") {
            log.error.get_or_insert_with(|| e.trim().to_string());
            continue;
        }
        if let Some(t) = line.strip_prefix("Total wall time:") {
            let parts: Vec<f64> = t.trim().split(':').filter_map(|x| x.parse().ok()).collect();
            if parts.len() == 3 {
                log.total_wall_time_s = Some(parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]);
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Loop time of ") {
            let mut run = current.take().unwrap_or_default();
            if let Some((_, row)) = multi_row.take() {
                push_multi(&mut run, row);
            }
            let w: Vec<&str> = rest.split_whitespace().collect();
            // T on P procs for N steps with A atoms
            if w.len() < 9 || w[1] != "on" || w[3] != "procs" || w[4] != "for" || w[6] != "steps" {
                return perr(n, format!("unreadable Loop time line: {line}"));
            }
            run.loop_time_s = w[0].parse().ok();
            run.procs = w[2].parse().ok();
            run.steps = w[5].parse().ok();
            run.atoms = w[8].parse().ok();
            log.runs.push(run);
            continue;
        }
        // thermo_style multi: "------------ Step N ----- CPU = ... (sec) ----" then "Name = value" lines
        if line.starts_with("---") && line.contains(" Step ") {
            let run = current.get_or_insert_with(LogRun::default);
            if let Some((_, row)) = multi_row.take() {
                push_multi(run, row);
            }
            let step = line.split_whitespace().skip_while(|t| *t != "Step").nth(1).and_then(|s| s.parse::<f64>().ok());
            let Some(step) = step else { return perr(n, format!("unreadable thermo multi header: {line}")) };
            multi_row = Some((n, BTreeMap::from([("Step".to_string(), step)])));
            continue;
        }
        if let Some((_, row)) = multi_row.as_mut() {
            if line.contains(" = ") {
                let toks: Vec<&str> = line.split_whitespace().collect();
                let mut k = 0;
                while k + 2 < toks.len() && toks[k + 1] == "=" {
                    let v = toks[k + 2].parse::<f64>();
                    let Ok(v) = v else { return perr(n, format!("{}: not a number: {}", toks[k], toks[k + 2])) };
                    row.insert(toks[k].to_string(), v);
                    k += 3;
                }
                continue;
            }
        }
        // one-line styles: a header of names (any columns) followed by rows of as many numbers
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.is_empty() && words.iter().all(|w| w.parse::<f64>().is_err() && !w.ends_with(':')) {
            let next_is_row =
                lines.peek().is_some_and(|(_, l)| numbers(l.trim()).is_some_and(|v| v.len() == words.len()));
            if next_is_row {
                let run = current.get_or_insert_with(LogRun::default);
                run.columns = words.iter().map(|s| s.to_string()).collect();
                while let Some((j, l)) = lines.peek() {
                    let l = l.trim();
                    match numbers(l) {
                        Some(v) if v.len() == run.columns.len() => {
                            run.rows.push(v);
                            lines.next();
                        }
                        Some(v) if !v.is_empty() => {
                            return perr(
                                j + 1,
                                format!("thermo row with {} values under {} columns", v.len(), run.columns.len()),
                            )
                        }
                        // messages LAMMPS prints between the rows (warnings, fix halt)
                        _ if l.starts_with("WARNING:") || l.contains("halt condition") => {
                            log.warnings.push(l.trim_start_matches("WARNING:").trim().to_string());
                            lines.next();
                        }
                        _ => break,
                    }
                }
            }
        }
    }
    if let Some((_, row)) = multi_row.take() {
        push_multi(current.get_or_insert_with(LogRun::default), row);
    }
    if let Some(run) = current.take() {
        if !run.rows.is_empty() {
            log.runs.push(run); // a run cut short (no Loop time line)
        }
    }
    Ok(log)
}

fn push_multi(run: &mut LogRun, row: BTreeMap<String, f64>) {
    if run.columns.is_empty() {
        run.columns.push("Step".into());
        run.columns.extend(row.keys().filter(|k| *k != "Step").cloned());
    }
    let r: Vec<f64> = run.columns.iter().map(|c| row.get(c).copied().unwrap_or(f64::NAN)).collect();
    run.rows.push(r);
}

// ------------------------------------------------------------------------ dump

/// One frame of a text dump (`dump custom` / `dump atom`).
#[derive(Clone, Debug, PartialEq)]
pub struct DumpFrame {
    pub timestep: u64,
    /// The cell rows (Å; lower-triangular) and the box origin (xlo, ylo, zlo).
    pub cell_a: Mat3,
    pub origin_a: [f64; 3],
    /// Per-atom columns other than id and coordinates (type, v_gamma, c_pe ...), each
    /// ordered by atom id.
    pub columns: BTreeMap<String, Vec<f64>>,
    /// Atom ids, ascending.
    pub ids: Vec<u64>,
    /// Cartesian positions relative to the box origin (Å), ordered by atom id. Scaled
    /// coordinates are converted with the cell; unwrapped ones are kept unwrapped.
    pub positions_a: Vec<[f64; 3]>,
}

impl DumpFrame {
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.columns.get(name).map(|v| v.as_slice())
    }

    /// The frame as a structure: atom types `t` mapped to `types[t - 1]`.
    pub fn structure(&self, types: &[Element]) -> Result<Structure, String> {
        let ty = self.column("type").ok_or("the dump has no type column")?;
        let species = ty
            .iter()
            .map(|&t| types.get((t as usize).wrapping_sub(1)).copied().ok_or(format!("atom type {t} is unknown")))
            .collect::<Result<Vec<_>, _>>()?;
        Structure::new(self.cell_a, self.positions_a.clone(), species, [true; 3]).map_err(|e| e.to_string())
    }
}

/// Parse every frame of a text dump.
pub fn parse_dump(text: &str) -> Result<Vec<DumpFrame>, LammpsParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut frames = Vec::new();
    let mut i = 0;
    let expect = |i: usize, head: &str| -> Result<(), LammpsParseError> {
        match lines.get(i) {
            Some(l) if l.trim_start().starts_with(head) => Ok(()),
            Some(l) => perr(i + 1, format!("expected `{head}`, found `{}`", l.trim())),
            None => perr(i + 1, format!("the file ends where `{head}` was expected")),
        }
    };
    let num_at = |i: usize, k: usize| -> Result<Vec<f64>, LammpsParseError> {
        let l = lines.get(i).map(|l| l.trim()).unwrap_or("");
        match numbers(l) {
            Some(v) if v.len() >= k => Ok(v),
            _ => perr(i + 1, format!("expected {k} numbers, found `{l}`")),
        }
    };
    while i < lines.len() {
        if lines[i].trim().is_empty() {
            i += 1;
            continue;
        }
        expect(i, "ITEM: TIMESTEP")?;
        let timestep = lines
            .get(i + 1)
            .and_then(|l| l.trim().parse::<u64>().ok())
            .map_or_else(|| perr(i + 2, "expected the timestep"), Ok)?;
        i += 2;
        // some styles put ITEM: TIME / UNITS first
        while lines.get(i).is_some_and(|l| l.starts_with("ITEM: TIME") || l.starts_with("ITEM: UNITS")) {
            i += 2;
        }
        expect(i, "ITEM: NUMBER OF ATOMS")?;
        let n = lines
            .get(i + 1)
            .and_then(|l| l.trim().parse::<usize>().ok())
            .map_or_else(|| perr(i + 2, "expected the number of atoms"), Ok)?;
        i += 2;
        expect(i, "ITEM: BOX BOUNDS")?;
        let head = lines[i].trim();
        if head.contains("abc origin") {
            return perr(i + 1, "general triclinic dumps (abc origin) are not supported; use the default dump_modify");
        }
        let triclinic = head.contains("xy xz yz");
        let b: Vec<Vec<f64>> =
            (0..3).map(|k| num_at(i + 1 + k, if triclinic { 3 } else { 2 })).collect::<Result<_, _>>()?;
        let (xy, xz, yz) = if triclinic { (b[0][2], b[1][2], b[2][2]) } else { (0.0, 0.0, 0.0) };
        let xlo = b[0][0] - [0.0, xy, xz, xy + xz].into_iter().fold(f64::INFINITY, f64::min);
        let xhi = b[0][1] - [0.0, xy, xz, xy + xz].into_iter().fold(f64::NEG_INFINITY, f64::max);
        let ylo = b[1][0] - yz.min(0.0);
        let yhi = b[1][1] - yz.max(0.0);
        let (zlo, zhi) = (b[2][0], b[2][1]);
        let cell = [[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]];
        i += 4;
        expect(i, "ITEM: ATOMS")?;
        let cols: Vec<String> = lines[i].trim()["ITEM: ATOMS".len()..].split_whitespace().map(String::from).collect();
        let find = |names: &[&str]| names.iter().find_map(|n| cols.iter().position(|c| c == n));
        let id_col = find(&["id"]);
        // coordinates: Cartesian (x, xu) or scaled (xs, xsu), wrapped or not
        let coord =
            [("x", "y", "z", false), ("xu", "yu", "zu", false), ("xs", "ys", "zs", true), ("xsu", "ysu", "zsu", true)]
                .into_iter()
                .find_map(|(a, b, c, scaled)| Some(([find(&[a])?, find(&[b])?, find(&[c])?], scaled)));
        let Some((xyz, scaled)) = coord else {
            return perr(i + 1, format!("no coordinate columns (x y z, xu, xs or xsu) among {}", cols.join(" ")));
        };
        let mut rows: Vec<(u64, Vec<f64>)> = Vec::with_capacity(n);
        for k in 0..n {
            let ln = i + 1 + k;
            let Some(l) = lines.get(ln) else { return perr(ln + 1, format!("the frame ends after {k} of {n} atoms")) };
            let v = match numbers(l.trim()) {
                Some(v) if v.len() == cols.len() => v,
                _ => {
                    return perr(
                        ln + 1,
                        format!("expected {} numbers ({}), found `{}`", cols.len(), cols.join(" "), l.trim()),
                    )
                }
            };
            let id = id_col.map(|c| v[c] as u64).unwrap_or(k as u64 + 1);
            rows.push((id, v));
        }
        rows.sort_by_key(|r| r.0);
        if rows.windows(2).any(|w| w[0].0 == w[1].0) {
            return perr(i + 1, "duplicate atom ids");
        }
        let positions: Vec<[f64; 3]> = rows
            .iter()
            .map(|(_, v)| {
                let p = [v[xyz[0]], v[xyz[1]], v[xyz[2]]];
                if scaled {
                    [
                        p[0] * cell[0][0] + p[1] * cell[1][0] + p[2] * cell[2][0],
                        p[1] * cell[1][1] + p[2] * cell[2][1],
                        p[2] * cell[2][2],
                    ]
                } else {
                    [p[0] - xlo, p[1] - ylo, p[2] - zlo]
                }
            })
            .collect();
        let mut columns = BTreeMap::new();
        for (c, name) in cols.iter().enumerate() {
            if Some(c) != id_col && !xyz.contains(&c) {
                columns.insert(name.clone(), rows.iter().map(|(_, v)| v[c]).collect());
            }
        }
        frames.push(DumpFrame {
            timestep,
            cell_a: cell,
            origin_a: [xlo, ylo, zlo],
            columns,
            ids: rows.iter().map(|r| r.0).collect(),
            positions_a: positions,
        });
        i += 1 + n;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_with_custom_and_multi_styles_several_runs_and_warnings() {
        let text = "LAMMPS (29 Aug 2024 - Update 1)\nWARNING: something odd (src/x.cpp:1)\n\
            Per MPI rank memory allocation (min/avg/max) = 3 | 3 | 3 Mbytes\n\
               Step          Temp          c_gamma_max  \n\
                     0   300            1.5\n\
            WARNING: inside the table (src/y.cpp:2)\n\
            Fix halt condition for fix-id h met on step 10 with value 12.5\n\
                    10   290.5          2.25e+00\n\
            Loop time of 0.5 on 2 procs for 10 steps with 32 atoms\n\n\
            Performance: ...\n\
            ------------ Step              10 ----- CPU =      0.1 (sec) ----------------\n\
            TotEng   =      -1.0 KinEng   =       0.5 Temp     =     300.0\n\
            PotEng   =      -1.5 E_bond   =       0.0000\n\
            ------------ Step              20 ----- CPU =      0.2 (sec) ----------------\n\
            TotEng   =      -1.1 KinEng   =       0.6 Temp     =     310.0\n\
            PotEng   =      -1.7 E_bond   =       0.0000\n\
            Loop time of 0.25 on 1 procs for 10 steps with 32 atoms\n\
            Step Temp\n 20 1\n 25 2\nERROR: Lost atoms: original 32 current 31 (src/thermo.cpp:1)\n";
        let log = parse_log(text).unwrap();
        assert_eq!(log.version.as_deref(), Some("29 Aug 2024 - Update 1"));
        assert_eq!(log.warnings[0], "something odd (src/x.cpp:1)");
        assert_eq!(log.warnings[1], "inside the table (src/y.cpp:2)");
        assert!(log.warnings[2].starts_with("Fix halt condition"));
        assert_eq!(log.runs.len(), 3);
        assert_eq!(log.runs[0].column("c_gamma_max").unwrap(), vec![1.5, 2.25]);
        assert_eq!((log.runs[0].procs, log.runs[0].steps, log.runs[0].atoms), (Some(2), Some(10), Some(32)));
        assert_eq!(log.runs[1].column("Temp").unwrap(), vec![300.0, 310.0]);
        assert_eq!(log.runs[1].column("PotEng").unwrap(), vec![-1.5, -1.7]);
        assert_eq!(log.runs[1].last_step(), Some(20));
        assert_eq!(log.runs[2].loop_time_s, None);
        assert_eq!(log.runs[2].last_step(), Some(25));
        assert!(log.error.unwrap().starts_with("Lost atoms"));
        assert!(parse_log("Step Temp\n0 1\n1 2 3\n").unwrap_err().line == 3);
    }

    #[test]
    fn dumps_orthogonal_triclinic_scaled_unsorted() {
        let text = "ITEM: TIMESTEP\n5\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n\
            -1 3\n0 4\n0 5\nITEM: ATOMS id type x y z v_gamma\n2 1 1.0 2.0 3.0 1.5\n1 2 0 0 0 0.5\n\
            ITEM: TIMESTEP\n10\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS xy xz yz pp pp pp\n\
            -0.5 4.5 1.0\n0 4 -0.5\n0 5 0.25\nITEM: ATOMS type xs ys zs id\n1 0.5 0.5 0.5 7\n1 0 0 1 3\n";
        let f = parse_dump(text).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].ids, vec![1, 2]);
        assert_eq!(f[0].positions_a, vec![[1.0, 0.0, 0.0], [2.0, 2.0, 3.0]]);
        assert_eq!(f[0].column("v_gamma").unwrap(), &[0.5, 1.5]);
        assert_eq!(f[0].cell_a, [[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 5.0]]);
        // xy=1 xz=-0.5 yz=0.25: xlo = -0.5 - min(0,1,-0.5,0.5) = 0, xhi = 4.5 - 1 = 3.5
        let t = &f[1];
        assert_eq!(t.timestep, 10);
        assert_eq!(t.cell_a, [[3.5, 0.0, 0.0], [1.0, 3.75, 0.0], [-0.5, 0.25, 5.0]]);
        assert_eq!(t.ids, vec![3, 7]);
        assert_eq!(t.positions_a[0], [-0.5, 0.25, 5.0]);
        let h = [(3.5 + 1.0 - 0.5) / 2.0, (3.75 + 0.25) / 2.0, 2.5];
        for k in 0..3 {
            assert!((t.positions_a[1][k] - h[k]).abs() < 1e-12);
        }
        let e = parse_dump("ITEM: TIMESTEP\n1\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp pp\n0 1\n0 1\n0 1\nITEM: ATOMS id x y z\n1 0 0 0\n")
            .unwrap_err();
        assert_eq!(e.line, 11);
        assert!(parse_dump("ITEM: TIMESTEP\n1\nITEM: NUMBER OF ATOMS\n1\nITEM: BOX BOUNDS pp pp pp\n0 1\n0 1\n0 1\nITEM: ATOMS id q\n1 0\n")
            .unwrap_err()
            .message
            .contains("no coordinate"));
    }
}
