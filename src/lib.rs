//! gpurun: a rootless, daemonless container launcher for GPU and HPC work.
//!
//! The pipeline (see README.md, "Architecture"): `image` turns archives into verified layers,
//! `cache` publishes them as read-only root filesystems, and the run stage applies a launch plan.

pub mod cli;
pub mod image;
pub mod plan;
pub mod request;
pub mod run;
pub mod sandbox;
pub mod sys;
