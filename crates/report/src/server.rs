//! `autopipe serve`: the report, live. A small HTTP server (tiny_http) that answers GET
//! and HEAD for its own few pages and nothing else:
//!
//! - `/` (and `/index.html`): the page, which polls `live` and redraws without a reload;
//! - `/live`: `{"marker": ...}`, a value that changes whenever the database changes;
//! - `/body`: the page's content (what the page swaps in);
//! - `/report.json`: the data, as `autopipe report --format json` prints it.
//!
//! Any other path is 404 (no file is ever served from disk, so `..` leads nowhere), any
//! other method 405. Each request opens the database read-only (never blocking the
//! writer: WAL readers do not lock it) and closes it again.

use crate::data::{collect, ParityCache, Report};
use crate::html::{render_body, render_page, Mode};
use crate::ReportError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tiny_http::{Header, Method, Request, Response, Server};

/// A bound server, ready to answer.
pub struct LiveServer {
    server: Server,
    run_dir: PathBuf,
    cache: ParityCache,
    /// The last report, with the marker it was built at.
    last: Option<Report>,
}

impl LiveServer {
    /// Bind to `addr` (port 0 picks a free port).
    pub fn bind(run_dir: &Path, addr: &str) -> Result<LiveServer, ReportError> {
        if !run_dir.is_dir() {
            return Err(ReportError::NoRunDir(run_dir.to_path_buf()));
        }
        let server =
            Server::http(addr).map_err(|e| ReportError::Bind { addr: addr.to_string(), message: e.to_string() })?;
        Ok(LiveServer { server, run_dir: run_dir.to_path_buf(), cache: ParityCache::default(), last: None })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.server_addr().to_ip()
    }

    /// Answer requests until the process ends.
    pub fn serve_forever(mut self) {
        while let Ok(request) = self.server.recv() {
            self.answer(request);
        }
    }

    /// The current report: rebuilt only when the database changed.
    fn report(&mut self) -> Result<&Report, ReportError> {
        let marker = current_marker(&self.run_dir)?;
        if self.last.as_ref().map(|r| &r.marker) != Some(&marker) {
            self.last = Some(collect(&self.run_dir, &mut self.cache)?);
        }
        Ok(self.last.as_ref().expect("just built"))
    }

    fn answer(&mut self, request: Request) {
        let method = request.method().clone();
        if !matches!(method, Method::Get | Method::Head) {
            let r = text_response(405, "text/plain; charset=utf-8", "read-only: only GET and HEAD\n".into())
                .with_header(header("Allow", "GET, HEAD"));
            let _ = request.respond(r);
            return;
        }
        let path = request.url().split(['?', '#']).next().unwrap_or("").to_string();
        // A bug in the report answers 500 and the server goes on.
        let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.page(&path)))
            .unwrap_or_else(|_| Some(Err("the report failed (a bug in autopipe: please report it)".into())));
        let r = match response {
            None => text_response(404, "text/plain; charset=utf-8", "not found\n".into()),
            Some(Ok((kind, body))) => text_response(200, kind, body),
            Some(Err(e)) => text_response(500, "text/plain; charset=utf-8", format!("{e}\n")),
        };
        let _ = request.respond(r);
    }

    /// The page at `path` (content type and text), None when there is none.
    fn page(&mut self, path: &str) -> Option<Result<(&'static str, String), String>> {
        let response = match path {
            "/" | "/index.html" => self.report().map(|r| ("text/html; charset=utf-8", render_page(r, Mode::Live))),
            "/body" => self.report().map(|r| ("text/html; charset=utf-8", render_body(r))),
            "/live" => current_marker(&self.run_dir)
                .map(|m| ("application/json", serde_json::json!({ "marker": m }).to_string())),
            "/report.json" => {
                self.report().map(|r| ("application/json", serde_json::to_string(r).expect("reports serialise")))
            }
            _ => return None,
        };
        Some(response.map_err(|e| e.to_string()))
    }
}

/// The database's change marker ("none" without a database).
fn current_marker(run_dir: &Path) -> Result<String, ReportError> {
    if !run_dir.join(autopipe_store::DB_FILE).is_file() {
        return Ok("none".into());
    }
    Ok(autopipe_store::JobStore::open_read_only(run_dir)?.change_marker()?)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn text_response(code: u16, kind: &str, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", kind))
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        // The page may load nothing from anywhere but itself (its styles and script are inline).
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; connect-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:",
        ))
}
