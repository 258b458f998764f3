//! The part of an image configuration that the run stage consumes, in one small owned struct so
//! that the sandbox never depends on the archive formats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Image settings relevant to running a container (OCI `config.config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `NAME=value` strings, in image order.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Apptainer's conventions, for an image that carries `/.singularity.d` (a SIF, a SquashFS
    /// or sandbox directory built by Apptainer): see `image::apptainer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apptainer: Option<Apptainer>,
}

/// What an Apptainer image's `/.singularity.d` asks of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Apptainer {
    /// `env/*.sh`, in the order they are sourced (by name, as Apptainer does).
    pub env_scripts: Vec<String>,
    /// The image's shell that sources them before the command; `None` when the image has no
    /// `/bin/sh` (the scripts are then not run, with a warning).
    pub shell: Option<String>,
}
