//! The module layout keeps its promises (DESIGN.md, Layout): imports run one way, from the
//! command line down to the leaf types, with no cycle among the library's top-level modules.
//! Read from the source text: every `crate::<module>` path outside test code is an edge.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library module a file belongs to (`config::types` counts as a module of its own), or
/// `None` for the binary's files and the crate root.
fn module_of(rel: &Path) -> Option<String> {
    let parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.first().map(String::as_str) {
        None | Some("main" | "lib" | "cli") => None,
        Some("config") if parts.get(1).map(String::as_str) == Some("types") => {
            Some("config::types".to_string())
        }
        Some(m) => Some(m.to_string()),
    }
}

/// The code of a file without its unit tests (a `#[cfg(test)] mod tests { ... }` at its end,
/// or a whole file of tests).
fn non_test_code(path: &Path, text: &str) -> String {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if matches!(name, "tests.rs" | "reference.rs") {
        return String::new();
    }
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => text[..i].to_string(),
        None => text.to_string(),
    }
}

/// Edges module -> modules it names through `crate::`.
fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(&src).expect("under src");
        let Some(module) = module_of(rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).expect("reading a source file");
        let code = non_test_code(&path, &text);
        let edges = graph.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let target = if name == "config" && rest.starts_with("config::types") {
                "config::types".to_string()
            } else {
                name
            };
            if !target.is_empty() && target != module {
                edges.insert(target);
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|n| n == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node.to_string());
        return Some(cycle);
    }
    path.push(node.to_string());
    for next in graph.get(node).into_iter().flatten() {
        if let Some(c) = cycle_from(graph, next, path) {
            return Some(c);
        }
    }
    path.pop();
    None
}

#[test]
fn the_library_modules_import_each_other_without_a_cycle() {
    let graph = import_graph();
    assert!(graph.len() >= 10, "too few modules found: {graph:?}");
    for start in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, start, &mut Vec::new()) {
            panic!("import cycle: {}\n{graph:#?}", cycle.join(" -> "));
        }
    }
}

#[test]
fn leaf_modules_import_nothing_of_tripline() {
    let graph = import_graph();
    for leaf in ["config::types", "ack", "fsutil"] {
        let edges = graph.get(leaf).expect("the leaf module exists");
        assert!(edges.is_empty(), "{leaf} imports {edges:?}");
    }
}

#[test]
fn components_do_not_reach_up_to_the_root_config_or_the_pipeline() {
    let graph = import_graph();
    for (module, edges) in &graph {
        if module == "pipeline" || module == "config" {
            continue;
        }
        for up in ["config", "pipeline"] {
            assert!(!edges.contains(up), "{module} imports crate::{up}");
        }
    }
    for component in ["source", "sink", "rules", "detect", "alert", "event"] {
        let edges = &graph[component];
        for sibling in ["source", "sink"] {
            if sibling != component {
                assert!(
                    !edges.contains(sibling),
                    "{component} imports crate::{sibling}"
                );
            }
        }
    }
}

#[test]
fn the_graph_reader_sees_a_planted_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("a".into());
    assert!(cycle_from(&graph, "a", &mut Vec::new()).is_some());
    let code = non_test_code(
        Path::new("x.rs"),
        "use crate::a;\n#[cfg(test)]\nmod tests {\n use crate::b;\n}\n",
    );
    assert!(code.contains("crate::a") && !code.contains("crate::b"));
}

#[test]
fn a_sink_never_imports_another_sink() {
    // What sinks share lives in sink/mod.rs and its shared modules (web.rs, summary.rs); only
    // mod.rs and config.rs, which list the sink types, name them.
    let sinks = [
        "http",
        "syslog",
        "splunk",
        "elasticsearch",
        "kafka",
        "local",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sink");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    assert!(files.len() >= 8, "{files:?}");
    for path in files {
        let rel = path.strip_prefix(&dir).expect("under src/sink");
        let own = rel
            .iter()
            .next()
            .and_then(|c| c.to_str())
            .unwrap_or_default();
        let own = own.trim_end_matches(".rs");
        if own == "mod" || own == "config" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("reading a sink");
        let code = non_test_code(&path, &text);
        for other in sinks.iter().filter(|s| **s != own) {
            for prefix in ["super::", "crate::sink::"] {
                let named = format!("{prefix}{other}::");
                // `super::` inside a sink's own folder (elasticsearch/, kafka/) is its own module.
                let own_folder = rel.components().count() > 1 && prefix == "super::";
                assert!(
                    own_folder || !code.contains(&named),
                    "{} names {named}",
                    rel.display()
                );
            }
        }
    }
}
