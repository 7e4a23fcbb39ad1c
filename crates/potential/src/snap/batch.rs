//! The per-neighbour kernels (U, dU, dE/dr) for all neighbours of an atom at once, with
//! the neighbour index innermost so that the recursions vectorise.

use super::sna::{sfac, Kernel, Nbr, Work};

/// Per-neighbour scalars and the U of every neighbour, `[U index][neighbour]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct NbrBatch {
    pub n: usize,
    pub a_r: Vec<f64>,
    pub a_i: Vec<f64>,
    pub b_r: Vec<f64>,
    pub b_i: Vec<f64>,
    /// `[c * n + k]`
    pub da_r: Vec<f64>,
    pub da_i: Vec<f64>,
    pub db_r: Vec<f64>,
    pub db_i: Vec<f64>,
    pub unit: Vec<f64>,
    /// switching function times weight, and its radial derivative times weight
    pub s: Vec<f64>,
    pub ds: Vec<f64>,
    pub u_r: Vec<f64>,
    pub u_i: Vec<f64>,
}

fn fit(v: &mut Vec<f64>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

/// `(src row a, dst row b)` of length `len` from one buffer, `a != b`.
#[inline]
fn two_rows(buf: &mut [f64], a: usize, b: usize, len: usize) -> (&[f64], &mut [f64]) {
    if a < b {
        let (lo, hi) = buf.split_at_mut(b * len);
        (&lo[a * len..(a + 1) * len], &mut hi[..len])
    } else {
        let (lo, hi) = buf.split_at_mut(a * len);
        (&hi[..len], &mut lo[b * len..(b + 1) * len])
    }
}

/// Rows `prev < cur < cur + 1` of length `len`: (prev, cur, next).
#[inline]
fn three_rows(buf: &mut [f64], prev: usize, cur: usize, len: usize) -> (&[f64], &mut [f64], &mut [f64]) {
    let (lo, hi) = buf.split_at_mut(cur * len);
    let (c, rest) = hi.split_at_mut(len);
    (&lo[prev * len..(prev + 1) * len], c, &mut rest[..len])
}

impl Kernel<'_> {
    /// U of every neighbour (kept for the derivatives) and their weighted sum Ui.
    pub fn compute_ui_batch(&self, w: &mut Work, nbrs: &[Nbr], derivatives: bool) {
        let t = self.t;
        let n = nbrs.len();
        let b = &mut w.nb;
        b.n = n;
        for v in [&mut b.a_r, &mut b.a_i, &mut b.b_r, &mut b.b_i, &mut b.s, &mut b.ds] {
            fit(v, n);
        }
        for v in [&mut b.da_r, &mut b.da_i, &mut b.db_r, &mut b.db_i, &mut b.unit] {
            fit(v, 3 * n);
        }
        fit(&mut b.u_r, t.idxu_max * n);
        fit(&mut b.u_i, t.idxu_max * n);
        for (k, nb) in nbrs.iter().enumerate() {
            let [x, y, z] = nb.rij;
            let r = nb.r;
            let rscale0 = self.rfac0 * std::f64::consts::PI / (nb.rcut - self.rmin0);
            let theta0 = (r - self.rmin0) * rscale0;
            let (sn, cs) = theta0.sin_cos();
            let z0 = r * cs / sn;
            let r0inv = 1.0 / (r * r + z0 * z0).sqrt();
            b.a_r[k] = z0 * r0inv;
            b.a_i[k] = -z * r0inv;
            b.b_r[k] = y * r0inv;
            b.b_i[k] = -x * r0inv;
            let (s, ds) = sfac(self.switchflag, self.rmin0, r, nb.rcut);
            b.s[k] = s * nb.wj;
            b.ds[k] = ds * nb.wj;
            if derivatives {
                let rsq = r * r;
                let dz0dr = z0 / r - (r * rscale0) * (rsq + z0 * z0) / rsq;
                let rinv = 1.0 / r;
                let u = [x * rinv, y * rinv, z * rinv];
                let dr0invdr = -(r0inv * r0inv * r0inv) * (r + z0 * dz0dr);
                for c in 0..3 {
                    let dr0inv = dr0invdr * u[c];
                    let dz0 = dz0dr * u[c];
                    b.da_r[c * n + k] = dz0 * r0inv + z0 * dr0inv;
                    b.da_i[c * n + k] = -z * dr0inv;
                    b.db_r[c * n + k] = y * dr0inv;
                    b.db_i[c * n + k] = -x * dr0inv;
                    b.unit[c * n + k] = u[c];
                }
                b.da_i[2 * n + k] += -r0inv;
                b.db_i[k] += -r0inv;
                b.db_r[n + k] += r0inv;
            }
        }
        if n > 0 {
            #[cfg(target_arch = "x86_64")]
            {
                if self.simd.avx2 {
                    // SAFETY: the CPU supports AVX2 (`Simd::new` checked).
                    unsafe { uarray_avx2(self, b) };
                } else {
                    uarray_body(self, b);
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            uarray_body(self, b);
        }
        // Ui = I + Σ_k s_k U_k
        for jju in 0..t.idxu_max {
            let ur = &b.u_r[jju * n..(jju + 1) * n];
            let ui = &b.u_i[jju * n..(jju + 1) * n];
            let s = &b.s[..n];
            let mut sr = 0.0;
            let mut si = 0.0;
            for k in 0..n {
                sr += s[k] * ur[k];
                si += s[k] * ui[k];
            }
            w.utot_r[jju] = sr;
            w.utot_i[jju] = si;
        }
        for j in 0..=t.twojmax {
            for ma in 0..=j {
                w.utot_r[t.idxu_block[j] + (j + 1) * ma + ma] += 1.0;
            }
        }
    }

    /// dU/dr_j of every neighbour into `w.dub` (`[U index][re, im][c * n + k]`, left halves),
    /// ready for `compute_dbidrj_batch` / `compute_deidrj_batch`. Call `compute_ui_batch`
    /// with `derivatives` first.
    pub fn compute_duidrj_batch(&self, w: &mut Work) {
        let n = w.nb.n;
        self.begin_batch(w, n);
        if n == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if self.simd.avx2 {
                // SAFETY: the CPU supports AVX2 (`Simd::new` checked).
                unsafe { duarray_avx2(self, w) };
                return;
            }
        }
        duarray_body::<false>(self, w);
    }

    /// dE_i/dr_j of every neighbour from Y and the batched dU: `out[c * n + k]`.
    pub fn compute_deidrj_batch(&self, w: &Work, out: &mut [f64]) {
        let t = self.t;
        let n = w.nb.n;
        let width = Self::batch_width(n);
        let out = &mut out[..width];
        out.iter_mut().for_each(|x| *x = 0.0);
        for j in 0..=t.twojmax {
            let u0 = t.idxu_block[j];
            let len = t.half_len[j];
            for m in 0..len {
                let f = if m + 1 == len && len % 2 == 1 { 1.0 } else { 2.0 };
                let yr = f * w.y_r[u0 + m];
                let yi = f * w.y_i[u0 + m];
                let row = 2 * (u0 + m) * width;
                let dr = &w.dub[row..row + width];
                let di = &w.dub[row + width..row + 2 * width];
                for q in 0..width {
                    out[q] += yr * dr[q] + yi * di[q];
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn uarray_avx2(k: &Kernel<'_>, b: &mut NbrBatch) {
    uarray_body(k, b)
}

#[inline(always)]
fn uarray_body(kern: &Kernel<'_>, b: &mut NbrBatch) {
    let t = kern.t;
    let n = b.n;
    let st = t.rootpq_stride;
    let (a_r, a_i, b_r, b_i) = (&b.a_r[..n], &b.a_i[..n], &b.b_r[..n], &b.b_i[..n]);
    let ur = &mut b.u_r[..t.idxu_max * n];
    let ui = &mut b.u_i[..t.idxu_max * n];
    ur[..n].iter_mut().for_each(|x| *x = 1.0);
    ui[..n].iter_mut().for_each(|x| *x = 0.0);
    for j in 1..=t.twojmax {
        let base = t.idxu_block[j];
        let mut jju = base;
        let mut jjup = t.idxu_block[j - 1];
        for mb in 0..=j / 2 {
            ur[jju * n..(jju + 1) * n].iter_mut().for_each(|x| *x = 0.0);
            ui[jju * n..(jju + 1) * n].iter_mut().for_each(|x| *x = 0.0);
            for ma in 0..j {
                let r1 = t.rootpq[(j - ma) * st + (j - mb)];
                let r2 = t.rootpq[(ma + 1) * st + (j - mb)];
                let (pr, cr, nr) = three_rows(ur, jjup, jju, n);
                let (pi, ci, ni) = three_rows(ui, jjup, jju, n);
                let (pr, cr, nr) = (&pr[..n], &mut cr[..n], &mut nr[..n]);
                let (pi, ci, ni) = (&pi[..n], &mut ci[..n], &mut ni[..n]);
                let (a_r, a_i, b_r, b_i) = (&a_r[..n], &a_i[..n], &b_r[..n], &b_i[..n]);
                for k in 0..n {
                    let (p_r, p_i) = (pr[k], pi[k]);
                    cr[k] += r1 * (a_r[k] * p_r + a_i[k] * p_i);
                    ci[k] += r1 * (a_r[k] * p_i - a_i[k] * p_r);
                    nr[k] = -r2 * (b_r[k] * p_r + b_i[k] * p_i);
                    ni[k] = -r2 * (b_r[k] * p_i - b_i[k] * p_r);
                }
                jju += 1;
                jjup += 1;
            }
            jju += 1;
        }
        let mut jju = base;
        let mut jjup = base + (j + 1) * (j + 1) - 1;
        let mut mbpar = 1.0;
        for _mb in 0..=j / 2 {
            let mut mapar = mbpar;
            for _ma in 0..=j {
                if jju == jjup {
                    ui[jju * n..(jju + 1) * n].iter_mut().for_each(|x| *x *= -mapar);
                    ur[jju * n..(jju + 1) * n].iter_mut().for_each(|x| *x *= mapar);
                } else {
                    let (src, dst) = two_rows(ur, jju, jjup, n);
                    for k in 0..n {
                        dst[k] = mapar * src[k];
                    }
                    let (src, dst) = two_rows(ui, jju, jjup, n);
                    for k in 0..n {
                        dst[k] = -mapar * src[k];
                    }
                }
                mapar = -mapar;
                jju += 1;
                jjup = jjup.wrapping_sub(1);
            }
            mbpar = -mbpar;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn duarray_avx2(k: &Kernel<'_>, w: &mut Work) {
    duarray_body::<true>(k, w)
}

struct DuStepIn<'a> {
    r1: f64,
    r2: f64,
    pr: &'a [f64],
    pi: &'a [f64],
    dpr: &'a [f64],
    dpi: &'a [f64],
    a_r: &'a [f64],
    a_i: &'a [f64],
    b_r: &'a [f64],
    b_i: &'a [f64],
    dar: &'a [f64],
    dai: &'a [f64],
    dbr: &'a [f64],
    dbi: &'a [f64],
}

/// One step of the dU recursion for one Cartesian component and all neighbours. A
/// function of its own so that the outputs are `noalias` and the loop vectorises.
#[inline(always)]
fn du_step_body(x: &DuStepIn<'_>, cre: &mut [f64], cim: &mut [f64], nre: &mut [f64], nim: &mut [f64]) {
    let n = cre.len();
    let (cim, nre, nim) = (&mut cim[..n], &mut nre[..n], &mut nim[..n]);
    let (pr, pi, dpr, dpi) = (&x.pr[..n], &x.pi[..n], &x.dpr[..n], &x.dpi[..n]);
    let (a_r, a_i, b_r, b_i) = (&x.a_r[..n], &x.a_i[..n], &x.b_r[..n], &x.b_i[..n]);
    let (dar, dai, dbr, dbi) = (&x.dar[..n], &x.dai[..n], &x.dbr[..n], &x.dbi[..n]);
    let (r1, r2) = (x.r1, x.r2);
    for k in 0..n {
        let (p_r, p_i, dp_r, dp_i) = (pr[k], pi[k], dpr[k], dpi[k]);
        cre[k] += r1 * (dar[k] * p_r + dai[k] * p_i + a_r[k] * dp_r + a_i[k] * dp_i);
        cim[k] += r1 * (dar[k] * p_i - dai[k] * p_r + a_r[k] * dp_i - a_i[k] * dp_r);
        nre[k] = -r2 * (dbr[k] * p_r + dbi[k] * p_i + b_r[k] * dp_r + b_i[k] * dp_i);
        nim[k] = -r2 * (dbr[k] * p_i - dbi[k] * p_r + b_r[k] * dp_i - b_i[k] * dp_r);
    }
}

#[inline(never)]
fn du_step_plain(x: &DuStepIn<'_>, cre: &mut [f64], cim: &mut [f64], nre: &mut [f64], nim: &mut [f64]) {
    du_step_body(x, cre, cim, nre, nim)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline(never)]
unsafe fn du_step_avx2(x: &DuStepIn<'_>, cre: &mut [f64], cim: &mut [f64], nre: &mut [f64], nim: &mut [f64]) {
    du_step_body(x, cre, cim, nre, nim)
}

#[inline(always)]
fn duarray_body<const AVX: bool>(kern: &Kernel<'_>, w: &mut Work) {
    let t = kern.t;
    let b = &w.nb;
    let n = b.n;
    let width = Kernel::batch_width(n);
    let rl = 2 * width; // one U index: re row then im row
    let st = t.rootpq_stride;
    let (a_r, a_i, b_r, b_i) = (&b.a_r[..n], &b.a_i[..n], &b.b_r[..n], &b.b_i[..n]);
    let du = &mut w.dub[..t.idxu_max * rl];
    let ur = &b.u_r[..t.idxu_max * n];
    let ui = &b.u_i[..t.idxu_max * n];
    // dU(j=0) = 0: begin_batch zeroed the array
    for j in 1..=t.twojmax {
        let base = t.idxu_block[j];
        let mut jju = base;
        let mut jjup = t.idxu_block[j - 1];
        for mb in 0..=j / 2 {
            du[jju * rl..(jju + 1) * rl].iter_mut().for_each(|x| *x = 0.0);
            for ma in 0..j {
                let r1 = t.rootpq[(j - ma) * st + (j - mb)];
                let r2 = t.rootpq[(ma + 1) * st + (j - mb)];
                let (prev, cur, next) = three_rows(du, jjup, jju, rl);
                let pr = &ur[jjup * n..][..n];
                let pi = &ui[jjup * n..][..n];
                let (cre_all, cim_all) = cur.split_at_mut(width);
                let (nre_all, nim_all) = next.split_at_mut(width);
                let pr = &pr[..n];
                let pi = &pi[..n];
                let (a_r, a_i, b_r, b_i) = (&a_r[..n], &a_i[..n], &b_r[..n], &b_i[..n]);
                for c in 0..3 {
                    let o = c * n;
                    let cre = &mut cre_all[o..][..n];
                    let cim = &mut cim_all[o..][..n];
                    let nre = &mut nre_all[o..][..n];
                    let nim = &mut nim_all[o..][..n];
                    let ins = DuStepIn {
                        r1,
                        r2,
                        pr,
                        pi,
                        dpr: &prev[o..][..n],
                        dpi: &prev[width + o..][..n],
                        a_r,
                        a_i,
                        b_r,
                        b_i,
                        dar: &b.da_r[o..][..n],
                        dai: &b.da_i[o..][..n],
                        dbr: &b.db_r[o..][..n],
                        dbi: &b.db_i[o..][..n],
                    };
                    if AVX {
                        #[cfg(target_arch = "x86_64")]
                        // SAFETY: AVX is only true when the CPU supports AVX2.
                        unsafe {
                            du_step_avx2(&ins, cre, cim, nre, nim)
                        };
                        #[cfg(not(target_arch = "x86_64"))]
                        du_step_plain(&ins, cre, cim, nre, nim);
                    } else {
                        du_step_plain(&ins, cre, cim, nre, nim);
                    }
                }
                jju += 1;
                jjup += 1;
            }
            jju += 1;
        }
        // right half, needed by the next layer's recursion
        let mut jju = base;
        let mut jjup = base + (j + 1) * (j + 1) - 1;
        let mut mbpar = 1.0;
        for _mb in 0..=j / 2 {
            let mut mapar = mbpar;
            for _ma in 0..=j {
                if jju == jjup {
                    let row = &mut du[jju * rl..(jju + 1) * rl];
                    row[..width].iter_mut().for_each(|x| *x *= mapar);
                    row[width..].iter_mut().for_each(|x| *x *= -mapar);
                } else {
                    let (src, dst) = two_rows(du, jju, jjup, rl);
                    let (src, dst) = (&src[..2 * width], &mut dst[..2 * width]);
                    for q in 0..width {
                        dst[q] = mapar * src[q];
                        dst[width + q] = -mapar * src[width + q];
                    }
                }
                mapar = -mapar;
                jju += 1;
                jjup = jjup.wrapping_sub(1);
            }
            mbpar = -mbpar;
        }
    }
    // chain rule for the switching function and weight, on the left halves
    let (s, ds, unit) = (&b.s[..n], &b.ds[..n], &b.unit[..3 * n]);
    for j in 0..=t.twojmax {
        let u0 = t.idxu_block[j];
        for jju in u0..u0 + (j / 2 + 1) * (j + 1) {
            let row = &mut du[jju * rl..(jju + 1) * rl];
            let (re, im) = row.split_at_mut(width);
            let pr = &ur[jju * n..][..n];
            let pi = &ui[jju * n..][..n];
            let (s, ds) = (&s[..n], &ds[..n]);
            for c in 0..3 {
                let o = c * n;
                let u = &unit[o..][..n];
                let (re, im) = (&mut re[o..][..n], &mut im[o..][..n]);
                for k in 0..n {
                    re[k] = ds[k] * pr[k] * u[k] + s[k] * re[k];
                    im[k] = ds[k] * pi[k] * u[k] + s[k] * im[k];
                }
            }
        }
    }
}
