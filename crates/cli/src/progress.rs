//! Progress of a batch: a bar on a terminal, plain log lines otherwise.

use autopipe_exec::{ExecEvent, Observer};
use autopipe_workflow::LoopReporter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { bar: None }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for Progress {
    fn event(&mut self, event: &ExecEvent) {
        if let Some(line) = event.log_line() {
            self.println(&line);
        }
        match event {
            ExecEvent::Batch { total, .. } if std::io::stderr().is_terminal() => {
                self.finish();
                let bar = ProgressBar::with_draw_target(Some(*total), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} labels  ({per_sec}, eta {eta}) {msg}",
                    )
                    .expect("a valid template"),
                );
                self.bar = Some(bar);
            }
            ExecEvent::Done { .. } | ExecEvent::Failed { .. } => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                }
            }
            _ => {}
        }
    }
}

impl LoopReporter for Progress {
    fn say(&mut self, line: &str) {
        self.println(line);
    }
}

/// A bar for an MD run of `steps` steps, on a terminal only.
pub fn md_bar(steps: u64) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
            )
            .expect("a valid template"),
        );
        bar
    })
}
