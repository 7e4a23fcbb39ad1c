//! `autopipe report`, `autopipe serve`, `autopipe status --watch`, and the report that
//! `run` and `jobs run` keep current in `RUN/report/index.html`.

use anyhow::{bail, Result};
use autopipe_exec::{ExecEvent, Observer};
use autopipe_report::{default_out_dir, write_report, Format, ParityCache};
use autopipe_store::Phase;
use autopipe_workflow::LoopReporter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `autopipe report`: write `OUT/index.html` (or `OUT/report.json`); `--out -` prints it.
pub fn report(dir: &Path, out: Option<&Path>, format: &str) -> Result<ExitCode> {
    let format = match format {
        "html" => Format::Html,
        "json" => Format::Json,
        other => bail!("--format {other:?}: expected html or json"),
    };
    if out.is_some_and(autopipe_atoms::output::is_stdout) {
        let r = autopipe_report::collect(dir, &mut ParityCache::default())?;
        print!("{}", autopipe_report::render(&r, format));
        return Ok(ExitCode::SUCCESS);
    }
    let out_dir = out.map(Path::to_path_buf).unwrap_or_else(|| default_out_dir(dir));
    let path = write_report(dir, &out_dir, format, &mut ParityCache::default())?;
    println!("{}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `autopipe serve`: the live page until interrupted.
#[cfg(feature = "serve")]
pub fn serve(dir: &Path, bind: &str) -> Result<ExitCode> {
    let server = autopipe_report::server::LiveServer::bind(dir, bind)?;
    let addr = server.local_addr();
    if let Some(a) = addr.filter(|a| !a.ip().is_loopback()) {
        eprintln!("warning: serving on {a}, which other machines may reach (the page is read-only)");
    }
    match addr {
        Some(a) => eprintln!("serving the report of {} on http://{a}/ (read-only; Ctrl-C stops)", dir.display()),
        None => eprintln!("serving the report of {} on {bind} (read-only; Ctrl-C stops)", dir.display()),
    }
    server.serve_forever();
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "serve"))]
pub fn serve(_dir: &Path, _bind: &str) -> Result<ExitCode> {
    bail!("this autopipe was built without the `serve` feature; `autopipe report` writes the page as a file")
}

/// Keeps `RUN/report/index.html` current. A report that cannot be written is said once
/// and never stops the work.
pub struct ReportWriter {
    run_dir: PathBuf,
    cache: ParityCache,
    warned: bool,
}

impl ReportWriter {
    pub fn new(run_dir: &Path) -> ReportWriter {
        ReportWriter { run_dir: run_dir.to_path_buf(), cache: ParityCache::default(), warned: false }
    }

    /// Write the report; the warning, when there is one, goes to `say`. The work goes
    /// on whatever happens here, a bug in the report included.
    pub fn write(&mut self, say: &mut dyn FnMut(&str)) {
        let out = default_out_dir(&self.run_dir);
        let (run_dir, cache) = (&self.run_dir, &mut self.cache);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            write_report(run_dir, &out, Format::Html, cache).map_err(|e| e.to_string())
        }))
        .unwrap_or_else(|_| Err("the report failed (a bug in autopipe: please report it)".into()));
        if let Err(e) = result {
            if !self.warned {
                say(&format!("warning: the report {} was not written: {e}", out.join("index.html").display()));
                self.warned = true;
            }
            self.cache = ParityCache::default();
        }
    }
}

/// Write the report of `run_dir` once (after a `jobs run` batch, at the end of `run`).
pub fn refresh(run_dir: &Path) {
    ReportWriter::new(run_dir).write(&mut |line| eprintln!("{line}"));
}

/// A loop reporter that writes the report after every phase of the loop, and passes
/// everything else to `inner`.
pub struct Reporting<'a, R: LoopReporter> {
    pub inner: &'a mut R,
    writer: ReportWriter,
}

impl<'a, R: LoopReporter> Reporting<'a, R> {
    pub fn new(inner: &'a mut R, run_dir: &Path) -> Self {
        Reporting { inner, writer: ReportWriter::new(run_dir) }
    }
}

impl<R: LoopReporter> Observer for Reporting<'_, R> {
    fn event(&mut self, event: &ExecEvent) {
        self.inner.event(event);
    }
}

impl<R: LoopReporter> LoopReporter for Reporting<'_, R> {
    fn say(&mut self, line: &str) {
        self.inner.say(line);
    }

    fn phase_done(&mut self, generation: i64, phase: Phase) {
        self.inner.phase_done(generation, phase);
        let inner = &mut *self.inner;
        self.writer.write(&mut |line| inner.say(line));
    }
}

/// `status --watch`: `show` again every `period`, in place on a terminal.
pub fn watch(period: std::time::Duration, mut show: impl FnMut() -> Result<ExitCode>) -> Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stdout().is_terminal();
    loop {
        if tty {
            // Home and clear: the new status replaces the old one.
            print!("\x1b[H\x1b[2J");
        }
        show()?;
        if tty {
            println!("(every {} s; Ctrl-C stops)", period.as_secs_f64());
        }
        std::io::stdout().flush()?;
        std::thread::sleep(period);
    }
}
