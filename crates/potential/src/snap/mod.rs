//! SNAP bispectrum descriptors (Thompson et al., J. Comput. Phys. 285, 316 (2015)) with
//! LAMMPS's conventions (`compute sna/atom`, `snad/atom`, `snav/atom`, `pair_style snap`,
//! non-chem variant):
//!
//! * one descriptor vector per atom; a neighbour `j` of atom `i` counts when
//!   `r_ij < rcutfac · (R_i + R_j)` and is weighted by `w_j` (the weight of its element);
//! * the order of the components is LAMMPS's (`j1 >= j2`, `j >= j1`, loops j1, j2, j);
//! * with `quadraticflag`, the linear components are followed by `½ B_k²` and `B_k B_l`
//!   (`l > k`), row by row, as in LAMMPS;
//! * derivatives are taken with respect to `r_ij = r_j - r_i` (so `dB_i/dr_j = dB_i/dr_ij`
//!   and `dB_i/dr_i = -Σ_j dB_i/dr_ij`).
//!
//! Layout, chosen for the linear model and the fit:
//! * `b[i * n_columns + k]`: the descriptors of atom `i`;
//! * per neighbour pair `p` (compressed rows by the central atom `i`, in neighbour-list
//!   order): `pair_j[p]`, `pair_rij[p]`, and `dbdrj[p * 3 n_linear + c * n_linear + k]`
//!   = `dB_i,k / d r_j,c` for the linear components (quadratic ones follow from B and dB,
//!   see [`SnapDescriptors::pair_gradient`]);
//! * design-matrix helpers: [`SnapDescriptors::energy_row`] (Σ_i B_i per element block),
//!   [`SnapDescriptors::force_rows`] (LAMMPS `snad/atom` layout, `F = β · row`),
//!   [`SnapDescriptors::virial_row`] (Σ of LAMMPS `snav/atom`, `W = β · row`), and
//!   [`SnapDescriptors::per_atom_virial`] (LAMMPS `snav/atom` itself).
//!
//! Element blocks are indexed like `SnapParams::elements` and chosen by the element of the
//! central atom `i` (LAMMPS: by its type).
//!
//! Speed: per atom, U of all neighbours at once (vectorised over neighbours), Z with LAMMPS's
//! factorisation (only the blocks B needs when no gradients are asked), and dB/dr of all
//! neighbours as register-tiled contractions of Z with the batched dU (AVX2/FMA code paths
//! chosen at run time; [`SnapKernels::Portable`], or `AUTOPIPE_SNAP_PORTABLE=1` in the
//! environment, forces the portable code on any CPU). On the 128-atom bcc W cell (2J=8)
//! this is about 1.9x faster than LAMMPS 2025 `compute snad/atom` and 2.3x faster than
//! `pair_style snap` on one core (`examples/snap_bench.rs`, `bench/lammps_snad_bench.py`).

// Index-heavy numerical kernels read best with explicit index loops.
#![allow(
    clippy::needless_range_loop,
    clippy::too_many_arguments,
    clippy::manual_div_ceil,
    clippy::manual_is_multiple_of,
    clippy::neg_cmp_op_on_partial_ord,
    unknown_lints
)]

mod batch;
mod sna;

use autopipe_atoms::{Element, NeighborList, Structure};
use serde::{Deserialize, Serialize};

pub use sna::n_descriptors;
use sna::{Kernel, Nbr, Simd, Tables, Work};

/// The environment variable that makes [`SnapKernels::Portable`] the default.
pub const PORTABLE_ENV: &str = "AUTOPIPE_SNAP_PORTABLE";

/// Which code the SNAP kernels run. Both give the same numbers up to rounding (FMA
/// contracts some products); both are compared with LAMMPS by the tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapKernels {
    /// The AVX2/FMA kernels where the CPU has them (detected at run time), the portable
    /// ones elsewhere.
    Native,
    /// The portable kernels only (no target-specific instructions), whatever the CPU: the
    /// code that runs on aarch64 or on an x86-64 CPU without AVX2.
    Portable,
}

impl SnapKernels {
    /// The process's default: `Portable` when `AUTOPIPE_SNAP_PORTABLE` is set to anything
    /// but an empty string or `0`, `Native` otherwise. Read once, on first use.
    pub fn from_env() -> SnapKernels {
        static DEFAULT: std::sync::OnceLock<SnapKernels> = std::sync::OnceLock::new();
        *DEFAULT.get_or_init(|| SnapKernels::from_env_value(std::env::var_os(PORTABLE_ENV).as_deref()))
    }

    /// The choice a value of `AUTOPIPE_SNAP_PORTABLE` makes (`None`: not set).
    pub fn from_env_value(value: Option<&std::ffi::OsStr>) -> SnapKernels {
        match value {
            Some(v) if !v.is_empty() && v != std::ffi::OsStr::new("0") => SnapKernels::Portable,
            _ => SnapKernels::Native,
        }
    }

    /// Whether target-specific (AVX2/FMA) kernels run under this choice on this CPU.
    pub fn uses_simd(self) -> bool {
        let s = Simd::new(self);
        s.avx2 || s.fma
    }
}

/// One element of a SNAP model: its radius `R` (cutoff `rcutfac (R_i + R_j)`) and its
/// neighbour weight `w`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapElement {
    pub element: Element,
    pub radius: f64,
    pub weight: f64,
}

/// The hyper-parameters of SNAP descriptors, with LAMMPS's names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapParams {
    pub twojmax: usize,
    pub rcutfac: f64,
    pub rfac0: f64,
    #[serde(default)]
    pub rmin0: f64,
    #[serde(default = "yes")]
    pub switchflag: bool,
    #[serde(default = "yes")]
    pub bzeroflag: bool,
    #[serde(default)]
    pub quadraticflag: bool,
    pub elements: Vec<SnapElement>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SnapError {
    #[error("atom {atom} is {symbol}, which is not one of the SNAP elements")]
    UnknownElement { atom: usize, symbol: String },
    #[error("invalid SNAP parameters: {0}")]
    InvalidParams(String),
    #[error("beta: expected {expected_elements} vectors of {expected_len} coefficients, got {got}")]
    BetaShape { expected_elements: usize, expected_len: usize, got: String },
}

impl SnapParams {
    /// Number of linear bispectrum components.
    pub fn n_linear(&self) -> usize {
        n_descriptors(self.twojmax)
    }

    /// Number of descriptor columns per element block (linear, plus quadratic if asked).
    pub fn n_columns(&self) -> usize {
        let n = self.n_linear();
        if self.quadraticflag {
            n + n * (n + 1) / 2
        } else {
            n
        }
    }

    /// The cutoff between elements `a` and `b` (indices into `elements`), in Å.
    pub fn pair_cutoff(&self, a: usize, b: usize) -> f64 {
        (self.elements[a].radius + self.elements[b].radius) * self.rcutfac
    }

    /// The largest pair cutoff, in Å.
    pub fn max_cutoff(&self) -> f64 {
        let r = self.elements.iter().map(|e| e.radius).fold(0.0, f64::max);
        2.0 * r * self.rcutfac
    }

    pub fn element_index(&self, e: Element) -> Option<usize> {
        self.elements.iter().position(|x| x.element == e)
    }

    pub fn validate(&self) -> Result<(), SnapError> {
        let bad = |m: String| Err(SnapError::InvalidParams(m));
        if self.elements.is_empty() {
            return bad("no elements".into());
        }
        if self.twojmax > 24 {
            return bad(format!("twojmax {} is too large", self.twojmax));
        }
        if !(self.rfac0 > 0.0 && self.rfac0 <= 1.0) {
            return bad(format!("rfac0 {} must be in (0, 1]", self.rfac0));
        }
        if !(self.rcutfac > 0.0) || !self.rmin0.is_finite() || self.rmin0 < 0.0 {
            return bad("rcutfac must be positive and rmin0 non-negative".into());
        }
        for (k, e) in self.elements.iter().enumerate() {
            if !(e.radius > 0.0) || !e.weight.is_finite() {
                return bad(format!("element {} needs a positive radius and a finite weight", e.element.symbol()));
            }
            if self.elements[..k].iter().any(|x| x.element == e.element) {
                return bad(format!("element {} appears twice", e.element.symbol()));
            }
        }
        if self.rmin0 >= self.pair_cutoff_min() {
            return bad("rmin0 must be below every pair cutoff".into());
        }
        Ok(())
    }

    fn pair_cutoff_min(&self) -> f64 {
        let r = self.elements.iter().map(|e| e.radius).fold(f64::INFINITY, f64::min);
        2.0 * r * self.rcutfac
    }
}

/// Per-pair derivatives of the linear descriptors (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapGradients {
    /// The positions the gradients were computed at (for per-atom virials).
    pub positions: Vec<[f64; 3]>,
    /// Pairs of central atom `i` are `pair_offsets[i]..pair_offsets[i + 1]`.
    pub pair_offsets: Vec<usize>,
    pub pair_j: Vec<usize>,
    /// `r_j(image) - r_i`, Å.
    pub pair_rij: Vec<[f64; 3]>,
    /// `[pair][xyz][n_linear]`: `dB_i/dr_j` of the linear components.
    pub dbdrj: Vec<f64>,
}

/// Descriptors of every atom of a structure, and optionally their gradients.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapDescriptors {
    pub n_atoms: usize,
    pub n_linear: usize,
    /// Columns per element block: `n_linear`, plus the quadratic ones if asked.
    pub n_columns: usize,
    pub n_elements: usize,
    pub quadratic: bool,
    /// Element block (index into `SnapParams::elements`) of every atom.
    pub atom_element: Vec<usize>,
    /// `[atom][n_columns]`.
    pub b: Vec<f64>,
    pub gradients: Option<SnapGradients>,
}

/// Energy (eV), forces (eV/Å) and virial (eV, Voigt order xx yy zz yz xz xy, LAMMPS's sign:
/// `W = Σ r ⊗ F`, so that the stress is `σ = -W / V` in ASE's convention) of a linear
/// (or quadratic) SNAP model.
#[derive(Clone, Debug, PartialEq)]
pub struct EnergyForcesVirial {
    pub energy: f64,
    pub atom_energies: Vec<f64>,
    pub forces: Vec<[f64; 3]>,
    pub virial: [f64; 6],
}

/// A SNAP descriptor calculator: the parameters and their precomputed index tables, to be
/// reused across many structures.
#[derive(Clone, Debug)]
pub struct Snap {
    params: SnapParams,
    tables: Tables,
    kernels: SnapKernels,
}

struct AtomNeighbors {
    nbrs: Vec<Nbr>,
    js: Vec<usize>,
}

impl Snap {
    pub fn new(params: &SnapParams) -> Result<Snap, SnapError> {
        params.validate()?;
        Ok(Snap { params: params.clone(), tables: Tables::new(params.twojmax), kernels: SnapKernels::from_env() })
    }

    /// The same calculator running the given kernels (the default is
    /// [`SnapKernels::from_env`]).
    pub fn with_kernels(mut self, kernels: SnapKernels) -> Snap {
        self.kernels = kernels;
        self
    }

    pub fn kernels(&self) -> SnapKernels {
        self.kernels
    }

    pub fn params(&self) -> &SnapParams {
        &self.params
    }

    fn kernel(&self) -> Kernel<'_> {
        Kernel {
            t: &self.tables,
            rfac0: self.params.rfac0,
            rmin0: self.params.rmin0,
            switchflag: self.params.switchflag,
            simd: Simd::new(self.kernels),
        }
    }

    fn atom_elements(&self, s: &Structure) -> Result<Vec<usize>, SnapError> {
        s.species
            .iter()
            .enumerate()
            .map(|(atom, &e)| {
                self.params
                    .element_index(e)
                    .ok_or_else(|| SnapError::UnknownElement { atom, symbol: e.symbol().to_string() })
            })
            .collect()
    }

    /// Iterate over atoms with their in-cutoff neighbours.
    fn gather(&self, nl: &NeighborList, elem: &[usize], i: usize, out: &mut AtomNeighbors) {
        out.nbrs.clear();
        out.js.clear();
        let p = &self.params;
        let ri = p.elements[elem[i]].radius;
        for nb in nl.neighbors(i) {
            let ej = &p.elements[elem[nb.j]];
            let rcut = (ri + ej.radius) * p.rcutfac;
            let v = nb.vector_a;
            let rsq = v[0] * v[0] + v[1] * v[1] + v[2] * v[2];
            if rsq < rcut * rcut && rsq > 1e-20 {
                out.nbrs.push(Nbr { rij: v, r: rsq.sqrt(), wj: ej.weight, rcut });
                out.js.push(nb.j);
            }
        }
    }

    fn quadratic_into(&self, lin: &[f64], out: &mut [f64]) {
        let n = lin.len();
        let mut c = n;
        for k in 0..n {
            out[c] = 0.5 * lin[k] * lin[k];
            c += 1;
            for l in k + 1..n {
                out[c] = lin[k] * lin[l];
                c += 1;
            }
        }
    }

    fn compute(&self, s: &Structure, with_gradients: bool) -> Result<SnapDescriptors, SnapError> {
        let elem = self.atom_elements(s)?;
        let n_atoms = s.len();
        let nl = NeighborList::build(s, self.params.max_cutoff());
        let k = self.kernel();
        let mut w = Work::new(&self.tables);
        let nlin = self.tables.n_b();
        let ncol = self.params.n_columns();
        let mut b = vec![0.0; n_atoms * ncol];
        let mut an = AtomNeighbors { nbrs: Vec::new(), js: Vec::new() };
        let mut grads = with_gradients.then(|| SnapGradients {
            positions: s.positions_a.clone(),
            pair_offsets: Vec::with_capacity(n_atoms + 1),
            pair_j: Vec::new(),
            pair_rij: Vec::new(),
            dbdrj: Vec::new(),
        });
        if let Some(g) = grads.as_mut() {
            g.pair_offsets.push(0);
            g.pair_j.reserve(nl.total_pairs());
            g.pair_rij.reserve(nl.total_pairs());
            g.dbdrj.reserve(nl.total_pairs() * 3 * nlin);
        }
        for i in 0..n_atoms {
            self.gather(&nl, &elem, i, &mut an);
            k.compute_ui_batch(&mut w, &an.nbrs, with_gradients);
            k.compute_zi(&mut w, !with_gradients);
            k.compute_bi(&mut w, self.params.bzeroflag);
            let row = &mut b[i * ncol..(i + 1) * ncol];
            row[..nlin].copy_from_slice(&w.blist);
            if self.params.quadraticflag {
                self.quadratic_into(&w.blist, row);
            }
            if let Some(g) = grads.as_mut() {
                let nn = an.nbrs.len();
                k.compute_duidrj_batch(&mut w);
                k.compute_dbidrj_batch(&mut w, nn);
                let width = Kernel::batch_width(nn);
                let start = g.dbdrj.len();
                g.dbdrj.resize(start + nn * 3 * nlin, 0.0);
                let dst = &mut g.dbdrj[start..];
                for jjb in 0..nlin {
                    let src = &w.dbout[jjb * width..jjb * width + 3 * nn];
                    for c in 0..3 {
                        for p in 0..nn {
                            dst[(p * 3 + c) * nlin + jjb] = src[c * nn + p];
                        }
                    }
                }
                g.pair_j.extend_from_slice(&an.js);
                g.pair_rij.extend(an.nbrs.iter().map(|nb| nb.rij));
                g.pair_offsets.push(g.pair_j.len());
            }
        }
        Ok(SnapDescriptors {
            n_atoms,
            n_linear: nlin,
            n_columns: ncol,
            n_elements: self.params.elements.len(),
            quadratic: self.params.quadraticflag,
            atom_element: elem,
            b,
            gradients: grads,
        })
    }

    /// B of every atom.
    pub fn descriptors(&self, s: &Structure) -> Result<SnapDescriptors, SnapError> {
        self.compute(s, false)
    }

    /// B of every atom and dB_i/dr_j of every neighbour pair.
    pub fn descriptors_with_gradients(&self, s: &Structure) -> Result<SnapDescriptors, SnapError> {
        self.compute(s, true)
    }

    /// Energy, forces and virial of the model `E = Σ_i β_{elem(i)} · B_i` (no constant
    /// term; `beta[e]` has `n_columns` entries, quadratic ones included when the
    /// parameters ask for them), by LAMMPS's adjoint ("Y-array") method.
    pub fn energy_forces_virial(&self, s: &Structure, beta: &[Vec<f64>]) -> Result<EnergyForcesVirial, SnapError> {
        self.energy_forces_virial_threads(s, beta, 1)
    }

    /// [`Snap::energy_forces_virial`] on `threads` threads (atoms split in contiguous
    /// blocks, each thread with its own scratch and force buffer, summed in block order,
    /// so the result does not depend on scheduling).
    pub fn energy_forces_virial_threads(
        &self,
        s: &Structure,
        beta: &[Vec<f64>],
        threads: usize,
    ) -> Result<EnergyForcesVirial, SnapError> {
        let ncol = self.params.n_columns();
        if beta.len() != self.params.elements.len() || beta.iter().any(|b| b.len() != ncol) {
            return Err(SnapError::BetaShape {
                expected_elements: self.params.elements.len(),
                expected_len: ncol,
                got: format!("{:?}", beta.iter().map(|b| b.len()).collect::<Vec<_>>()),
            });
        }
        let elem = self.atom_elements(s)?;
        let n_atoms = s.len();
        let nl = NeighborList::build(s, self.params.max_cutoff());
        let threads = threads.clamp(1, n_atoms.max(1));
        if threads == 1 {
            return Ok(self.efv_block(&nl, &elem, beta, 0..n_atoms));
        }
        let chunk = n_atoms.div_ceil(threads);
        let parts: Vec<EnergyForcesVirial> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * chunk).min(n_atoms)..((t + 1) * chunk).min(n_atoms);
                    let (nl, elem) = (&nl, &elem);
                    scope.spawn(move || self.efv_block(nl, elem, beta, range))
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("a SNAP worker thread panicked")).collect()
        });
        let mut out = EnergyForcesVirial {
            energy: 0.0,
            atom_energies: vec![0.0; n_atoms],
            forces: vec![[0.0; 3]; n_atoms],
            virial: [0.0; 6],
        };
        for part in parts {
            out.energy += part.energy;
            for (a, b) in out.atom_energies.iter_mut().zip(&part.atom_energies) {
                *a += b;
            }
            for (a, b) in out.forces.iter_mut().zip(&part.forces) {
                for c in 0..3 {
                    a[c] += b[c];
                }
            }
            for c in 0..6 {
                out.virial[c] += part.virial[c];
            }
        }
        Ok(out)
    }

    /// The adjoint-path contributions of the atoms in `atoms` (energies of those atoms,
    /// forces on every atom they touch, their virial).
    fn efv_block(
        &self,
        nl: &NeighborList,
        elem: &[usize],
        beta: &[Vec<f64>],
        atoms: std::ops::Range<usize>,
    ) -> EnergyForcesVirial {
        let n_atoms = elem.len();
        let ncol = self.params.n_columns();
        let k = self.kernel();
        let mut w = Work::new(&self.tables);
        let nlin = self.tables.n_b();
        let mut an = AtomNeighbors { nbrs: Vec::new(), js: Vec::new() };
        let mut out = EnergyForcesVirial {
            energy: 0.0,
            atom_energies: vec![0.0; n_atoms],
            forces: vec![[0.0; 3]; n_atoms],
            virial: [0.0; 6],
        };
        let mut beta_eff = vec![0.0; nlin];
        let mut qcols = vec![0.0; ncol];
        let mut dedr = Vec::new();
        for i in atoms {
            let be = &beta[elem[i]];
            self.gather(nl, elem, i, &mut an);
            k.compute_ui_batch(&mut w, &an.nbrs, true);
            k.compute_zi(&mut w, false);
            k.compute_bi(&mut w, self.params.bzeroflag);
            let mut e: f64 = be[..nlin].iter().zip(&w.blist).map(|(a, b)| a * b).sum();
            beta_eff.copy_from_slice(&be[..nlin]);
            if self.params.quadraticflag {
                self.quadratic_into(&w.blist, &mut qcols);
                e += be[nlin..].iter().zip(&qcols[nlin..]).map(|(a, b)| a * b).sum::<f64>();
                let mut c = nlin;
                for a in 0..nlin {
                    beta_eff[a] += be[c] * w.blist[a];
                    c += 1;
                    for b2 in a + 1..nlin {
                        beta_eff[a] += be[c] * w.blist[b2];
                        beta_eff[b2] += be[c] * w.blist[a];
                        c += 1;
                    }
                }
            }
            out.atom_energies[i] = e;
            out.energy += e;
            k.compute_yi(&mut w, &beta_eff);
            k.compute_duidrj_batch(&mut w);
            let nn = an.nbrs.len();
            dedr.resize(Kernel::batch_width(nn), 0.0);
            k.compute_deidrj_batch(&w, &mut dedr);
            for (p, (nb, &j)) in an.nbrs.iter().zip(&an.js).enumerate() {
                let d = [dedr[p], dedr[nn + p], dedr[2 * nn + p]];
                for c in 0..3 {
                    out.forces[i][c] += d[c];
                    out.forces[j][c] -= d[c];
                }
                let r = nb.rij;
                out.virial[0] -= r[0] * d[0];
                out.virial[1] -= r[1] * d[1];
                out.virial[2] -= r[2] * d[2];
                out.virial[3] -= r[2] * d[1];
                out.virial[4] -= r[2] * d[0];
                out.virial[5] -= r[1] * d[0];
            }
        }
        out
    }
}

impl SnapDescriptors {
    /// The descriptors of atom `i` (`n_columns`).
    pub fn b_row(&self, i: usize) -> &[f64] {
        &self.b[i * self.n_columns..(i + 1) * self.n_columns]
    }

    fn grads(&self) -> &SnapGradients {
        self.gradients.as_ref().expect("these descriptors were computed without gradients")
    }

    /// The pairs (indices into the per-pair arrays) whose central atom is `i`.
    pub fn pairs_of(&self, i: usize) -> std::ops::Range<usize> {
        let g = self.grads();
        g.pair_offsets[i]..g.pair_offsets[i + 1]
    }

    /// `dB_i/dr_j` of the linear components of pair `p`: `[xyz][n_linear]`.
    pub fn dbdrj(&self, p: usize) -> &[f64] {
        let n = 3 * self.n_linear;
        &self.grads().dbdrj[p * n..(p + 1) * n]
    }

    /// `dB_i/dr_j` of all columns (quadratic included) of pair `p` whose central atom is
    /// `i`, into `out` (`[xyz][n_columns]`).
    pub fn pair_gradient(&self, i: usize, p: usize, out: &mut [f64]) {
        let nl = self.n_linear;
        let nc = self.n_columns;
        let g = self.dbdrj(p);
        let b = &self.b_row(i)[..nl];
        for c in 0..3 {
            let gc = &g[c * nl..(c + 1) * nl];
            let o = &mut out[c * nc..(c + 1) * nc];
            o[..nl].copy_from_slice(gc);
            if self.quadratic {
                let mut q = nl;
                for k in 0..nl {
                    o[q] = b[k] * gc[k];
                    q += 1;
                    for l in k + 1..nl {
                        o[q] = b[k] * gc[l] + gc[k] * b[l];
                        q += 1;
                    }
                }
            }
        }
    }

    /// Σ_i B_i, per element block: `[n_elements][n_columns]`; `E = β · row`.
    pub fn energy_row(&self) -> Vec<f64> {
        let nc = self.n_columns;
        let mut row = vec![0.0; self.n_elements * nc];
        for i in 0..self.n_atoms {
            let o = self.atom_element[i] * nc;
            for (a, b) in row[o..o + nc].iter_mut().zip(self.b_row(i)) {
                *a += b;
            }
        }
        row
    }

    fn for_each_pair_gradient(&self, mut f: impl FnMut(usize, usize, usize, &[f64])) {
        let g = self.grads();
        let mut buf = vec![0.0; 3 * self.n_columns];
        for i in 0..self.n_atoms {
            for p in self.pairs_of(i) {
                if self.quadratic {
                    self.pair_gradient(i, p, &mut buf);
                    f(i, p, g.pair_j[p], &buf);
                } else {
                    f(i, p, g.pair_j[p], self.dbdrj(p));
                }
            }
        }
    }

    /// Force rows in LAMMPS `snad/atom` layout: `[atom k][element block][xyz][n_columns]`
    /// holding `-Σ_i dB_i/dr_k` summed over central atoms `i` of that block; the force
    /// on atom k is `F_k = Σ_blocks β_block · row`.
    pub fn force_rows(&self) -> Vec<f64> {
        let nc = self.n_columns;
        let per_atom = self.n_elements * 3 * nc;
        let mut rows = vec![0.0; self.n_atoms * per_atom];
        self.for_each_pair_gradient(|i, _p, j, gr| {
            let off = self.atom_element[i] * 3 * nc;
            let (oi, oj) = (i * per_atom + off, j * per_atom + off);
            for (n, &x) in gr.iter().enumerate() {
                rows[oi + n] += x;
                rows[oj + n] -= x;
            }
        });
        rows
    }

    /// The virial row: Σ over atoms of LAMMPS `snav/atom`, `[element block][6][n_columns]`
    /// (Voigt xx yy zz yz xz xy), `= -Σ_pairs dB_i/dr_ij ⊗ r_ij`; the model's virial is
    /// `W = β · row` (independent of the origin and of how positions are wrapped).
    pub fn virial_row(&self) -> Vec<f64> {
        let nc = self.n_columns;
        let mut row = vec![0.0; self.n_elements * 6 * nc];
        let g = self.grads();
        self.for_each_pair_gradient(|i, p, _j, gr| {
            let r = g.pair_rij[p];
            let o = self.atom_element[i] * 6 * nc;
            let (gx, rest) = gr.split_at(nc);
            let (gy, gz) = rest.split_at(nc);
            let out = &mut row[o..o + 6 * nc];
            for n in 0..nc {
                out[n] -= gx[n] * r[0];
                out[nc + n] -= gy[n] * r[1];
                out[2 * nc + n] -= gz[n] * r[2];
                out[3 * nc + n] -= gy[n] * r[2];
                out[4 * nc + n] -= gx[n] * r[2];
                out[5 * nc + n] -= gx[n] * r[1];
            }
        });
        row
    }

    /// Per-atom virial contributions exactly as LAMMPS `snav/atom`:
    /// `[atom][element block][6][n_columns]`; atom i gets `+dB_i/dr_ij ⊗ x_i` and the owner
    /// of neighbour j gets `-dB_i/dr_ij ⊗ x_j(image)`, with the positions of the structure.
    /// These depend on the origin; their sum over atoms is [`Self::virial_row`].
    pub fn per_atom_virial(&self) -> Vec<f64> {
        let nc = self.n_columns;
        let per_atom = self.n_elements * 6 * nc;
        let mut rows = vec![0.0; self.n_atoms * per_atom];
        let g = self.grads();
        self.for_each_pair_gradient(|i, p, j, gr| {
            let xi = g.positions[i];
            let r = g.pair_rij[p];
            let xj = [xi[0] + r[0], xi[1] + r[1], xi[2] + r[2]];
            let off = self.atom_element[i] * 6 * nc;
            let (gx, rest) = gr.split_at(nc);
            let (gy, gz) = rest.split_at(nc);
            for (atom, x, sign) in [(i, xi, 1.0), (j, xj, -1.0)] {
                let o = atom * per_atom + off;
                let out = &mut rows[o..o + 6 * nc];
                for n in 0..nc {
                    out[n] += sign * gx[n] * x[0];
                    out[nc + n] += sign * gy[n] * x[1];
                    out[2 * nc + n] += sign * gz[n] * x[2];
                    out[3 * nc + n] += sign * gy[n] * x[2];
                    out[4 * nc + n] += sign * gx[n] * x[2];
                    out[5 * nc + n] += sign * gx[n] * x[1];
                }
            }
        });
        rows
    }
}

/// B of every atom (builds the tables; use [`Snap`] to reuse them).
pub fn compute_descriptors(structure: &Structure, params: &SnapParams) -> Result<SnapDescriptors, SnapError> {
    Snap::new(params)?.descriptors(structure)
}

/// B and per-pair dB_i/dr_j of every atom (builds the tables; use [`Snap`] to reuse them).
pub fn compute_descriptors_with_gradients(
    structure: &Structure,
    params: &SnapParams,
) -> Result<SnapDescriptors, SnapError> {
    Snap::new(params)?.descriptors_with_gradients(structure)
}

/// Energy, forces and virial of a linear/quadratic SNAP model (see [`Snap::energy_forces_virial`]).
pub fn energy_forces_virial(
    structure: &Structure,
    params: &SnapParams,
    beta_per_element: &[Vec<f64>],
) -> Result<EnergyForcesVirial, SnapError> {
    Snap::new(params)?.energy_forces_virial(structure, beta_per_element)
}
