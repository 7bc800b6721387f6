//! Markdown as mdBook reads it, for the tests of the book and the READMEs: the headings of a page
//! with the anchors mdBook gives them, and the links a page makes.
#![allow(dead_code)] // each test file uses a part of it

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository root, read at run time (a shared target directory can hand one worktree a
/// test binary compiled in another).
pub fn repo() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    })
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The extensions mdBook turns on (mdbook-markdown's `new_cmark_parser`); smart punctuation
/// changes the text, and so the anchors, of headings with quotes or dashes.
fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_HEADING_ATTRIBUTES
        | Options::ENABLE_SMART_PUNCTUATION
}

/// mdBook's anchor for a heading's text (mdbook-html `id_from_content`): lower case, letters,
/// digits, `_` and `-` kept, white space made `-`, everything else dropped.
pub fn slug(text: &str) -> String {
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c)
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Heading {
    pub level: HeadingLevel,
    pub text: String,
    /// The anchor mdBook gives it: its `{#id}` if it has one, else the slug of its text, made
    /// unique within the page with `-1`, `-2`, … as mdBook does.
    pub anchor: String,
}

#[derive(Debug, Clone)]
pub struct Link {
    pub dest: String,
    /// The line it is on, for messages.
    pub line: usize,
}

pub struct Page {
    pub headings: Vec<Heading>,
    pub links: Vec<Link>,
}

pub fn parse(text: &str) -> Page {
    let mut headings = Vec::new();
    let mut links = Vec::new();
    let mut used = HashSet::new();
    let mut current: Option<(HeadingLevel, Option<String>, String)> = None;
    for (event, range) in Parser::new_ext(text, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, id, .. }) => {
                current = Some((level, id.map(|id| id.to_string()), String::new()));
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, heading)) = current.as_mut() {
                    heading.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, id, text)) = current.take() {
                    let base = id.unwrap_or_else(|| slug(&text));
                    let mut anchor = base.clone();
                    let mut n = 0;
                    while !used.insert(anchor.clone()) {
                        n += 1;
                        anchor = format!("{base}-{n}");
                    }
                    headings.push(Heading { level, text, anchor });
                }
            }
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => {
                let line = text[..range.start].matches('\n').count() + 1;
                links.push(Link { dest: dest_url.to_string(), line });
            }
            _ => {}
        }
    }
    Page { headings, links }
}

/// Whether a link leaves the repository (a web page, a mail address).
pub fn is_external(dest: &str) -> bool {
    dest.contains("://") || dest.starts_with("mailto:")
}

/// Checks every relative link of the Markdown file `file`: the file it names exists (inside
/// `root`, which links must not leave), and an `#anchor` is a heading of that file (of `file`
/// itself for a bare `#anchor`). Returns one line per broken link.
pub fn broken_links(file: &Path, root: &Path) -> Vec<String> {
    let text = read(file);
    let page = parse(&text);
    let mut broken = Vec::new();
    for link in &page.links {
        if is_external(&link.dest) {
            continue;
        }
        let here =
            format!("{}:{}: {}", file.strip_prefix(repo()).unwrap_or(file).display(), link.line, link.dest);
        let (path, anchor) = match link.dest.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (link.dest.as_str(), None),
        };
        let target = if path.is_empty() { file.to_path_buf() } else { file.parent().unwrap().join(path) };
        let Some(target) = normalize(&target) else {
            broken.push(format!("{here}: leaves the file system root"));
            continue;
        };
        if !target.starts_with(root) {
            broken.push(format!(
                "{here}: points outside {}",
                root.strip_prefix(repo()).unwrap_or(root).display()
            ));
            continue;
        }
        if !target.exists() {
            broken.push(format!("{here}: no such file"));
            continue;
        }
        if let Some(anchor) = anchor {
            if target.extension().is_none_or(|e| e != "md") {
                broken.push(format!("{here}: an anchor into a file that is not Markdown"));
                continue;
            }
            let anchors: Vec<String> = parse(&read(&target)).headings.into_iter().map(|h| h.anchor).collect();
            if !anchors.iter().any(|a| a == anchor) {
                broken.push(format!(
                    "{here}: no heading with anchor #{anchor} (headings are {})",
                    anchors.join(", ")
                ));
            }
        }
    }
    broken
}

/// `path` with `.` and `..` resolved lexically (the file need not exist).
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// The part of `text` under the heading whose text is `heading`, up to the next heading of the
/// same or a higher level.
pub fn section(text: &str, heading: &str) -> String {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let (_, rest) =
        text.split_once(&format!("\n{heading}\n")).unwrap_or_else(|| panic!("no heading {heading:?}"));
    let mut out = String::new();
    let mut fence = false;
    for line in rest.lines() {
        if line.starts_with("```") {
            fence = !fence;
        }
        let depth = line.chars().take_while(|c| *c == '#').count();
        if !fence && depth > 0 && depth <= level && line[depth..].starts_with(' ') {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The first cells (between backticks) of the table rows of `text`, each with its second cell;
/// a first cell that is a link (`` [`name`](…) ``) counts as its text.
pub fn first_cells(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| `").or_else(|| line.strip_prefix("| [`")))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(first, rest)| (first.to_owned(), rest.split('|').nth(1).unwrap_or_default().trim().to_owned()))
        .collect()
}
