//! The extrapolation grade γ inside LAMMPS: input lines that compute, every `every`
//! steps, the same per-atom γ as [`ActiveSet::gamma_row`] from `compute sna/atom`.
//!
//! γ is linear algebra on the row `x = [1, B_1 .. B_K]`: the scaled row
//! `x' = (x - center) / scale`, its coefficients in the active set `c = x' M` with
//! `M = V A⁻¹` (`V` the basis of the training span, the identity at full rank), and, when
//! the set is rank-deficient, the out-of-span residual `r = x' (I - V Vᵀ)`. Every `c_j`
//! and `r_k` is an affine function of the B's, written as one atom-style variable each;
//! a `fix ave/atom` (1 sample every `every` steps) stores them, so that the maximum
//! `γ = max(max_j |c_j|, ‖r‖ / residual_tol)` — written as a balanced tree of
//! `max(a, b) = (a + b + |a - b|) / 2` over the stored values — costs nothing more. One
//! such set per element (atom type `t` = element `t` of the model); `v_gamma` picks the
//! atom's own. `compute reduce max` gives the frame's maximum (`c_gamma_max`).
//!
//! Pure computation: the caller writes the lines into its input file.

use crate::model::SnapModel;
use std::fmt::Write as _;

fn num(x: f64) -> String {
    format!("{x:.16e}")
}

/// γ of atoms of an element without training environments (the native grade is f64::MAX).
pub const EMPTY_SET_GAMMA: f64 = 1e300;

/// `max` of `terms` as a balanced tree of `(a+b+abs(a-b))/2`.
fn max_tree(terms: &[String]) -> String {
    match terms.len() {
        0 => "0".into(),
        1 => terms[0].clone(),
        n => {
            let (a, b) = (max_tree(&terms[..n / 2]), max_tree(&terms[n / 2..]));
            format!("(0.5*(({a})+({b})+abs(({a})-({b}))))")
        }
    }
}

/// An affine form `c0 + Σ_k w_k c_sna[k]` as a LAMMPS formula (zero weights skipped).
fn affine(c0: f64, w: &[f64], sna: &str) -> String {
    let mut s = num(c0);
    for (k, &x) in w.iter().enumerate() {
        if x != 0.0 {
            let _ = write!(s, "{}{}*c_{sna}[{}]", if x < 0.0 { "-" } else { "+" }, num(x.abs()), k + 1);
        }
    }
    s
}

/// The `compute sna/atom` line of `model` (linear components only, the model's
/// radii, weights and flags) under the name `name`.
pub fn sna_compute_line(model: &SnapModel, name: &str) -> String {
    let p = &model.params;
    let radii: Vec<String> = p.elements.iter().map(|e| num(e.radius)).collect();
    let weights: Vec<String> = p.elements.iter().map(|e| num(e.weight)).collect();
    format!(
        "compute {name} all sna/atom {} {} {} {} {} rmin0 {} switchflag {} bzeroflag {} quadraticflag 0\n",
        num(p.rcutfac),
        num(p.rfac0),
        p.twojmax,
        radii.join(" "),
        weights.join(" "),
        num(p.rmin0),
        p.switchflag as i32,
        p.bzeroflag as i32
    )
}

/// The lines defining `v_gamma` (per atom, evaluated every `every` steps) and
/// `c_gamma_max` (its maximum over the atoms), or an error when the model has no active
/// sets. Needs the atom types to be the model's elements in order.
pub fn gamma_watch_lines(model: &SnapModel, every: u64) -> Result<String, String> {
    if model.active_sets.is_empty() {
        return Err("the model has no active sets: no extrapolation grade to watch".into());
    }
    let mut s = String::new();
    s.push_str("# extrapolation grade gamma (MaxVol active sets), as autopipe's ActiveSet::gamma_row\n");
    s.push_str(&sna_compute_line(model, "gamma_sna"));
    let mut per_element = Vec::new();
    for (t, set) in model.active_sets.iter().enumerate() {
        let t1 = t + 1;
        if set.rank == 0 {
            per_element.push(num(EMPTY_SET_GAMMA));
            continue;
        }
        let n = set.n_dim;
        let r = set.rank;
        // M = V A⁻¹ (n x r), or A⁻¹ at full rank
        let m: Vec<f64> = if set.basis.is_empty() {
            set.inverse.clone()
        } else {
            let mut m = vec![0.0; n * r];
            for k in 0..n {
                for j in 0..r {
                    m[k * r + j] = (0..r).map(|l| set.basis[k * r + l] * set.inverse[l * r + j]).sum();
                }
            }
            m
        };
        // x'_k = (x_k - center_k)/scale_k, x_0 = 1: an affine form in B_1..B_{n-1}
        // of coefficients a_k = 1/scale_k and offset o_k = -center_k/scale_k.
        let affine_of = |col: &dyn Fn(usize) -> f64| -> (f64, Vec<f64>) {
            let mut c0 = col(0) * (1.0 - set.center[0]) / set.scale[0];
            let mut w = vec![0.0; n - 1];
            for k in 1..n {
                w[k - 1] = col(k) / set.scale[k];
                c0 -= col(k) * set.center[k] / set.scale[k];
            }
            (c0, w)
        };
        let mut names = Vec::new();
        for j in 0..r {
            let (c0, w) = affine_of(&|k| m[k * r + j]);
            let _ = writeln!(s, "variable gc{t1}_{} atom {}", j + 1, affine(c0, &w, "gamma_sna"));
            names.push(format!("v_gc{t1}_{}", j + 1));
        }
        let n_coef = names.len();
        if !set.basis.is_empty() {
            // residual r = x' (I - V Vᵀ): column k of the projector
            for k in 0..n {
                let (c0, w) = affine_of(&|l| {
                    let vv: f64 = (0..r).map(|j| set.basis[l * r + j] * set.basis[k * r + j]).sum();
                    (if l == k { 1.0 } else { 0.0 }) - vv
                });
                let _ = writeln!(s, "variable gr{t1}_{} atom {}", k + 1, affine(c0, &w, "gamma_sna"));
                names.push(format!("v_gr{t1}_{}", k + 1));
            }
        }
        let _ = writeln!(s, "fix gamma_store{t1} all ave/atom 1 1 {every} {}", names.join(" "));
        let mut terms: Vec<String> = (1..=n_coef).map(|j| format!("abs(f_gamma_store{t1}[{j}])")).collect();
        if names.len() > n_coef {
            let squares: Vec<String> =
                (n_coef + 1..=names.len()).map(|k| format!("f_gamma_store{t1}[{k}]^2")).collect();
            terms.push(format!("sqrt({})/{}", squares.join("+"), num(set.residual_tol)));
        }
        let _ = writeln!(s, "variable gamma{t1} atom {}", max_tree(&terms));
        per_element.push(format!("v_gamma{t1}"));
    }
    // the atom's own element: nested ternaries on the type
    let mut pick = per_element.last().cloned().unwrap_or_else(|| "0".into());
    for t in (0..per_element.len().saturating_sub(1)).rev() {
        pick = format!("ternary(type=={},{},{pick})", t + 1, per_element[t]);
    }
    let _ = writeln!(s, "variable gamma atom {pick}");
    s.push_str("compute gamma_max all reduce max v_gamma\n");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tree_is_balanced_and_exact() {
        let t: Vec<String> = ["1", "5", "3"].iter().map(|s| s.to_string()).collect();
        assert_eq!(max_tree(&t[..1]), "1");
        // max(1, max(5, 3)): the inner pair's formula appears twice in the outer one.
        let f = max_tree(&t);
        assert_eq!(f.matches("abs").count(), 3, "{f}");
        assert_eq!(max_tree(&t[1..]), "(0.5*((5)+(3)+abs((5)-(3))))");
        assert_eq!(affine(1.0, &[0.0, -2.0], "s"), format!("{}-{}*c_s[2]", num(1.0), num(2.0)));
    }
}
