//! Short functions and files in the operator's `src/`: no function over [`MAX_FN_LINES`] lines, no
//! file over [`MAX_FILE_LINES`]. Test code is left out (`#[cfg(test)]` modules, `tests.rs` files),
//! and so is `src/testground` (the test harness, on its way out of the product).
//!
//! A function's length is counted from the line of its `fn` keyword to the line of its closing
//! brace, both included (doc comments and attributes not counted). The source is read as tokens
//! (proc-macro2, with the line of each token), so braces in strings and comments do not count.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 60;
const MAX_FILE_LINES: usize = 500;

#[test]
fn no_function_or_file_in_src_is_too_long() {
    // CODE_SHAPE_SRC checks another tree (say, an older checkout's `src`).
    let src = std::env::var_os("CODE_SHAPE_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut files = Vec::new();
    collect(&src, &src, &mut files);
    assert!(files.len() > 10, "the source tree was read: {} files", files.len());
    let mut too_long = Vec::new();
    let (mut longest_fn, mut longest_file) = ((String::new(), 0), (String::new(), 0));
    for (path, source) in &files {
        let lines = source.lines().count();
        if lines > longest_file.1 {
            longest_file = (path.clone(), lines);
        }
        if lines > MAX_FILE_LINES {
            too_long.push(format!("{path}: {lines} lines (file)"));
        }
        for (name, lines) in functions(source, path) {
            if lines > longest_fn.1 {
                longest_fn = (format!("{path} {name}"), lines);
            }
            if lines > MAX_FN_LINES {
                too_long.push(format!("{path} {name}: {lines} lines"));
            }
        }
    }
    println!("longest function: {} ({} lines)", longest_fn.0, longest_fn.1);
    println!("longest file: {} ({} lines)", longest_file.0, longest_file.1);
    assert!(
        too_long.is_empty(),
        "over {MAX_FN_LINES} lines (function) or {MAX_FILE_LINES} (file):\n{}",
        too_long.join("\n")
    );
}

#[test]
fn functions_are_measured_from_fn_to_closing_brace_and_test_code_is_left_out() {
    let source = r#"
/// Doc lines are not counted.
pub async fn short() -> &'static str {
    "}}} a brace in a string is not one"
}

impl Thing {
    fn method(&self) {
        // }
        let f = || {
            1
        };
    }
}

#[cfg(test)]
mod tests {
    fn a_long_test_helper() {


    }
}
"#;
    let found = functions(source, "example.rs");
    assert_eq!(found, vec![("short".to_owned(), 3), ("method".to_owned(), 6)]);
}

/// (path relative to `src`, source) of every production file below `dir`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        if relative == "testground" {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs")
            && path.file_stem().is_some_and(|s| s != "tests")
        {
            out.push((relative, std::fs::read_to_string(&path).unwrap()));
        }
    }
}

/// (name, lines) of every function in `source`, outside `#[cfg(test)]` items.
fn functions(source: &str, path: &str) -> Vec<(String, usize)> {
    let tokens: TokenStream = source.parse().unwrap_or_else(|e| panic!("{path} does not tokenize: {e}"));
    let mut found = Vec::new();
    walk(&tokens.into_iter().collect::<Vec<_>>(), &mut found);
    found
}

fn walk(tokens: &[TokenTree], found: &mut Vec<(String, usize)>) {
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Punct(p) if p.as_char() == '#' => {
                if let Some(TokenTree::Group(attr)) = tokens.get(i + 1) {
                    if attr.stream().to_string().replace(' ', "") == "cfg(test)" {
                        i = item_end(tokens, i + 2);
                        continue;
                    }
                }
            }
            TokenTree::Ident(id) if id == "fn" => {
                if let Some(TokenTree::Ident(name)) = tokens.get(i + 1) {
                    // The body is the first block after the name; a `;` first: a declaration only.
                    let end =
                        (i + 2..tokens.len()).find(|&j| is_block(&tokens[j]) || is_semicolon(&tokens[j]));
                    if let Some(TokenTree::Group(body)) = end.map(|j| &tokens[j]) {
                        let lines = body.span().end().line - id.span().start().line + 1;
                        found.push((name.to_string(), lines));
                    }
                }
            }
            TokenTree::Group(g) => walk(&g.stream().into_iter().collect::<Vec<_>>(), found),
            _ => {}
        }
        i += 1;
    }
}

/// The index after the item starting at `tokens[i]`: its (first) block, or its `;`.
fn item_end(tokens: &[TokenTree], i: usize) -> usize {
    (i..tokens.len())
        .find(|&j| is_block(&tokens[j]) || is_semicolon(&tokens[j]))
        .map_or(tokens.len(), |j| j + 1)
}

fn is_block(token: &TokenTree) -> bool {
    matches!(token, TokenTree::Group(g) if g.delimiter() == Delimiter::Brace)
}

fn is_semicolon(token: &TokenTree) -> bool {
    matches!(token, TokenTree::Punct(p) if p.as_char() == ';')
}
