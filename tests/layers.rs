//! The layer check: every `crate::…` path in `src/` names the module its
//! file belongs to or a module below it, in the order docs/architecture.md
//! lists under "Layer order" (top to bottom). A lower layer importing a
//! higher one, or a module missing from the list, fails the test.
//!
//! `PROMFED_LAYERS_ROOT=DIR` checks another tree instead (an old commit).
//!
//! Test code (`#[cfg(test)]` modules, inline or in their own file) is not
//! checked: a unit test may build the layers above the one it tests.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, top first, from the "Layer order" line of
/// docs/architecture.md (`main > server > … > model`).
fn layer_order(root: &Path) -> Vec<String> {
    let doc = fs::read_to_string(root.join("docs/architecture.md")).expect("docs/architecture.md");
    let line = doc
        .lines()
        .find_map(|l| l.strip_prefix("Layer order (top to bottom):"))
        .expect("docs/architecture.md has a line `Layer order (top to bottom): a > b > …`");
    line.trim()
        .trim_matches('`')
        .split('>')
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/cache/store/redis.rs`
/// → `cache`, `src/main.rs` → `main`); `None` for `src/lib.rs`.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}

/// Files that are test modules (`#[cfg(test)] mod name;` in their parent).
fn test_files(files: &[PathBuf]) -> HashSet<PathBuf> {
    let mut tests = HashSet::new();
    for f in files {
        let text = fs::read_to_string(f).expect("read source");
        let lines: Vec<&str> = text.lines().collect();
        for w in lines.windows(2) {
            if w[0].trim() != "#[cfg(test)]" {
                continue;
            }
            let Some(name) = w[1]
                .trim()
                .strip_prefix("mod ")
                .and_then(|r| r.strip_suffix(';'))
            else {
                continue;
            };
            // `src/a.rs` declares `src/a/name.rs`; `src/a/mod.rs`-less layout.
            let dir = f.with_extension("");
            tests.insert(dir.join(format!("{name}.rs")));
        }
    }
    tests
}

/// The lines of `text` outside its `#[cfg(test)]` items, numbered from 1,
/// comment lines left out.
fn non_test_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let t = line.trim_start();
        if t == "#[cfg(test)]" {
            // Skip the test item: `mod x;`, or a block up to its closing
            // brace at the same indentation.
            if let Some((_, next)) = lines.next() {
                if next.trim_end().ends_with('{') {
                    let indent = &next[..next.len() - next.trim_start().len()];
                    let close = format!("{indent}}}");
                    for (_, l) in lines.by_ref() {
                        if l.trim_end() == close {
                            break;
                        }
                    }
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((n + 1, line));
    }
    out
}

/// The modules named by `crate::` paths in the non-test code of `text`.
fn crate_refs(text: &str) -> Vec<(usize, String)> {
    let mut refs = Vec::new();
    for (n, line) in non_test_lines(text) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            // `$crate::` and identifiers ending in `crate` are not paths to
            // this crate's root.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name = item.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() {
                        refs.push((n, name.to_string()));
                    }
                }
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                refs.push((n, name));
            }
        }
    }
    refs
}

#[test]
fn lower_layers_do_not_import_higher_ones() {
    // Another tree may be checked (e.g. an old commit, to see the check
    // fail): PROMFED_LAYERS_ROOT=DIR.
    let root = std::env::var_os("PROMFED_LAYERS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = root.as_path();
    let order = layer_order(root);
    assert!(order.len() > 5, "layer order too short: {order:?}");
    let rank = |m: &str| order.iter().position(|o| o == m);
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let tests = test_files(&files);
    let mut problems = Vec::new();
    for f in &files {
        let Some(module) = module_of(&src, f) else {
            continue;
        };
        let shown = f.strip_prefix(root).unwrap_or(f).display().to_string();
        let Some(own) = rank(&module) else {
            problems.push(format!(
                "{shown}: module `{module}` is not in the layer order"
            ));
            continue;
        };
        if tests.contains(f) {
            continue;
        }
        let text = fs::read_to_string(f).expect("read source");
        for (line, target) in crate_refs(&text) {
            if target == module {
                continue;
            }
            match rank(&target) {
                Some(r) if r > own => {}
                Some(_) => problems.push(format!(
                    "{shown}:{line}: `{module}` imports `{target}`, a layer above or beside it"
                )),
                // Items of the crate root (none today) would land here.
                None => problems.push(format!(
                    "{shown}:{line}: `crate::{target}` is not a module in the layer order"
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "layer order {}:\n{}",
        order.join(" > "),
        problems.join("\n")
    );
}

/// The error types of the `Result<T, E>`s in `code` that are a bare
/// `String` or a boxed `dyn Error`: (byte offset of the `Result`, `E`).
fn string_errors(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("Result<") {
        let start = from + i;
        from = start + "Result<".len();
        let before = code[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `SelectResult<…>` and the like
        }
        // The arguments up to the matching `>`, split at top-level commas.
        let (mut depth, mut args, mut cur) = (0usize, Vec::new(), String::new());
        for c in code[from..].chars() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' if depth == 0 => break,
                '>' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    args.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        if !cur.trim().is_empty() {
            args.push(cur); // not the empty one after a trailing comma
        }
        if let [_, e] = args.as_slice() {
            let e: String = e.split_whitespace().collect::<Vec<_>>().join(" ");
            let boxed = e.starts_with("Box<dyn") && e.contains("Error");
            if e == "String" || e == "std::string::String" || boxed {
                found.push((start, e));
            }
        }
    }
    found
}

#[test]
fn string_error_check_sees_multi_line_results() {
    let code = "fn a() -> Result<\n    Vec<(u8, u16)>,\n    String,\n> {}\n\
                fn b() -> Result<(), Box<dyn std::error::Error + Send>> {}\n\
                fn c() -> Result<Vec<String>, E> {}\n\
                fn d() -> io::Result<u8> {}\n\
                fn e() -> MyResult<u8, String> {}";
    let found: Vec<String> = string_errors(code).into_iter().map(|(_, e)| e).collect();
    assert_eq!(found, ["String", "Box<dyn std::error::Error + Send>"]);
}

/// Library code (everything in `src/` but the binary's `main.rs` and test
/// code) returns typed errors: no `Result<_, String>` and no
/// `Result<_, Box<dyn Error>>`.
#[test]
fn library_errors_are_typed() {
    let root = std::env::var_os("PROMFED_LAYERS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let tests = test_files(&files);
    let mut problems = Vec::new();
    for f in &files {
        if tests.contains(f) || f.ends_with("main.rs") && f.parent() == Some(src.as_path()) {
            continue;
        }
        let text = fs::read_to_string(f).expect("read source");
        let lines = non_test_lines(&text);
        let code: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        for (at, e) in string_errors(&code) {
            let line = lines[code[..at].matches('\n').count()].0;
            let shown = f.strip_prefix(&root).unwrap_or(f).display();
            problems.push(format!("{shown}:{line}: Result<_, {e}>"));
        }
    }
    assert!(
        problems.is_empty(),
        "library code returns untyped errors (give the layer a thiserror type):\n{}",
        problems.join("\n")
    );
}
