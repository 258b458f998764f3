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
}
