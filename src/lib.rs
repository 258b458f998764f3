//! gpurun: a rootless, daemonless container launcher for GPU and HPC work.
//!
//! The pipeline (see README.md, "Architecture"): `image` turns archives into verified layers,
//! `cache` publishes them as read-only root filesystems, and the run stage applies a launch plan.

pub mod account;
pub mod app;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod fsutil;
pub mod gpu;
pub mod host;
pub mod image;
pub mod inroot;
pub mod interrupt;
pub mod join;
pub mod plan;
pub mod prepare;
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

/// The house rule the README's architecture section states: no module imports one that imports
/// it back (at the granularity of the top-level modules), so each stage can be read, and
/// replaced, on its own.
#[cfg(test)]
mod layering {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Top-level module -> the top-level modules its code names as `crate::NAME`.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let rel = path.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
                let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
                if !rel.ends_with(".rs") || matches!(module.as_str(), "lib" | "main") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let used = graph.entry(module.clone()).or_default();
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (i, _) in line.match_indices("crate::") {
                        let name: String = line[i + 7..]
                            .chars()
                            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                            .collect();
                        if !name.is_empty() && name != module && name != "error_chain" {
                            used.insert(name);
                        }
                    }
                }
            }
        }
        graph
    }

    #[test]
    fn no_import_cycles() {
        let graph = imports();
        assert!(graph.contains_key("plan") && graph.contains_key("image"), "{graph:?}");
        // Depth-first search; a module reached again while on the path closes a cycle.
        fn visit<'g>(
            m: &'g str,
            graph: &'g BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<&'g str>,
            done: &mut BTreeSet<&'g str>,
        ) {
            if let Some(at) = path.iter().position(|p| *p == m) {
                panic!("import cycle: {}", [&path[at..], &[m]].concat().join(" -> "));
            }
            if !done.insert(m) {
                return;
            }
            path.push(m);
            for next in graph.get(m).into_iter().flatten() {
                visit(next, graph, path, done);
            }
            path.pop();
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            visit(m, &graph, &mut Vec::new(), &mut done);
        }
    }
}
