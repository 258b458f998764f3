//! What the user sees on stderr: warnings (unless `-q`) and a progress bar during unpacks when
//! stderr is a terminal. Debug logs go through `tracing` and are separate from these.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// User-facing output settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ui {
    pub quiet: bool,
    pub verbose: u8,
}

impl Ui {
    pub fn warn(&self, msg: &str) {
        if !self.quiet {
            eprintln!("gpurun: warning: {msg}");
        }
    }

    pub fn info(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("gpurun: {msg}");
        }
    }

    /// A byte/layer progress bar, hidden unless stderr is a terminal and not `-q`.
    pub fn progress(&self, total_bytes: u64, layers: usize) -> Progress {
        if self.quiet || !std::io::stderr().is_terminal() {
            return Progress { bar: None, layers };
        }
        let bar = ProgressBar::new(total_bytes);
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Progress { bar: Some(bar), layers }
    }
}

/// Unpack progress; every method is a no-op when hidden.
pub struct Progress {
    bar: Option<ProgressBar>,
    layers: usize,
}

impl Progress {
    pub fn set_layer(&self, n: usize) {
        if let Some(b) = &self.bar {
            b.set_prefix(format!("unpacking layer {n}/{}", self.layers));
        }
    }

    pub fn inc(&self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
