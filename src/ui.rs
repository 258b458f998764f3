//! What the user sees on stderr: warnings (unless `-q`) and a progress bar during unpacks when
//! stderr is a terminal. Debug logs go through `tracing` and are separate from these.

use std::io::IsTerminal;
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Every bar of the process draws through one `MultiProgress`, so that the unpack's bar and the
/// downloads' bars share the terminal instead of overwriting each other.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

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

    /// Something gpurun decided on the user's behalf (one line; `-q` silences it).
    pub fn notice(&self, msg: &str) {
        if !self.quiet {
            eprintln!("gpurun: notice: {msg}");
        }
    }

    pub fn info(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("gpurun: {msg}");
        }
    }

    fn shows_progress(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    fn bar(total_bytes: u64) -> ProgressBar {
        let bar = bars().add(ProgressBar::new(total_bytes));
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar
    }

    /// A byte/layer progress bar, hidden unless stderr is a terminal and not `-q`.
    pub fn progress(&self, total_bytes: u64, layers: usize) -> Progress {
        let bar = self.shows_progress().then(|| Ui::bar(total_bytes));
        Progress { bar, layers }
    }

    /// One download's bar (bytes, rate), under the same conditions.
    pub fn download(&self, label: String, total_bytes: u64) -> Progress {
        let bar = self.shows_progress().then(|| {
            let bar = Ui::bar(total_bytes);
            bar.set_prefix(label);
            bar
        });
        Progress { bar, layers: 0 }
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
