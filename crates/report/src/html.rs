//! The page: a [`Report`] as one self-contained HTML document (inline CSS, inline SVG,
//! and for the live page a few lines of inline script). Pure: data in, text out.

use crate::data::Report;
use crate::svg::{esc, num, Axis, Bars, Plot, Series};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// How the page is delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A file (`RUN/report/index.html`): reloads itself every 30 s while the run goes on.
    File,
    /// Served by `autopipe serve`: redraws without a reload when the database changes
    /// (polling `live`), with a `meta refresh` when JavaScript is off.
    Live,
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}
header .sub{color:#b9c0cc;font-size:13px}
main{padding:8px 24px 40px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:16px 0;padding:12px 18px}
section h2{font-size:17px;margin:4px 0 10px}
.verdict{font-size:18px;font-weight:600;padding:8px 12px;border-radius:4px;margin:6px 0 12px}
.verdict.ok{background:#e3f4ea;color:#11623a}.verdict.warn{background:#fff4dc;color:#7a5200}
.verdict.bad{background:#fde5e5;color:#8a1c1c}.verdict.run{background:#e6effb;color:#173f78}
.kpis{display:flex;flex-wrap:wrap;gap:10px}
.kpi{border:1px solid #e3e6eb;border-radius:4px;padding:6px 10px;min-width:120px}
.kpi .v{font-size:18px;font-weight:600}.kpi .k{font-size:12px;color:#5b6474}
.plots{display:flex;flex-wrap:wrap;gap:14px}
figure.plot{margin:0;border:1px solid #eceef2;border-radius:4px;padding:6px;width:570px}
figure.plot .title{font-weight:600;font-size:14px;margin:2px 4px 4px}
figure.plot .caption{font-size:12px;color:#4b5261;margin:4px}
figure.plot .empty{font-size:13px;color:#5b6474;background:#f4f5f7;padding:30px 12px;margin:4px;border-radius:4px}
svg text{font-family:inherit}svg .tick{font-size:11px;fill:#555}svg .axis{font-size:12px;fill:#222}
svg .legend{font-size:11px;fill:#222}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border-bottom:1px solid #eceef2;padding:3px 8px;text-align:right}
th{background:#f2f4f7}td.l,th.l{text-align:left}
.bar{display:flex;height:18px;border-radius:3px;overflow:hidden;border:1px solid #ccd;margin:6px 0;max-width:900px}
.bar span{display:block;height:100%}
.legendrow{font-size:12px}.legendrow i{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
.note{font-size:13px;color:#4b5261}
footer{font-size:12px;color:#6b7384;padding:0 24px 20px}
"#;

const LIVE_JS: &str = r#"
(function(){
  var body=document.body, marker=body.getAttribute('data-marker');
  function poll(){
    fetch('live',{cache:'no-store'}).then(function(r){return r.json();}).then(function(d){
      if(d.marker===marker){return;}
      return fetch('body',{cache:'no-store'}).then(function(r){return r.text();}).then(function(h){
        document.getElementById('report').innerHTML=h; marker=d.marker; body.setAttribute('data-marker',marker);
        var n=1+Number(body.getAttribute('data-updates')||0); body.setAttribute('data-updates',String(n));
        var t=document.getElementById('page-title'); if(t){document.title=t.textContent+' (live update '+n+')';}
      });
    }).catch(function(){}).then(function(){setTimeout(poll,1500);});
  }
  setTimeout(poll,1500);
})();
"#;

/// The whole page.
pub fn render_page(r: &Report, mode: Mode) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = page_title(r);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(out, "<title>{}</title>", esc(&title));
    out.push_str(r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#);
    match mode {
        Mode::File if !r.headline.ended && r.kind != "jobs" => {
            out.push_str(r#"<meta http-equiv="refresh" content="30">"#)
        }
        Mode::Live => out.push_str(r#"<noscript><meta http-equiv="refresh" content="5"></noscript>"#),
        _ => {}
    }
    let _ = write!(out, "<style>{CSS}</style></head>");
    let _ = write!(
        out,
        r#"<body data-marker="{}" data-mode="{}">"#,
        esc(&r.marker),
        if mode == Mode::Live { "live" } else { "file" }
    );
    out.push_str(r#"<div id="report">"#);
    out.push_str(&render_body(r));
    out.push_str("</div>");
    if mode == Mode::Live {
        let _ = write!(out, "<script>{LIVE_JS}</script>");
    }
    out.push_str("</body></html>\n");
    out
}

/// The page's title: the run's name and where it stands.
pub fn page_title(r: &Report) -> String {
    let name = r.config.as_ref().map(|c| c.name.as_str()).unwrap_or("run");
    let h = &r.headline;
    let now = match (r.kind.as_str(), h.generation, &h.phase) {
        ("loop", Some(g), Some(p)) => format!("generation {g}, {p}"),
        ("jobs", _, _) => format!("{} of {} done", h.counts.done, h.counts.total()),
        _ => "nothing run yet".into(),
    };
    format!("{name} — {now} — MLIP-AutoPipe report")
}

/// What is inside `<div id="report">` (the part the live page replaces).
pub fn render_body(r: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(out, r#"<span id="page-title" hidden>{}</span>"#, esc(&page_title(r)));
    header(&mut out, r);
    out.push_str("<main>");
    headline(&mut out, r);
    if r.kind == "loop" {
        learning(&mut out, r);
        parity(&mut out, r);
        exploration(&mut out, r);
    }
    labelling(&mut out, r);
    cost(&mut out, r);
    jobs(&mut out, r);
    properties(&mut out, r);
    out.push_str("</main>");
    let _ = write!(
        out,
        r#"<footer>Written by {} at {} UTC from {} (the job database, read-only). Data as JSON: <code>autopipe report --format json</code>.</footer>"#,
        esc(&r.program),
        esc(&autopipe_store::utc(r.generated_at_s)),
        esc(&r.run_dir)
    );
    out
}

fn header(out: &mut String, r: &Report) {
    let name = r.config.as_ref().map(|c| c.name.clone()).unwrap_or_else(|| "run".into());
    let sub = match &r.config {
        Some(c) => format!("{} · oracle {} · configuration {}", c.elements.join("-"), c.oracle, c.file),
        None => r.run_dir.clone(),
    };
    let _ = write!(out, "<header><h1>{}</h1><div class=\"sub\">{}</div></header>", esc(&name), esc(&sub));
}

fn kpi(out: &mut String, key: &str, value: &str) {
    let _ =
        write!(out, r#"<div class="kpi"><div class="v">{}</div><div class="k">{}</div></div>"#, esc(value), esc(key));
}

fn opt(v: Option<f64>, scale: f64, unit: &str) -> String {
    v.map(|x| format!("{} {unit}", num(x * scale))).unwrap_or_else(|| "—".into())
}

const STATUS_COLORS: [(&str, &str); 7] = [
    ("done", "#009E73"),
    ("running", "#56B4E9"),
    ("submitted", "#0072B2"),
    ("pending", "#C8CDD6"),
    ("failed", "#D55E00"),
    ("timeout", "#E69F00"),
    ("cancelled", "#777777"),
];

fn headline(out: &mut String, r: &Report) {
    let h = &r.headline;
    out.push_str(r#"<section id="headline"><h2>Where the run stands</h2>"#);
    let (class, text) = match (r.kind.as_str(), &h.phase) {
        ("empty", _) => ("warn", "Nothing has run in this directory yet.".to_string()),
        ("jobs", _) => ("run", format!("A job campaign: {} of {} calculations done.", h.counts.done, h.counts.total())),
        (_, Some(_)) if h.converged => (
            "ok",
            format!(
                "Converged after generation {}{}",
                h.generation.unwrap_or(0),
                h.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        ),
        (_, Some(_)) if h.ended => (
            "warn",
            format!(
                "Finished without converging after generation {}{}",
                h.generation.unwrap_or(0),
                h.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        ),
        (_, Some(p)) => {
            let failing =
                h.counts.failed + h.counts.timeout > 0 && h.counts.running + h.counts.pending == 0 && p == "label";
            (
                if failing { "bad" } else { "run" },
                format!(
                    "Generation {}, phase {p}{}{}",
                    h.generation.unwrap_or(0),
                    h.message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default(),
                    if failing { ": labelling stopped with failures (see Labelling below)" } else { "" }
                ),
            )
        }
        _ => ("warn", "No loop state.".into()),
    };
    let _ = write!(out, r#"<div class="verdict {class}" id="verdict">{}</div><div class="kpis">"#, esc(&text));
    if let Some(g) = h.generation {
        kpi(out, "generation", &g.to_string());
    }
    if let Some(p) = &h.phase {
        kpi(out, "phase", p);
    }
    kpi(out, "labels", &h.labels.to_string());
    kpi(out, "engine executions", &h.executions.to_string());
    if let Some(m) = &h.model {
        kpi(out, "current model", &format!("generation {}", m.generation));
        kpi(out, "test energy RMSE", &opt(m.test_energy_rmse_ev_per_atom, 1e3, "meV/atom"));
        kpi(out, "test force RMSE", &opt(m.test_force_rmse_ev_per_a, 1.0, "eV/Å"));
        kpi(out, "test stress RMSE", &opt(m.test_stress_rmse_gpa, 1.0, "GPa"));
        kpi(out, "train / test labels", &format!("{} / {}", m.n_train, m.n_test));
    }
    if let Some(c) = &r.config {
        if let Some(t) = c.target_force_rmse_ev_per_a {
            kpi(out, "target force RMSE", &format!("{} eV/Å", num(t)));
        }
        if let Some(t) = c.target_energy_rmse_mev_per_atom {
            kpi(out, "target energy RMSE", &format!("{} meV/atom", num(t)));
        }
    }
    out.push_str("</div>");
    if let Some(m) = &h.model {
        let _ = write!(out, r#"<p class="note">Model file: <code>{}</code></p>"#, esc(&m.path));
    }
    completion_bar(out, r);
    out.push_str("</section>");
}

fn completion_bar(out: &mut String, r: &Report) {
    let c = &r.headline.counts;
    let total = c.total();
    if total == 0 {
        out.push_str(r#"<p class="note">No calculations yet.</p>"#);
        return;
    }
    let values = [c.done, c.running, c.submitted, c.pending, c.failed, c.timeout, c.cancelled];
    out.push_str(r#"<div class="bar" id="completion" title="calculations by status">"#);
    for ((name, color), v) in STATUS_COLORS.iter().zip(values) {
        if v > 0 {
            let _ = write!(
                out,
                r#"<span class="seg" data-status="{name}" style="width:{:.3}%;background:{color}" title="{name}: {v}"></span>"#,
                100.0 * v as f64 / total as f64
            );
        }
    }
    out.push_str(r#"</div><div class="legendrow">"#);
    for ((name, color), v) in STATUS_COLORS.iter().zip(values) {
        let _ = write!(out, r#"<i style="background:{color}"></i>{name} {v}"#);
    }
    let _ = write!(out, " · {:.1}% done</div>", 100.0 * c.done as f64 / total as f64);
}

fn learning(out: &mut String, r: &Report) {
    out.push_str(r#"<section id="learning"><h2>Learning curves</h2><div class="plots">"#);
    let rows: Vec<_> = r.generations.iter().filter(|g| g.n_fit_labels.is_some()).collect();
    let curve = |name: &str, f: &dyn Fn(&crate::data::GenerationRow) -> Option<f64>, scale: f64| Series::Points {
        name: name.into(),
        points: rows.iter().filter_map(|g| Some((g.n_fit_labels? as f64, f(g)? * scale))).collect(),
        joined: true,
    };
    let why = "no model has been fitted yet (the first fit follows the labelling of generation 0)";
    let c = r.config.as_ref();
    let mut energy = vec![
        curve("train", &|g| g.train_energy_rmse_ev_per_atom, 1e3),
        curve("test", &|g| g.test_energy_rmse_ev_per_atom, 1e3),
    ];
    if let Some(t) = c.and_then(|c| c.target_energy_rmse_mev_per_atom) {
        energy.push(Series::HLine { name: format!("target {} meV/atom", num(t)), y: t });
    }
    let mut force = vec![
        curve("train", &|g| g.train_force_rmse_ev_per_a, 1.0),
        curve("test", &|g| g.test_force_rmse_ev_per_a, 1.0),
    ];
    if let Some(t) = c.and_then(|c| c.target_force_rmse_ev_per_a) {
        force.push(Series::HLine { name: format!("target {} eV/Å", num(t)), y: t });
    }
    let stress =
        vec![curve("train", &|g| g.train_stress_rmse_gpa, 1.0), curve("test", &|g| g.test_stress_rmse_gpa, 1.0)];
    let plots = [
        ("learning-energy", "Energy RMSE vs labels", "energy RMSE (meV/atom)", energy),
        ("learning-force", "Force RMSE vs labels", "force RMSE (eV/Å)", force),
        ("learning-stress", "Stress RMSE vs labels", "stress RMSE (GPa)", stress),
    ];
    for (id, title, y, series) in plots {
        let p = Plot {
            id: id.into(),
            title: title.into(),
            x: Axis::new("labels the model was fitted on").integer(),
            y: Axis::new(y),
            series,
            caption: "One point per generation. Test (held-out) errors should fall as labels grow and stay close \
                      to the training errors; a test curve far above the training curve means overfitting, a flat \
                      one that the new labels add little."
                .into(),
            empty_reason: why.into(),
        };
        out.push_str(&p.render());
    }
    out.push_str("</div>");
    generation_table(out, r);
    out.push_str("</section>");
}

fn generation_table(out: &mut String, r: &Report) {
    if r.generations.is_empty() {
        return;
    }
    out.push_str(
        r#"<table id="generations"><tr><th>gen</th><th>selected</th><th>labelled</th><th>failed</th><th>fit labels</th><th>test E (meV/atom)</th><th>test F (eV/Å)</th><th>test σ (GPa)</th><th>max γ</th><th>uncertain</th><th>core-hours</th></tr>"#,
    );
    let o = |v: Option<f64>, s: f64| v.map(|x| num(x * s)).unwrap_or_else(|| "—".into());
    for g in &r.generations {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            g.generation,
            g.n_selected,
            g.n_labelled,
            g.n_failed,
            g.n_fit_labels.map(|n| n.to_string()).unwrap_or_else(|| "—".into()),
            o(g.test_energy_rmse_ev_per_atom, 1e3),
            o(g.test_force_rmse_ev_per_a, 1.0),
            o(g.test_stress_rmse_gpa, 1.0),
            o(g.max_gamma, 1.0),
            g.n_uncertain.map(|n| n.to_string()).unwrap_or_else(|| "—".into()),
            num(g.core_hours)
        );
    }
    out.push_str("</table>");
}

fn parity(out: &mut String, r: &Report) {
    out.push_str(r#"<section id="parity"><h2>The current model on its test set</h2><div class="plots">"#);
    let why = r.parity_note.clone().unwrap_or_else(|| "no test labels".into());
    let p = r.parity.as_ref();
    let sub = p
        .map(|p| {
            format!(
                " Model of generation {}; {} of {} test frames evaluated.",
                p.model_generation, p.n_frames, p.n_test_frames
            )
        })
        .unwrap_or_default();
    let energy = Plot {
        id: "parity-energy".into(),
        title: "Energy parity".into(),
        x: Axis::new("oracle energy (eV/atom)"),
        y: Axis::new("model energy (eV/atom)"),
        series: vec![
            Series::Diagonal,
            Series::Points {
                name: String::new(),
                points: p.map(|p| p.energy_ev_per_atom.iter().map(|e| (e[0], e[1])).collect()).unwrap_or_default(),
                joined: false,
            },
        ],
        caption: format!(
            "Each point is a held-out structure. Points should lie on the dashed line y = x; a tilt means a \
             systematic error, isolated outliers point to structures unlike the training data.{sub}"
        ),
        empty_reason: why.clone(),
    };
    out.push_str(&energy.render());
    let mut force_series = vec![Series::Diagonal];
    for f in p.map(|p| p.forces.as_slice()).unwrap_or_default() {
        force_series.push(Series::Points {
            name: format!("{} (RMSE {} eV/Å)", f.element, num(f.rmse_ev_per_a)),
            points: f.points.iter().map(|e| (e[0], e[1])).collect(),
            joined: false,
        });
    }
    if force_series.len() == 1 {
        force_series.push(Series::Points { name: String::new(), points: Vec::new(), joined: false });
    }
    let forces = Plot {
        id: "parity-force".into(),
        title: "Force parity (Cartesian components)".into(),
        x: Axis::new("oracle force (eV/Å)"),
        y: Axis::new("model force (eV/Å)"),
        series: force_series,
        caption: format!(
            "Each point is one force component on one atom of a held-out structure, coloured by element. \
             The cloud should hug y = x; a wider spread at large forces is common, a wide spread at small ones is not.{}",
            if p.is_some_and(|p| p.forces.iter().any(|f| f.points.len() < f.n_components)) {
                format!(" (At most {} components per element are drawn.)", crate::data::MAX_FORCE_POINTS)
            } else {
                String::new()
            }
        ),
        empty_reason: why.clone(),
    };
    out.push_str(&forces.render());
    match p {
        Some(p) if !p.forces.is_empty() => {
            for f in &p.forces {
                let b = f.abs_error.bars(
                    &format!("force-error-{}", f.element),
                    &format!("Force error distribution, {}", f.element),
                    "|model − oracle| force component (eV/Å)",
                    &format!(
                        "{} components; median {} eV/Å, 90% below {} eV/Å. A long tail means some environments \
                         of {} are poorly described.",
                        f.n_components,
                        f.abs_error.median.map(num).unwrap_or_default(),
                        f.abs_error.p90.map(num).unwrap_or_default(),
                        f.element
                    ),
                    "no force components",
                );
                out.push_str(&b.render());
            }
        }
        _ => {
            let b = crate::svg::Histogram::of(&[], 1).bars(
                "force-error",
                "Force error distribution per element",
                "|model − oracle| force component (eV/Å)",
                "Absolute errors of the force components on the test set, one histogram per element.",
                &why,
            );
            out.push_str(&b.render());
        }
    }
    out.push_str("</div></section>");
}

fn exploration(out: &mut String, r: &Report) {
    out.push_str(r#"<section id="exploration"><h2>Exploration: the extrapolation grade γ</h2><div class="plots">"#);
    let (select, brk) = r.config.as_ref().map(|c| (Some(c.gamma_select), Some(c.gamma_break))).unwrap_or((None, None));
    // One series per segment name (temperature/pressure), x = generation.
    let mut names: Vec<String> = Vec::new();
    for s in &r.segments {
        if !names.contains(&s.name) {
            names.push(s.name.clone());
        }
    }
    let mut series: Vec<Series> = names
        .iter()
        .map(|n| Series::Points {
            name: n.clone(),
            points: r
                .segments
                .iter()
                .filter(|s| &s.name == n)
                .filter_map(|s| Some((s.generation as f64, s.max_gamma?)))
                .collect(),
            joined: true,
        })
        .collect();
    let refs = |series: &mut Vec<Series>| {
        if let Some(y) = select {
            series.push(Series::HLine { name: format!("gamma_select {}", num(y)), y });
        }
        if let Some(y) = brk {
            series.push(Series::HLine { name: format!("gamma_break {}", num(y)), y });
        }
    };
    refs(&mut series);
    let no_md = "no exploration segment has run yet (exploration follows each fit)";
    let max_plot = Plot {
        id: "gamma-max".into(),
        title: "Largest γ of each MD segment".into(),
        x: Axis::new("generation").integer(),
        y: Axis::new("max extrapolation grade γ (1)").log(true),
        series,
        caption: "One point per segment (temperature/pressure) and generation. Above gamma_select frames become \
                  candidates for labelling; at gamma_break a segment stops. Converging runs fall below gamma_select."
            .into(),
        empty_reason: no_md.into(),
    };
    out.push_str(&max_plot.render());
    // The distribution: γ of every candidate frame, by the generation that found it.
    let mut by_status: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for (k, c) in r.candidates.iter().enumerate() {
        if let Some(g) = c.gamma {
            // A small deterministic jitter separates the points of one generation.
            let jitter = ((k * 7919) % 101) as f64 / 101.0 * 0.5 - 0.25;
            let status = if c.status == "rejected" || c.status == "candidate" { "not selected" } else { "selected" };
            by_status.entry(status).or_default().push((c.explored_in as f64 + jitter, g));
        }
    }
    let mut series: Vec<Series> = by_status
        .into_iter()
        .map(|(name, points)| Series::Points { name: name.into(), points, joined: false })
        .collect();
    if series.is_empty() {
        series.push(Series::Points { name: String::new(), points: Vec::new(), joined: false });
    }
    refs(&mut series);
    let dist = Plot {
        id: "gamma-candidates".into(),
        title: "γ of the candidate frames".into(),
        x: Axis::new("generation that explored").integer(),
        y: Axis::new("extrapolation grade γ (1)").log(true),
        series,
        caption: "Every frame an exploration kept as a candidate, by the generation whose model found it; selected \
                  ones were labelled next. The cloud should sink below gamma_select as the potential learns."
            .into(),
        empty_reason: "no candidate frames yet".into(),
    };
    out.push_str(&dist.render());
    out.push_str("</div>");
    if !r.segments.is_empty() {
        out.push_str(
            r#"<table id="segments"><tr><th>gen</th><th class="l">segment</th><th>T (K)</th><th>P (GPa)</th><th>steps</th><th>max γ</th><th>uncertain</th><th class="l">stopped because</th></tr>"#,
        );
        for s in &r.segments {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="l">{}</td></tr>"#,
                s.generation,
                esc(&s.name),
                num(s.temperature_k),
                s.pressure_gpa.map(num).unwrap_or_else(|| "—".into()),
                s.steps_done,
                s.max_gamma.map(num).unwrap_or_else(|| "—".into()),
                s.n_uncertain,
                esc(s.stop_reason.as_deref().unwrap_or("ran all its steps"))
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn labelling(out: &mut String, r: &Report) {
    out.push_str(r#"<section id="labelling"><h2>Labelling: candidates, selections, failures</h2><div class="plots">"#);
    let gens: BTreeSet<i64> = r
        .generations
        .iter()
        .map(|g| g.generation)
        .chain(r.status_groups.iter().map(|s| s.generation))
        .chain(r.attempt_groups.iter().map(|a| a.generation))
        .collect();
    let gens: Vec<i64> = gens.into_iter().collect();
    let cats: Vec<String> = gens.iter().map(|g| g.to_string()).collect();
    if r.kind == "loop" {
        let per = |f: &dyn Fn(&crate::data::GenerationRow) -> i64| -> Vec<f64> {
            gens.iter()
                .map(|g| r.generations.iter().find(|x| x.generation == *g).map(|x| f(x) as f64).unwrap_or(0.0))
                .collect()
        };
        let b = Bars {
            id: "per-generation".into(),
            title: "Candidates, selected, labelled and failed per generation".into(),
            categories: cats.clone(),
            x_label: "generation".into(),
            y_label: "structures".into(),
            stacks: vec![
                ("candidates".into(), per(&|g| g.n_candidates)),
                ("selected".into(), per(&|g| g.n_selected)),
                ("labelled".into(), per(&|g| g.n_labelled)),
                ("failed".into(), per(&|g| g.n_failed)),
            ],
            grouped: true,
            bins: None,
            caption: "Candidates: frames the previous exploration found; selected: the diverse, uncertain subset sent \
                      to the oracle; labelled and failed: what the oracle returned. Failures should stay rare."
                .into(),
            empty_reason: "no generation recorded yet".into(),
        };
        out.push_str(&b.render());
    }
    // Why attempts failed, per generation.
    let reasons: BTreeSet<&str> =
        r.attempt_groups.iter().map(|a| a.outcome.as_str()).filter(|o| !matches!(*o, "done" | "running")).collect();
    let stacks: Vec<(String, Vec<f64>)> = reasons
        .iter()
        .map(|o| {
            (
                o.to_string(),
                gens.iter()
                    .map(|g| {
                        r.attempt_groups
                            .iter()
                            .filter(|a| a.generation == *g && a.outcome == *o)
                            .map(|a| a.n as f64)
                            .sum()
                    })
                    .collect(),
            )
        })
        .collect();
    let failed_attempts: u64 =
        r.attempt_groups.iter().filter(|a| reasons.contains(a.outcome.as_str())).map(|a| a.n).sum();
    let b = Bars {
        id: "failures".into(),
        title: "Failed attempts by reason".into(),
        categories: cats,
        x_label: "generation".into(),
        y_label: "failed attempts".into(),
        stacks,
        grouped: false,
        bins: None,
        caption: "physics: the engine ran but did not converge (the remediation ladder changes convergence knobs and \
                  retries); timeout, killed, crashed, lost: infrastructure (a separate retry budget); input: can never \
                  succeed."
            .into(),
        empty_reason: if r.attempt_groups.is_empty() {
            "no attempt has run yet".into()
        } else {
            "no attempt failed".into()
        },
    };
    out.push_str(&b.render());
    out.push_str("</div>");
    let _ = write!(out, r#"<p class="note">{failed_attempts} failed attempts in all.</p>"#);
    if !r.remediation.is_empty() {
        out.push_str(r#"<h3>Remediation steps taken</h3><table id="remediation"><tr><th>gen</th><th class="l">change before the retry</th><th>times</th></tr>"#);
        for m in &r.remediation {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="l">{}</td><td>{}</td></tr>"#,
                m.generation,
                esc(&m.changes),
                m.n
            );
        }
        out.push_str("</table>");
    }
    if !r.failures.is_empty() {
        out.push_str(r#"<h3>Failed calculations</h3><table id="failed"><tr><th>id</th><th class="l">status</th><th>attempts</th><th class="l">last message</th></tr>"#);
        for f in &r.failures {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td class="l">{}</td><td>{}</td><td class="l">{}</td></tr>"#,
                f.calculation_id,
                f.status.as_str(),
                f.attempts,
                esc(f.message.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn cost(out: &mut String, r: &Report) {
    out.push_str(r#"<section id="cost"><h2>Cost</h2><div class="plots">"#);
    let gens: Vec<i64> = r.attempt_groups.iter().map(|a| a.generation).collect::<BTreeSet<_>>().into_iter().collect();
    let engines: Vec<&str> =
        r.attempt_groups.iter().map(|a| a.engine.as_str()).collect::<BTreeSet<_>>().into_iter().collect();
    let b = Bars {
        id: "core-hours".into(),
        title: "Labelling core-hours per generation and engine".into(),
        categories: gens.iter().map(|g| g.to_string()).collect(),
        x_label: "generation".into(),
        y_label: "core-hours (h)".into(),
        stacks: engines
            .iter()
            .map(|e| {
                (
                    e.to_string(),
                    gens.iter()
                        .map(|g| {
                            r.attempt_groups
                                .iter()
                                .filter(|a| a.generation == *g && a.engine == *e)
                                .map(|a| a.core_hours)
                                .sum()
                        })
                        .collect(),
                )
            })
            .collect(),
        grouped: false,
        bins: None,
        caption: "Wall time × cores of every attempt (failed ones included), by the generation of the structure. \
                  A generation far above the others deserves a look at its failures and timeouts."
            .into(),
        empty_reason: "no attempt has run yet".into(),
    };
    out.push_str(&b.render());
    let phases: Vec<&str> = ["label", "fit", "explore", "select"]
        .into_iter()
        .filter(|p| r.phase_times.iter().any(|t| t.phase == *p))
        .collect();
    let pgens: Vec<i64> = r.phase_times.iter().map(|t| t.generation).collect::<BTreeSet<_>>().into_iter().collect();
    let b = Bars {
        id: "phase-time".into(),
        title: "Wall time per phase and generation".into(),
        categories: pgens.iter().map(|g| g.to_string()).collect(),
        x_label: "generation".into(),
        y_label: "wall time (s)".into(),
        stacks: phases
            .iter()
            .map(|p| {
                (
                    p.to_string(),
                    pgens
                        .iter()
                        .map(|g| {
                            r.phase_times.iter().filter(|t| t.generation == *g && t.phase == *p).map(|t| t.wall_s).sum()
                        })
                        .collect(),
                )
            })
            .collect(),
        grouped: false,
        bins: None,
        caption: "Time from each phase change of the loop to the next (the phase in progress counts until now). \
                  Labelling dominates with a real oracle; a long fit or exploration points to the model settings."
            .into(),
        empty_reason: if r.kind == "loop" {
            "no phase has ended yet".into()
        } else {
            "no learning loop in this run directory".into()
        },
    };
    out.push_str(&b.render());
    out.push_str("</div>");
    // Totals.
    let mut per_engine: BTreeMap<&str, (u64, f64, f64)> = BTreeMap::new();
    for a in &r.attempt_groups {
        let e = per_engine.entry(a.engine.as_str()).or_default();
        e.0 += a.n;
        e.1 += a.wall_s;
        e.2 += a.core_hours;
    }
    if !per_engine.is_empty() {
        out.push_str(r#"<table id="cost-engines"><tr><th class="l">engine</th><th>attempts</th><th>wall time (h)</th><th>core-hours</th></tr>"#);
        for (e, (n, w, c)) in &per_engine {
            let _ = write!(
                out,
                r#"<tr><td class="l">{}</td><td>{n}</td><td>{}</td><td>{}</td></tr>"#,
                esc(e),
                num(w / 3600.0),
                num(*c)
            );
        }
        out.push_str("</table>");
    }
    let mut per_phase: BTreeMap<&str, f64> = BTreeMap::new();
    for t in &r.phase_times {
        *per_phase.entry(t.phase.as_str()).or_default() += t.wall_s;
    }
    if !per_phase.is_empty() {
        out.push_str(r#"<table id="cost-phases"><tr><th class="l">phase</th><th>wall time (s)</th></tr>"#);
        for (p, w) in &per_phase {
            let _ = write!(out, r#"<tr><td class="l">{}</td><td>{}</td></tr>"#, esc(p), num(*w));
        }
        out.push_str("</table>");
    }
    out.push_str("</section>");
}

fn jobs(out: &mut String, r: &Report) {
    out.push_str(r#"<section id="jobs"><h2>Calculations</h2>"#);
    let c = &r.headline.counts;
    let _ = write!(
        out,
        r#"<p class="note">{} calculations: {} done, {} running, {} pending, {} failed, {} timed out, {} cancelled.</p><div class="plots">"#,
        c.total(),
        c.done,
        c.running + c.submitted,
        c.pending,
        c.failed,
        c.timeout,
        c.cancelled
    );
    let j = &r.jobs;
    let none = "no finished calculation yet";
    let plots = [
        (
            "jobs-wall-time",
            "Wall time of finished calculations",
            "wall time (s)",
            &j.wall_time_s,
            "How long each finished calculation ran. A second peak far to the right usually means a few \
             structures are much harder (or a node much slower); check them before raising walltime_s.",
            none,
        ),
        (
            "jobs-scf-steps",
            "SCF steps of finished calculations",
            "SCF steps",
            &j.scf_steps,
            "Self-consistency iterations per finished calculation (DFT engines). Counts near the engine's limit \
             mean the run barely converged: a sign to revisit mixing or smearing.",
            "no finished calculation reports SCF steps (the EMT oracle has none)",
        ),
        (
            "jobs-max-force",
            "Largest force of finished calculations",
            "max |F| on an atom (eV/Å)",
            &j.max_force_ev_per_a,
            "The largest force on any atom of each structure. Extreme values point to atoms too close together: \
             such structures teach a potential little about the region it is meant for.",
            none,
        ),
    ];
    for (id, title, x, h, caption, why) in plots {
        let caption = format!(
            "{caption} ({} values; median {}, 90% below {}.)",
            h.n,
            h.median.map(num).unwrap_or_else(|| "—".into()),
            h.p90.map(num).unwrap_or_else(|| "—".into())
        );
        out.push_str(&h.bars(id, title, x, &caption, why).render());
    }
    out.push_str("</div></section>");
}

fn properties(out: &mut String, r: &Report) {
    out.push_str(r#"<section id="properties"><h2>Properties</h2>"#);
    if r.properties.is_empty() {
        out.push_str(
            r#"<p class="note">No property goal has run (configure <code>[goals]</code>: they run on the final potential when the loop ends).</p>"#,
        );
    } else {
        out.push_str(
            "<table><thead><tr><th>goal</th><th>generation</th><th>round</th><th>result</th><th>max γ</th>\
             <th>uncertain</th><th>trusted</th><th>then</th></tr></thead><tbody>",
        );
        for p in &r.properties {
            let v = &p["value"];
            let result = match p["goal"].as_str() {
                _ if v["error"].is_string() => format!("failed: {}", v["error"].as_str().unwrap_or("")),
                Some("elastic") => {
                    let c = |i: usize, j: usize| {
                        v["c_ij_gpa"][i][j].as_f64().map(|x| format!("{x:.1}")).unwrap_or_default()
                    };
                    format!(
                        "C11 {} C12 {} C44 {} GPa; B {} GPa; {}",
                        c(0, 0),
                        c(0, 1),
                        c(3, 3),
                        v["bulk_modulus_gpa"]["hill"].as_f64().map(|x| format!("{x:.1}")).unwrap_or_default(),
                        if v["born_stable"] == true { "Born stable" } else { "Born UNSTABLE" }
                    )
                }
                Some("diffusion") => {
                    let mut parts: Vec<String> = Vec::new();
                    for t in v["temperatures"].as_array().into_iter().flatten() {
                        for sp in t["species"].as_array().into_iter().flatten() {
                            parts.push(format!(
                                "D({}, {} K) {:.2e} cm²/s",
                                sp["element"].as_str().unwrap_or("?"),
                                t["temperature_k"].as_f64().unwrap_or(f64::NAN),
                                sp["diffusion_cm2_per_s"].as_f64().unwrap_or(f64::NAN)
                            ));
                        }
                    }
                    for a in v["arrhenius"].as_array().into_iter().flatten() {
                        parts.push(format!(
                            "Ea({}) {:.3} ± {:.3} eV",
                            a["element"].as_str().unwrap_or("?"),
                            a["ea_ev"].as_f64().unwrap_or(f64::NAN),
                            a["ea_stderr_ev"].as_f64().unwrap_or(f64::NAN)
                        ));
                    }
                    parts.join("; ")
                }
                Some("hull") => format!(
                    "stable: {}; largest energy above the hull {} eV/atom",
                    v["stable"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    v["max_e_above_hull_ev_per_atom"].as_f64().map(|x| format!("{x:.4}")).unwrap_or_default()
                ),
                _ => v.to_string(),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["goal"].as_str().unwrap_or("")),
                p["generation"],
                p["round"],
                esc(&result),
                p["max_gamma"].as_f64().map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into()),
                p["n_uncertain"],
                if p["trusted"] == true { "yes" } else { "<b>no</b>" },
                match p["outcome"].as_str() {
                    Some("relabel") => "uncertain structures labelled, model refitted",
                    Some("limit") => "goals.max_rounds reached",
                    _ => "final",
                }
            );
        }
        out.push_str("</tbody></table>");
        out.push_str(
            r#"<p class="note">Every goal is computed through the uncertainty guard: a value met above gamma_select is not trusted, and its structures go back to labelling. Full values: <code>autopipe status --json</code>.</p>"#,
        );
    }
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{collect, ParityCache};

    #[test]
    fn an_empty_directory_renders_with_reasons_for_every_plot() {
        let tmp = tempfile::tempdir().unwrap();
        let r = collect(tmp.path(), &mut ParityCache::default()).unwrap();
        assert_eq!(r.kind, "empty");
        let page = render_page(&r, Mode::File);
        assert!(page.contains("Nothing has run in this directory yet"));
        // Every figure has marks or says why it has none.
        for fig in page.split("<figure").skip(1) {
            assert!(fig.contains("No data: ") || !fig.contains(r#"data-marks="0""#), "{fig}");
        }
        assert!(!page.contains("http://") && !page.contains("https://"), "nothing refers to the network");
        let live = render_page(&r, Mode::Live);
        assert!(live.contains(r#"<noscript><meta http-equiv="refresh""#));
        assert!(live.contains("<script>"));
        assert!(!page.contains("<script>"), "the file has no script");
    }
}
