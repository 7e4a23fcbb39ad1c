//! A SNAP model as the two files LAMMPS's `pair_style snap` reads, and the input lines
//! that use them.
//!
//! `.snapcoeff` (PairSNAP::read_files): comment lines start with `#`, blank lines are
//! skipped; the first data line is `nelements ncoeffall`; then per element a line
//! `symbol radius weight` followed by `ncoeffall` lines of one coefficient each
//! (`β0`, the linear terms, then the quadratic ones, where `ncoeffall = 1 + ncoeff` or
//! `1 + ncoeff + ncoeff(ncoeff+1)/2` with `quadraticflag 1`).
//!
//! `.snapparam`: `keyword value` lines; we write every keyword our model depends on
//! (`rcutfac twojmax rfac0 rmin0 switchflag bzeroflag quadraticflag`) plus the ones whose
//! LAMMPS defaults we rely on (`chemflag 0 bnormflag 0 wselfallflag 0`).
//!
//! Numbers are written with 17 significant digits, so LAMMPS reads back the same `f64`.

use crate::model::SnapModel;
use std::fmt::Write as _;

fn num(x: f64) -> String {
    format!("{x:.16e}")
}

/// The `.snapcoeff` file of `model`.
pub fn to_snapcoeff(model: &SnapModel) -> String {
    let p = &model.params;
    let ncoeffall = 1 + p.n_columns();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# SNAP coefficients written by MLIP-AutoPipe: twojmax {} ({} linear{} components), {} element(s)",
        p.twojmax,
        p.n_linear(),
        if p.quadraticflag { " + quadratic" } else { "" },
        p.elements.len()
    );
    let _ =
        writeln!(s, "# order per element: constant, linear terms, then (quadraticflag) 1/2 B_k^2 and B_k B_l (l > k)");
    let _ = writeln!(s);
    let _ = writeln!(s, "{} {}", p.elements.len(), ncoeffall);
    for (e, b) in p.elements.iter().zip(&model.beta) {
        let _ = writeln!(s, "{} {} {}", e.element.symbol(), num(e.radius), num(e.weight));
        for x in b {
            let _ = writeln!(s, "{}", num(*x));
        }
    }
    s
}

/// The `.snapparam` file of `model`.
pub fn to_snapparam(model: &SnapModel) -> String {
    let p = &model.params;
    let mut s = String::new();
    let _ = writeln!(s, "# SNAP parameters written by MLIP-AutoPipe");
    let _ = writeln!(s);
    let _ = writeln!(s, "rcutfac {}", num(p.rcutfac));
    let _ = writeln!(s, "twojmax {}", p.twojmax);
    let _ = writeln!(s, "rfac0 {}", num(p.rfac0));
    let _ = writeln!(s, "rmin0 {}", num(p.rmin0));
    let _ = writeln!(s, "switchflag {}", p.switchflag as i32);
    let _ = writeln!(s, "bzeroflag {}", p.bzeroflag as i32);
    let _ = writeln!(s, "quadraticflag {}", p.quadraticflag as i32);
    let _ = writeln!(s, "chemflag 0");
    let _ = writeln!(s, "bnormflag 0");
    let _ = writeln!(s, "wselfallflag 0");
    s
}

/// The LAMMPS input lines that use the two files; the atom types 1..n are the model's
/// elements in order (`pair_coeff * * coeff param Cu Ni` maps type 1 to Cu, type 2 to Ni;
/// edit the element list if your data file orders its types differently). A model with a
/// ZBL reference gives `pair_style hybrid/overlay zbl INNER OUTER snap` with one
/// `pair_coeff I J zbl Zi Zj` line per pair of types.
pub fn pair_coeff_snippet(model: &SnapModel, coeff_file: &str, param_file: &str) -> String {
    let names: Vec<&str> = model.params.elements.iter().map(|e| e.element.symbol()).collect();
    let mut s = String::new();
    match &model.reference {
        None => {
            let _ = writeln!(s, "pair_style snap");
            let _ = writeln!(s, "pair_coeff * * {coeff_file} {param_file} {}", names.join(" "));
        }
        Some(r) => {
            let _ = writeln!(s, "pair_style hybrid/overlay zbl {} {} snap", r.inner_a, r.outer_a);
            let el = &model.params.elements;
            for i in 0..el.len() {
                for j in i..el.len() {
                    let _ =
                        writeln!(s, "pair_coeff {} {} zbl {} {}", i + 1, j + 1, el[i].element.z(), el[j].element.z());
                }
            }
            let _ = writeln!(s, "pair_coeff * * snap {coeff_file} {param_file} {}", names.join(" "));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snap::{SnapElement, SnapParams};
    use autopipe_atoms::Element;

    #[test]
    fn files_have_lammps_layout_and_full_precision() {
        let params = SnapParams {
            twojmax: 2,
            rcutfac: 4.67637,
            rfac0: 0.99363,
            rmin0: 0.0,
            switchflag: true,
            bzeroflag: true,
            quadraticflag: false,
            elements: vec![
                SnapElement { element: Element::from_symbol("Cu").unwrap(), radius: 0.5, weight: 1.0 },
                SnapElement { element: Element::from_symbol("Ni").unwrap(), radius: 0.45, weight: 0.9 },
            ],
        };
        let mut m = SnapModel::zeros(params);
        m.beta[0][1] = 0.1 + 0.2;
        let c = to_snapcoeff(&m);
        let data: Vec<&str> = c.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
        assert_eq!(data[0], "2 6");
        assert!(data[1].starts_with("Cu "));
        assert_eq!(data[3].parse::<f64>().unwrap(), 0.1 + 0.2);
        assert!(data[8].starts_with("Ni "));
        assert_eq!(data.len(), 1 + 2 * 7);
        let p = to_snapparam(&m);
        assert!(p.contains("twojmax 2\n") && p.contains("quadraticflag 0\n"));
        assert_eq!(
            pair_coeff_snippet(&m, "a.snapcoeff", "a.snapparam"),
            "pair_style snap\npair_coeff * * a.snapcoeff a.snapparam Cu Ni\n"
        );
        m.reference = Some(crate::ZblReference { inner_a: 4.0, outer_a: 4.8 });
        assert_eq!(
            pair_coeff_snippet(&m, "a.snapcoeff", "a.snapparam"),
            "pair_style hybrid/overlay zbl 4 4.8 snap\npair_coeff 1 1 zbl 29 29\npair_coeff 1 2 zbl 29 28\n\
             pair_coeff 2 2 zbl 28 28\npair_coeff * * snap a.snapcoeff a.snapparam Cu Ni\n"
        );
    }
}
