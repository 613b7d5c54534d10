//! Import cycles between the top-level modules of a crate, read from its sources.
//!
//! A module is a top-level file of `src/` (`src/key.rs` with its children `src/key/*.rs`);
//! the crate root (`lib.rs`, `main.rs`) is not one, but the names it re-exports
//! (`pub use key::{KeyId, …}`) count as the module they come from. A module depends on
//! another when its code (not its comments, not its `#[cfg(test)]` tests) names
//! `crate::other…` — or `super::other…` from a top-level file. Strongly connected
//! components of more than one module are the cycles.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use crate::{Result, rust_files};

pub struct ModuleGraph {
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl ModuleGraph {
    pub fn read(src: &Path) -> Result<Self> {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let module_of = |file: &Path| -> Option<String> {
            let relative = file.strip_prefix(src).ok()?;
            let first = relative.components().next()?.as_os_str().to_str()?;
            let name = first.strip_suffix(".rs").unwrap_or(first);
            (!matches!(name, "lib" | "main")).then(|| name.to_owned())
        };
        let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).collect();
        let mut reexports = BTreeMap::new();
        for root in ["lib.rs", "main.rs"] {
            if let Ok(text) = std::fs::read_to_string(src.join(root)) {
                for (module, names) in root_reexports(&code_of(&text)) {
                    if modules.contains(&module) {
                        for name in names {
                            reexports.insert(name, module.clone());
                        }
                    }
                }
            }
        }
        let mut edges: BTreeMap<String, BTreeSet<String>> =
            modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
        for file in &files {
            let Some(from) = module_of(file) else { continue };
            let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let top_level = file.parent() == Some(src);
            for name in referenced_roots(&code_of(&text), top_level) {
                let to = if modules.contains(&name) { Some(name) } else { reexports.get(&name).cloned() };
                if let Some(to) = to.filter(|to| *to != from) {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        Ok(Self { edges })
    }

    pub fn len(&self) -> usize {
        self.edges.len()
    }

    /// The strongly connected components of more than one module (Tarjan's algorithm),
    /// each sorted.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        struct Walk<'g> {
            graph: &'g BTreeMap<String, BTreeSet<String>>,
            index: BTreeMap<&'g str, usize>,
            low: BTreeMap<&'g str, usize>,
            stack: Vec<&'g str>,
            on_stack: BTreeSet<&'g str>,
            found: Vec<Vec<String>>,
        }
        impl<'g> Walk<'g> {
            fn visit(&mut self, node: &'g str) {
                let i = self.index.len();
                self.index.insert(node, i);
                self.low.insert(node, i);
                self.stack.push(node);
                self.on_stack.insert(node);
                for next in self.graph.get(node).into_iter().flatten() {
                    let next = next.as_str();
                    if !self.index.contains_key(next) {
                        self.visit(next);
                        let low = self.low[node].min(self.low[next]);
                        self.low.insert(node, low);
                    } else if self.on_stack.contains(next) {
                        let low = self.low[node].min(self.index[next]);
                        self.low.insert(node, low);
                    }
                }
                if self.low[node] == self.index[node] {
                    let mut component = Vec::new();
                    while let Some(top) = self.stack.pop() {
                        self.on_stack.remove(top);
                        component.push(top.to_owned());
                        if top == node {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        component.sort();
                        self.found.push(component);
                    }
                }
            }
        }
        let mut walk = Walk {
            graph: &self.edges,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for node in self.edges.keys() {
            if !walk.index.contains_key(node.as_str()) {
                walk.visit(node);
            }
        }
        walk.found
    }
}

/// The code of a file: comments removed, and everything from its first `#[cfg(test)]` on.
fn code_of(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let line = match line.find("//") {
            // `//` inside a string literal (a URL) is not a comment: a quote before it says so.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The first path segments after every `crate::` (and `super::` in a top-level file),
/// groups `crate::{a::X, b}` included.
fn referenced_roots(code: &str, top_level: bool) -> Vec<String> {
    let mut roots = Vec::new();
    let prefixes: &[&str] = if top_level { &["crate::", "super::"] } else { &["crate::"] };
    for prefix in prefixes {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let preceded_by_ident =
                rest[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            rest = &rest[at + prefix.len()..];
            if preceded_by_ident {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                roots.extend(group_items(group).into_iter().filter_map(|item| first_segment(&item)));
            } else if let Some(name) = first_segment(rest) {
                roots.push(name);
            }
        }
    }
    roots
}

/// The items of a `{…}` group (the text after its `{`), split at its own commas.
fn group_items(group: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
}

fn first_segment(text: &str) -> Option<String> {
    let name: String = text.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty() && name != "self").then_some(name)
}

/// `pub use module::{A, B}` / `pub use module::A` of a crate root: (module, names).
fn root_reexports(code: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        let Some(path) = statement.strip_prefix("pub use ") else { continue };
        let path = path.trim().strip_prefix("crate::").unwrap_or(path.trim());
        let Some((module, rest)) = path.split_once("::") else { continue };
        let names = match rest.trim().strip_prefix('{') {
            Some(group) => {
                group_items(group).iter().filter_map(|item| item.rsplit("::").next().and_then(last_name)).collect()
            }
            None => rest.rsplit("::").next().and_then(last_name).into_iter().collect(),
        };
        found.push((module.to_owned(), names));
    }
    found
}

/// The name an item is imported as (`X as Y` → `Y`).
fn last_name(item: &str) -> Option<String> {
    let item = item.trim();
    let name = item.rsplit(" as ").next().unwrap_or(item).trim();
    first_segment(name)
}
