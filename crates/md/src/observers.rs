//! Observers: things that look at every MD step. Those that write do so through a
//! `std::io::Write` sink handed to them; a failing sink stops the run with the error
//! as the reason (and the error is kept for inspection).

use crate::forcefield::Evaluation;
use crate::state::MdState;
use crate::units::{A2_PER_FS_IN_CM2_PER_S, EV_PER_A3_IN_GPA};
use autopipe_atoms::frame::ArrayValue;
use autopipe_atoms::{Element, Frame, InfoValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;

/// What an observer tells the MD loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop(String),
}

/// Sees the state after every step (and the starting state).
pub trait Observer {
    fn observe(&mut self, state: &MdState, eval: &Evaluation) -> Control;
    /// Called once when the run ends (flush sinks here).
    fn finish(&mut self) {}
}

#[allow(unknown_lints, clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87
fn due(step: u64, every: u64) -> bool {
    step % every.max(1) == 0
}

/// A frame of the current state with the model's energy, forces, stress and the
/// per-atom gamma (as array `gamma`), and info `step`, `time_fs`, `temperature_k`.
pub fn state_frame(state: &MdState, eval: &Evaluation) -> Frame {
    let mut f = Frame::from_structure(state.structure.clone());
    f.energy_ev = Some(eval.energy_ev);
    f.forces_ev_per_a = Some(eval.forces_ev_per_a.clone());
    f.stress_ev_per_a3 = eval.stress_ev_per_a3;
    f.info.insert("step".into(), InfoValue::Int(state.step as i64));
    f.info.insert("time_fs".into(), InfoValue::Float(state.time_fs));
    f.info.insert("temperature_k".into(), InfoValue::Float(state.temperature_k()));
    if let Some(g) = &eval.gamma {
        f.arrays.insert("gamma".into(), ArrayValue::Real { columns: 1, values: g.clone() });
    }
    f
}

/// Writes an extended XYZ frame every `every` steps (ASE-readable: energy, forces,
/// stress, info `step`, `time_fs`, `temperature_k`, per-atom `gamma` when present).
pub struct ExtxyzTrajectory<W: Write> {
    sink: W,
    every: u64,
    pub frames_written: usize,
    pub error: Option<String>,
}

impl<W: Write> ExtxyzTrajectory<W> {
    pub fn new(sink: W, every: u64) -> Self {
        ExtxyzTrajectory { sink, every: every.max(1), frames_written: 0, error: None }
    }

    pub fn into_inner(self) -> W {
        self.sink
    }
}

impl<W: Write> Observer for ExtxyzTrajectory<W> {
    fn observe(&mut self, state: &MdState, eval: &Evaluation) -> Control {
        if !due(state.step, self.every) {
            return Control::Continue;
        }
        let mut text = String::new();
        autopipe_atoms::extxyz::write_frame(&mut text, &state_frame(state, eval));
        match self.sink.write_all(text.as_bytes()) {
            Ok(()) => {
                self.frames_written += 1;
                Control::Continue
            }
            Err(e) => {
                let m = format!("trajectory write failed: {e}");
                self.error = Some(m.clone());
                Control::Stop(m)
            }
        }
    }

    fn finish(&mut self) {
        if let Err(e) = self.sink.flush() {
            self.error.get_or_insert(format!("trajectory flush failed: {e}"));
        }
    }
}

/// One line every `every` steps: step, time (fs), potential, kinetic and total energy
/// (eV), temperature (K), pressure including the kinetic term (GPa, `nan` without a
/// stress), volume (Å³). Whitespace-separated, with a `#` header line.
pub struct ThermoLog<W: Write> {
    sink: W,
    every: u64,
    header_written: bool,
    pub error: Option<String>,
}

impl<W: Write> ThermoLog<W> {
    pub fn new(sink: W, every: u64) -> Self {
        ThermoLog { sink, every: every.max(1), header_written: false, error: None }
    }

    pub fn into_inner(self) -> W {
        self.sink
    }

    fn write(&mut self, state: &MdState, eval: &Evaluation) -> std::io::Result<()> {
        if !self.header_written {
            writeln!(self.sink, "# step time_fs epot_ev ekin_ev etot_ev temperature_k pressure_gpa volume_a3")?;
            self.header_written = true;
        }
        let ekin = state.kinetic_energy_ev();
        writeln!(
            self.sink,
            "{} {:.3} {:.8} {:.8} {:.8} {:.3} {:.5} {:.5}",
            state.step,
            state.time_fs,
            eval.energy_ev,
            ekin,
            eval.energy_ev + ekin,
            state.temperature_k(),
            state.pressure_gpa(eval).unwrap_or(f64::NAN),
            state.structure.volume_a3().abs()
        )
    }
}

impl<W: Write> Observer for ThermoLog<W> {
    fn observe(&mut self, state: &MdState, eval: &Evaluation) -> Control {
        if !due(state.step, self.every) {
            return Control::Continue;
        }
        match self.write(state, eval) {
            Ok(()) => Control::Continue,
            Err(e) => {
                let m = format!("thermo log write failed: {e}");
                self.error = Some(m.clone());
                Control::Stop(m)
            }
        }
    }

    fn finish(&mut self) {
        if let Err(e) = self.sink.flush() {
            self.error.get_or_insert(format!("thermo log flush failed: {e}"));
        }
    }
}

/// Per-step extrapolation-grade statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GammaStep {
    pub step: u64,
    pub time_fs: f64,
    pub max: f64,
    pub mean: f64,
}

/// Watches the per-atom extrapolation grade γ:
/// * collects a copy (as a [`Frame`]: structure, info `md_step`, `time_fs`,
///   `max_gamma`, per-atom array `gamma`; no energy/forces, which are only the model's
///   guesses) of each state whose max γ exceeds `select`, at most one per
///   `min_separation_steps` steps;
/// * returns [`Control::Stop`] as soon as any γ exceeds `break_`. The breaking frame
///   is always collected (it is the most informative one), marked `gamma_break = T`.
///
/// States without a γ (a model without a grade) are ignored.
#[derive(Clone, Debug)]
pub struct GammaWatchdog {
    pub select: f64,
    pub break_: f64,
    pub min_separation_steps: u64,
    collected: Vec<Frame>,
    last_collected_step: Option<u64>,
    max_gamma_seen: Option<f64>,
    stats: Vec<GammaStep>,
    broke: bool,
}

impl GammaWatchdog {
    pub fn new(select: f64, break_: f64) -> Self {
        GammaWatchdog {
            select,
            break_,
            min_separation_steps: 1,
            collected: Vec::new(),
            last_collected_step: None,
            max_gamma_seen: None,
            stats: Vec::new(),
            broke: false,
        }
    }

    pub fn with_min_separation(mut self, steps: u64) -> Self {
        self.min_separation_steps = steps.max(1);
        self
    }

    /// The frames collected so far.
    pub fn collected(&self) -> &[Frame] {
        &self.collected
    }

    pub fn take_collected(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.collected)
    }

    /// The largest γ seen, if any state had one.
    pub fn max_gamma_seen(&self) -> Option<f64> {
        self.max_gamma_seen
    }

    /// One entry per observed state that had a γ.
    pub fn stats(&self) -> &[GammaStep] {
        &self.stats
    }

    /// Whether γ exceeded `break_`.
    pub fn broke(&self) -> bool {
        self.broke
    }

    /// Fraction of observed states whose max γ exceeded `select`.
    pub fn fraction_above_select(&self) -> f64 {
        if self.stats.is_empty() {
            return 0.0;
        }
        self.stats.iter().filter(|s| s.max > self.select).count() as f64 / self.stats.len() as f64
    }

    fn frame(state: &MdState, gamma: &[f64], max: f64) -> Frame {
        let mut f = Frame::from_structure(state.structure.clone());
        f.info.insert("md_step".into(), InfoValue::Int(state.step as i64));
        f.info.insert("time_fs".into(), InfoValue::Float(state.time_fs));
        f.info.insert("max_gamma".into(), InfoValue::Float(max));
        f.arrays.insert("gamma".into(), ArrayValue::Real { columns: 1, values: gamma.to_vec() });
        f
    }
}

impl Observer for GammaWatchdog {
    fn observe(&mut self, state: &MdState, eval: &Evaluation) -> Control {
        let Some(g) = &eval.gamma else { return Control::Continue };
        if g.is_empty() {
            return Control::Continue;
        }
        let max = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = g.iter().sum::<f64>() / g.len() as f64;
        self.stats.push(GammaStep { step: state.step, time_fs: state.time_fs, max, mean });
        self.max_gamma_seen = Some(self.max_gamma_seen.map_or(max, |m| m.max(max)));
        if max > self.break_ || max.is_nan() {
            let mut f = Self::frame(state, g, max);
            f.info.insert("gamma_break".into(), InfoValue::Bool(true));
            self.collected.push(f);
            self.last_collected_step = Some(state.step);
            self.broke = true;
            return Control::Stop(format!(
                "extrapolation grade {max:.3} exceeds break threshold {} at step {}",
                self.break_, state.step
            ));
        }
        if max > self.select {
            let far = match self.last_collected_step {
                None => true,
                Some(last) => state.step >= last + self.min_separation_steps,
            };
            if far {
                self.collected.push(Self::frame(state, g, max));
                self.last_collected_step = Some(state.step);
            }
        }
        Control::Continue
    }
}

/// One MSD sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MsdPoint {
    pub step: u64,
    /// Time since the reference (first observed) state, fs.
    pub time_fs: f64,
    /// Mean squared displacement per element, Å², in order of first appearance.
    pub msd_a2: Vec<(Element, f64)>,
}

/// A diffusion coefficient from a straight-line fit of MSD(t).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffusionEstimate {
    /// Slope of MSD vs t, Å²/fs.
    pub slope_a2_per_fs: f64,
    pub intercept_a2: f64,
    /// D = slope / 6, Å²/fs.
    pub d_a2_per_fs: f64,
    /// D in cm²/s.
    pub d_cm2_per_s: f64,
    /// Coefficient of determination of the fit.
    pub r2: f64,
    pub points: usize,
}

/// The state MSDs are measured from.
#[derive(Clone, Debug)]
struct MsdReference {
    step: u64,
    time_fs: f64,
    positions_a: Vec<[f64; 3]>,
    com_a: [f64; 3],
}

/// Mean squared displacement per element vs time, from the unwrapped positions (the
/// integrator never wraps), relative to the first observed state; optionally with the
/// centre-of-mass drift removed. Samples every `every` steps.
#[derive(Clone, Debug)]
pub struct MsdAccumulator {
    every: u64,
    subtract_com: bool,
    reference: Option<MsdReference>,
    elements: Vec<Element>,
    series: Vec<MsdPoint>,
    /// The unwrapped positions of every sample, when asked for (for an analysis over
    /// every time origin, e.g. `autopipe_property::diffusion`).
    keep_positions: bool,
    positions: Vec<Vec<[f64; 3]>>,
}

impl MsdAccumulator {
    pub fn new(every: u64) -> Self {
        MsdAccumulator {
            every: every.max(1),
            subtract_com: false,
            reference: None,
            elements: vec![],
            series: vec![],
            keep_positions: false,
            positions: vec![],
        }
    }

    /// Also keep the positions of every sample ([`MsdAccumulator::positions`]).
    pub fn with_positions(mut self, on: bool) -> Self {
        self.keep_positions = on;
        self
    }

    /// The unwrapped positions (Å) of every sample, `[sample][atom]`, when kept.
    pub fn positions(&self) -> &[Vec<[f64; 3]>] {
        &self.positions
    }

    /// Remove the centre-of-mass displacement before squaring (for runs whose
    /// thermostat lets the total momentum drift).
    pub fn with_com_correction(mut self, on: bool) -> Self {
        self.subtract_com = on;
        self
    }

    pub fn series(&self) -> &[MsdPoint] {
        &self.series
    }

    pub fn elements(&self) -> &[Element] {
        &self.elements
    }

    /// (time fs, MSD Å²) for one element.
    pub fn msd_of(&self, e: Element) -> Vec<(f64, f64)> {
        self.series
            .iter()
            .filter_map(|p| p.msd_a2.iter().find(|(x, _)| *x == e).map(|(_, m)| (p.time_fs, *m)))
            .collect()
    }

    /// D from a least-squares line through MSD(t) for `element`, skipping the first
    /// `skip_fraction` of the time span (the ballistic regime). None with < 2 points.
    pub fn diffusion_coefficient(&self, element: Element, skip_fraction: f64) -> Option<DiffusionEstimate> {
        let all = self.msd_of(element);
        let t_end = all.last()?.0;
        let t_start = all.first()?.0 + skip_fraction.clamp(0.0, 0.99) * (t_end - all.first()?.0);
        let pts: Vec<(f64, f64)> = all.into_iter().filter(|(t, _)| *t >= t_start).collect();
        fit_line(&pts).map(|(slope, intercept, r2)| DiffusionEstimate {
            slope_a2_per_fs: slope,
            intercept_a2: intercept,
            d_a2_per_fs: slope / 6.0,
            d_cm2_per_s: slope / 6.0 * A2_PER_FS_IN_CM2_PER_S,
            r2,
            points: pts.len(),
        })
    }

    fn com(state: &MdState) -> [f64; 3] {
        let mut c = [0.0; 3];
        let mut mt = 0.0;
        for (x, e) in state.structure.positions_a.iter().zip(&state.structure.species) {
            let m = e.mass_amu();
            mt += m;
            for k in 0..3 {
                c[k] += m * x[k];
            }
        }
        c.map(|x| if mt > 0.0 { x / mt } else { 0.0 })
    }
}

/// Least-squares line: (slope, intercept, r²).
pub fn fit_line(pts: &[(f64, f64)]) -> Option<(f64, f64, f64)> {
    if pts.len() < 2 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = pts.iter().map(|p| (p.1 - my).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let r2 = if syy > 0.0 { sxy * sxy / (sxx * syy) } else { 1.0 };
    Some((slope, my - slope * mx, r2))
}

impl Observer for MsdAccumulator {
    fn observe(&mut self, state: &MdState, _eval: &Evaluation) -> Control {
        if self.reference.is_none() {
            let mut elements: Vec<Element> = Vec::new();
            for &e in &state.structure.species {
                if !elements.contains(&e) {
                    elements.push(e);
                }
            }
            self.elements = elements;
            self.reference = Some(MsdReference {
                step: state.step,
                time_fs: state.time_fs,
                positions_a: state.structure.positions_a.clone(),
                com_a: Self::com(state),
            });
        }
        let r = self.reference.as_ref().expect("set above");
        let (step0, t0, x0, c0) = (r.step, r.time_fs, &r.positions_a, &r.com_a);
        if !due(state.step - step0, self.every) {
            return Control::Continue;
        }
        if state.structure.len() != x0.len() {
            return Control::Stop("MSD: the number of atoms changed".into());
        }
        let shift = if self.subtract_com {
            let c = Self::com(state);
            [c[0] - c0[0], c[1] - c0[1], c[2] - c0[2]]
        } else {
            [0.0; 3]
        };
        let mut sum: BTreeMap<Element, (f64, usize)> = BTreeMap::new();
        for ((x, r), e) in state.structure.positions_a.iter().zip(x0).zip(&state.structure.species) {
            let d2: f64 = (0..3).map(|k| (x[k] - r[k] - shift[k]).powi(2)).sum();
            let s = sum.entry(*e).or_insert((0.0, 0));
            s.0 += d2;
            s.1 += 1;
        }
        let msd_a2 = self
            .elements
            .iter()
            .map(|e| {
                let (s, n) = sum.get(e).copied().unwrap_or((0.0, 0));
                (*e, if n > 0 { s / n as f64 } else { 0.0 })
            })
            .collect();
        self.series.push(MsdPoint { step: state.step, time_fs: state.time_fs - t0, msd_a2 });
        if self.keep_positions {
            self.positions.push(state.structure.positions_a.clone());
        }
        Control::Continue
    }
}

/// An observer from a closure, called every `every` steps (progress callbacks,
/// custom stopping rules).
pub struct FnObserver<F: FnMut(&MdState, &Evaluation) -> Control> {
    every: u64,
    f: F,
}

impl<F: FnMut(&MdState, &Evaluation) -> Control> FnObserver<F> {
    pub fn new(every: u64, f: F) -> Self {
        FnObserver { every: every.max(1), f }
    }
}

impl<F: FnMut(&MdState, &Evaluation) -> Control> Observer for FnObserver<F> {
    fn observe(&mut self, state: &MdState, eval: &Evaluation) -> Control {
        if due(state.step, self.every) {
            (self.f)(state, eval)
        } else {
            Control::Continue
        }
    }
}

/// Pressure (GPa) including the kinetic term, for observers and logs.
pub fn pressure_gpa(state: &MdState, eval: &Evaluation) -> Option<f64> {
    state.pressure_ev_per_a3(eval).map(|p| p * EV_PER_A3_IN_GPA)
}
