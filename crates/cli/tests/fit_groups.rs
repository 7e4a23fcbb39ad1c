//! `autopipe potential fit` and `eval` on real DFT data with groups: a subset of FitSNAP's
//! tantalum set (3 configurations of each of its 12 `config_type` groups), the ZBL
//! reference and FitSNAP's per-group weights from the configuration, `--folds` for
//! cross-validated errors with their 95% intervals; the errors printed per group, and
//! `eval` of the written model (SNAP + ZBL added back) giving the training errors again.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn ta_xyz() -> PathBuf {
    std::env::var_os("AUTOPIPE_TA_FITSNAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ta-fitsnap"))
        .join("ta.xyz")
}

/// The first `per_group` frames of every group of an extended XYZ text.
fn subset(text: &str, per_group: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut i = 0;
    while i < lines.len() {
        let n: usize = lines[i].trim().parse().unwrap();
        let header = lines[i + 1];
        let group = header.split("config_type=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
        let c = seen.entry(group).or_default();
        if *c < per_group {
            for l in &lines[i..i + 2 + n] {
                out += l;
                out += "\n";
            }
        }
        *c += 1;
        i += 2 + n;
    }
    out
}

const GROUPS: &str = "
[fit.groups.Displaced_A15]
energy_weight = 100.0
stress_weight = 1e-8
[fit.groups.Liquid]
energy_weight = 467.0
stress_weight = 1e-8
[fit.groups.Elastic_BCC]
energy_weight = 1e-8
force_weight = 1e-8
stress_weight = 1e-4
";

#[test]
fn fit_and_eval_report_errors_per_group_with_zbl_and_folds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ta36.xyz");
    std::fs::write(&data, subset(&std::fs::read_to_string(ta_xyz()).unwrap(), 3)).unwrap();
    let cfg = ok(&["init", "--example", "cu-emt"]);
    let text = stdout(&cfg)
        .replace("elements = [\"Cu\"]", "elements = [\"Ta\"]")
        .replace("lattice = \"fcc\"", "lattice = \"bcc\"")
        .replace("lattice_constant_a = 3.61", "lattice_constant_a = 3.32")
        .replace("engine = \"emt\"", "engine = \"command\"\ncommand = \"true\"")
        .replace("twojmax = 10 ", "twojmax = 6 ")
        .replace("cutoff_a = 4.7 ", "cutoff_a = 4.67637 ")
        + GROUPS
        + "[potential.reference]\nzbl_inner_a = 4.0\nzbl_outer_a = 4.8\n";
    let config = dir.path().join("ta.toml");
    std::fs::write(&config, text).unwrap();
    let model = dir.path().join("ta.json");
    let (d, c, m) = (data.to_str().unwrap(), config.to_str().unwrap(), model.to_str().unwrap());
    let out = ok(&["potential", "fit", d, "--out", m, "--config", c, "--folds", "3"]);
    let fit = figures(&stdout(&out));
    assert!(stderr(&out).contains("fit_s "), "{}", stderr(&out));
    // cross-validated figures with their intervals, overall and per group
    let cv = fit["cv_force_rmse"];
    assert!(fit["cv_force_rmse_ci95_low"] <= cv && cv <= fit["cv_force_rmse_ci95_high"], "{fit:?}");
    assert!(fit.contains_key("cv_group.Liquid.force_rmse"), "{fit:?}");
    // the model is then fitted on every frame: 36 training frames, 12 groups of 3
    assert_eq!(fit["train_frames"], 36.0);
    for g in ["Displaced_A15", "Liquid", "Surface", "Volume_FCC"] {
        assert_eq!(fit[&format!("train_group.{g}.frames")], 3.0, "{g}: {fit:?}");
    }
    // held-out errors are worse than training errors (the estimate is honest)
    assert!(cv > fit["train_force_rmse"], "{fit:?}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(json["reference"], serde_json::json!({"inner_a": 4.0, "outer_a": 4.8}));
    // eval adds the reference back: the training errors again, per group
    let ev = figures(&stdout(&ok(&["potential", "eval", d, "--model", m])));
    for key in ["force_rmse", "energy_rmse", "group.Liquid.force_rmse", "group.Volume_BCC.energy_rmse"] {
        let (a, b) = (ev[key], fit[&format!("train_{key}")]);
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-6), "{key}: eval {a} vs fit {b}");
    }
    // --search: the ridge and weight scales chosen by cross-validation, deterministically
    let s1 = figures(&stdout(&ok(&["potential", "fit", d, "--out", m, "--config", c, "--folds", "3", "--search"])));
    let s2 = figures(&stdout(&ok(&["potential", "fit", d, "--out", m, "--config", c, "--folds", "3", "--search"])));
    assert_eq!(s1, s2, "the search is deterministic");
    assert!(s1.contains_key("search_alpha") && s1.contains_key("search_energy_weight_scale"), "{s1:?}");
    // its choice is never worse in cross-validated forces than the configured options
    assert!(s1["search_cv_force_rmse"] <= cv * (1.0 + 1e-9), "{s1:?} vs {cv}");
    // a bare SNAP (no reference) fits the same data worse on the liquid's close contacts? at
    // least differently: the reference is really subtracted
    let bare = dir.path().join("bare.toml");
    std::fs::write(
        &bare,
        std::fs::read_to_string(&config).unwrap().replace("zbl_inner_a = 4.0\nzbl_outer_a = 4.8\n", ""),
    )
    .unwrap();
    let b = figures(&stdout(&ok(&[
        "potential",
        "fit",
        d,
        "--out",
        m,
        "--config",
        bare.to_str().unwrap(),
        "--test-fraction",
        "0",
    ])));
    assert!((b["train_force_rmse"] - fit["train_force_rmse"]).abs() > 1e-6, "{b:?}");
}
