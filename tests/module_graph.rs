//! No import cycles between the operator's modules (what `cargo modules dependencies --acyclic`
//! checks, without building that tool in CI).
//!
//! Every file under `src/` (but `main.rs`, a crate of its own, and test modules) is a module. A
//! module uses another when its code names it: `crate::a::b`, `super::x`, `self::x`, or a child
//! module by its bare name, in `use` trees, expressions, types and macro arguments alike. A path
//! that names an item is charged to the module that holds it (the longest module prefix).

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn the_operator_modules_import_each_other_without_cycles() {
    // MODULE_GRAPH_SRC checks another tree (say, an older checkout's `src`).
    let src = std::env::var_os("MODULE_GRAPH_SRC")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut files = Vec::new();
    collect(&src, &src, &mut files);
    assert!(files.len() > 10, "the source tree was read: {} files", files.len());
    let graph = graph(&files);
    assert!(graph.values().map(BTreeSet::len).sum::<usize>() > 10, "edges are found: {graph:#?}");
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "modules that import each other in a circle: {cycles:#?}");
}

#[test]
fn a_cycle_through_a_parent_module_is_found() {
    // `a` (mod.rs) re-exports from its child, and the child takes a name from `a`: a circle, as
    // the old `controller` ↔ `cleanup` was.
    let files = vec![
        ("".to_owned(), "mod a; mod b;".to_owned()),
        ("a".to_owned(), "mod child; pub use child::Thing; pub struct Context;".to_owned()),
        ("a::child".to_owned(), "use super::Context; pub struct Thing(std::string::String);".to_owned()),
        ("b".to_owned(), "pub struct B; fn f() { let _ = format!(\"{}\", crate::a::child::X); }".to_owned()),
    ];
    let graph = graph(&files);
    assert_eq!(cycles(&graph), vec![vec!["a".to_owned(), "a::child".to_owned()]]);
    assert!(graph["b"].contains("a::child"), "paths inside macro arguments count: {graph:#?}");
}

/// (module path, source) of every module file below `dir`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        let relative = path.strip_prefix(root).unwrap().with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        if parts == ["main"] || parts.last().is_some_and(|p| p == "tests") {
            continue;
        }
        out.push((parts.join("::"), std::fs::read_to_string(&path).unwrap()));
    }
}

fn graph(files: &[(String, String)]) -> Graph {
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = Graph::new();
    for (module, source) in files {
        let tokens: TokenStream =
            source.parse().unwrap_or_else(|e| panic!("{module} does not tokenize: {e}"));
        let mut paths = Vec::new();
        walk(&tokens.into_iter().collect::<Vec<_>>(), &mut paths);
        let uses = graph.entry(module.clone()).or_default();
        for path in paths {
            if let Some(target) = resolve(module, &path, &modules).filter(|t| t != module) {
                uses.insert(target);
            }
        }
    }
    graph
}

/// Finds every path (`a::b::c`, with `use` groups expanded) in a token list, skipping
/// `#[cfg(test)] mod … { … }` blocks.
fn walk(tokens: &[TokenTree], paths: &mut Vec<Vec<String>>) {
    let mut i = 0;
    let mut test_only = false;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(attr)) = tokens.get(i + 1) {
                    test_only = attr.stream().to_string().replace(' ', "") == "cfg(test)";
                    i += 2;
                    continue;
                }
            }
            TokenTree::Ident(id) if id == "mod" && test_only => {
                i += 3; // `mod`, its name, its block (or `;`)
                test_only = false;
                continue;
            }
            TokenTree::Ident(_) if !after_path_separator(tokens, i) => {
                i = path_at(tokens, i, Vec::new(), paths);
                continue;
            }
            TokenTree::Group(g) => walk(&g.stream().into_iter().collect::<Vec<_>>(), paths),
            _ => {}
        }
        i += 1;
    }
}

fn after_path_separator(tokens: &[TokenTree], i: usize) -> bool {
    i >= 2 && is_separator(tokens, i - 2)
}

fn is_separator(tokens: &[TokenTree], i: usize) -> bool {
    matches!((tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':')
}

/// Reads the path starting at `tokens[i]` (an identifier) onto `prefix`; returns the index after it.
fn path_at(
    tokens: &[TokenTree],
    mut i: usize,
    mut prefix: Vec<String>,
    paths: &mut Vec<Vec<String>>,
) -> usize {
    if let Some(TokenTree::Ident(id)) = tokens.get(i) {
        prefix.push(id.to_string());
        i += 1;
    }
    while is_separator(tokens, i) {
        match tokens.get(i + 2) {
            Some(TokenTree::Ident(id)) => {
                prefix.push(id.to_string());
                i += 3;
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                for part in inner.split(|t| matches!(t, TokenTree::Punct(p) if p.as_char() == ',')) {
                    if !part.is_empty() {
                        path_at(part, 0, prefix.clone(), paths);
                    }
                }
                return i + 3;
            }
            _ => break,
        }
    }
    if prefix.len() > 1 {
        paths.push(prefix);
    }
    i
}

/// The module a path used in `module` lands in, if it is one of ours.
fn resolve(module: &str, path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let mut base: Vec<String> =
        if module.is_empty() { Vec::new() } else { module.split("::").map(str::to_owned).collect() };
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        Some("super") => {
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        Some(first) if modules.contains(&join(&base, &[first.to_owned()])) => {}
        _ => return None, // another crate, or a name brought in by a `use` counted already
    }
    let full: Vec<String> = base.into_iter().chain(rest.iter().cloned()).collect();
    (0..=full.len()).rev().map(|n| full[..n].join("::")).find(|candidate| modules.contains(candidate))
}

fn join(base: &[String], more: &[String]) -> String {
    base.iter().chain(more).cloned().collect::<Vec<_>>().join("::")
}

/// Strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w.as_str()) {
                    let low = self.index[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}
