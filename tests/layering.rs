//! The architecture's one rule, checked on the source: no module imports a module that imports it
//! back, directly or through others. Imports are read from `crate::` and `super::` paths (outside
//! `#[cfg(test)]` code) and resolved to the longest module they name; the graph is checked among
//! the top-level modules and among the children of each module, as the README's layout describes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path of a source file: `src/vmm/vcpu/mod.rs` → `vmm::vcpu`.
fn module_of(file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix("src").ok()?.with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    (parts != ["lib"] && parts != ["main"]).then_some(parts)
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::a::b` or `super::a` path in `code`, made absolute from module `at`.
fn paths(code: &str, at: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (start, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        if code[..start].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let tail: String =
            code[start..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        let words: Vec<String> = tail.split("::").filter(|w| !w.is_empty()).map(String::from).collect();
        // `use crate::a::{b, c::d}`: each item of the group is a path of its own.
        let rest = &code[start + tail.len()..];
        let items = match rest.strip_prefix('{') {
            Some(group) => group_items(group),
            None => vec![Vec::new()],
        };
        for item in items {
            let mut words = words.clone();
            words.extend(item);
            out.push(absolute(words, at));
        }
    }
    out
}

/// The leading path of each item of a `{...}` group (up to its closing brace).
fn group_items(group: &str) -> Vec<Vec<String>> {
    let mut depth = 0;
    let mut items = vec![String::new()];
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => items.push(String::new()),
            _ if depth == 0 => items.last_mut().into_iter().for_each(|i| i.push(c)),
            _ => {}
        }
    }
    items
        .iter()
        .map(|i| {
            let path: String = i.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            path.split("::").filter(|w| !w.is_empty() && *w != "self").map(String::from).collect()
        })
        .collect()
}

/// A `crate::` or `super::` path made absolute from module `at`.
fn absolute(mut words: Vec<String>, at: &[String]) -> Vec<String> {
    let mut base: Vec<String> = Vec::new();
    if words.first().is_some_and(|w| w == "super") {
        base = at[..at.len().saturating_sub(1)].to_vec();
        words.remove(0);
        while words.first().is_some_and(|w| w == "super") {
            base.pop();
            words.remove(0);
        }
    } else {
        words.remove(0);
    }
    base.extend(words);
    base
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut files = Vec::new();
    sources(Path::new("src"), &mut files);
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter_map(|f| {
            let m = module_of(f)?;
            let code = std::fs::read_to_string(f).ok()?;
            let code = code.split("#[cfg(test)]").next().unwrap_or("").to_string();
            Some((m, code))
        })
        .collect();
    assert!(modules.len() > 40, "the source tree was found ({} modules)", modules.len());
    // Edges between siblings: a → b when something in a (or below it) imports b (or below it).
    let mut edges: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for (m, code) in &modules {
        for path in paths(code, m) {
            let Some(target) = (1..=path.len()).rev().map(|k| path[..k].to_vec()).find(|p| modules.contains_key(p))
            else {
                continue;
            };
            let common = m.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < m.len() && common < target.len() {
                edges.insert((m[..=common].to_vec(), target[..=common].to_vec()));
            }
        }
    }
    // Any cycle among siblings shows as a path back: search from each edge's target.
    for (from, to) in &edges {
        let mut seen = BTreeSet::new();
        let mut stack = vec![(to.clone(), vec![from.join("::"), to.join("::")])];
        while let Some((at, trail)) = stack.pop() {
            assert!(&at != from, "import cycle: {}", trail.join(" → "));
            if !seen.insert(at.clone()) {
                continue;
            }
            for (_, b) in edges.iter().filter(|(a, _)| *a == at) {
                let mut t = trail.clone();
                t.push(b.join("::"));
                stack.push((b.clone(), t));
            }
        }
    }
}
