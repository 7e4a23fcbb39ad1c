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
//! Pure computation: one pass over a half neighbour list from a cell list gathers the
//! density sums and the pair term, a second pass adds the embedding forces.

use crate::Labels;
use autopipe_atoms::neighbors::CellList;
use autopipe_atoms::structure::{det3, norm, Vec3};
use autopipe_atoms::{Element, Structure, StructureError};

/// The Bohr radius in Å exactly as `ase.units.Bohr` computes it from CODATA 2014
/// constants (`4 pi eps0 hbar^2 / (m_e e^2)`), which differs from the rounded CODATA 2014
/// value (`autopipe_atoms::units::codata2014::BOHR_A`) in the 11th digit.
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
    #[error("EMT has no parameters for {element} (atom {index}); it supports Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O")]
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

/// One pair of the half list, kept between the two passes.
#[derive(Clone, Copy, Debug)]
struct Pair {
    i: u32,
    j: u32,
    d: Vec3,
    /// d(s1 of j into i)/dr / r and d(s1 of i into j)/dr / r.
    q_ij: f64,
    q_ji: f64,
    /// d(pair term)/dr / r.
    g: f64,
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
        let s0_max_bohr = if self.asap_cutoff {
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

        let mut sigma1 = vec![0.0f64; n];
        let mut forces = vec![[0.0f64; 3]; if want_forces { n } else { 0 }];
        // Virial Σ (dE/dr / r) d ⊗ d as [xx, yy, zz, yz, xz, xy].
        let mut virial = [0.0f64; 6];
        let mut pair_energy = 0.0f64;
        let mut pairs: Vec<Pair> = if want_forces { Vec::with_capacity(40 * n) } else { Vec::new() };

        let (rc, acut, rc_list) = (cut.rc, cut.acut, cut.rc_list);
        let cells = CellList::new(s, rc_list);
        cells.for_each_half_pair_vector(|i, j, d, r| {
            if r >= rc_list {
                return;
            }
            let ka = kind[i] as usize;
            let kb = kind[j] as usize;
            let w = 1.0 / (1.0 + (acut * (r - rc)).exp());
            let dwdroverw = acut * (w - 1.0);
            let pab = &pairs_table[ka * m + kb];
            if ka == kb {
                let s1 = pab.a1 * (-pab.k1 * r).exp() * w;
                let e2 = pab.a2 * (-pab.k2 * r).exp() * w;
                sigma1[i] += s1;
                sigma1[j] += s1;
                pair_energy += 2.0 * e2;
                if want_forces {
                    let invr = 1.0 / r;
                    let q = s1 * (dwdroverw - pab.k1) * invr;
                    let g = 2.0 * e2 * (dwdroverw - pab.k2) * invr;
                    pairs.push(Pair { i: i as u32, j: j as u32, d, q_ij: q, q_ji: q, g });
                }
            } else {
                let pba = &pairs_table[kb * m + ka];
                let s1_ij = pab.a1 * (-pab.k1 * r).exp() * w;
                let s1_ji = pba.a1 * (-pba.k1 * r).exp() * w;
                let e_ab = pab.a2 * (-pab.k2 * r).exp() * w;
                let e_ba = pba.a2 * (-pba.k2 * r).exp() * w;
                sigma1[i] += s1_ij;
                sigma1[j] += s1_ji;
                pair_energy += e_ab + e_ba;
                if want_forces {
                    let invr = 1.0 / r;
                    pairs.push(Pair {
                        i: i as u32,
                        j: j as u32,
                        d,
                        q_ij: s1_ij * (dwdroverw - pab.k1) * invr,
                        q_ji: s1_ji * (dwdroverw - pba.k1) * invr,
                        g: (e_ab * (dwdroverw - pab.k2) + e_ba * (dwdroverw - pba.k2)) * invr,
                    });
                }
            }
        });

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
            return Ok(Labels { energy_ev: energy, forces_ev_per_a: Vec::new(), stress_ev_per_a3: None });
        }
        for p in &pairs {
            let (i, j) = (p.i as usize, p.j as usize);
            let g = p.g + deds[i] * p.q_ij + deds[j] * p.q_ji;
            add_pair_force(&mut forces, &mut virial, i, j, &p.d, g);
        }
        let stress = if cell_has_rank_3(s) {
            let v = s.volume_a3().abs();
            Some(virial.map(|x| x / v))
        } else {
            None
        };
        Ok(Labels { energy_ev: energy, forces_ev_per_a: forces, stress_ev_per_a3: stress })
    }
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
