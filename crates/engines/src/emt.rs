//! Effective-medium theory (Jacobsen, Stoltze, Nørskov, Surf. Sci. 366, 394 (1996)),
//! exactly as ASE's `ase.calculators.emt.EMT` implements it (ASE 3.22 - 3.29):
//!
//! * the same parameter table (Al, Cu, Ag, Au, Ni, Pd, Pt and the "just for fun" H, C, N,
//!   O), the same `beta = 1.809`, and ASE's Bohr radius (CODATA 2014, as ASE derives it);
//! * the same logistic cutoff `w(r) = 1 / (1 + exp(acut (r - rc)))`, with `rc` the mean of
//!   the 3rd and 4th fcc neighbour distances of the largest atom of the *whole table*
//!   (`asap_cutoff=False`, ASE's default) or of the atoms present (`asap_cutoff=True`),
//!   and neighbours taken strictly inside `rc_list = rc + 0.5 Å` (`rc * 1.045` for ASAP);
//! * the same mixing between elements (`chi = n0(other) / n0(self)`), the same energy
//!   reference (`E0` subtracted per atom, so an isolated atom has energy `-E0`);
//! * forces, and ASE's stress: `(1/V) Σ_pairs (dE/dr) d ⊗ d / r` as Voigt
//!   `[xx, yy, zz, yz, xz, xy]` in eV/Å³, given whenever the cell has rank 3 (ASE
//!   checks the cell's rank, not `pbc`), `None` otherwise.
//!
//! Pure computation, in four steps: the pairs strictly inside `rc_list` come once each
//! from a cell list ([`CellList::for_each_half_pair_d2`]); the pair terms (density
//! contributions, pair energy and their derivatives) are computed over arrays by a
//! vectorised kernel; each atom's embedding energy and its derivative follow from its
//! density sum; a last pass over the pairs adds up forces and virial.
//!
//! The exponentials in the pair terms use a polynomial `exp` (within 1e-15 relative of
//! libm's) built from plain IEEE operations, no FMA: results are the same bits on every
//! x86-64 machine, with or without AVX2. Agreement with ASE is ~1e-13 eV/atom.
//! Per-pair arrays are kept in a thread-local scratch between calls (a few MB for
//! thousands of atoms), so repeated calls hardly allocate.

#![allow(clippy::needless_range_loop)] // index loops over parallel arrays read best

use crate::Labels;
use autopipe_atoms::neighbors::CellList;
use autopipe_atoms::structure::{det3, norm, Vec3};
use autopipe_atoms::{Element, Structure, StructureError};

/// The Bohr radius in Å exactly as `ase.units.Bohr` computes it from CODATA 2014
/// constants (`4 pi eps0 hbar^2 / (m_e e^2)`), which differs from the rounded CODATA 2014
/// value (`autopipe_atoms::units::codata2014::BOHR_A`) by 2e-10 relative.
pub const ASE_BOHR_A: f64 = 0.529_177_210_563_841_1;

/// `(16 pi / 3)^(1/3) / sqrt(2)`, with ASE's historical rounding.
pub const BETA: f64 = 1.809;

/// ASE's parameter table: E0 (eV), s0 (bohr), V0 (eV), eta2 (1/bohr), kappa (1/bohr),
/// lambda (1/bohr), n0 (1/bohr³).
const PARAMETERS: [(&str, [f64; 7]); 11] = [
    ("Al", [-3.28, 3.00, 1.493, 1.240, 2.000, 1.169, 0.00700]),
    ("Cu", [-3.51, 2.67, 2.476, 1.652, 2.740, 1.906, 0.00910]),
    ("Ag", [-2.96, 3.01, 2.132, 1.652, 2.790, 1.892, 0.00547]),
    ("Au", [-3.80, 3.00, 2.321, 1.674, 2.873, 2.182, 0.00703]),
    ("Ni", [-4.44, 2.60, 3.673, 1.669, 2.757, 1.948, 0.01030]),
    ("Pd", [-3.90, 2.87, 2.773, 1.818, 3.107, 2.155, 0.00688]),
    ("Pt", [-5.85, 2.90, 4.067, 1.812, 3.145, 2.192, 0.00802]),
    ("H", [-3.21, 1.31, 0.132, 2.652, 2.790, 3.892, 0.00547]),
    ("C", [-3.50, 1.81, 0.332, 1.652, 2.790, 1.892, 0.01322]),
    ("N", [-5.10, 1.88, 0.132, 1.652, 2.790, 1.892, 0.01222]),
    ("O", [-4.60, 1.95, 0.332, 1.652, 2.790, 1.892, 0.00850]),
];

/// Index into `PARAMETERS` of an element, if EMT has parameters for it.
fn table_index(e: Element) -> Option<usize> {
    PARAMETERS.iter().position(|(s, _)| *s == e.symbol())
}

#[derive(Debug, thiserror::Error)]
pub enum EmtError {
    /// `index` is 0-based in the value, shown 1-based.
    #[error("EMT has no parameters for {element} (atom {}); it supports Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O", .index + 1)]
    UnsupportedElement { element: Element, index: usize },
    #[error("invalid structure for EMT: {0}")]
    InvalidStructure(#[from] StructureError),
}

/// The EMT calculator. `Emt::new()` is ASE's `EMT()` (`asap_cutoff=False`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Emt {
    asap_cutoff: bool,
}

/// The cutoff: logistic midpoint `rc`, steepness `acut`, neighbour radius `rc_list`.
#[derive(Clone, Copy, Debug)]
struct Cutoff {
    rc: f64,
    acut: f64,
    rc_list: f64,
}

/// Parameters of one element present, in Å and eV.
#[derive(Clone, Copy, Debug)]
struct ElementParams {
    e0: f64,
    s0: f64,
    v0: f64,
    eta2: f64,
    kappa: f64,
    lambda: f64,
    n0: f64,
    inv12gamma1: f64,
    neghalfv0overgamma2: f64,
}

/// Constants of an ordered pair (self a, other b), so that for a neighbour at distance r
/// * the contribution of b to the density sum of a is `s1 = a1 · exp(-k1 · r) · w(r)`,
/// * a's share of the pair term is `e2 = a2 · exp(-k2 · r) · w(r)`.
#[derive(Clone, Copy, Debug, Default)]
struct PairParams {
    a1: f64,
    k1: f64,
    a2: f64,
    k2: f64,
}

impl Emt {
    /// ASE's defaults (`asap_cutoff=False`).
    pub fn new() -> Emt {
        Emt { asap_cutoff: false }
    }

    /// ASE's `EMT(asap_cutoff=True)`: the cutoff follows the largest atom present.
    pub fn with_asap_cutoff(asap_cutoff: bool) -> Emt {
        Emt { asap_cutoff }
    }

    /// Whether EMT has parameters for this element.
    pub fn supports(e: Element) -> bool {
        table_index(e).is_some()
    }

    /// The neighbour radius (Å) used for these species: pairs strictly closer interact.
    pub fn cutoff_a(&self, species: &[Element]) -> f64 {
        let present: Vec<usize> = species.iter().filter_map(|&e| table_index(e)).collect();
        self.cutoff(&present).rc_list
    }

    fn cutoff(&self, present_table_indices: &[usize]) -> Cutoff {
        // (ASAP style with no known atom at all: fall back to the whole table.)
        let s0_max_bohr = if self.asap_cutoff && !present_table_indices.is_empty() {
            present_table_indices.iter().map(|&t| PARAMETERS[t].1[1]).fold(f64::NEG_INFINITY, f64::max)
        } else {
            PARAMETERS.iter().map(|p| p.1[1]).fold(f64::NEG_INFINITY, f64::max)
        };
        let maxseq = s0_max_bohr * ASE_BOHR_A;
        let r1nn = BETA * maxseq;
        let rc = r1nn * 0.5 * (3.0f64.sqrt() + 2.0);
        let r4nn = r1nn * 2.0;
        let eps: f64 = 1e-4;
        let acut = (1.0 / eps - 1.0).ln() / (r4nn - rc);
        let rc_list = if self.asap_cutoff { rc * 1.045 } else { rc + 0.5 };
        Cutoff { rc, acut, rc_list }
    }

    /// Energy (eV) only.
    pub fn energy_ev(&self, s: &Structure) -> Result<f64, EmtError> {
        Ok(self.compute(s, false)?.energy_ev)
    }

    /// Energy, forces and (for a rank-3 cell) stress, as ASE's EMT gives them.
    pub fn calculate(&self, s: &Structure) -> Result<Labels, EmtError> {
        self.compute(s, true)
    }

    fn compute(&self, s: &Structure, want_forces: bool) -> Result<Labels, EmtError> {
        s.validate()?;
        let n = s.len();
        // Species present, in order of first appearance, and each atom's compact index.
        let mut table_of_kind: Vec<usize> = Vec::new();
        let mut kind_of_z = [u8::MAX; 256];
        let mut kind: Vec<u8> = Vec::with_capacity(n);
        for (index, &e) in s.species.iter().enumerate() {
            let z = e.z() as usize;
            if kind_of_z[z] == u8::MAX {
                let t = table_index(e).ok_or(EmtError::UnsupportedElement { element: e, index })?;
                kind_of_z[z] = table_of_kind.len() as u8;
                table_of_kind.push(t);
            }
            kind.push(kind_of_z[z]);
        }
        let cut = self.cutoff(&table_of_kind);
        let m = table_of_kind.len();
        let elems: Vec<ElementParams> = table_of_kind.iter().map(|&t| element_params(&PARAMETERS[t].1, &cut)).collect();
        let mut pairs_table = vec![PairParams::default(); m * m];
        for a in 0..m {
            for b in 0..m {
                pairs_table[a * m + b] = pair_params(&elems[a], &elems[b]);
            }
        }

        let cells = CellList::new(s, cut.rc_list);
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => Ok(finish(s, &cells, &kind, &elems, &pairs_table, &cut, want_forces, &mut scratch)),
            Err(_) => Ok(finish(s, &cells, &kind, &elems, &pairs_table, &cut, want_forces, &mut Scratch::default())),
        })
    }
}

/// Per-pair arrays, kept between calls on a thread so that a call allocates little.
#[derive(Default)]
struct Scratch {
    i: Vec<u32>,
    j: Vec<u32>,
    /// Pair classes `kind_i * m + kind_j` and `kind_j * m + kind_i` (several elements only).
    c_ij: Vec<u32>,
    c_ji: Vec<u32>,
    d: Vec<Vec3>,
    /// Squared distance.
    d2: Vec<f64>,
    /// Contribution of j to the density sum of i, and of i to that of j.
    s1_ij: Vec<f64>,
    s1_ji: Vec<f64>,
    /// Pair energy.
    e: Vec<f64>,
    /// d(s1_ij)/dr / r, d(s1_ji)/dr / r, d(pair energy)/dr / r.
    q_ij: Vec<f64>,
    q_ji: Vec<f64>,
    g: Vec<f64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The pair terms of one pair (self kind a, other kind b) at distance r.
#[inline(always)]
fn pair_terms(r: f64, pab: &PairParams, pba: &PairParams, same: bool, acut: f64, rc: f64) -> [f64; 6] {
    let w = 1.0 / (1.0 + exp(acut * (r - rc)));
    let dwdroverw = acut * (w - 1.0);
    let invr = 1.0 / r;
    if same {
        let s1 = pab.a1 * exp(-pab.k1 * r) * w;
        let e2 = pab.a2 * exp(-pab.k2 * r) * w;
        let q = s1 * (dwdroverw - pab.k1) * invr;
        [s1, s1, 2.0 * e2, q, q, 2.0 * e2 * (dwdroverw - pab.k2) * invr]
    } else {
        let s1_ij = pab.a1 * exp(-pab.k1 * r) * w;
        let s1_ji = pba.a1 * exp(-pba.k1 * r) * w;
        let e_ab = pab.a2 * exp(-pab.k2 * r) * w;
        let e_ba = pba.a2 * exp(-pba.k2 * r) * w;
        [
            s1_ij,
            s1_ji,
            e_ab + e_ba,
            s1_ij * (dwdroverw - pab.k1) * invr,
            s1_ji * (dwdroverw - pba.k1) * invr,
            (e_ab * (dwdroverw - pab.k2) + e_ba * (dwdroverw - pba.k2)) * invr,
        ]
    }
}

/// The pair terms of every pair of a one-element structure: a straight loop over arrays
/// that the compiler vectorises.
#[inline(always)]
fn uniform_pair_kernel(sc: &mut Scratch, p: &PairParams, acut: f64, rc: f64) {
    let np = sc.d2.len();
    let (d2, s1, e, q, g) = (&sc.d2[..np], &mut sc.s1_ij[..np], &mut sc.e[..np], &mut sc.q_ij[..np], &mut sc.g[..np]);
    for k in 0..np {
        let t = pair_terms(d2[k].sqrt(), p, p, true, acut, rc);
        s1[k] = t[0];
        e[k] = t[2];
        q[k] = t[3];
        g[k] = t[5];
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn uniform_pair_kernel_avx2(sc: &mut Scratch, p: &PairParams, acut: f64, rc: f64) {
    uniform_pair_kernel(sc, p, acut, rc)
}

/// Wider vectors where the CPU has them. No FMA is used, so the results are the same
/// bits on every x86-64 machine (element-wise IEEE operations do not depend on width).
fn run_uniform_pair_kernel(sc: &mut Scratch, p: &PairParams, acut: f64, rc: f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { uniform_pair_kernel_avx2(sc, p, acut, rc) };
            return;
        }
    }
    uniform_pair_kernel(sc, p, acut, rc)
}

/// The pair constants as separate arrays, indexed by pair class, so that the mixed
/// kernel's look-ups are plain gathers.
struct PairTables {
    a1: Vec<f64>,
    k1: Vec<f64>,
    a2: Vec<f64>,
    k2: Vec<f64>,
}

/// The pair terms of every pair of a structure with several elements: the general
/// formula, which for a pair of one element gives the same bits as the symmetric one.
/// Works in blocks: the constants of a block's pairs are gathered first (scalar), then
/// the terms are computed over contiguous arrays (vectorised).
#[inline(always)]
fn mixed_pair_kernel(sc: &mut Scratch, t: &PairTables, acut: f64, rc: f64) {
    const BLOCK: usize = 128;
    let np = sc.d2.len();
    let mut cst = [[0.0f64; BLOCK]; 8];
    let mut start = 0;
    while start < np {
        let end = (start + BLOCK).min(np);
        let len = end - start;
        for k in 0..len {
            let (ab, ba) = (sc.c_ij[start + k] as usize, sc.c_ji[start + k] as usize);
            cst[0][k] = t.a1[ab];
            cst[1][k] = t.k1[ab];
            cst[2][k] = t.a2[ab];
            cst[3][k] = t.k2[ab];
            cst[4][k] = t.a1[ba];
            cst[5][k] = t.k1[ba];
            cst[6][k] = t.a2[ba];
            cst[7][k] = t.k2[ba];
        }
        let d2 = &sc.d2[start..end];
        let (s1_ij, s1_ji, e) = (&mut sc.s1_ij[start..end], &mut sc.s1_ji[start..end], &mut sc.e[start..end]);
        let (q_ij, q_ji, g) = (&mut sc.q_ij[start..end], &mut sc.q_ji[start..end], &mut sc.g[start..end]);
        let [c0, c1, c2, c3, c4, c5, c6, c7] = &cst;
        let (c0, c1, c2, c3) = (&c0[..len], &c1[..len], &c2[..len], &c3[..len]);
        let (c4, c5, c6, c7) = (&c4[..len], &c5[..len], &c6[..len], &c7[..len]);
        let (s1_ij, s1_ji, e) = (&mut s1_ij[..len], &mut s1_ji[..len], &mut e[..len]);
        let (q_ij, q_ji, g) = (&mut q_ij[..len], &mut q_ji[..len], &mut g[..len]);
        for k in 0..len {
            let pab = PairParams { a1: c0[k], k1: c1[k], a2: c2[k], k2: c3[k] };
            let pba = PairParams { a1: c4[k], k1: c5[k], a2: c6[k], k2: c7[k] };
            let terms = pair_terms(d2[k].sqrt(), &pab, &pba, false, acut, rc);
            s1_ij[k] = terms[0];
            s1_ji[k] = terms[1];
            e[k] = terms[2];
            q_ij[k] = terms[3];
            q_ji[k] = terms[4];
            g[k] = terms[5];
        }
        start = end;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mixed_pair_kernel_avx2(sc: &mut Scratch, t: &PairTables, acut: f64, rc: f64) {
    mixed_pair_kernel(sc, t, acut, rc)
}

fn run_mixed_pair_kernel(sc: &mut Scratch, table: &[PairParams], acut: f64, rc: f64) {
    let t = PairTables {
        a1: table.iter().map(|p| p.a1).collect(),
        k1: table.iter().map(|p| p.k1).collect(),
        a2: table.iter().map(|p| p.a2).collect(),
        k2: table.iter().map(|p| p.k2).collect(),
    };
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { mixed_pair_kernel_avx2(sc, &t, acut, rc) };
            return;
        }
    }
    mixed_pair_kernel(sc, &t, acut, rc)
}

/// `e^x` for |x| < 700, to about 2 ulp, written so that it vectorises (Cody-Waite
/// reduction by ln 2, a degree-13 Taylor polynomial on |r| <= ln2/2, and 2^k built in
/// the exponent bits). Deterministic: plain IEEE multiplications and additions.
#[inline(always)]
fn exp(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: the high part has 32 significant bits, so k * LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: rounds to an integer
    let x = x.clamp(-700.0, 700.0);
    let t = x * LOG2E + SHIFT;
    let k = t - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    const C: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let mut p = C[13];
    for c in C[..13].iter().rev() {
        p = p * r + c;
    }
    let scale = f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
    p * scale
}

/// Everything after binning: pair terms, embedding energies, forces and stress.
#[allow(clippy::too_many_arguments)]
fn finish(
    s: &Structure,
    cells: &CellList,
    kind: &[u8],
    elems: &[ElementParams],
    pairs_table: &[PairParams],
    cut: &Cutoff,
    want_forces: bool,
    sc: &mut Scratch,
) -> Labels {
    let n = s.len();
    let m = elems.len();
    let (rc, acut, rc_list) = (cut.rc, cut.acut, cut.rc_list);
    sc.i.clear();
    sc.j.clear();
    sc.d.clear();
    sc.d2.clear();
    sc.c_ij.clear();
    sc.c_ji.clear();
    // Pairs strictly inside rc_list (ASE: r < rc_list); the kernels take the square roots.
    let rc_list2 = rc_list * rc_list;
    cells.for_each_half_pair_d2(|i, j, d, d2| {
        if d2 < rc_list2 {
            sc.i.push(i as u32);
            sc.j.push(j as u32);
            sc.d.push(d);
            sc.d2.push(d2);
            if m > 1 {
                let (ka, kb) = (kind[i] as u32, kind[j] as u32);
                sc.c_ij.push(ka * m as u32 + kb);
                sc.c_ji.push(kb * m as u32 + ka);
            }
        }
    });
    let np = sc.d2.len();
    // Every entry is overwritten below; only the lengths matter.
    for v in [&mut sc.s1_ij, &mut sc.e, &mut sc.q_ij, &mut sc.g] {
        v.resize(np, 0.0);
    }
    for v in [&mut sc.s1_ji, &mut sc.q_ji] {
        v.resize(if m == 1 { 0 } else { np }, 0.0);
    }
    if m == 1 {
        run_uniform_pair_kernel(sc, &pairs_table[0], acut, rc);
    } else {
        run_mixed_pair_kernel(sc, pairs_table, acut, rc);
    }
    let mut sigma1 = vec![0.0f64; n];
    let mut pair_energy = 0.0;
    // With one element, the terms are symmetric in i and j.
    let (s1_ji, q_ji) = if m == 1 { (&sc.s1_ij, &sc.q_ij) } else { (&sc.s1_ji, &sc.q_ji) };
    for k in 0..np {
        sigma1[sc.i[k] as usize] += sc.s1_ij[k];
        sigma1[sc.j[k] as usize] += s1_ji[k];
        pair_energy += sc.e[k];
    }

    // Embedding (cohesive) energy of each atom and its derivative with respect to
    // its density sum; atoms without neighbours contribute nothing here, as in ASE.
    let mut energy = pair_energy;
    let mut deds = sigma1; // reused in place
    for i in 0..n {
        let p = &elems[kind[i] as usize];
        let sigma = deds[i];
        if sigma > 0.0 {
            let ds = -(sigma * p.inv12gamma1).ln() / (BETA * p.eta2);
            let lmdsds = p.lambda * ds;
            let expneglmdds = (-lmdsds).exp();
            let sixv0 = 6.0 * p.v0 * (-p.kappa * ds).exp();
            energy += p.e0 * (1.0 + lmdsds) * expneglmdds + sixv0;
            let de = -p.e0 * p.lambda * lmdsds * expneglmdds - p.kappa * sixv0;
            deds[i] = de / (-BETA * p.eta2 * sigma);
        } else {
            deds[i] = 0.0;
        }
        energy -= p.e0;
    }

    if !want_forces {
        return Labels { energy_ev: energy, forces_ev_per_a: Vec::new(), stress_ev_per_a3: None };
    }
    let mut forces = vec![[0.0f64; 3]; n];
    // Virial Σ (dE/dr / r) d ⊗ d as [xx, yy, zz, yz, xz, xy].
    let mut virial = [0.0f64; 6];
    for k in 0..np {
        let (i, j) = (sc.i[k] as usize, sc.j[k] as usize);
        let g = sc.g[k] + deds[i] * sc.q_ij[k] + deds[j] * q_ji[k];
        add_pair_force(&mut forces, &mut virial, i, j, &sc.d[k], g);
    }
    let stress = if cell_has_rank_3(s) {
        let v = s.volume_a3().abs();
        Some(virial.map(|x| x / v))
    } else {
        None
    };
    Labels { energy_ev: energy, forces_ev_per_a: forces, stress_ev_per_a3: stress }
}

/// Force `g · d` on i and `-g · d` on j for a pair with `d = r_j - r_i` and
/// `g = (dE/dr) / r`, and its virial.
#[inline(always)]
fn add_pair_force(forces: &mut [Vec3], virial: &mut [f64; 6], i: usize, j: usize, d: &Vec3, g: f64) {
    let f = [g * d[0], g * d[1], g * d[2]];
    for k in 0..3 {
        forces[i][k] += f[k];
        forces[j][k] -= f[k];
    }
    virial[0] += d[0] * f[0];
    virial[1] += d[1] * f[1];
    virial[2] += d[2] * f[2];
    virial[3] += d[1] * f[2];
    virial[4] += d[0] * f[2];
    virial[5] += d[0] * f[1];
}

/// numpy's `matrix_rank(cell) == 3`, with a relative tolerance.
fn cell_has_rank_3(s: &Structure) -> bool {
    let c = &s.cell_a;
    let scale = norm(&c[0]) * norm(&c[1]) * norm(&c[2]);
    scale > 0.0 && det3(c).abs() > 1e-12 * scale
}

fn element_params(p: &[f64; 7], cut: &Cutoff) -> ElementParams {
    let s0 = p[1] * ASE_BOHR_A;
    let eta2 = p[3] / ASE_BOHR_A;
    let kappa = p[4] / ASE_BOHR_A;
    // ASE's _calc_gammas: 12, 6 and 24 neighbours at the 1st, 2nd and 3rd fcc distances.
    let mut gamma1 = 0.0;
    let mut gamma2 = 0.0;
    for (count, k) in [(12.0, 1.0f64), (6.0, 2.0), (24.0, 3.0)] {
        let r = BETA * s0 * k.sqrt();
        let w = 1.0 / (1.0 + (cut.acut * (r - cut.rc)).exp());
        let x = count * w / 12.0;
        gamma1 += x * (-eta2 * (r - BETA * s0)).exp();
        gamma2 += x * (-kappa / BETA * (r - BETA * s0)).exp();
    }
    ElementParams {
        e0: p[0],
        s0,
        v0: p[2],
        eta2,
        kappa,
        lambda: p[5] / ASE_BOHR_A,
        n0: p[6] / ASE_BOHR_A.powi(3),
        inv12gamma1: 1.0 / (12.0 * gamma1),
        neghalfv0overgamma2: -0.5 * p[2] / gamma2,
    }
}

/// The pair constants for self `a`, other `b` (see [`PairParams`]).
fn pair_params(a: &ElementParams, b: &ElementParams) -> PairParams {
    let chi = b.n0 / a.n0;
    PairParams {
        a1: chi * (b.eta2 * BETA * b.s0).exp(),
        k1: b.eta2,
        a2: a.neghalfv0overgamma2 * chi * (b.kappa * b.s0).exp(),
        k2: b.kappa / BETA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autopipe_atoms::structure::{vec_mat, Mat3};

    /// splitmix64, so the tests need no dependency.
    struct Rng(u64);
    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn el(s: &str) -> Element {
        Element::from_symbol(s).unwrap()
    }

    fn fcc(a: f64, reps: [usize; 3], symbols: &[&str], rng: &mut Rng, rattle: f64) -> Structure {
        let mut positions = Vec::new();
        let mut species = Vec::new();
        for x in 0..reps[0] {
            for y in 0..reps[1] {
                for z in 0..reps[2] {
                    for b in [[0.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5], [0.0, 0.5, 0.5]] {
                        positions.push([
                            (x as f64 + b[0]) * a + rng.uniform(-rattle, rattle),
                            (y as f64 + b[1]) * a + rng.uniform(-rattle, rattle),
                            (z as f64 + b[2]) * a + rng.uniform(-rattle, rattle),
                        ]);
                        species.push(el(symbols[(rng.next_u64() % symbols.len() as u64) as usize]));
                    }
                }
            }
        }
        let cell = [[reps[0] as f64 * a, 0.0, 0.0], [0.0, reps[1] as f64 * a, 0.0], [0.0, 0.0, reps[2] as f64 * a]];
        Structure::new(cell, positions, species, [true; 3]).unwrap()
    }

    fn deform(s: &Structure, eps: Mat3) -> Structure {
        let f: Mat3 = std::array::from_fn(|r| std::array::from_fn(|c| eps[r][c] + if r == c { 1.0 } else { 0.0 }));
        let mut out = s.clone();
        for row in &mut out.cell_a {
            *row = vec_mat(row, &f);
        }
        for p in &mut out.positions_a {
            *p = vec_mat(p, &f);
        }
        out
    }

    /// A small triclinic alloy cell (smaller than the cutoff), a sheared alloy supercell,
    /// a slab and a cluster: the structures the derivative tests run on.
    fn test_structures() -> Vec<Structure> {
        let mut rng = Rng(42);
        let mut out = Vec::new();
        let prim = Structure::new(
            [[0.2, 2.7, 2.6], [2.65, 0.0, 2.55], [2.6, 2.7, 0.3]],
            vec![[0.0, 0.0, 0.0], [1.6, 1.9, 1.7], [3.3, 1.4, 3.6]],
            vec![el("Cu"), el("Au"), el("Ni")],
            [true; 3],
        )
        .unwrap();
        out.push(prim);
        let s = fcc(3.7, [2, 2, 2], &["Cu", "Au", "Ni", "Al", "Pd"], &mut rng, 0.15);
        out.push(deform(&s, [[0.02, 0.05, -0.01], [0.0, -0.03, 0.04], [0.03, 0.0, 0.01]]));
        let mut slab = fcc(3.61, [2, 2, 2], &["Cu", "Pt"], &mut rng, 0.1);
        slab.cell_a[2][2] += 10.0;
        slab.pbc = [true, true, false];
        out.push(slab);
        let mut cluster = fcc(3.9, [1, 2, 1], &["Ag", "Pd", "O"], &mut rng, 0.2);
        cluster.cell_a = [[0.0; 3]; 3];
        cluster.pbc = [false; 3];
        out.push(cluster);
        out
    }

    #[test]
    fn known_values_from_ase() {
        // ase.build.bulk('Cu', 'fcc', a=3.61) with EMT(): energy and stress from ASE 3.29.
        let h = 3.61 / 2.0;
        let s =
            Structure::new([[0.0, h, h], [h, 0.0, h], [h, h, 0.0]], vec![[0.0; 3]], vec![el("Cu")], [true; 3]).unwrap();
        let l = Emt::new().calculate(&s).unwrap();
        assert!((l.energy_ev - -0.005_681_511_358_581_304).abs() < 1e-12, "{}", l.energy_ev);
        let st = l.stress_ev_per_a3.unwrap();
        for k in 0..3 {
            assert!((st[k] - 1.361_926_52e-2).abs() < 1e-10, "{st:?}");
            assert!(st[k + 3].abs() < 1e-12);
        }
        // An isolated atom has energy -E0; no cell means no stress.
        let s = Structure::new([[0.0; 3]; 3], vec![[0.0; 3]], vec![el("Cu")], [false; 3]).unwrap();
        let l = Emt::new().calculate(&s).unwrap();
        assert_eq!(l.energy_ev, 3.51);
        assert_eq!(l.forces_ev_per_a, vec![[0.0; 3]]);
        assert_eq!(l.stress_ev_per_a3, None);
        assert!((Emt::new().cutoff_a(&[el("Cu")]) - 5.876_798_323_827_276).abs() < 1e-12);
        // ASE derives Bohr from other CODATA 2014 constants: it differs from the rounded
        // CODATA 2014 value in the 10th digit.
        assert!((ASE_BOHR_A / autopipe_atoms::units::codata2014::BOHR_A - 1.0).abs() < 1e-9);
    }

    #[test]
    fn unsupported_elements_are_errors() {
        let s = Structure::new([[0.0; 3]; 3], vec![[0.0; 3], [2.5, 0.0, 0.0]], vec![el("Cu"), el("Fe")], [false; 3])
            .unwrap();
        match Emt::new().calculate(&s) {
            Err(EmtError::UnsupportedElement { element, index }) => {
                assert_eq!(element, el("Fe"));
                assert_eq!(index, 1);
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(Emt::supports(el("Pt")) && Emt::supports(el("O")) && !Emt::supports(el("Fe")));
    }

    #[test]
    fn forces_are_minus_the_gradient_of_the_energy() {
        let emt = Emt::new();
        let h = 1e-5;
        for (case, s) in test_structures().into_iter().enumerate() {
            let labels = emt.calculate(&s).unwrap();
            assert_eq!(labels.energy_ev, emt.energy_ev(&s).unwrap());
            let n = s.len();
            let mut worst = 0.0f64;
            for i in (0..n).step_by(1 + n / 8) {
                for k in 0..3 {
                    let mut plus = s.clone();
                    plus.positions_a[i][k] += h;
                    let mut minus = s.clone();
                    minus.positions_a[i][k] -= h;
                    let fd = -(emt.energy_ev(&plus).unwrap() - emt.energy_ev(&minus).unwrap()) / (2.0 * h);
                    let f = labels.forces_ev_per_a[i][k];
                    let err = (fd - f).abs() / f.abs().max(1.0);
                    worst = worst.max(err);
                    assert!(err < 1e-6, "case {case} atom {i} component {k}: force {f} vs finite difference {fd}");
                }
            }
            // Sanity: the structures are not at equilibrium, so this tested something.
            assert!(labels.max_force_ev_per_a() > 0.05, "case {case}");
            assert!(worst < 1e-6);
        }
    }

    #[test]
    fn stress_is_the_strain_derivative_of_the_energy() {
        let emt = Emt::new();
        let h = 1e-5;
        for (case, s) in test_structures().into_iter().enumerate().take(2) {
            let stress = emt.calculate(&s).unwrap().stress_ev_per_a3.unwrap();
            let v = s.volume_a3().abs();
            for (voigt, (a, b)) in [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)].into_iter().enumerate() {
                let strain = |x: f64| {
                    let mut e = [[0.0; 3]; 3];
                    e[a][b] += x / 2.0;
                    e[b][a] += x / 2.0;
                    e
                };
                let fd = (emt.energy_ev(&deform(&s, strain(h))).unwrap()
                    - emt.energy_ev(&deform(&s, strain(-h))).unwrap())
                    / (2.0 * h * v);
                assert!(
                    (fd - stress[voigt]).abs() < 1e-8 * stress[voigt].abs().max(1.0),
                    "case {case} component {voigt}: stress {} vs finite difference {fd}",
                    stress[voigt]
                );
            }
            assert!(stress.iter().any(|x| x.abs() > 1e-3), "case {case}: {stress:?}");
        }
    }

    #[test]
    fn invariant_under_rotation_translation_and_permutation() {
        let emt = Emt::new();
        let (ax, ay, az) = (0.3f64, -1.1f64, 2.0f64);
        let rx = [[1.0, 0.0, 0.0], [0.0, ax.cos(), -ax.sin()], [0.0, ax.sin(), ax.cos()]];
        let ry = [[ay.cos(), 0.0, ay.sin()], [0.0, 1.0, 0.0], [-ay.sin(), 0.0, ay.cos()]];
        let rz = [[az.cos(), -az.sin(), 0.0], [az.sin(), az.cos(), 0.0], [0.0, 0.0, 1.0]];
        let mul = |a: &Mat3, b: &Mat3| -> Mat3 {
            std::array::from_fn(|r| std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum()))
        };
        let rot = mul(&rx, &mul(&ry, &rz));
        for (case, s) in test_structures().into_iter().enumerate() {
            let l0 = emt.calculate(&s).unwrap();
            let tol = 1e-10 * s.len() as f64;
            // Rotation (rows: r' = r R); forces rotate with the atoms.
            let mut r = s.clone();
            for row in &mut r.cell_a {
                *row = vec_mat(row, &rot);
            }
            for p in &mut r.positions_a {
                *p = vec_mat(p, &rot);
            }
            let l1 = emt.calculate(&r).unwrap();
            assert!((l1.energy_ev - l0.energy_ev).abs() < tol, "case {case}: rotation");
            for (f0, f1) in l0.forces_ev_per_a.iter().zip(&l1.forces_ev_per_a) {
                let f0r = vec_mat(f0, &rot);
                for k in 0..3 {
                    assert!((f0r[k] - f1[k]).abs() < 1e-9, "case {case}: rotated forces");
                }
            }
            // Translation.
            let mut t = s.clone();
            for p in &mut t.positions_a {
                p[0] += 13.7;
                p[1] -= 4.1;
                p[2] += 0.37;
            }
            assert!((emt.energy_ev(&t).unwrap() - l0.energy_ev).abs() < tol, "case {case}: translation");
            // Permutation (reverse, then rotate by 3).
            let n = s.len();
            let order: Vec<usize> = (0..n).rev().cycle().skip(3).take(n).collect();
            let mut p = s.clone();
            p.positions_a = order.iter().map(|&i| s.positions_a[i]).collect();
            p.species = order.iter().map(|&i| s.species[i]).collect();
            let lp = emt.calculate(&p).unwrap();
            assert!((lp.energy_ev - l0.energy_ev).abs() < tol, "case {case}: permutation");
            for (k, &i) in order.iter().enumerate() {
                for c in 0..3 {
                    assert!((lp.forces_ev_per_a[k][c] - l0.forces_ev_per_a[i][c]).abs() < 1e-10);
                }
            }
        }
    }

    #[test]
    fn energy_is_extensive() {
        let emt = Emt::new();
        for (case, s) in test_structures().into_iter().enumerate().take(2) {
            let reps = [2usize, 3, 1];
            let mut big = s.clone();
            big.positions_a.clear();
            big.species.clear();
            for x in 0..reps[0] {
                for y in 0..reps[1] {
                    for z in 0..reps[2] {
                        let t = vec_mat(&[x as f64, y as f64, z as f64], &s.cell_a);
                        for (p, e) in s.positions_a.iter().zip(&s.species) {
                            big.positions_a.push([p[0] + t[0], p[1] + t[1], p[2] + t[2]]);
                            big.species.push(*e);
                        }
                    }
                }
            }
            for (k, row) in big.cell_a.iter_mut().enumerate() {
                for x in row.iter_mut() {
                    *x *= reps[k] as f64;
                }
            }
            let small = emt.calculate(&s).unwrap();
            let large = emt.calculate(&big).unwrap();
            let copies = (reps[0] * reps[1] * reps[2]) as f64;
            assert!(
                (large.energy_ev - copies * small.energy_ev).abs() < 1e-10 * big.len() as f64,
                "case {case}: {} vs {} x {}",
                large.energy_ev,
                copies,
                small.energy_ev
            );
            for (k, f) in large.forces_ev_per_a.iter().enumerate() {
                let g = small.forces_ev_per_a[k % s.len()];
                for c in 0..3 {
                    assert!((f[c] - g[c]).abs() < 1e-9, "case {case}: forces of the copies");
                }
            }
            let (a, b) = (large.stress_ev_per_a3.unwrap(), small.stress_ev_per_a3.unwrap());
            for c in 0..6 {
                assert!((a[c] - b[c]).abs() < 1e-11, "case {case}: stress is intensive");
            }
        }
    }

    #[test]
    fn stress_follows_the_cell_rank_like_ase() {
        let mut rng = Rng(1);
        let mut s = fcc(3.61, [1, 1, 1], &["Cu"], &mut rng, 0.1);
        s.pbc = [false; 3];
        // A rank-3 cell gives a stress even without periodicity (as ASE does) ...
        assert!(Emt::new().calculate(&s).unwrap().stress_ev_per_a3.is_some());
        // ... a missing cell does not.
        s.cell_a = [[0.0; 3]; 3];
        assert!(Emt::new().calculate(&s).unwrap().stress_ev_per_a3.is_none());
    }

    #[test]
    fn vectorisable_exp_is_accurate() {
        let mut rng = Rng(3);
        let mut worst = 0.0f64;
        for k in 0..200_000 {
            let x = if k % 2 == 0 { rng.uniform(-150.0, 20.0) } else { rng.uniform(-700.0, 700.0) };
            let (a, b) = (exp(x), x.exp());
            worst = worst.max(((a - b) / b).abs());
        }
        for x in [0.0, -0.0, 1.0, -1.0, 0.5 * std::f64::consts::LN_2, -0.5 * std::f64::consts::LN_2, 700.0, -700.0] {
            worst = worst.max(((exp(x) - x.exp()) / x.exp()).abs());
        }
        assert!(worst < 1e-15, "relative error {worst:e}");
    }

    /// Speed of energy + forces + stress for a 500-atom fcc Cu cell, including the
    /// neighbour search. Run with
    /// `cargo test --release -p autopipe-engines --lib emt_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn emt_speed_cu_fcc_500() {
        let mut rng = Rng(8);
        let s = fcc(3.61, [5, 5, 5], &["Cu"], &mut rng, 0.05);
        let emt = Emt::new();
        let mut best = f64::INFINITY;
        for _ in 0..200 {
            let t = std::time::Instant::now();
            for _ in 0..5 {
                std::hint::black_box(emt.calculate(&s).unwrap());
            }
            best = best.min(t.elapsed().as_secs_f64() / 5.0);
        }
        eprintln!("EMT, 500-atom fcc Cu: {:.0} us per call, {:.0} atoms/s", best * 1e6, 500.0 / best);
    }
}
