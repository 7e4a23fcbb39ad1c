//! Plots as inline SVG, written directly: axes with nice ticks (linear or log), points,
//! lines, horizontal reference lines, bars and histograms. No fonts are embedded (the
//! browser's sans-serif draws the text) and nothing is fetched.
//!
//! Every data mark carries `class="mark"` and each plot says how many it drew in
//! `data-marks`, so a test can count what a browser shows against the data.

use std::fmt::Write;

/// Colours of series, in order (colour-blind safe: Okabe-Ito).
pub const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

const W: f64 = 560.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 52.0;

/// Escape text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number for a label: few significant digits, no trailing zeros.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{x:.2e}");
    }
    let digits = (3 - a.log10().floor() as i32 - 1).clamp(0, 6) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// One axis: its label (with the unit), whether logarithmic, and its range (taken from
/// the data when None).
#[derive(Clone, Debug, Default)]
pub struct Axis {
    pub label: String,
    pub log: bool,
    pub range: Option<(f64, f64)>,
    /// Ticks on whole numbers only (generations, counts).
    pub integer: bool,
}

impl Axis {
    pub fn new(label: &str) -> Axis {
        Axis { label: label.into(), log: false, range: None, integer: false }
    }
    pub fn integer(mut self) -> Axis {
        self.integer = true;
        self
    }
    pub fn log(mut self, log: bool) -> Axis {
        self.log = log;
        self
    }
    pub fn range(mut self, lo: f64, hi: f64) -> Axis {
        self.range = Some((lo, hi));
        self
    }
}

/// What a plot draws.
#[derive(Clone, Debug)]
pub enum Series {
    /// Markers, optionally joined by a line.
    Points { name: String, points: Vec<(f64, f64)>, joined: bool },
    /// A horizontal reference line (a threshold, a target), dashed.
    HLine { name: String, y: f64 },
    /// The line y = x (parity plots).
    Diagonal,
}

/// An x-y plot.
#[derive(Clone, Debug)]
pub struct Plot {
    pub id: String,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    /// What to look for.
    pub caption: String,
    /// Why there is nothing to draw (shown instead of the plot when there are no marks).
    pub empty_reason: String,
}

struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    integer: bool,
    px0: f64,
    px1: f64,
}

impl Scale {
    fn map(&self, v: f64) -> f64 {
        let (v, lo, hi) =
            if self.log { (v.max(1e-300).log10(), self.lo.log10(), self.hi.log10()) } else { (v, self.lo, self.hi) };
        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
        self.px0 + t * (self.px1 - self.px0)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            // Exponents within what f64 holds (a grade of 1e300 from a wild model included).
            let exponent = |v: f64| v.log10().clamp(-300.0, 300.0);
            let (a, b) = (exponent(self.lo).floor() as i32, exponent(self.hi).ceil() as i32);
            let b = b.max(a);
            let step = ((b - a) / 6).max(1);
            let mut t: Vec<f64> = (a..=b).step_by(step as usize).map(|k| 10f64.powi(k)).collect();
            if b - a <= 1 {
                t = (a..=b).flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k))).collect();
            }
            t.into_iter().filter(|v| *v >= self.lo * 0.999 && *v <= self.hi * 1.001).collect()
        } else if self.integer {
            let t = nice_ticks(self.lo, self.hi, 6);
            let step = if t.len() > 1 { (t[1] - t[0]).max(1.0).round() } else { 1.0 };
            let mut v = self.lo.ceil();
            let mut out = Vec::new();
            while v <= self.hi && out.len() < 50 {
                out.push(v);
                v += step;
            }
            out
        } else {
            nice_ticks(self.lo, self.hi, 6)
        }
    }
}

/// Round tick values covering [lo, hi], about `n` of them.
pub fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    // Also when either is NaN.
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let start = (lo / step).ceil() * step;
    let mut out = Vec::new();
    let mut v = start;
    while v <= hi + step * 1e-9 && out.len() < 50 {
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        v += step;
    }
    out
}

/// A range that holds `values`, padded; on a log axis only positive values count.
fn data_range(values: impl Iterator<Item = f64>, log: bool) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return None;
    }
    if log {
        let (a, b) = (lo.log10().clamp(-300.0, 300.0), hi.log10().clamp(-300.0, 300.0));
        let pad = ((b - a) * 0.05).max(0.1);
        Some((10f64.powf((a - pad).max(-300.0)), 10f64.powf((b + pad).min(300.0))))
    } else if hi > lo {
        let pad = (hi - lo) * 0.05;
        Some((lo - pad, hi + pad))
    } else {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        Some((lo - pad, hi + pad))
    }
}

fn frame_open(out: &mut String, id: &str, title: &str, marks: usize) {
    let _ = write!(
        out,
        r#"<figure class="plot" id="plot-{id}" data-plot="{id}" data-marks="{marks}"><figcaption class="title">{}</figcaption>"#,
        esc(title)
    );
}

fn frame_close(out: &mut String, caption: &str) {
    let _ = write!(out, r#"<p class="caption">{}</p></figure>"#, esc(caption));
}

fn empty(id: &str, title: &str, reason: &str, caption: &str) -> String {
    let mut out = String::new();
    frame_open(&mut out, id, title, 0);
    let _ = write!(out, r#"<p class="empty">No data: {}</p>"#, esc(reason));
    frame_close(&mut out, caption);
    out
}

fn axes(out: &mut String, xs: &Scale, ys: &Scale, x: &Axis, y: &Axis, x_labels: Option<&[String]>) {
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = write!(
        out,
        r##"<rect x="{x0}" y="{y1}" width="{}" height="{}" fill="#fff" stroke="#999"/>"##,
        x1 - x0,
        y0 - y1
    );
    for t in ys.ticks() {
        let py = ys.map(t);
        let _ = write!(
            out,
            r##"<line x1="{x0}" x2="{x1}" y1="{py:.1}" y2="{py:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" class="tick">{}</text>"##,
            x0 - 5.0,
            py + 4.0,
            num(t)
        );
    }
    match x_labels {
        Some(labels) => {
            for (i, l) in labels.iter().enumerate() {
                let px = xs.map(i as f64);
                let _ = write!(
                    out,
                    r#"<text x="{px:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"#,
                    y0 + 16.0,
                    esc(l)
                );
            }
        }
        None => {
            for t in xs.ticks() {
                let px = xs.map(t);
                let _ = write!(
                    out,
                    r##"<line x1="{px:.1}" x2="{px:.1}" y1="{y0}" y2="{y1}" stroke="#eee"/><text x="{px:.1}" y="{}" text-anchor="middle" class="tick">{}</text>"##,
                    y0 + 16.0,
                    num(t)
                );
            }
        }
    }
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle" class="axis">{}</text><text transform="translate(16,{}) rotate(-90)" text-anchor="middle" class="axis">{}</text>"#,
        (x0 + x1) / 2.0,
        H - 10.0,
        esc(&x.label),
        (y0 + y1) / 2.0,
        esc(&y.label)
    );
}

fn legend(out: &mut String, names: &[(String, String, bool)]) {
    let mut px = LEFT + 8.0;
    for (name, color, dashed) in names {
        let dash = if *dashed { r#" stroke-dasharray="5,3""# } else { "" };
        let _ = write!(
            out,
            r#"<line x1="{px}" x2="{}" y1="{}" y2="{}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}" class="legend">{}</text>"#,
            px + 16.0,
            TOP - 10.0,
            TOP - 10.0,
            px + 20.0,
            TOP - 6.0,
            esc(name)
        );
        px += 30.0 + 6.5 * name.chars().count() as f64;
    }
}

impl Plot {
    /// The number of data marks the plot draws.
    pub fn marks(&self) -> usize {
        self.series
            .iter()
            .map(|s| match s {
                Series::Points { points, .. } => {
                    points.iter().filter(|(x, y)| ok(*x, self.x.log) && ok(*y, self.y.log)).count()
                }
                _ => 0,
            })
            .sum()
    }

    pub fn render(&self) -> String {
        let marks = self.marks();
        if marks == 0 {
            return empty(&self.id, &self.title, &self.empty_reason, &self.caption);
        }
        let pts = || {
            self.series.iter().flat_map(|s| match s {
                Series::Points { points, .. } => points.clone(),
                _ => Vec::new(),
            })
        };
        let hlines: Vec<f64> =
            self.series.iter().filter_map(|s| if let Series::HLine { y, .. } = s { Some(*y) } else { None }).collect();
        let diagonal = self.series.iter().any(|s| matches!(s, Series::Diagonal));
        let mut xr = self.x.range.or_else(|| data_range(pts().map(|p| p.0), self.x.log)).unwrap_or((0.0, 1.0));
        let mut yr = self
            .y
            .range
            .or_else(|| data_range(pts().map(|p| p.1).chain(hlines.iter().copied()), self.y.log))
            .unwrap_or((0.0, 1.0));
        if diagonal {
            let lo = xr.0.min(yr.0);
            let hi = xr.1.max(yr.1);
            xr = (lo, hi);
            yr = (lo, hi);
        }
        let xs = Scale { lo: xr.0, hi: xr.1, log: self.x.log, integer: self.x.integer, px0: LEFT, px1: W - RIGHT };
        let ys = Scale { lo: yr.0, hi: yr.1, log: self.y.log, integer: self.y.integer, px0: H - BOTTOM, px1: TOP };
        let mut out = String::new();
        frame_open(&mut out, &self.id, &self.title, marks);
        let _ = write!(
            out,
            r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
            esc(&self.title)
        );
        axes(&mut out, &xs, &ys, &self.x, &self.y, None);
        let clip = |v: f64, s: &Scale| v.clamp(s.px0.min(s.px1), s.px0.max(s.px1));
        let mut names = Vec::new();
        let mut k = 0;
        for s in &self.series {
            match s {
                Series::Diagonal => {
                    let _ = write!(
                        out,
                        r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="4,3"/>"##,
                        xs.map(xr.0),
                        ys.map(yr.0),
                        xs.map(xr.1),
                        ys.map(yr.1)
                    );
                }
                Series::HLine { name, y } => {
                    let py = clip(ys.map(*y), &ys);
                    let _ = write!(
                        out,
                        r##"<line class="ref" x1="{LEFT}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#B22222" stroke-dasharray="6,4" stroke-width="1.5"/><text x="{}" y="{:.1}" text-anchor="end" class="legend" fill="#B22222">{}</text>"##,
                        W - RIGHT,
                        W - RIGHT - 4.0,
                        py - 4.0,
                        esc(name)
                    );
                }
                Series::Points { name, points, joined } => {
                    let color = PALETTE[k % PALETTE.len()];
                    k += 1;
                    names.push((name.clone(), color.to_string(), false));
                    let visible: Vec<(f64, f64)> = points
                        .iter()
                        .filter(|(x, y)| ok(*x, self.x.log) && ok(*y, self.y.log))
                        .map(|&(x, y)| (xs.map(x), ys.map(y)))
                        .collect();
                    if *joined && visible.len() > 1 {
                        let path: Vec<String> = visible.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                        let _ = write!(
                            out,
                            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
                            path.join(" ")
                        );
                    }
                    let r = if visible.len() > 500 { 1.6 } else { 3.2 };
                    let opacity = if visible.len() > 500 { 0.5 } else { 0.9 };
                    let _ = write!(out, r#"<g fill="{color}" fill-opacity="{opacity}" data-series="{}">"#, esc(name));
                    for (x, y) in visible {
                        let _ = write!(out, r#"<circle class="mark" cx="{x:.1}" cy="{y:.1}" r="{r}"/>"#);
                    }
                    out.push_str("</g>");
                }
            }
        }
        if names.len() > 1 || names.iter().any(|n| !n.0.is_empty()) {
            legend(&mut out, &names);
        }
        out.push_str("</svg>");
        frame_close(&mut out, &self.caption);
        out
    }
}

fn ok(v: f64, log: bool) -> bool {
    v.is_finite() && (!log || v > 0.0)
}

/// Bars per category, stacked by series (`stacks[i].1[j]`: series i, category j).
#[derive(Clone, Debug)]
pub struct Bars {
    pub id: String,
    pub title: String,
    pub categories: Vec<String>,
    pub x_label: String,
    pub y_label: String,
    pub stacks: Vec<(String, Vec<f64>)>,
    /// Side by side instead of stacked.
    pub grouped: bool,
    /// A histogram: category k is the bin [lo + k width, lo + (k + 1) width) and the x
    /// axis is numeric.
    pub bins: Option<(f64, f64)>,
    pub caption: String,
    pub empty_reason: String,
}

impl Bars {
    /// Bars of non-zero height.
    pub fn marks(&self) -> usize {
        self.stacks.iter().map(|(_, v)| v.iter().filter(|x| x.is_finite() && **x > 0.0).count()).sum()
    }

    pub fn render(&self) -> String {
        let marks = self.marks();
        if marks == 0 || self.categories.is_empty() {
            return empty(&self.id, &self.title, &self.empty_reason, &self.caption);
        }
        let n = self.categories.len();
        let top = (0..n)
            .map(|j| {
                let vals = self.stacks.iter().map(|(_, v)| v.get(j).copied().unwrap_or(0.0).max(0.0));
                if self.grouped {
                    vals.fold(0.0, f64::max)
                } else {
                    vals.sum()
                }
            })
            .fold(0.0, f64::max);
        let counts = self.stacks.iter().all(|(_, v)| v.iter().all(|x| x.fract() == 0.0));
        let ys = Scale {
            lo: 0.0,
            hi: if top > 0.0 { top * 1.08 } else { 1.0 },
            log: false,
            integer: counts,
            px0: H - BOTTOM,
            px1: TOP,
        };
        let mut out = String::new();
        frame_open(&mut out, &self.id, &self.title, marks);
        let _ = write!(
            out,
            r#"<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
            esc(&self.title)
        );
        let (xs, slot) = match self.bins {
            Some((lo, width)) => {
                let xs = Scale { lo, hi: lo + n as f64 * width, log: false, integer: false, px0: LEFT, px1: W - RIGHT };
                axes(&mut out, &xs, &ys, &Axis::new(&self.x_label), &Axis::new(&self.y_label), None);
                // Bar j is centred on its bin: map through a category scale of the same span.
                let cats = Scale { lo: -0.5, hi: n as f64 - 0.5, log: false, integer: true, px0: LEFT, px1: W - RIGHT };
                (cats, (W - RIGHT - LEFT) / n as f64)
            }
            None => {
                let xs = Scale { lo: -0.5, hi: n as f64 - 0.5, log: false, integer: true, px0: LEFT, px1: W - RIGHT };
                // Labels that fit: at most one per ~7 px per character.
                let widest = self.categories.iter().map(|c| c.chars().count()).max().unwrap_or(1) as f64;
                let room = (W - RIGHT - LEFT) / n as f64;
                let every = ((widest * 7.0 + 6.0) / room).ceil().max(1.0) as usize;
                let labels: Vec<String> = self
                    .categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| if i % every == 0 { c.clone() } else { String::new() })
                    .collect();
                axes(&mut out, &xs, &ys, &Axis::new(&self.x_label), &Axis::new(&self.y_label), Some(&labels));
                let slot = (xs.map(1.0) - xs.map(0.0)) * 0.8;
                (xs, slot)
            }
        };
        let ns = self.stacks.len().max(1);
        for j in 0..n {
            let mut base = 0.0;
            for (i, (name, v)) in self.stacks.iter().enumerate() {
                let value = v.get(j).copied().unwrap_or(0.0);
                if !(value.is_finite() && value > 0.0) {
                    continue;
                }
                let color = PALETTE[i % PALETTE.len()];
                let (x, w, y0, y1) = if self.grouped {
                    let w = slot / ns as f64;
                    (xs.map(j as f64) - slot / 2.0 + i as f64 * w, w, 0.0, value)
                } else {
                    (xs.map(j as f64) - slot / 2.0, slot, base, base + value)
                };
                base += value;
                let (py0, py1) = (ys.map(y0), ys.map(y1));
                let _ = write!(
                    out,
                    r#"<rect class="mark" x="{x:.1}" y="{py1:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {}</title></rect>"#,
                    (w - 1.0).max(0.5),
                    (py0 - py1).max(0.5),
                    esc(&format!("{} {name}", self.categories[j])),
                    num(value)
                );
            }
        }
        let names: Vec<(String, String, bool)> = self
            .stacks
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), PALETTE[i % PALETTE.len()].to_string(), false))
            .collect();
        if names.len() > 1 {
            legend(&mut out, &names);
        }
        out.push_str("</svg>");
        frame_close(&mut out, &self.caption);
        out
    }
}

/// A histogram: counts of `values` in `bins` equal bins between their extremes.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Histogram {
    /// Lower edge of the first bin and width of each, in the quantity's unit.
    pub lo: f64,
    pub width: f64,
    pub counts: Vec<u64>,
    pub n: u64,
    pub median: Option<f64>,
    pub p90: Option<f64>,
    pub max: Option<f64>,
}

impl Histogram {
    pub fn of(values: &[f64], bins: usize) -> Histogram {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Histogram { lo: 0.0, width: 1.0, counts: Vec::new(), n: 0, median: None, p90: None, max: None };
        }
        let (lo, hi) = (v[0], v[n - 1]);
        let bins = bins.max(1);
        let width = if hi > lo { (hi - lo) / bins as f64 } else { lo.abs().max(1.0) * 0.1 };
        let mut counts = vec![0u64; bins];
        for x in &v {
            let k = (((x - lo) / width) as usize).min(bins - 1);
            counts[k] += 1;
        }
        let q = |p: f64| v[((n - 1) as f64 * p).round() as usize];
        Histogram { lo, width, counts, n: n as u64, median: Some(q(0.5)), p90: Some(q(0.9)), max: Some(hi) }
    }

    /// Bars of the histogram, labelled by bin centres.
    pub fn bars(&self, id: &str, title: &str, x_label: &str, caption: &str, empty_reason: &str) -> Bars {
        Bars {
            id: id.into(),
            title: title.into(),
            categories: (0..self.counts.len()).map(|k| num(self.lo + (k as f64 + 0.5) * self.width)).collect(),
            x_label: x_label.into(),
            y_label: "count".into(),
            stacks: vec![(String::new(), self.counts.iter().map(|&c| c as f64).collect())],
            grouped: false,
            bins: Some((self.lo, self.width)),
            caption: caption.into(),
            empty_reason: empty_reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(svg: &str, what: &str) -> usize {
        svg.matches(what).count()
    }

    #[test]
    fn a_plot_draws_one_mark_per_finite_point_and_says_so() {
        let p = Plot {
            id: "t".into(),
            title: "T <1>".into(),
            x: Axis::new("x (eV)"),
            y: Axis::new("y (eV)").log(true),
            series: vec![
                Series::Points {
                    name: "a".into(),
                    points: vec![(1.0, 1.0), (2.0, 10.0), (3.0, 0.0), (f64::NAN, 1.0)],
                    joined: true,
                },
                Series::HLine { name: "limit".into(), y: 5.0 },
            ],
            caption: "c".into(),
            empty_reason: "none".into(),
        };
        let svg = p.render();
        // (3, 0) cannot be drawn on a log axis, NaN nowhere.
        assert_eq!(p.marks(), 2);
        assert_eq!(count(&svg, r#"class="mark""#), 2);
        assert!(svg.contains(r#"data-marks="2""#));
        assert!(svg.contains("T &lt;1&gt;"), "titles are escaped");
        assert!(svg.contains(r#"class="ref""#));
    }

    #[test]
    fn extreme_values_on_a_log_axis_draw_without_panicking() {
        for points in
            [vec![(0.0, 1e300), (1.0, 1.5)], vec![(0.0, f64::MAX), (1.0, f64::MIN_POSITIVE)], vec![(0.0, 1e-320)]]
        {
            let p = Plot {
                id: "x".into(),
                title: "X".into(),
                x: Axis::new("generation").integer(),
                y: Axis::new("γ").log(true),
                series: vec![
                    Series::Points { name: "a".into(), points: points.clone(), joined: true },
                    Series::HLine { name: "select".into(), y: 2.0 },
                ],
                caption: "c".into(),
                empty_reason: "none".into(),
            };
            let svg = p.render();
            assert_eq!(count(&svg, r#"class="mark""#), points.len());
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        }
    }

    #[test]
    fn an_empty_plot_says_why_instead_of_drawing_axes() {
        let p = Plot {
            id: "e".into(),
            title: "E".into(),
            x: Axis::new("x"),
            y: Axis::new("y"),
            series: vec![Series::Points { name: "a".into(), points: vec![], joined: false }],
            caption: "c".into(),
            empty_reason: "no model yet".into(),
        };
        let html = p.render();
        assert!(!html.contains("<svg"));
        assert!(html.contains("No data: no model yet"));
    }

    #[test]
    fn histograms_count_every_value_once() {
        let v: Vec<f64> = (0..1000).map(|i| (i as f64).sqrt()).collect();
        let h = Histogram::of(&v, 17);
        assert_eq!(h.counts.iter().sum::<u64>(), 1000);
        assert_eq!(h.max, Some(999f64.sqrt()));
        let b = h.bars("h", "H", "x", "c", "none");
        assert_eq!(count(&b.render(), r#"class="mark""#), b.marks());
        assert_eq!(b.marks(), 17);
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = nice_ticks(0.013, 0.047, 6);
        assert!(t.first().unwrap() >= &0.013 && t.last().unwrap() <= &0.047 && t.len() >= 3, "{t:?}");
        assert_eq!(num(0.012345), "0.0123");
        assert_eq!(num(1234.0), "1234");
        assert_eq!(num(2.5e-5), "2.50e-5");
    }
}
