//! The layers go one way: transports (`http`, with the web manager under it, and `realtime`)
//! call the application layer (`app`), which uses the domain, the stores and the wire shapes;
//! nothing below a transport names one, `app` and `wire` name no transport crate, and the
//! crate's top-level modules import each other without a cycle. Read from the source itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The composition root may name everything.
const ROOTS: [&str; 3] = ["startup", "main", "lib"];
const TRANSPORTS: [&str; 2] = ["http", "realtime"];

struct Source {
    /// `http`, `app`, `store`, ... (the file's top-level module).
    module: String,
    path: PathBuf,
    /// The code without its comments.
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).expect("under src");
            let first = relative
                .components()
                .next()
                .expect("a component")
                .as_os_str()
                .to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let code = text
                .lines()
                .map(|line| match line.trim_start().starts_with("//") {
                    true => "",
                    false => line,
                })
                .collect::<Vec<_>>()
                .join("\n");
            Source { module, path, code }
        })
        .collect()
}

/// The top-level modules a file names as `crate::<module>`.
fn named_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (index, _) in code.match_indices("crate::") {
        let before = code[..index].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = code[index + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn names_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(index, _)| {
        let before = code[..index].chars().next_back();
        let after = code[index + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[test]
fn the_application_layer_and_the_wire_shapes_name_no_transport_crate() {
    let offenders: Vec<String> = sources()
        .iter()
        .filter(|s| s.module == "app" || s.module == "wire")
        .filter(|s| names_word(&s.code, "axum") || names_word(&s.code, "socketioxide"))
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "axum or socketioxide in {offenders:?}"
    );
}

#[test]
fn nothing_below_a_transport_names_one_and_transports_do_not_name_each_other() {
    let mut offenders = Vec::new();
    for source in sources() {
        if ROOTS.contains(&source.module.as_str()) {
            continue;
        }
        for transport in TRANSPORTS {
            if source.module != transport && named_modules(&source.code).contains(transport) {
                offenders.push(format!(
                    "{} names crate::{transport}",
                    source.path.display()
                ));
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:#?}");
}

#[test]
fn the_top_level_modules_import_each_other_without_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources() {
        let named = named_modules(&source.code);
        let edges = graph.entry(source.module.clone()).or_default();
        edges.extend(named.into_iter().filter(|m| *m != source.module));
    }
    // Depth-first search with colours: meeting a module still on the path is a cycle.
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            let mut cycle = path[start..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let cycle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert!(cycle.is_none(), "the modules form a cycle: {cycle:?}");
    }
    assert!(
        graph.get("app").is_some_and(|edges| !edges.is_empty()),
        "the check must see the application layer's imports"
    );
}
