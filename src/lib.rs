//! gpurun: a rootless, daemonless container launcher for GPU and HPC work.
//!
//! The pipeline (see README.md, "Architecture"): `image` turns archives into verified layers,
//! `cache` publishes them as read-only root filesystems, and the run stage applies a launch plan.

pub mod account;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod fsutil;
pub mod gpu;
pub mod image;
pub mod inroot;
pub mod interrupt;
pub mod plan;
pub mod request;
pub mod run;
pub mod sandbox;
pub mod sys;
pub mod ui;

/// An error and its sources on one line, `outer: inner: innermost`, without repeats.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.last().is_some_and(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
