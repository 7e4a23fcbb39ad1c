//! The SNAP bispectrum kernel: index tables, Clebsch-Gordan coefficients, the Wigner
//! U-functions of one neighbour and their derivatives, the Z and Y arrays, B and dB.
//!
//! Conventions follow Thompson et al., J. Comput. Phys. 285, 316 (2015) and LAMMPS's
//! ML-SNAP package (non-chem, `bnormflag 0`, `wselfallflag 0`, no inner switching), so that
//! numbers and the ordering of the B components agree with `compute sna/atom`.
//!
//! Labels: `j = 2J`, `ma = J + m`, `mb = J + m'`, so `0 <= ma, mb <= j`. A U-block of
//! order `j` holds `(j+1)^2` complex numbers, row-major in `mb`. Z, Y and dU are only
//! needed for the "left half" `2 mb <= j` of each block (the rest follows from the
//! symmetry `U(j, j-ma, j-mb) = (-1)^(ma-mb) conj U(j, ma, mb)`).

use super::SnapKernels;

/// Index data for one Z element `Z(j1, j2, j; ma, mb)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ZIndex {
    pub j1: u16,
    pub j2: u16,
    #[allow(dead_code)]
    pub j: u16,
    pub na: u16,
    pub nb: u16,
    /// Offset of `U(j1, ma1min, mb1min)` (the first u1 element) in the U array.
    pub u1_start: u32,
    /// Offset of `U(j2, ma2max, mb2max)` (the first u2 element) in the U array.
    pub u2_start: u32,
    /// Offset of the first CG coefficient of the inner loop, and of the outer one.
    pub cga_start: u32,
    pub cgb_start: u32,
    /// Offset of `U(j, ma, mb)`: where Z(j1,j2,j;ma,mb) lands in Y.
    pub jju: u32,
    /// Index into beta of the B component this Z contributes to, and the multiplicity
    /// factor (1, 2 or 3, times (j1+1)/(j+1) when j1 > j).
    pub y_jjb: u32,
    pub y_fac: f64,
}

/// One of the three terms of dB(j1,j2,j)/dr: `fac * Re Σ_half conj(dU_j') Z-block`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DbTerm {
    pub zoff: u32,
    pub uoff: u32,
    /// Offset of the block in the compact half-block numbering (see `Tables::half_off`).
    #[allow(dead_code)]
    pub hoff: u32,
    pub len: u32,
    pub fac: f64,
}

#[derive(Clone, Debug)]
pub(crate) struct Tables {
    pub twojmax: usize,
    pub idxu_block: Vec<usize>,
    pub idxu_max: usize,
    /// Number of half-block entries of order j, up to and including the middle element
    /// (the middle element, present for even j, carries weight 1/2 in all contractions).
    pub half_len: Vec<usize>,
    /// Offsets of the half blocks when only the half entries are stored, and their total.
    #[allow(dead_code)]
    pub half_off: Vec<usize>,
    #[allow(dead_code)]
    pub n_half: usize,
    pub cglist: Vec<f64>,
    pub zidx: Vec<ZIndex>,
    pub idxz_max: usize,
    pub idxb: Vec<[usize; 3]>,
    pub db_terms: Vec<[DbTerm; 3]>,
    /// For each B component: (offset of its Z block, offset of its U block, order j).
    pub b_terms: Vec<(usize, usize, usize)>,
    /// rootpq[p * stride + q] = sqrt(p / q)
    pub rootpq: Vec<f64>,
    pub rootpq_stride: usize,
    pub bzero: Vec<f64>,
}

fn factorial(n: usize) -> f64 {
    (1..=n).fold(1.0, |acc, k| acc * k as f64)
}

fn deltacg(j1: usize, j2: usize, j: usize) -> f64 {
    let sfaccg = factorial((j1 + j2 + j) / 2 + 1);
    (factorial((j1 + j2 - j) / 2) * factorial((j1 + j - j2) / 2) * factorial((j2 + j - j1) / 2) / sfaccg).sqrt()
}

/// Number of bispectrum components (linear, one element) for `twojmax`.
pub fn n_descriptors(twojmax: usize) -> usize {
    let mut n = 0;
    for j1 in 0..=twojmax {
        for j2 in 0..=j1 {
            let mut j = j1 - j2;
            while j <= twojmax.min(j1 + j2) {
                if j >= j1 {
                    n += 1;
                }
                j += 2;
            }
        }
    }
    n
}

impl Tables {
    pub fn new(twojmax: usize) -> Tables {
        let jdim = twojmax + 1;
        let blk = |j1: usize, j2: usize, j: usize| (j1 * jdim + j2) * jdim + j;

        // Clebsch-Gordan blocks
        let mut idxcg_block = vec![usize::MAX; jdim * jdim * jdim];
        let mut cglist = Vec::new();
        for j1 in 0..=twojmax {
            for j2 in 0..=j1 {
                let mut j = j1 - j2;
                while j <= twojmax.min(j1 + j2) {
                    idxcg_block[blk(j1, j2, j)] = cglist.len();
                    for m1 in 0..=j1 {
                        let aa2 = 2 * m1 as i64 - j1 as i64;
                        for m2 in 0..=j2 {
                            let bb2 = 2 * m2 as i64 - j2 as i64;
                            let m = (aa2 + bb2 + j as i64) / 2;
                            if m < 0 || m > j as i64 {
                                cglist.push(0.0);
                                continue;
                            }
                            let (j1i, j2i, ji) = (j1 as i64, j2 as i64, j as i64);
                            let zmin = 0.max((-(ji - j2i + aa2) / 2).max(-(ji - j1i - bb2) / 2));
                            let zmax = ((j1i + j2i - ji) / 2).min(((j1i - aa2) / 2).min((j2i + bb2) / 2));
                            let mut sum = 0.0;
                            let f = |x: i64| factorial(x as usize);
                            let mut z = zmin;
                            while z <= zmax {
                                let ifac = if z % 2 != 0 { -1.0 } else { 1.0 };
                                sum += ifac
                                    / (f(z)
                                        * f((j1i + j2i - ji) / 2 - z)
                                        * f((j1i - aa2) / 2 - z)
                                        * f((j2i + bb2) / 2 - z)
                                        * f((ji - j2i + aa2) / 2 + z)
                                        * f((ji - j1i - bb2) / 2 + z));
                                z += 1;
                            }
                            let cc2 = 2 * m - ji;
                            let dcg = deltacg(j1, j2, j);
                            let sfaccg = (f((j1i + aa2) / 2)
                                * f((j1i - aa2) / 2)
                                * f((j2i + bb2) / 2)
                                * f((j2i - bb2) / 2)
                                * f((ji + cc2) / 2)
                                * f((ji - cc2) / 2)
                                * (ji + 1) as f64)
                                .sqrt();
                            cglist.push(sum * dcg * sfaccg);
                        }
                    }
                    j += 2;
                }
            }
        }

        // U blocks
        let mut idxu_block = vec![0; jdim];
        let mut count = 0;
        for j in 0..=twojmax {
            idxu_block[j] = count;
            count += (j + 1) * (j + 1);
        }
        let idxu_max = count;
        let half_len: Vec<usize> = (0..=twojmax)
            .map(|j| if j % 2 == 1 { (j + 1) / 2 * (j + 1) } else { j / 2 * (j + 1) + j / 2 + 1 })
            .collect();
        let mut half_off = vec![0; jdim];
        let mut n_half = 0;
        for j in 0..=twojmax {
            half_off[j] = n_half;
            n_half += half_len[j];
        }

        // B list (LAMMPS order)
        let mut idxb = Vec::new();
        let mut idxb_block = vec![usize::MAX; jdim * jdim * jdim];
        for j1 in 0..=twojmax {
            for j2 in 0..=j1 {
                let mut j = j1 - j2;
                while j <= twojmax.min(j1 + j2) {
                    if j >= j1 {
                        idxb_block[blk(j1, j2, j)] = idxb.len();
                        idxb.push([j1, j2, j]);
                    }
                    j += 2;
                }
            }
        }

        // Z list
        let mut zidx = Vec::new();
        let mut idxz_block = vec![usize::MAX; jdim * jdim * jdim];
        for j1 in 0..=twojmax {
            for j2 in 0..=j1 {
                let mut j = j1 - j2;
                while j <= twojmax.min(j1 + j2) {
                    idxz_block[blk(j1, j2, j)] = zidx.len();
                    // beta selection and multiplicity (as LAMMPS compute_yi)
                    let (y_jjb, mut y_fac) = if j >= j1 {
                        let jjb = idxb_block[blk(j1, j2, j)];
                        let f = if j1 == j {
                            if j2 == j {
                                3.0
                            } else {
                                2.0
                            }
                        } else {
                            1.0
                        };
                        (jjb, f)
                    } else if j >= j2 {
                        let jjb = idxb_block[blk(j, j2, j1)];
                        (jjb, if j2 == j { 2.0 } else { 1.0 })
                    } else {
                        (idxb_block[blk(j2, j, j1)], 1.0)
                    };
                    if j1 > j {
                        y_fac *= (j1 + 1) as f64 / (j + 1) as f64;
                    }
                    let cg0 = idxcg_block[blk(j1, j2, j)];
                    let (j1i, j2i, ji) = (j1 as i64, j2 as i64, j as i64);
                    for mb in 0..=j / 2 {
                        for ma in 0..=j {
                            let (mai, mbi) = (ma as i64, mb as i64);
                            let ma1min = 0.max((2 * mai - ji - j2i + j1i) / 2);
                            let ma2max = (2 * mai - ji - (2 * ma1min - j1i) + j2i) / 2;
                            let na = j1i.min((2 * mai - ji + j2i + j1i) / 2) - ma1min + 1;
                            let mb1min = 0.max((2 * mbi - ji - j2i + j1i) / 2);
                            let mb2max = (2 * mbi - ji - (2 * mb1min - j1i) + j2i) / 2;
                            let nb = j1i.min((2 * mbi - ji + j2i + j1i) / 2) - mb1min + 1;
                            let u1_start = idxu_block[j1] as i64 + (j1i + 1) * mb1min + ma1min;
                            let u2_start = idxu_block[j2] as i64 + (j2i + 1) * mb2max + ma2max;
                            zidx.push(ZIndex {
                                j1: j1 as u16,
                                j2: j2 as u16,
                                j: j as u16,
                                na: na.max(0) as u16,
                                nb: nb.max(0) as u16,
                                u1_start: u1_start as u32,
                                u2_start: u2_start as u32,
                                cga_start: (cg0 as i64 + ma1min * (j2i + 1) + ma2max) as u32,
                                cgb_start: (cg0 as i64 + mb1min * (j2i + 1) + mb2max) as u32,
                                jju: (idxu_block[j] + (j + 1) * mb + ma) as u32,
                                y_jjb: y_jjb as u32,
                                y_fac,
                            });
                        }
                    }
                    j += 2;
                }
            }
        }
        let idxz_max = zidx.len();
        // Bounds of every index `compute_zi` uses without checks.
        for zx in &zidx {
            let (j1, j2, na, nb) = (zx.j1 as usize, zx.j2 as usize, zx.na as usize, zx.nb as usize);
            assert!(na >= 1 && nb >= 1);
            let u1_last = zx.u1_start as usize + (nb - 1) * (j1 + 1) + (na - 1);
            assert!(u1_last < idxu_block[j1] + (j1 + 1) * (j1 + 1));
            let u2_low = (zx.u2_start as usize).checked_sub((nb - 1) * (j2 + 1) + (na - 1));
            assert!(u2_low.is_some_and(|u| u >= idxu_block[j2]) && (zx.u2_start as usize) < idxu_max);
            assert!(zx.cga_start as usize + (na - 1) * j2 < cglist.len());
            assert!(zx.cgb_start as usize + (nb - 1) * j2 < cglist.len());
        }

        let db_terms = idxb
            .iter()
            .map(|&[j1, j2, j]| {
                [
                    DbTerm {
                        zoff: idxz_block[blk(j1, j2, j)] as u32,
                        uoff: idxu_block[j] as u32,
                        hoff: half_off[j] as u32,
                        len: half_len[j] as u32,
                        fac: 2.0,
                    },
                    DbTerm {
                        zoff: idxz_block[blk(j, j2, j1)] as u32,
                        uoff: idxu_block[j1] as u32,
                        hoff: half_off[j1] as u32,
                        len: half_len[j1] as u32,
                        fac: 2.0 * (j + 1) as f64 / (j1 + 1) as f64,
                    },
                    DbTerm {
                        zoff: idxz_block[blk(j, j1, j2)] as u32,
                        uoff: idxu_block[j2] as u32,
                        hoff: half_off[j2] as u32,
                        len: half_len[j2] as u32,
                        fac: 2.0 * (j + 1) as f64 / (j2 + 1) as f64,
                    },
                ]
            })
            .collect();
        let b_terms = idxb.iter().map(|&[j1, j2, j]| (idxz_block[blk(j1, j2, j)], idxu_block[j], j)).collect();

        let stride = twojmax + 2;
        let mut rootpq = vec![0.0; stride * stride];
        for p in 1..=twojmax {
            for q in 1..=twojmax {
                rootpq[p * stride + q] = (p as f64 / q as f64).sqrt();
            }
        }
        // wself = 1, bnormflag = 0: bzero[j] = j + 1
        let bzero = (0..=twojmax).map(|j| (j + 1) as f64).collect();

        Tables {
            twojmax,
            idxu_block,
            idxu_max,
            half_len,
            half_off,
            n_half,
            cglist,
            zidx,
            idxz_max,
            idxb,
            db_terms,
            b_terms,
            rootpq,
            rootpq_stride: stride,
            bzero,
        }
    }

    pub fn n_b(&self) -> usize {
        self.idxb.len()
    }
}

/// One neighbour of the central atom, inside its pair cutoff.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Nbr {
    pub rij: [f64; 3],
    pub r: f64,
    pub wj: f64,
    pub rcut: f64,
}

/// Scratch arrays for one central atom; reused across atoms.
#[derive(Clone, Debug)]
pub(crate) struct Work {
    /// U of every neighbour, [nbr][idxu_max], real and imaginary parts.
    pub ulist_r: Vec<f64>,
    pub ulist_i: Vec<f64>,
    pub utot_r: Vec<f64>,
    pub utot_i: Vec<f64>,
    pub z_r: Vec<f64>,
    pub z_i: Vec<f64>,
    pub y_r: Vec<f64>,
    pub y_i: Vec<f64>,
    /// dU of one neighbour, [idxu][xyz].
    pub du_r: Vec<[f64; 3]>,
    pub du_i: Vec<[f64; 3]>,
    pub blist: Vec<f64>,
    /// dU of a batch of neighbours: `[U index][re, im][c * n_nbr + nbr]`, rows of `width`
    /// (only the left half of each block is filled).
    pub dub: Vec<f64>,
    /// dB of the batch: `[jjb][width]`.
    pub dbout: Vec<f64>,
    /// Per-neighbour quantities of the batched kernels (see `batch.rs`).
    pub nb: super::batch::NbrBatch,
}

impl Work {
    pub fn new(t: &Tables) -> Work {
        Work {
            ulist_r: Vec::new(),
            ulist_i: Vec::new(),
            utot_r: vec![0.0; t.idxu_max],
            utot_i: vec![0.0; t.idxu_max],
            z_r: vec![0.0; t.idxz_max],
            z_i: vec![0.0; t.idxz_max],
            y_r: vec![0.0; t.idxu_max],
            y_i: vec![0.0; t.idxu_max],
            du_r: vec![[0.0; 3]; t.idxu_max],
            du_i: vec![[0.0; 3]; t.idxu_max],
            blist: vec![0.0; t.n_b()],
            dub: Vec::new(),
            dbout: Vec::new(),
            nb: Default::default(),
        }
    }
}

#[inline]
pub(crate) fn sfac(switchflag: bool, rmin0: f64, r: f64, rcut: f64) -> (f64, f64) {
    if !switchflag || r <= rmin0 {
        (1.0, 0.0)
    } else if r > rcut {
        (0.0, 0.0)
    } else {
        let rcutfac = std::f64::consts::PI / (rcut - rmin0);
        let (s, c) = ((r - rmin0) * rcutfac).sin_cos();
        (0.5 * (c + 1.0), -0.5 * s * rcutfac)
    }
}

pub(crate) struct Kernel<'a> {
    pub t: &'a Tables,
    pub rfac0: f64,
    pub rmin0: f64,
    pub switchflag: bool,
    /// read only by the x86-64 dispatch
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub simd: Simd,
}

/// The target-specific kernels that may run: each flag is true only when the CPU has the
/// instructions (detected at run time) and [`SnapKernels::Native`] was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Simd {
    pub avx2: bool,
    /// AVX2 and FMA
    pub fma: bool,
}

impl Simd {
    pub fn new(kernels: SnapKernels) -> Simd {
        match kernels {
            SnapKernels::Portable => Simd { avx2: false, fma: false },
            SnapKernels::Native => Simd::detect(),
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> Simd {
        let avx2 = std::arch::is_x86_feature_detected!("avx2");
        Simd { avx2, fma: avx2 && std::arch::is_x86_feature_detected!("fma") }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> Simd {
        Simd { avx2: false, fma: false }
    }
}

impl Kernel<'_> {
    /// U of one neighbour (all of every block) into `ur`, `ui`.
    #[inline]
    fn uarray(&self, x: f64, y: f64, z: f64, z0: f64, r: f64, ur: &mut [f64], ui: &mut [f64]) {
        let t = self.t;
        let r0inv = 1.0 / (r * r + z0 * z0).sqrt();
        let a_r = r0inv * z0;
        let a_i = -r0inv * z;
        let b_r = r0inv * y;
        let b_i = -r0inv * x;
        ur[0] = 1.0;
        ui[0] = 0.0;
        let st = t.rootpq_stride;
        for j in 1..=t.twojmax {
            let base = t.idxu_block[j];
            let mut jju = base;
            let mut jjup = t.idxu_block[j - 1];
            for mb in 0..=j / 2 {
                ur[jju] = 0.0;
                ui[jju] = 0.0;
                for ma in 0..j {
                    let pr = ur[jjup];
                    let pi = ui[jjup];
                    let rootpq = t.rootpq[(j - ma) * st + (j - mb)];
                    ur[jju] += rootpq * (a_r * pr + a_i * pi);
                    ui[jju] += rootpq * (a_r * pi - a_i * pr);
                    let rootpq = t.rootpq[(ma + 1) * st + (j - mb)];
                    ur[jju + 1] = -rootpq * (b_r * pr + b_i * pi);
                    ui[jju + 1] = -rootpq * (b_r * pi - b_i * pr);
                    jju += 1;
                    jjup += 1;
                }
                jju += 1;
            }
            // right half by inversion symmetry
            let mut jju = base;
            let mut jjup = base + (j + 1) * (j + 1) - 1;
            let mut mbpar = 1.0;
            for _mb in 0..=j / 2 {
                let mut mapar = mbpar;
                for _ma in 0..=j {
                    ur[jjup] = mapar * ur[jju];
                    ui[jjup] = -mapar * ui[jju];
                    mapar = -mapar;
                    jju += 1;
                    jjup = jjup.wrapping_sub(1);
                }
                mbpar = -mbpar;
            }
        }
    }

    #[inline]
    fn theta_z0(&self, r: f64, rcut: f64) -> (f64, f64) {
        let rscale0 = self.rfac0 * std::f64::consts::PI / (rcut - self.rmin0);
        let theta0 = (r - self.rmin0) * rscale0;
        (theta0, rscale0)
    }

    /// Ui = wself·I + Σ_j sfac·wj·U(r_ij); keeps every neighbour's U for the derivatives.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn compute_ui(&self, w: &mut Work, nbrs: &[Nbr]) {
        let t = self.t;
        let n = t.idxu_max;
        w.utot_r.iter_mut().for_each(|x| *x = 0.0);
        w.utot_i.iter_mut().for_each(|x| *x = 0.0);
        for j in 0..=t.twojmax {
            for ma in 0..=j {
                w.utot_r[t.idxu_block[j] + (j + 1) * ma + ma] = 1.0;
            }
        }
        if w.ulist_r.len() < nbrs.len() * n {
            w.ulist_r.resize(nbrs.len() * n, 0.0);
            w.ulist_i.resize(nbrs.len() * n, 0.0);
        }
        for (k, nb) in nbrs.iter().enumerate() {
            let (theta0, _) = self.theta_z0(nb.r, nb.rcut);
            let z0 = nb.r / theta0.tan();
            let ur = &mut w.ulist_r[k * n..(k + 1) * n];
            let ui = &mut w.ulist_i[k * n..(k + 1) * n];
            self.uarray(nb.rij[0], nb.rij[1], nb.rij[2], z0, nb.r, ur, ui);
            let s = sfac(self.switchflag, self.rmin0, nb.r, nb.rcut).0 * nb.wj;
            for (a, b) in w.utot_r.iter_mut().zip(ur.iter()) {
                *a += s * b;
            }
            for (a, b) in w.utot_i.iter_mut().zip(ui.iter()) {
                *a += s * b;
            }
        }
    }

    /// Z(j1,j2,j; ma, mb) for the left half of every block.
    pub fn compute_zi(&self, w: &mut Work, b_only: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            if self.simd.fma {
                // SAFETY: the CPU supports AVX2 and FMA (`Simd::new` checked).
                unsafe { zi_fma(self.t, w, b_only) };
                return;
            }
        }
        zi_body::<false>(self.t, w, b_only);
    }

    /// B_i into `w.blist` (with the bzero shift when asked).
    pub fn compute_bi(&self, w: &mut Work, bzeroflag: bool) {
        let t = self.t;
        for (jjb, &(zoff, uoff, j)) in t.b_terms.iter().enumerate() {
            let s = half_dot(&w.utot_r[uoff..], &w.utot_i[uoff..], &w.z_r[zoff..], &w.z_i[zoff..], t.half_len[j], j);
            w.blist[jjb] = 2.0 * s - if bzeroflag { t.bzero[j] } else { 0.0 };
        }
    }

    /// dU/dr_j (times sfac·wj, plus dsfac) of neighbour `k` into `w.du_r`, `w.du_i`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn compute_duidrj(&self, w: &mut Work, nbrs: &[Nbr], k: usize) {
        let t = self.t;
        let n = t.idxu_max;
        let nb = nbrs[k];
        let [x, y, z] = nb.rij;
        let r = nb.r;
        let rsq = r * r;
        let (theta0, rscale0) = self.theta_z0(r, nb.rcut);
        let (sn, cs) = theta0.sin_cos();
        let z0 = r * cs / sn;
        let dz0dr = z0 / r - (r * rscale0) * (rsq + z0 * z0) / rsq;

        let ur = &w.ulist_r[k * n..(k + 1) * n];
        let ui = &w.ulist_i[k * n..(k + 1) * n];
        let dur = &mut w.du_r[..];
        let dui = &mut w.du_i[..];

        let rinv = 1.0 / r;
        let u = [x * rinv, y * rinv, z * rinv];
        let r0inv = 1.0 / (r * r + z0 * z0).sqrt();
        let a_r = z0 * r0inv;
        let a_i = -z * r0inv;
        let b_r = y * r0inv;
        let b_i = -x * r0inv;
        let dr0invdr = -(r0inv * r0inv * r0inv) * (r + z0 * dz0dr);
        let dr0inv = [dr0invdr * u[0], dr0invdr * u[1], dr0invdr * u[2]];
        let dz0 = [dz0dr * u[0], dz0dr * u[1], dz0dr * u[2]];
        let mut da_r = [0.0; 3];
        let mut da_i = [0.0; 3];
        let mut db_r = [0.0; 3];
        let mut db_i = [0.0; 3];
        for c in 0..3 {
            da_r[c] = dz0[c] * r0inv + z0 * dr0inv[c];
            da_i[c] = -z * dr0inv[c];
            db_r[c] = y * dr0inv[c];
            db_i[c] = -x * dr0inv[c];
        }
        da_i[2] += -r0inv;
        db_i[0] += -r0inv;
        db_r[1] += r0inv;

        dur[0] = [0.0; 3];
        dui[0] = [0.0; 3];
        let st = t.rootpq_stride;
        for j in 1..=t.twojmax {
            let base = t.idxu_block[j];
            let mut jju = base;
            let mut jjup = t.idxu_block[j - 1];
            for mb in 0..=j / 2 {
                dur[jju] = [0.0; 3];
                dui[jju] = [0.0; 3];
                for ma in 0..j {
                    let pr = ur[jjup];
                    let pi = ui[jjup];
                    let dpr = dur[jjup];
                    let dpi = dui[jjup];
                    let rootpq = t.rootpq[(j - ma) * st + (j - mb)];
                    let mut nr = dur[jju];
                    let mut ni = dui[jju];
                    for c in 0..3 {
                        nr[c] += rootpq * (da_r[c] * pr + da_i[c] * pi + a_r * dpr[c] + a_i * dpi[c]);
                        ni[c] += rootpq * (da_r[c] * pi - da_i[c] * pr + a_r * dpi[c] - a_i * dpr[c]);
                    }
                    dur[jju] = nr;
                    dui[jju] = ni;
                    let rootpq = t.rootpq[(ma + 1) * st + (j - mb)];
                    let mut nr = [0.0; 3];
                    let mut ni = [0.0; 3];
                    for c in 0..3 {
                        nr[c] = -rootpq * (db_r[c] * pr + db_i[c] * pi + b_r * dpr[c] + b_i * dpi[c]);
                        ni[c] = -rootpq * (db_r[c] * pi - db_i[c] * pr + b_r * dpi[c] - b_i * dpr[c]);
                    }
                    dur[jju + 1] = nr;
                    dui[jju + 1] = ni;
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
                    let a = dur[jju];
                    let b = dui[jju];
                    dur[jjup] = [mapar * a[0], mapar * a[1], mapar * a[2]];
                    dui[jjup] = [-mapar * b[0], -mapar * b[1], -mapar * b[2]];
                    mapar = -mapar;
                    jju += 1;
                    jjup = jjup.wrapping_sub(1);
                }
                mbpar = -mbpar;
            }
        }

        let (s, ds) = sfac(self.switchflag, self.rmin0, r, nb.rcut);
        let s = s * nb.wj;
        let ds = ds * nb.wj;
        for j in 0..=t.twojmax {
            let base = t.idxu_block[j];
            for jju in base..base + (j / 2 + 1) * (j + 1) {
                let (pr, pi) = (ur[jju], ui[jju]);
                let a = &mut dur[jju];
                let b = &mut dui[jju];
                for c in 0..3 {
                    a[c] = ds * pr * u[c] + s * a[c];
                    b[c] = ds * pi * u[c] + s * b[c];
                }
            }
        }
    }

    /// dB_i/dr_j for the neighbour whose dU is in `w.du_*`: `out[c * n_b + jjb]`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn compute_dbidrj(&self, w: &Work, out: &mut [f64]) {
        let t = self.t;
        let nb = t.n_b();
        for (jjb, terms) in t.db_terms.iter().enumerate() {
            let mut acc = [0.0; 3];
            for term in terms {
                let s = half_dot3(
                    &w.du_r[term.uoff as usize..],
                    &w.du_i[term.uoff as usize..],
                    &w.z_r[term.zoff as usize..],
                    &w.z_i[term.zoff as usize..],
                    term.len as usize,
                );
                for c in 0..3 {
                    acc[c] += term.fac * s[c];
                }
            }
            out[jjb] = acc[0];
            out[nb + jjb] = acc[1];
            out[2 * nb + jjb] = acc[2];
        }
    }

    /// Row width of the batch arrays for `n` neighbours (3 n padded to the tile size).
    pub fn batch_width(n: usize) -> usize {
        (3 * n).div_ceil(DB_TILE) * DB_TILE
    }

    /// Prepare the batch arrays for `n` neighbours.
    pub fn begin_batch(&self, w: &mut Work, n: usize) {
        let width = Self::batch_width(n);
        let need = 2 * self.t.idxu_max * width;
        if w.dub.len() < need {
            w.dub.resize(need, 0.0);
        }
        // padding columns must hold finite numbers
        w.dub[..need].iter_mut().for_each(|x| *x = 0.0);
        if w.dbout.len() < self.t.n_b() * width {
            w.dbout.resize(self.t.n_b() * width, 0.0);
        }
    }

    /// dB_i/dr_j of every neighbour of the batch at once: `w.dbout[jjb * width + c * n + k]`.
    pub fn compute_dbidrj_batch(&self, w: &mut Work, n: usize) {
        let width = Self::batch_width(n);
        let (t, zr, zi, dub, out) = (self.t, &w.z_r[..], &w.z_i[..], &w.dub[..], &mut w.dbout[..]);
        #[cfg(target_arch = "x86_64")]
        {
            if self.simd.avx2 {
                // SAFETY: the CPU supports AVX2 (`Simd::new` checked).
                unsafe { db_batch_avx2(t, zr, zi, dub, width, out) };
                return;
            }
        }
        db_batch_body(t, zr, zi, dub, width, out);
    }

    /// Y = Σ_z β-weighted Z, from the stored Z (call compute_zi first).
    pub fn compute_yi(&self, w: &mut Work, beta: &[f64]) {
        let t = self.t;
        w.y_r.iter_mut().for_each(|x| *x = 0.0);
        w.y_i.iter_mut().for_each(|x| *x = 0.0);
        for (jjz, zx) in t.zidx.iter().enumerate() {
            let b = zx.y_fac * beta[zx.y_jjb as usize];
            w.y_r[zx.jju as usize] += b * w.z_r[jjz];
            w.y_i[zx.jju as usize] += b * w.z_i[jjz];
        }
    }

    /// dE_i/dr_j for the neighbour whose dU is in `w.du_*` (call compute_yi first).
    #[allow(dead_code)]
    pub fn compute_deidrj(&self, w: &Work) -> [f64; 3] {
        let t = self.t;
        let mut acc = [0.0; 3];
        for j in 0..=t.twojmax {
            let o = t.idxu_block[j];
            let s = half_dot3(&w.du_r[o..], &w.du_i[o..], &w.y_r[o..], &w.y_i[o..], t.half_len[j]);
            for c in 0..3 {
                acc[c] += s[c];
            }
        }
        [2.0 * acc[0], 2.0 * acc[1], 2.0 * acc[2]]
    }
}

/// Z(j1,j2,j; ma, mb) for the left half of every block (LAMMPS `compute_zi`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn zi_fma(t: &Tables, w: &mut Work, b_only: bool) {
    zi_body::<true>(t, w, b_only)
}

#[inline(always)]
fn zi_body<const FMA: bool>(t: &Tables, w: &mut Work, b_only: bool) {
    let cg = &t.cglist[..];
    let ur = &w.utot_r[..t.idxu_max];
    let ui = &w.utot_i[..t.idxu_max];
    let zr_out = &mut w.z_r[..t.idxz_max];
    let zi_out = &mut w.z_i[..t.idxz_max];
    for (jjz, zx) in t.zidx.iter().enumerate() {
        // B alone needs only the blocks with j >= j1
        if b_only && zx.j < zx.j1 {
            continue;
        }
        let j1 = zx.j1 as usize;
        let j2 = zx.j2 as usize;
        let na = zx.na as usize;
        let mut zr = 0.0;
        let mut zi = 0.0;
        let mut u1 = zx.u1_start as usize;
        let mut u2 = zx.u2_start as usize;
        let mut icgb = zx.cgb_start as usize;
        let cga = zx.cga_start as usize;
        for ib in 0..zx.nb as usize {
            let mut sr = 0.0;
            let mut si = 0.0;
            let mut icga = cga;
            // ma1 runs up from u1, ma2 runs down from u2
            for ia in 0..na {
                // SAFETY: `Tables::new` checked that every index of this loop nest is
                // inside `cglist` and inside a U array of length `idxu_max`.
                unsafe {
                    let c = *cg.get_unchecked(icga);
                    let (ar, ai) = (*ur.get_unchecked(u1 + ia), *ui.get_unchecked(u1 + ia));
                    let (br, bi) = (*ur.get_unchecked(u2 - ia), *ui.get_unchecked(u2 - ia));
                    if FMA {
                        let pr = (-ai).mul_add(bi, ar * br);
                        let pi = ai.mul_add(br, ar * bi);
                        sr = c.mul_add(pr, sr);
                        si = c.mul_add(pi, si);
                    } else {
                        sr += c * (ar * br - ai * bi);
                        si += c * (ar * bi + ai * br);
                    }
                }
                icga += j2;
            }
            // SAFETY: as above.
            let c = unsafe { *cg.get_unchecked(icgb) };
            zr += c * sr;
            zi += c * si;
            if ib + 1 < zx.nb as usize {
                u1 += j1 + 1;
                u2 -= j2 + 1;
            }
            icgb += j2;
        }
        zr_out[jjz] = zr;
        zi_out[jjz] = zi;
    }
}

const DB_TILE: usize = 16;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn db_batch_avx2(t: &Tables, zr: &[f64], zi: &[f64], dub: &[f64], width: usize, out: &mut [f64]) {
    db_batch_body(t, zr, zi, dub, width, out)
}

/// The three contractions of every B component with the dU of a batch of neighbours, in
/// register tiles of `DB_TILE` columns (neighbour x component).
#[inline(always)]
fn db_batch_body(t: &Tables, zr: &[f64], zi: &[f64], dub: &[f64], width: usize, out: &mut [f64]) {
    for (jjb, terms) in t.db_terms.iter().enumerate() {
        let mut tile = 0;
        while tile < width {
            let mut acc = [0.0f64; DB_TILE];
            for term in terms {
                let len = term.len as usize;
                let z0 = term.zoff as usize;
                let u0 = term.uoff as usize;
                let zr = &zr[z0..z0 + len];
                let zi = &zi[z0..z0 + len];
                for m in 0..len {
                    // the middle element of an even block (odd length, last) weighs 1/2
                    let f = if m + 1 == len && len % 2 == 1 { 0.5 * term.fac } else { term.fac };
                    let a = zr[m] * f;
                    let b = zi[m] * f;
                    let base = 2 * (u0 + m) * width + tile;
                    let dr: &[f64; DB_TILE] = dub[base..base + DB_TILE].try_into().unwrap();
                    let di: &[f64; DB_TILE] = dub[base + width..base + width + DB_TILE].try_into().unwrap();
                    for q in 0..DB_TILE {
                        acc[q] += a * dr[q] + b * di[q];
                    }
                }
            }
            out[jjb * width + tile..jjb * width + tile + DB_TILE].copy_from_slice(&acc);
            tile += DB_TILE;
        }
    }
}

/// Σ over the left half of a block of Re(conj(u) z); the middle element (even j) weighs 1/2.
#[inline]
fn half_dot(ur: &[f64], ui: &[f64], zr: &[f64], zi: &[f64], len: usize, j: usize) -> f64 {
    let (ur, ui, zr, zi) = (&ur[..len], &ui[..len], &zr[..len], &zi[..len]);
    let full = if j % 2 == 0 { len - 1 } else { len };
    let mut s = 0.0;
    for n in 0..full {
        s += ur[n] * zr[n] + ui[n] * zi[n];
    }
    if j % 2 == 0 {
        s += 0.5 * (ur[full] * zr[full] + ui[full] * zi[full]);
    }
    s
}

/// As `half_dot` for a 3-component derivative block. `len` is the half length; whether
/// the last element is a middle one follows from the block length (odd for even j).
#[inline]
fn half_dot3(dr: &[[f64; 3]], di: &[[f64; 3]], zr: &[f64], zi: &[f64], len: usize) -> [f64; 3] {
    // For odd j the half length is (j+1)^2/2 (even); for even j it is j(j+1)/2 + j/2 + 1,
    // which is odd. So an odd length means the last element is the middle one.
    let (dr, di, zr, zi) = (&dr[..len], &di[..len], &zr[..len], &zi[..len]);
    let mid = len % 2 == 1;
    let full = if mid { len - 1 } else { len };
    let mut s = [0.0; 3];
    for n in 0..full {
        let (a, b) = (dr[n], di[n]);
        let (c, d) = (zr[n], zi[n]);
        s[0] += a[0] * c + b[0] * d;
        s[1] += a[1] * c + b[1] * d;
        s[2] += a[2] * c + b[2] * d;
    }
    if mid {
        let (a, b) = (dr[full], di[full]);
        let (c, d) = (0.5 * zr[full], 0.5 * zi[full]);
        s[0] += a[0] * c + b[0] * d;
        s[1] += a[1] * c + b[1] * d;
        s[2] += a[2] * c + b[2] * d;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_gradients_equal_one_neighbour_at_a_time() {
        for kernels in [SnapKernels::Native, SnapKernels::Portable] {
            batched_gradients_equal_one_neighbour_at_a_time_with(kernels);
        }
    }

    fn batched_gradients_equal_one_neighbour_at_a_time_with(kernels: SnapKernels) {
        let t = Tables::new(6);
        let k = Kernel { t: &t, rfac0: 0.97, rmin0: 0.1, switchflag: true, simd: Simd::new(kernels) };
        let mut w = Work::new(&t);
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let nbrs: Vec<Nbr> = (0..11)
            .map(|_| {
                let v = [2.5 * rnd(), 2.5 * rnd(), 2.5 * rnd()];
                let r = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
                Nbr { rij: v, r, wj: 0.8 + 0.2 * rnd(), rcut: 4.5 }
            })
            .collect();
        k.compute_ui(&mut w, &nbrs);
        k.compute_zi(&mut w, false);
        let (ur_single, ui_single) = (w.utot_r.clone(), w.utot_i.clone());
        let nb = t.n_b();
        let n = nbrs.len();
        let mut single = vec![0.0; n * 3 * nb];
        for p in 0..n {
            k.compute_duidrj(&mut w, &nbrs, p);
            k.compute_dbidrj(&w, &mut single[p * 3 * nb..(p + 1) * 3 * nb]);
        }
        k.compute_ui_batch(&mut w, &nbrs, true);
        for (a, b) in ur_single.iter().zip(&w.utot_r).chain(ui_single.iter().zip(&w.utot_i)) {
            assert!((a - b).abs() < 1e-13, "{kernels:?}: Ui: {a} vs {b}");
        }
        k.compute_zi(&mut w, false);
        k.compute_duidrj_batch(&mut w);
        k.compute_dbidrj_batch(&mut w, n);
        let width = Kernel::batch_width(n);
        let scale = single.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 0.0);
        for p in 0..n {
            for c in 0..3 {
                for jjb in 0..nb {
                    let a = single[(p * 3 + c) * nb + jjb];
                    let b = w.dbout[jjb * width + c * n + p];
                    assert!((a - b).abs() < 1e-13 * scale, "{kernels:?}: pair {p} c {c} jjb {jjb}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn counts_match_lammps() {
        assert_eq!(n_descriptors(8), 55);
        assert_eq!(n_descriptors(6), 30);
        assert_eq!(n_descriptors(4), 14);
        assert_eq!(n_descriptors(2), 5);
        for tj in 0..=10 {
            let t = Tables::new(tj);
            assert_eq!(t.n_b(), n_descriptors(tj));
            for j in 0..=tj {
                assert_eq!(t.half_len[j] % 2 == 1, j % 2 == 0, "half length parity for j={j}");
            }
        }
    }
}
