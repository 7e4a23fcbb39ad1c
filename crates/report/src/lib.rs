//! The report of a run: the data gathered from its database ([`data`]), turned into a
//! self-contained HTML page with inline SVG plots ([`html`], [`svg`]: pure), and served
//! live ([`server`], behind the `serve` feature).
//!
//! Layering: above `store` and `workflow` (it reads the configuration the run recorded
//! and evaluates the current model with `potential`); nothing below depends on it.

pub mod data;
pub mod html;
#[cfg(feature = "serve")]
pub mod server;
pub mod svg;

pub use data::{collect, default_out_dir, ParityCache, Report};
pub use html::{render_body, render_page, Mode};

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}: no such run directory")]
    NoRunDir(PathBuf),
    #[error(transparent)]
    Store(#[from] autopipe_store::StoreError),
    #[error("{path}: cannot write the report: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {message}")]
    Bind { addr: String, message: String },
}

/// Output formats of `autopipe report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

impl Format {
    pub fn file_name(self) -> &'static str {
        match self {
            Format::Html => "index.html",
            Format::Json => "report.json",
        }
    }
}

/// The report of `run_dir` as text in `format`.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Html => render_page(report, Mode::File),
        Format::Json => serde_json::to_string_pretty(report).expect("reports serialise") + "\n",
    }
}

/// Gather the report of `run_dir` and write it to `out_dir/index.html` (or
/// `report.json`) atomically (a temporary file renamed over it: a browser reloading it
/// sees the old page or the new one). Returns the path written.
/// `cache` keeps the model's evaluation between calls (the parity plots change only
/// with the model).
pub fn write_report(
    run_dir: &Path,
    out_dir: &Path,
    format: Format,
    cache: &mut ParityCache,
) -> Result<PathBuf, ReportError> {
    let report = collect(run_dir, cache)?;
    let path = out_dir.join(format.file_name());
    let io = |source| ReportError::Write { path: path.clone(), source };
    std::fs::create_dir_all(out_dir).map_err(io)?;
    let tmp = out_dir.join(format!(".{}.tmp-{}", format.file_name(), std::process::id()));
    std::fs::write(&tmp, render(&report, format)).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })?;
    Ok(path)
}
