//! The report and the live page, loaded in a real browser (headless Chromium, which
//! `scripts/install-test-deps.sh` installs): every plot has as many marks as its data
//! or says why it has none, a screenshot is written, the page asks the network for
//! nothing but its own server (Chromium's network log), and a generation recorded while
//! the live page is open appears in it without a reload. Reports of an empty directory,
//! a run that failed in generation 0, a finished loop and a `jobs` campaign all render.
//! `serve` refuses writes and paths of its own making.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The cu-emt example made tiny: 4 four-atom cells, short MD, `max_generations`.
fn tiny_config(dir: &Path, max_generations: u32) -> PathBuf {
    let text = stdout(&ok(&["init", "--example", "cu-emt"]))
        .replace("structures = 20 ", "structures = 4 ")
        .replace("elastic_cells = 12 ", "elastic_cells = 0 ")
        .replace("supercell = [2, 2, 2]", "supercell = [1, 1, 1]")
        .replace("steps = 1000", "steps = 60")
        .replace("temperatures_k = [300, 900, 1500]", "temperatures_k = [600, 1200]")
        .replace("max_generations = 7", &format!("max_generations = {max_generations}"))
        .replace("per_generation = 20 ", "per_generation = 3 ");
    let path = dir.join("cu.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn d(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn report_json(dir: &Path) -> serde_json::Value {
    let out = ok(&["report", "--dir", d(dir), "--format", "json", "--out", "-"]);
    serde_json::from_slice(&out.stdout).expect("report --format json prints one JSON object")
}

/// Headless Chromium with a fresh profile and the flags that work here.
fn chromium(profile: &Path) -> Command {
    let exe = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| {
            Command::new("sh").args(["-c", &format!("command -v {c}")]).output().is_ok_and(|o| o.status.success())
        })
        .expect("chromium is not installed: run scripts/install-test-deps.sh (apt-get install chromium)");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--log-net-log={}", profile.join("net.json").display()))
    .stdin(Stdio::null());
    cmd
}

/// The DOM after the page's scripts ran, as Chromium serialises it.
fn dump_dom(url: &str, profile: &Path) -> String {
    let out = chromium(profile).args(["--dump-dom", "--virtual-time-budget=3000", url]).output().unwrap();
    assert!(out.status.success(), "chromium --dump-dom {url}: {}", stderr(&out));
    let dom = stdout(&out);
    assert!(dom.contains("</html>"), "no page from {url}: {dom}\n{}", stderr(&out));
    dom
}

fn screenshot(url: &str, profile: &Path, png: &Path) {
    let out = chromium(profile)
        .arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1400,3000", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium --screenshot: {}", stderr(&out));
    let bytes = std::fs::read(png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "a real screenshot: {} bytes", bytes.len());
}

/// Requests the page itself made (not the browser's own background traffic): the URLs
/// of Chromium's network log whose initiator is an origin.
fn page_requests(profile: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(profile.join("net.json")).expect("chromium wrote its network log");
    // A log cut short by the browser's exit lacks its closing brackets, and may end in
    // the middle of an event (one event per line): close it after the last whole line.
    let closed = |t: &str| format!("{}]}}", t.trim_end().trim_end_matches(','));
    let whole_lines = text.rfind('\n').map_or("", |i| &text[..i]);
    let log: serde_json::Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&closed(&text)))
        .or_else(|_| serde_json::from_str(&closed(whole_lines)))
        .expect("the network log is JSON");
    let start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].as_i64().unwrap();
    log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_i64() == Some(start))
        .filter_map(|e| {
            let p = &e["params"];
            let initiator = p["initiator"].as_str()?;
            let url = p["url"].as_str()?;
            (initiator != "not an origin").then(|| (initiator.to_string(), url.to_string()))
        })
        .collect()
}

/// Each plot of a page: (id, data-marks, marks counted in its SVG, says why it is empty).
fn plots(dom: &str) -> Vec<(String, usize, usize, bool)> {
    dom.split("<figure")
        .skip(1)
        .map(|fig| {
            let fig = &fig[..fig.find("</figure>").expect("figures close")];
            let attr = |name: &str| {
                let at = fig.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("{name} in {fig}")) + name.len() + 2;
                fig[at..at + fig[at..].find('"').unwrap()].to_string()
            };
            let marks = attr("data-marks").parse().unwrap();
            (attr("data-plot"), marks, fig.matches("class=\"mark\"").count(), fig.contains("class=\"empty\""))
        })
        .collect()
}

fn marks_of(plots: &[(String, usize, usize, bool)], id: &str) -> usize {
    plots.iter().find(|p| p.0 == id).unwrap_or_else(|| panic!("no plot {id} in {plots:?}")).2
}

/// Every plot shows as many marks as it announces, and one without marks says why.
fn check_plots(dom: &str) -> Vec<(String, usize, usize, bool)> {
    let plots = plots(dom);
    assert!(!plots.is_empty(), "the page has plots");
    for (id, announced, counted, empty) in &plots {
        assert_eq!(announced, counted, "plot {id}: the marks drawn are the marks announced");
        assert!(*counted > 0 || *empty, "plot {id} has no marks and says nothing about why");
        assert!(!(*counted > 0 && *empty), "plot {id} has marks and a 'no data' note");
    }
    plots
}

fn no_network_reference(html: &str) {
    for scheme in ["http://", "https://", "//cdn", "@import", "url("] {
        assert!(!html.contains(scheme), "the page refers to {scheme}: it must work offline");
    }
}

#[test]
fn the_report_of_a_finished_loop_shows_its_data_in_a_browser() {
    // One finished loop of three generations, which every check below reads.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    run_loop(&[d(&tiny_config(dir, 3))]);
    // `run` wrote it; `report` writes it again, the same way.
    let page = dir.join("report").join("index.html");
    assert!(page.is_file(), "autopipe run writes RUN/report/index.html");
    let out = ok(&["report", "--dir", d(dir)]);
    assert_eq!(stdout(&out).trim(), page.display().to_string());
    let html = std::fs::read_to_string(&page).unwrap();
    no_network_reference(&html);
    assert!(html.len() < 5_000_000);
    let json = report_json(dir);
    assert_eq!(json["kind"], "loop");
    assert_eq!(json["headline"]["phase"], "finished");
    assert_eq!(json["headline"]["generation"], 2);

    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let dom = dump_dom(&url, profile.path());
    let plots = check_plots(&dom);
    assert!(dom.contains("Finished without converging after generation 2"), "the headline says why it stopped");

    // Learning curves: a train and a test point per generation with a model.
    let gens = json["generations"].as_array().unwrap();
    let with = |key: &str| gens.iter().filter(|g| g["n_fit_labels"].is_i64() && g[key].is_f64()).count();
    assert_eq!(gens.len(), 3);
    assert_eq!(
        marks_of(&plots, "learning-force"),
        with("train_force_rmse_ev_per_a") + with("test_force_rmse_ev_per_a")
    );
    assert_eq!(marks_of(&plots, "learning-force"), 6);
    assert_eq!(
        marks_of(&plots, "learning-energy"),
        with("train_energy_rmse_ev_per_atom") + with("test_energy_rmse_ev_per_atom")
    );
    // Parity: one point per test frame, three per atom for the forces.
    let parity = &json["parity"];
    let n_energy = parity["energy_ev_per_atom"].as_array().unwrap().len();
    assert!(n_energy > 0, "the model has a test set: {parity}");
    assert_eq!(marks_of(&plots, "parity-energy"), n_energy);
    let n_force: usize =
        parity["forces"].as_array().unwrap().iter().map(|f| f["points"].as_array().unwrap().len()).sum();
    assert!(n_force / 3 * 3 == n_force && n_force >= 3 * 3 * n_energy, "three or four atoms per test cell: {n_force}");
    assert_eq!(marks_of(&plots, "parity-force"), n_force);
    // The model's parity points are its test errors: the RMSE over them is the fit's.
    let f = &parity["forces"][0];
    let rmse = f["rmse_ev_per_a"].as_f64().unwrap();
    let fitted = json["headline"]["model"]["test_force_rmse_ev_per_a"].as_f64().unwrap();
    assert!((rmse - fitted).abs() < 1e-6 * fitted.max(1e-9), "parity RMSE {rmse} vs fit {fitted}");
    assert!(marks_of(&plots, "force-error-Cu") > 0);
    // Exploration: one max-γ mark per segment, one mark per candidate frame.
    let segments = json["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 3 * 2, "two temperatures, three generations");
    assert_eq!(
        marks_of(&plots, "gamma-max"),
        segments.iter().filter(|s| s["max_gamma"].as_f64().is_some_and(|g| g > 0.0)).count()
    );
    let candidates = json["candidates"].as_array().unwrap();
    assert_eq!(
        marks_of(&plots, "gamma-candidates"),
        candidates.iter().filter(|c| c["gamma"].as_f64().is_some_and(|g| g > 0.0)).count()
    );
    assert!(dom.contains("gamma_select 2") && dom.contains("gamma_break 10"), "the thresholds are drawn");
    // Per generation: candidates, selected, labelled (no failures) as bars of non-zero height.
    let bars: usize = gens
        .iter()
        .map(|g| {
            ["n_candidates", "n_selected", "n_labelled", "n_failed"]
                .iter()
                .filter(|k| g[**k].as_i64().unwrap() > 0)
                .count()
        })
        .sum();
    assert_eq!(marks_of(&plots, "per-generation"), bars);
    assert!(marks_of(&plots, "core-hours") > 0 && marks_of(&plots, "phase-time") > 0);
    assert_eq!(marks_of(&plots, "failures"), 0, "nothing failed");
    assert!(marks_of(&plots, "jobs-wall-time") > 0 && marks_of(&plots, "jobs-max-force") > 0);
    // EMT has no SCF: that plot says so.
    assert!(dom.contains("No data: no finished calculation reports SCF steps"));
    assert!(dom.contains("id=\"properties\""), "a place for property goals");
    assert!(
        page_requests(profile.path()).is_empty(),
        "the file asks nothing of the network: {:?}",
        page_requests(profile.path())
    );

    // The terminal keeps pace: the same headline, and --watch shows it again in place.
    let status = stdout(&ok(&["status", "--dir", d(dir)]));
    assert!(status.contains("held-out errors of the generation 2 model: energy"), "{status}");
    assert!(status.contains(&format!("report: {}", page.display())), "{status}");
    let mut watch = autopipe().args(["status", "--watch", "--dir", d(dir)]).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap());
    let (mut shown, start) = (0, Instant::now());
    while shown < 2 && start.elapsed() < Duration::from_secs(20) {
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap() == 0 {
            break;
        }
        shown += line.contains("generation 2, phase finished") as usize;
    }
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(shown, 2, "status --watch shows the status again");

    // Kept after the test (target/tmp), for a person to look at.
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    screenshot(&url, tempfile::tempdir().unwrap().path(), &png);
}

#[test]
fn reports_of_an_empty_directory_a_failed_generation_zero_and_a_jobs_campaign_render() {
    let profile = tempfile::tempdir().unwrap();
    // Nothing run yet.
    let empty = tempfile::tempdir().unwrap();
    ok(&["report", "--dir", d(empty.path())]);
    let dom = dump_dom(&format!("file://{}/report/index.html", empty.path().display()), profile.path());
    check_plots(&dom);
    assert!(dom.contains("Nothing has run in this directory yet"));
    assert!(!empty.path().join("autopipe.db").exists(), "report never creates a database");
    let out = run(&["report", "--dir", "/nonexistent/run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("/nonexistent/run: no such run directory"), "{}", stderr(&out));
    let out = run(&["report", "--dir", d(empty.path()), "--format", "pdf"]);
    assert!(stderr(&out).contains("--format \"pdf\": expected html or json"), "{}", stderr(&out));

    // A loop whose oracle always fails: it stops in generation 0, and its report says why.
    let failed = tempfile::tempdir().unwrap();
    let config = tiny_config(failed.path(), 2);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "engine = \"emt\" ",
        "engine = \"command\"\ncommand = \"echo 'no license for this node' >&2; exit 1\" ",
    );
    std::fs::write(&config, text).unwrap();
    let out = run(&["run", d(&config)]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let page = failed.path().join("report").join("index.html");
    assert!(page.is_file(), "the report is written when a run stops");
    let dom = dump_dom(&format!("file://{}", page.display()), profile.path());
    let plots = check_plots(&dom);
    let json = report_json(failed.path());
    let crashed: u64 = json["attempt_groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] != "done")
        .map(|a| a["n"].as_u64().unwrap())
        .sum();
    assert!(crashed >= 4, "every structure failed at least once: {json}");
    assert!(marks_of(&plots, "failures") >= 1, "the failure reasons are drawn");
    assert!(dom.contains("id=\"failed\""), "the failed calculations are listed");
    assert!(dom.contains("No data: no model fitted yet"), "the parity plots say why they are empty");
    assert_eq!(marks_of(&plots, "learning-force"), 0);

    // A plain jobs campaign: one of six calculations fails; `jobs run` writes the report.
    let jobs = tempfile::tempdir().unwrap();
    let xyz = jobs.path().join("cells.xyz");
    one_atom_cells(&xyz, 6);
    let command = format!("if [ \"$AUTOPIPE_CALCULATION_ID\" = 3 ]; then exit 1; fi; {WRITE_LABEL}");
    ok(&["jobs", "import", d(&xyz), "--dir", d(jobs.path()), "--engine", "command", "--command", &command]);
    run(&["jobs", "run", "--dir", d(jobs.path()), "--max-infra-retries", "0"]);
    let page = jobs.path().join("report").join("index.html");
    assert!(page.is_file(), "jobs run writes the report at the end of a batch");
    let dom = dump_dom(&format!("file://{}", page.display()), profile.path());
    let plots = check_plots(&dom);
    assert_eq!(marks_of(&plots, "jobs-wall-time"), {
        let json = report_json(jobs.path());
        assert_eq!(json["kind"], "jobs");
        assert_eq!(json["jobs"]["n_done"], 5);
        json["jobs"]["wall_time_s"]["counts"].as_array().unwrap().iter().filter(|c| c.as_u64().unwrap() > 0).count()
    });
    assert!(dom.contains("A job campaign: 5 of 6 calculations done."));
    assert_eq!(marks_of(&plots, "failures"), 1, "one generation (0) with crashed attempts");
    assert!(dom.contains("No data: no learning loop in this run directory"));
}

/// A raw HTTP request; returns the status line and the body (read up to its
/// Content-Length: a server may keep the connection open).
fn http(addr: &str, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(s);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    // A HEAD answer has no body whatever its Content-Length: read to the close.
    let head = request.starts_with("HEAD ");
    let mut body = Vec::new();
    match length {
        _ if head => {
            let _ = reader.read_to_end(&mut body);
        }
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        None => {
            let _ = reader.read_to_end(&mut body);
        }
    }
    (status.trim_end().to_string(), String::from_utf8_lossy(&body).into_owned())
}

fn get(addr: &str, path: &str) -> (String, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"))
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SIGTERM (Chromium then finishes its network log), then reap.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The titles of the pages an open Chromium shows (its DevTools list, plain HTTP).
fn page_titles(profile: &Path) -> Vec<String> {
    let Ok(port) = std::fs::read_to_string(profile.join("DevToolsActivePort")) else { return Vec::new() };
    let Some(port) = port.lines().next().filter(|p| !p.is_empty()) else { return Vec::new() };
    let (_, body) = get(&format!("127.0.0.1:{port}"), "/json/list");
    let Some(start) = body.find('[') else { return Vec::new() };
    let list: serde_json::Value =
        serde_json::from_str(&body[start..body.rfind(']').unwrap_or(body.len() - 1) + 1]).unwrap_or_default();
    list.as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["type"] == "page")
                .filter_map(|p| Some(format!("{} <{}>", p["title"].as_str()?, p["url"].as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for_title(profile: &Path, what: &str, timeout: Duration) -> Vec<String> {
    let start = Instant::now();
    loop {
        let titles = page_titles(profile);
        if titles.iter().any(|t| t.contains(what)) || start.elapsed() > timeout {
            return titles;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_live_page_shows_a_new_generation_without_a_reload_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny_config(dir.path(), 2);
    run_loop(&[d(&config)]);

    let mut serve = autopipe()
        .args(["serve", "--dir", d(dir.path()), "--bind", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(serve.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let _serve = Killed(serve);
    let addr =
        line.split("http://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_else(|| panic!("{line}")).to_string();
    assert!(addr.starts_with("127.0.0.1:"), "loopback: {line}");

    // Read-only, and nothing but its own pages.
    let (status, _) = get(&addr, "/");
    assert!(status.contains("200"), "{status}");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let (status, _) = http(
            &addr,
            &format!("{method} / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        );
        assert!(status.contains("405"), "{method}: {status}");
    }
    for path in [
        "/../autopipe.db",
        "/autopipe.db",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/report/../autopipe.db",
        "//etc/passwd",
        "/models/gen-001.json",
    ] {
        let (status, body) = get(&addr, path);
        assert!(status.contains("404"), "{path}: {status}");
        assert!(!body.contains("SQLite"), "{path}");
    }
    let (status, head_body) = http(&addr, &format!("HEAD / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"));
    assert!(status.contains("200") && head_body.is_empty(), "{status}");
    let (_, json) = get(&addr, "/report.json");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["headline"]["generation"], 1);

    // The page, open in a browser.
    let profile = tempfile::tempdir().unwrap();
    let browser = chromium(profile.path())
        .args(["--remote-debugging-port=0", &format!("http://{addr}/")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let browser = Killed(browser);
    let titles = wait_for_title(profile.path(), "generation 1, finished", Duration::from_secs(30));
    assert!(titles.iter().any(|t| t.contains("generation 1, finished")), "{titles:?}");

    // A new generation: the run goes on under a higher limit, while the page polls and
    // the test keeps asking the server (it must keep answering while the run writes).
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap().replace("max_generations = 2", "max_generations = 3"),
    )
    .unwrap();
    let mut more = autopipe().args(["run", d(&config)]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut answers = 0;
    while more.try_wait().unwrap().is_none() {
        let (status, _) = get(&addr, "/live");
        assert!(status.contains("200"), "the server answers while the run writes: {status}");
        answers += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(more.wait().unwrap().code(), Some(0 | 4)));
    assert!(answers > 0);
    let titles = wait_for_title(profile.path(), "generation 2, finished", Duration::from_secs(30));
    let live = titles.iter().find(|t| t.contains("generation 2, finished")).unwrap_or_else(|| panic!("{titles:?}"));
    assert!(live.contains("(live update"), "redrawn by the page's script, not reloaded: {live}");
    drop(browser);

    // Everything the page asked for came from its own server.
    let requests = page_requests(profile.path());
    assert!(requests.iter().any(|(_, url)| url.ends_with("/live")), "the page polls: {requests:?}");
    for (initiator, url) in &requests {
        assert!(url.starts_with(&format!("http://{addr}/")), "{initiator} asked for {url}");
    }
}
