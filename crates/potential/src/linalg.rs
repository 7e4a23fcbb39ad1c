//! Small dense linear algebra for the fit and the active set: Householder QR (streamed
//! by row blocks, and with column pivoting for rank-revealing solves), LU inverse.
//!
//! Written here rather than pulled in as a dependency: the sizes are small (tens to a
//! few hundred columns), and the numerics we need (no normal equations, a rank decision
//! we can report) fit in a few hundred lines.

/// The upper-triangular factor `R` (and `Qᵀ b`) of a tall least-squares problem
/// `min ‖A x - b‖`, accumulated block of rows by block of rows with Householder
/// reflections (never forming `AᵀA`). Memory is `n²`, independent of the number of rows.
#[derive(Clone, Debug)]
pub struct StreamingQr {
    pub n: usize,
    /// `n x n`, row-major, upper-triangular.
    pub r: Vec<f64>,
    /// The first `n` components of `Qᵀ b`.
    pub qtb: Vec<f64>,
    /// Squared norm of the part of `b` orthogonal to the columns of `A` seen so far
    /// (the residual sum of squares of the unregularised problem).
    pub rss: f64,
    pub rows_seen: usize,
    // scratch, column-major block
    col: Vec<f64>,
}

impl StreamingQr {
    pub fn new(n: usize) -> StreamingQr {
        StreamingQr { n, r: vec![0.0; n * n], qtb: vec![0.0; n], rss: 0.0, rows_seen: 0, col: Vec::new() }
    }

    /// Adds `k` rows (`rows` is `k x n` row-major) with right-hand sides `rhs` (`k`).
    pub fn add_rows(&mut self, rows: &[f64], rhs: &[f64]) {
        let n = self.n;
        let k = rhs.len();
        assert_eq!(rows.len(), k * n, "add_rows: {} values for {k} rows of {n}", rows.len());
        if k == 0 {
            return;
        }
        self.rows_seen += k;
        // column-major copy of the block: col[j * k + i]
        self.col.clear();
        self.col.resize(k * n, 0.0);
        for i in 0..k {
            for j in 0..n {
                self.col[j * k + i] = rows[i * n + j];
            }
        }
        let mut y = rhs.to_vec();
        let blk = &mut self.col;
        for c in 0..n {
            let (head, tail) = blk.split_at_mut((c + 1) * k);
            let xs = &mut head[c * k..];
            let sq: f64 = xs.iter().map(|x| x * x).sum();
            if sq == 0.0 {
                continue;
            }
            let x0 = self.r[c * n + c];
            let norm = (x0 * x0 + sq).sqrt();
            let alpha = if x0 >= 0.0 { -norm } else { norm };
            let v0 = x0 - alpha;
            let vtv = v0 * v0 + sq;
            // apply H = I - 2 v vᵀ / vᵀv to the remaining columns
            for j in c + 1..n {
                let bj = &mut tail[(j - c - 1) * k..(j - c) * k];
                let mut s = v0 * self.r[c * n + j];
                for (a, b) in xs.iter().zip(bj.iter()) {
                    s += a * b;
                }
                let f = 2.0 * s / vtv;
                if f != 0.0 {
                    self.r[c * n + j] -= f * v0;
                    for (b, a) in bj.iter_mut().zip(xs.iter()) {
                        *b -= f * a;
                    }
                }
            }
            let mut s = v0 * self.qtb[c];
            for (a, b) in xs.iter().zip(y.iter()) {
                s += a * b;
            }
            let f = 2.0 * s / vtv;
            self.qtb[c] -= f * v0;
            for (b, a) in y.iter_mut().zip(xs.iter()) {
                *b -= f * a;
            }
            self.r[c * n + c] = alpha;
            xs.iter_mut().for_each(|x| *x = 0.0);
        }
        self.rss += y.iter().map(|x| x * x).sum::<f64>();
    }

    /// Euclidean norm of every column of the rows seen so far (= column norms of `R`).
    pub fn column_norms(&self) -> Vec<f64> {
        let n = self.n;
        (0..n).map(|j| (0..=j).map(|i| self.r[i * n + j].powi(2)).sum::<f64>().sqrt()).collect()
    }
}

/// The result of a rank-revealing least-squares solve.
#[derive(Clone, Debug)]
pub struct LstsqSolution {
    pub x: Vec<f64>,
    /// Numerical rank (columns kept).
    pub rank: usize,
    /// `|R_00| / |R_rr|` of the pivoted QR: an estimate of the condition number of the
    /// (regularised, scaled) problem.
    pub condition_estimate: f64,
}

/// A column-major dense matrix.
#[derive(Clone, Debug)]
pub struct ColMat {
    pub m: usize,
    pub n: usize,
    pub a: Vec<f64>,
}

impl ColMat {
    pub fn zeros(m: usize, n: usize) -> ColMat {
        ColMat { m, n, a: vec![0.0; m * n] }
    }
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.a[j * self.m + i]
    }
    #[inline]
    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.a[j * self.m + i] = v;
    }
    pub fn col(&self, j: usize) -> &[f64] {
        &self.a[j * self.m..(j + 1) * self.m]
    }
}

/// Householder QR with column pivoting, in place: on return the upper triangle of `a`
/// holds `R` (of `A P`), the Householder vectors are below the diagonal (`v_k` has an
/// implicit 1 at row k), and `perm[k]` is the original column at position k.
pub struct PivotedQr {
    pub qr: ColMat,
    pub tau: Vec<f64>,
    pub perm: Vec<usize>,
}

pub fn qr_pivoted(mut a: ColMat) -> PivotedQr {
    let (m, n) = (a.m, a.n);
    let kmax = m.min(n);
    let mut perm: Vec<usize> = (0..n).collect();
    let mut tau = vec![0.0; kmax];
    for k in 0..kmax {
        // pivot: the remaining column with the largest norm (recomputed: exact, m·n per step)
        let mut best = k;
        let mut best_norm = -1.0;
        for j in k..n {
            let c = &a.a[j * m + k..(j + 1) * m];
            let s: f64 = c.iter().map(|x| x * x).sum();
            if s > best_norm {
                best_norm = s;
                best = j;
            }
        }
        if best != k {
            for i in 0..m {
                a.a.swap(k * m + i, best * m + i);
            }
            perm.swap(k, best);
        }
        // Householder vector for column k, rows k..m
        let (left, right) = a.a.split_at_mut((k + 1) * m);
        let x = &mut left[k * m + k..];
        let sq_tail: f64 = x[1..].iter().map(|v| v * v).sum();
        let x0 = x[0];
        if sq_tail == 0.0 {
            tau[k] = 0.0;
            continue;
        }
        let norm = (x0 * x0 + sq_tail).sqrt();
        let beta = if x0 >= 0.0 { -norm } else { norm };
        let v0 = x0 - beta;
        for v in x[1..].iter_mut() {
            *v /= v0;
        }
        let t = (beta - x0) / beta;
        tau[k] = t;
        x[0] = beta;
        // apply (I - tau v vᵀ) to columns k+1..n
        for j in 0..n - k - 1 {
            let cj = &mut right[j * m + k..(j + 1) * m];
            let mut s = cj[0];
            for (c, v) in cj[1..].iter().zip(x[1..].iter()) {
                s += c * v;
            }
            let f = t * s;
            if f != 0.0 {
                cj[0] -= f;
                for (c, v) in cj[1..].iter_mut().zip(x[1..].iter()) {
                    *c -= f * v;
                }
            }
        }
    }
    PivotedQr { qr: a, tau, perm }
}

impl PivotedQr {
    /// `Qᵀ b` in place (b has `m` entries).
    pub fn apply_qt(&self, b: &mut [f64]) {
        let m = self.qr.m;
        for (k, &t) in self.tau.iter().enumerate() {
            if t == 0.0 {
                continue;
            }
            let v = &self.qr.a[k * m + k + 1..(k + 1) * m];
            let mut s = b[k];
            for (x, y) in v.iter().zip(&b[k + 1..]) {
                s += x * y;
            }
            let f = t * s;
            b[k] -= f;
            for (y, x) in b[k + 1..].iter_mut().zip(v) {
                *y -= f * x;
            }
        }
    }

    /// `|R_kk|`, k = 0..min(m, n).
    pub fn diag_abs(&self) -> Vec<f64> {
        (0..self.tau.len()).map(|k| self.qr.get(k, k).abs()).collect()
    }

    /// Numerical rank: the number of `|R_kk| > rtol · |R_00|`.
    pub fn rank(&self, rtol: f64) -> usize {
        let d = self.diag_abs();
        if d.is_empty() || !(d[0] > 0.0) || !d[0].is_finite() {
            return 0;
        }
        d.iter().take_while(|&&x| x > rtol * d[0]).count()
    }
}

/// Solves `min ‖A x - b‖` by column-pivoted QR, keeping the leading `rank` pivoted
/// columns (`|R_kk| > rtol |R_00|`) and setting the other unknowns to zero (the "basic"
/// solution; unique and exact when A has full column rank).
pub fn lstsq_pivoted(a: ColMat, b: &[f64], rtol: f64) -> LstsqSolution {
    let n = a.n;
    let f = qr_pivoted(a);
    let mut qtb = b.to_vec();
    f.apply_qt(&mut qtb);
    let rank = f.rank(rtol);
    let mut z = vec![0.0; n];
    for k in (0..rank).rev() {
        let mut s = qtb[k];
        for j in k + 1..rank {
            s -= f.qr.get(k, j) * z[j];
        }
        z[k] = s / f.qr.get(k, k);
    }
    let mut x = vec![0.0; n];
    for k in 0..n {
        x[f.perm[k]] = z[k];
    }
    let d = f.diag_abs();
    let condition_estimate = if rank == 0 { f64::MAX } else { d[0] / d[rank - 1] };
    LstsqSolution { x, rank, condition_estimate }
}

/// Inverse of a square `n x n` row-major matrix by LU with partial pivoting; None when
/// a pivot is exactly zero or the result is not finite.
pub fn lu_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut lu = a.to_vec();
    let mut piv: Vec<usize> = (0..n).collect();
    for k in 0..n {
        let mut p = k;
        let mut best = lu[k * n + k].abs();
        for i in k + 1..n {
            let v = lu[i * n + k].abs();
            if v > best {
                best = v;
                p = i;
            }
        }
        if best == 0.0 {
            return None;
        }
        if p != k {
            for j in 0..n {
                lu.swap(k * n + j, p * n + j);
            }
            piv.swap(k, p);
        }
        let d = lu[k * n + k];
        for i in k + 1..n {
            let l = lu[i * n + k] / d;
            lu[i * n + k] = l;
            if l != 0.0 {
                for j in k + 1..n {
                    lu[i * n + j] -= l * lu[k * n + j];
                }
            }
        }
    }
    // solve for each column of the identity (permuted)
    let mut inv = vec![0.0; n * n];
    let mut col = vec![0.0; n];
    for c in 0..n {
        for i in 0..n {
            col[i] = if piv[i] == c { 1.0 } else { 0.0 };
        }
        for i in 0..n {
            let mut s = col[i];
            for j in 0..i {
                s -= lu[i * n + j] * col[j];
            }
            col[i] = s;
        }
        for i in (0..n).rev() {
            let mut s = col[i];
            for j in i + 1..n {
                s -= lu[i * n + j] * col[j];
            }
            col[i] = s / lu[i * n + i];
        }
        for i in 0..n {
            inv[i * n + c] = col[i];
        }
    }
    inv.iter().all(|x| x.is_finite()).then_some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    #[test]
    fn streaming_qr_solves_least_squares() {
        let (m, n) = (50, 7);
        let mut s = 1u64;
        let a: Vec<f64> = (0..m * n).map(|_| rng(&mut s)).collect();
        let xt: Vec<f64> = (0..n).map(|_| rng(&mut s)).collect();
        let b: Vec<f64> = (0..m).map(|i| (0..n).map(|j| a[i * n + j] * xt[j]).sum()).collect();
        let mut q = StreamingQr::new(n);
        for blk in 0..5 {
            q.add_rows(&a[blk * 10 * n..(blk + 1) * 10 * n], &b[blk * 10..(blk + 1) * 10]);
        }
        let mut r = ColMat::zeros(n, n);
        for i in 0..n {
            for j in 0..n {
                r.set(i, j, q.r[i * n + j]);
            }
        }
        let sol = lstsq_pivoted(r, &q.qtb, 1e-13);
        assert_eq!(sol.rank, n);
        for j in 0..n {
            assert!((sol.x[j] - xt[j]).abs() < 1e-12, "{j}: {} vs {}", sol.x[j], xt[j]);
        }
        assert!(q.rss < 1e-20);
        // column norms are preserved
        let norms = q.column_norms();
        for j in 0..n {
            let direct: f64 = (0..m).map(|i| a[i * n + j].powi(2)).sum::<f64>().sqrt();
            assert!((norms[j] - direct).abs() < 1e-12 * direct);
        }
    }

    #[test]
    fn pivoted_qr_detects_rank_and_lu_inverts() {
        // rank-2 matrix 6 x 4
        let mut a = ColMat::zeros(6, 4);
        let mut s = 7u64;
        let u: Vec<f64> = (0..6).map(|_| rng(&mut s)).collect();
        let v: Vec<f64> = (0..6).map(|_| rng(&mut s)).collect();
        for i in 0..6 {
            a.set(i, 0, u[i]);
            a.set(i, 1, v[i]);
            a.set(i, 2, u[i] + v[i]);
            a.set(i, 3, 2.0 * u[i]);
        }
        let b: Vec<f64> = (0..6).map(|i| u[i]).collect();
        let sol = lstsq_pivoted(a, &b, 1e-12);
        assert_eq!(sol.rank, 2);
        assert!(sol.x.iter().all(|x| x.is_finite()));
        let m = [4.0, 1.0, 0.5, 2.0, 3.0, 0.1, 0.3, 0.2, 5.0];
        let inv = lu_inverse(&m, 3).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let p: f64 = (0..3).map(|k| m[i * 3 + k] * inv[k * 3 + j]).sum();
                assert!((p - if i == j { 1.0 } else { 0.0 }).abs() < 1e-14);
            }
        }
        assert!(lu_inverse(&[1.0, 2.0, 2.0, 4.0], 2).is_none());
    }
}
