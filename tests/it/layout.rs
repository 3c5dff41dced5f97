//! The layout rules of the source tree (issue #23), checked on every run so
//! they hold after the next feature too: no file in `src/` over 800 lines, no
//! production function over 100 lines, and no two modules of one folder — nor
//! two top-level modules — that import each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FUNCTION_LINES: usize = 100;
/// Functions allowed over the limit while the work that cuts them is under
/// way (none now). The test fails when one of them is cut and still listed
/// here, so the list only shrinks.
const LONG_FUNCTIONS_PENDING: &[(&str, &str)] = &[];

fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("read src/") {
            let path = entry.expect("read a src/ entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Files holding only a module's unit tests are named `tests.rs` or
/// `*_tests.rs`; their functions are not production code.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs")
}

#[test]
fn no_source_file_is_over_800_lines() {
    let long: Vec<String> = source_files()
        .iter()
        .filter_map(|path| {
            let lines = fs::read_to_string(path)
                .expect("read a source file")
                .lines()
                .count();
            (lines > MAX_FILE_LINES).then(|| format!("{} ({lines} lines)", relative(path)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:#?}"
    );
}

/// Functions with their length, for the production part of one file: up to
/// its `#[cfg(test)]` module. rustfmt puts a function's closing brace alone
/// on a line at the indentation of its `fn` line, which is what this relies on.
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let production = lines
        .iter()
        .position(|line| line.trim() == "#[cfg(test)]")
        .unwrap_or(lines.len());
    let mut found = Vec::new();
    for (start, line) in lines[..production].iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(name) = function_name(trimmed) else {
            continue;
        };
        if trimmed.ends_with(';') {
            continue; // a declaration in a trait
        }
        let indent = &line[..line.len() - trimmed.len()];
        let closing = format!("{indent}}}");
        if let Some(end) = lines[start..].iter().position(|l| *l == closing) {
            found.push((name, end + 1));
        }
    }
    found
}

fn function_name(line: &str) -> Option<String> {
    let mut rest = line;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(rest[..end].to_string())
}

#[test]
fn no_production_function_is_over_100_lines() {
    let mut long = Vec::new();
    let mut pending_seen = BTreeSet::new();
    for path in source_files().iter().filter(|p| !is_test_file(p)) {
        let text = fs::read_to_string(path).expect("read a source file");
        let file = relative(path);
        for (name, lines) in function_lengths(&text) {
            if lines <= MAX_FUNCTION_LINES {
                continue;
            }
            if LONG_FUNCTIONS_PENDING.contains(&(file.as_str(), name.as_str())) {
                pending_seen.insert((file.clone(), name));
            } else {
                long.push(format!("{file}: fn {name} ({lines} lines)"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:#?}"
    );
    let cut: Vec<_> = LONG_FUNCTIONS_PENDING
        .iter()
        .filter(|(file, name)| !pending_seen.contains(&(file.to_string(), name.to_string())))
        .collect();
    assert!(
        cut.is_empty(),
        "no longer over the limit, take them off the list: {cut:?}"
    );
}

/// The module a source file is: `src/a/b.rs` and `src/a/b/mod.rs` are both
/// `a::b`.
fn module_path(path: &Path) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut parts: Vec<String> = path
        .strip_prefix(&src)
        .expect("a path under src/")
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// Which sibling modules a file names, through `super::x` (from a child
/// file) or `crate::parent::x`. Test files and test modules are left out:
/// a test may reach anywhere.
fn imported_siblings(path: &Path, module: &[String]) -> BTreeSet<String> {
    let text = fs::read_to_string(path).expect("read a source file");
    let production = text.split("#[cfg(test)]").next().unwrap_or("");
    let Some((_, parent)) = module.split_last() else {
        return BTreeSet::new();
    };
    let mut prefixes = vec![format!("crate::{}", parent.join("::"))];
    if parent.is_empty() {
        prefixes = vec!["crate".to_string()];
    }
    let own_file_is_mod = path.file_name().is_some_and(|n| n == "mod.rs");
    if !own_file_is_mod {
        prefixes.push("super".to_string());
    }
    let mut siblings = BTreeSet::new();
    for prefix in &prefixes {
        let needle = format!("{prefix}::");
        for (at, _) in production.match_indices(&needle) {
            let before = production[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &production[at + needle.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                siblings.insert(name);
            }
            // `use super::{a, b}` names several.
            if rest.starts_with('{') {
                let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
                for item in group.split(',') {
                    let item: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !item.is_empty() {
                        siblings.insert(item);
                    }
                }
            }
        }
    }
    siblings
}

#[test]
fn no_two_modules_of_one_folder_import_each_other() {
    // folder -> module -> siblings it imports
    let mut graph: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let mut names: BTreeMap<Vec<String>, BTreeSet<String>> = BTreeMap::new();
    for path in source_files().iter().filter(|p| !is_test_file(p)) {
        let module = module_path(path);
        let Some((name, parent)) = module.split_last() else {
            continue;
        };
        names
            .entry(parent.to_vec())
            .or_default()
            .insert(name.clone());
        graph
            .entry(parent.to_vec())
            .or_default()
            .insert(name.clone(), imported_siblings(path, &module));
    }
    let mut circles = Vec::new();
    for (folder, modules) in &graph {
        let known = &names[folder];
        for (a, imports) in modules {
            for b in imports.iter().filter(|b| known.contains(*b) && *b > a) {
                if modules.get(b).is_some_and(|back| back.contains(a)) {
                    circles.push(format!("{}: {a} ⇄ {b}", folder.join("/")));
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "modules that import each other: {circles:#?}"
    );
}

/// The top-level modules of `src/`, each with the other top-level modules
/// its production code names through `crate::`: a file `name.rs` or a
/// folder `name/`, without `lib.rs`, `main.rs` and files of unit tests.
fn top_level_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("read src/") {
        let path = entry.expect("read a src/ entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let is_module = path.is_dir()
            || (path.extension().is_some_and(|e| e == "rs")
                && !is_test_file(&path)
                && name != "lib"
                && name != "main");
        if is_module {
            modules.insert(name, BTreeSet::new());
        }
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    for path in source_files().iter().filter(|p| !is_test_file(p)) {
        let Some(top) = module_path(path).first().cloned() else {
            continue;
        };
        let Some(imports) = modules.get_mut(&top) else {
            continue;
        };
        let text = fs::read_to_string(path).expect("read a source file");
        let production = text.split("#[cfg(test)]").next().unwrap_or("");
        for (at, _) in production.match_indices("crate::") {
            let before = production[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &production[at + "crate::".len()..];
            let group = match rest.strip_prefix('{') {
                Some(group) => &group[..group.find('}').unwrap_or(group.len())],
                None => rest,
            };
            for item in group.split(',') {
                let item: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if names.contains(&item) && item != top {
                    imports.insert(item);
                }
                if rest.starts_with('{') {
                    continue;
                }
                break;
            }
        }
    }
    modules
}

/// The rows of the layout whiteboard: each module (its first column, a
/// folder written `name/`) with the modules of its last column.
fn whiteboard() -> BTreeMap<String, BTreeSet<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/layout.md");
    let text = fs::read_to_string(&path).expect("read docs/layout.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
        let (Some(first), Some(last)) = (cells.first(), cells.last()) else {
            continue;
        };
        let module = first.trim().trim_matches('`').trim_end_matches('/');
        let imports = last
            .split(',')
            .map(|m| m.trim().trim_matches('`').to_string())
            .filter(|m| !m.is_empty() && m != "—")
            .collect();
        rows.insert(module.to_string(), imports);
    }
    rows
}

#[test]
fn the_layout_whiteboard_lists_every_module_and_what_it_imports() {
    let code = top_level_imports();
    let board = whiteboard();
    let missing: Vec<&String> = code.keys().filter(|m| !board.contains_key(*m)).collect();
    assert!(
        missing.is_empty(),
        "modules of src/ without a row in docs/layout.md: {missing:?}"
    );
    let stale: Vec<&String> = board.keys().filter(|m| !code.contains_key(*m)).collect();
    assert!(
        stale.is_empty(),
        "rows of docs/layout.md that are no module of src/: {stale:?}"
    );
    let mut unlisted = Vec::new();
    for (module, imports) in &code {
        for import in imports.difference(&board[module]) {
            unlisted.push(format!("{module} imports {import}"));
        }
    }
    assert!(
        unlisted.is_empty(),
        "imports docs/layout.md does not list: {unlisted:#?}"
    );
}
