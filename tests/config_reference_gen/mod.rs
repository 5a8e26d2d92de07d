//! Builds the configuration reference (Markdown) from the serde structs
//! under `src/`: starting at `Config`, every field's YAML path, type,
//! default and `///` doc, one table per section.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

use quote::ToTokens;
use syn::{Attribute, Expr, Fields, GenericArgument, Item, Lit, PathArguments, Type};

/// What [`generate`] produced.
pub struct Generated {
    pub markdown: String,
    /// `path` of every field without a doc comment.
    pub undocumented: Vec<String>,
}

/// Why the reference could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse { path: PathBuf, source: syn::Error },
    #[error("no `struct Config` with `Deserialize` under src/config*")]
    NoRoot,
}

/// Every struct, enum and function under `src/`, by name (several files
/// may define the same name: the one in the referring file wins).
#[derive(Default)]
struct Index {
    structs: BTreeMap<String, Vec<(PathBuf, syn::ItemStruct)>>,
    enums: BTreeMap<String, Vec<(PathBuf, syn::ItemEnum)>>,
    fns: BTreeMap<String, Vec<(PathBuf, syn::ItemFn)>>,
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), GenError> {
    let read = std::fs::read_dir(dir).map_err(|source| GenError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut entries: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.to_token_stream().to_string().contains("test"))
}

impl Index {
    fn add(&mut self, file: &Path, items: Vec<Item>) {
        for item in items {
            match item {
                Item::Struct(s) => self
                    .structs
                    .entry(s.ident.to_string())
                    .or_default()
                    .push((file.to_path_buf(), s)),
                Item::Enum(e) => self
                    .enums
                    .entry(e.ident.to_string())
                    .or_default()
                    .push((file.to_path_buf(), e)),
                Item::Fn(f) => self
                    .fns
                    .entry(f.sig.ident.to_string())
                    .or_default()
                    .push((file.to_path_buf(), f)),
                Item::Mod(m) if !is_cfg_test(&m.attrs) => {
                    if let Some((_, items)) = m.content {
                        self.add(file, items);
                    }
                }
                _ => {}
            }
        }
    }

    fn pick<'a, T>(all: Option<&'a Vec<(PathBuf, T)>>, near: &Path) -> Option<&'a (PathBuf, T)> {
        let all = all?;
        all.iter()
            .find(|(p, _)| p == near)
            .or_else(|| all.iter().find(|(p, _)| p.parent() == near.parent()))
            .or_else(|| all.first())
    }

    fn deserializable_struct(
        &self,
        name: &str,
        near: &Path,
    ) -> Option<&(PathBuf, syn::ItemStruct)> {
        let all = self.structs.get(name)?;
        let ok: Vec<(PathBuf, syn::ItemStruct)> = all
            .iter()
            .filter(|(_, s)| derives_deserialize(&s.attrs))
            .cloned()
            .collect();
        if ok.is_empty() {
            return None;
        }
        let p = Self::pick(Some(&ok), near)?.0.clone();
        all.iter()
            .find(|(q, s)| *q == p && derives_deserialize(&s.attrs))
    }

    fn deserializable_enum(&self, name: &str, near: &Path) -> Option<&(PathBuf, syn::ItemEnum)> {
        let all = self.enums.get(name)?;
        all.iter()
            .filter(|(_, e)| derives_deserialize(&e.attrs))
            .find(|(p, _)| p == near)
            .or_else(|| all.iter().find(|(_, e)| derives_deserialize(&e.attrs)))
    }
}

fn derives_deserialize(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("derive") && a.to_token_stream().to_string().contains("Deserialize")
    })
}

/// The `///` text of `attrs`, lines joined (a blank line starts a new
/// paragraph, shown as a space in a table cell).
fn doc(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for a in attrs {
        if !a.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &a.meta {
            if let Expr::Lit(l) = &nv.value {
                if let Lit::Str(s) = &l.lit {
                    lines.push(s.value().trim().to_string());
                }
            }
        }
    }
    lines
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The `#[serde(...)]` settings the reference needs.
#[derive(Default, Debug)]
struct Serde {
    /// `Some(None)`: `default`; `Some(Some(f))`: `default = "f"`.
    default: Option<Option<String>>,
    deserialize_with: Option<String>,
    rename: Option<String>,
    rename_all: Option<String>,
    flatten: bool,
    skip: bool,
    transparent: bool,
}

fn serde_of(attrs: &[Attribute]) -> Serde {
    let mut s = Serde::default();
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = a.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let value = if meta.input.peek(syn::Token![=]) {
                let v: Expr = meta.value()?.parse()?;
                match v {
                    Expr::Lit(syn::ExprLit {
                        lit: Lit::Str(l), ..
                    }) => Some(l.value()),
                    other => Some(other.to_token_stream().to_string()),
                }
            } else if meta.input.peek(syn::token::Paren) {
                let _ = meta.parse_nested_meta(|inner| {
                    if inner.input.peek(syn::Token![=]) {
                        let _: Expr = inner.value()?.parse()?;
                    }
                    Ok(())
                });
                None
            } else {
                None
            };
            match key.as_str() {
                "default" => s.default = Some(value),
                "deserialize_with" | "with" => s.deserialize_with = value,
                "rename" => s.rename = value,
                "rename_all" => s.rename_all = value,
                "flatten" => s.flatten = true,
                "skip" | "skip_deserializing" => s.skip = true,
                "transparent" => s.transparent = true,
                _ => {}
            }
            Ok(())
        });
    }
    s
}

/// `name` (a Rust identifier) as serde's `rename_all = rule` writes it.
fn renamed(name: &str, rule: Option<&str>) -> String {
    let words: Vec<String> = {
        let mut w = Vec::new();
        let mut cur = String::new();
        for c in name.chars() {
            if c == '_' {
                if !cur.is_empty() {
                    w.push(std::mem::take(&mut cur));
                }
            } else if c.is_uppercase() && !cur.is_empty() {
                w.push(std::mem::take(&mut cur));
                cur.push(c);
            } else {
                cur.push(c);
            }
        }
        if !cur.is_empty() {
            w.push(cur);
        }
        w.into_iter().map(|x| x.to_lowercase()).collect()
    };
    let cap = |x: &String| {
        let mut c = x.chars();
        c.next()
            .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
            .unwrap_or_default()
    };
    match rule {
        Some("lowercase") => name.to_lowercase(),
        Some("UPPERCASE") => name.to_uppercase(),
        Some("snake_case") => words.join("_"),
        Some("SCREAMING_SNAKE_CASE") => words.join("_").to_uppercase(),
        Some("kebab-case") => words.join("-"),
        Some("SCREAMING-KEBAB-CASE") => words.join("-").to_uppercase(),
        Some("camelCase") => {
            let mut out = words.first().cloned().unwrap_or_default();
            for w in words.iter().skip(1) {
                out.push_str(&cap(w));
            }
            out
        }
        Some("PascalCase") => words.iter().map(cap).collect(),
        _ => name.to_string(),
    }
}

/// The last segment of a type path and its type arguments.
fn path_parts(ty: &Type) -> Option<(String, Vec<&Type>)> {
    let Type::Path(tp) = ty else { return None };
    let seg = tp.path.segments.last()?;
    let args = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((seg.ident.to_string(), args))
}

/// A section to write: a struct and the YAML path of its fields.
struct Section {
    prefix: String,
    file: PathBuf,
    item: syn::ItemStruct,
}

/// How the fields of a type appear below `path`.
enum Nested {
    None,
    /// A struct whose fields get their own section at this prefix.
    Struct(String, PathBuf, Box<syn::ItemStruct>),
}

struct Walker<'a> {
    index: &'a Index,
    queue: VecDeque<Section>,
    seen: HashSet<String>,
    undocumented: Vec<String>,
}

impl Walker<'_> {
    /// The type as a reader of the YAML sees it, what nests below it, and
    /// extra text for the description (an enum's values).
    fn render(
        &self,
        ty: &Type,
        near: &Path,
        path: &str,
        with: Option<&str>,
    ) -> (String, Nested, String) {
        if with.is_some_and(|w| w.contains("duration")) {
            return ("duration".into(), Nested::None, String::new());
        }
        let Some((name, args)) = path_parts(ty) else {
            return (
                ty.to_token_stream().to_string(),
                Nested::None,
                String::new(),
            );
        };
        let scalar = match name.as_str() {
            "String" | "str" => Some("string"),
            "PathBuf" | "Path" => Some("path"),
            "bool" => Some("boolean"),
            "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" | "isize" => {
                Some("integer")
            }
            "f32" | "f64" => Some("number"),
            "Duration" => Some("duration"),
            "SocketAddr" => Some("address"),
            _ => None,
        };
        if let Some(s) = scalar {
            return (s.into(), Nested::None, String::new());
        }
        match (name.as_str(), args.as_slice()) {
            ("Option" | "Box", [inner]) => return self.render(inner, near, path, with),
            ("Vec", [inner]) => {
                let (t, nested, extra) = self.render(inner, near, &format!("{path}[]"), with);
                return (format!("list of {t}"), nested, extra);
            }
            ("BTreeMap" | "HashMap", [k, v]) => {
                let (kt, _, _) = self.render(k, near, path, None);
                let (vt, nested, extra) = self.render(v, near, &format!("{path}.<{kt}>"), with);
                return (format!("map of {kt} to {vt}"), nested, extra);
            }
            _ => {}
        }
        if let Some((file, s)) = self.index.deserializable_struct(&name, near) {
            let sd = serde_of(&s.attrs);
            match &s.fields {
                Fields::Named(_) if !sd.transparent => {
                    let anchor = anchor(path);
                    return (
                        format!("object ([below](#{anchor}))"),
                        Nested::Struct(path.to_string(), file.clone(), Box::new(s.clone())),
                        String::new(),
                    );
                }
                Fields::Unnamed(u) if u.unnamed.len() == 1 => {
                    let (t, n, e) = self.render(&u.unnamed[0].ty, file, path, with);
                    let what = doc(&s.attrs);
                    let extra = if what.is_empty() {
                        e
                    } else {
                        format!("{e}{what}")
                    };
                    return (t, n, extra);
                }
                _ => {}
            }
        }
        if let Some((_, e)) = self.index.deserializable_enum(&name, near) {
            let rule = serde_of(&e.attrs).rename_all;
            let mut names = Vec::new();
            let mut docs = Vec::new();
            for v in &e.variants {
                let vs = serde_of(&v.attrs);
                if vs.skip {
                    continue;
                }
                let n = vs
                    .rename
                    .unwrap_or_else(|| renamed(&v.ident.to_string(), rule.as_deref()));
                let d = doc(&v.attrs);
                let d = d.trim_end_matches('.');
                docs.push(if d.is_empty() {
                    format!("`{n}`")
                } else {
                    format!("`{n}`: {d}")
                });
                names.push(format!("`{n}`"));
            }
            return (
                format!("one of {}", names.join(", ")),
                Nested::None,
                format!("Values: {}.", docs.join("; ")),
            );
        }
        (
            ty.to_token_stream().to_string().replace(' ', ""),
            Nested::None,
            String::new(),
        )
    }

    /// The default of a field, as YAML would write it.
    fn default_of(&self, field: &syn::Field, sd: &Serde, near: &Path, ty_text: &str) -> String {
        let is_option = path_parts(&field.ty).is_some_and(|(n, _)| n == "Option");
        match &sd.default {
            Some(Some(f)) => {
                let name = f.rsplit("::").next().unwrap_or(f).trim();
                match Index::pick(self.index.fns.get(name), near) {
                    Some((_, func)) => match func.block.stmts.last() {
                        Some(syn::Stmt::Expr(e, None)) => format!("`{}`", value_of(e)),
                        _ => format!("`{name}()`"),
                    },
                    None => format!("`{name}()`"),
                }
            }
            Some(None) => {
                if is_option {
                    "none".into()
                } else if ty_text.starts_with("list") {
                    "`[]`".into()
                } else if ty_text.starts_with("map") {
                    "`{}`".into()
                } else if ty_text == "boolean" {
                    "`false`".into()
                } else if ty_text == "integer" {
                    "`0`".into()
                } else if ty_text == "string" {
                    "`\"\"`".into()
                } else if ty_text.starts_with("object") {
                    "each field's default".into()
                } else if ty_text.starts_with("one of") {
                    self.enum_default(&field.ty, near)
                } else {
                    "its type's default".into()
                }
            }
            None if is_option && sd.deserialize_with.is_none() => "none".into(),
            None => "required".into(),
        }
    }

    /// The `#[default]` variant of the enum `ty`, as YAML writes it.
    fn enum_default(&self, ty: &Type, near: &Path) -> String {
        let Some((name, _)) = path_parts(ty) else {
            return "its type's default".into();
        };
        let Some((_, e)) = self.index.deserializable_enum(&name, near) else {
            return "its type's default".into();
        };
        let rule = serde_of(&e.attrs).rename_all;
        e.variants
            .iter()
            .find(|v| v.attrs.iter().any(|a| a.path().is_ident("default")))
            .map(|v| {
                let n = serde_of(&v.attrs)
                    .rename
                    .unwrap_or_else(|| renamed(&v.ident.to_string(), rule.as_deref()));
                format!("`{n}`")
            })
            .unwrap_or_else(|| "its type's default".into())
    }

    /// The rows of one section (flattened structs inline).
    fn rows(&mut self, sec: &Section, rows: &mut Vec<String>) {
        let Fields::Named(named) = &sec.item.fields else {
            return;
        };
        let rule = serde_of(&sec.item.attrs).rename_all;
        for f in &named.named {
            let sd = serde_of(&f.attrs);
            if sd.skip {
                continue;
            }
            let ident = f.ident.as_ref().map(|i| i.to_string()).unwrap_or_default();
            let ident = ident.trim_start_matches("r#").to_string();
            let key = sd
                .rename
                .clone()
                .unwrap_or_else(|| renamed(&ident, rule.as_deref()));
            let path = if sec.prefix.is_empty() {
                key
            } else {
                format!("{}.{key}", sec.prefix)
            };
            if sd.flatten {
                if let Some((name, _)) = path_parts(&f.ty) {
                    if let Some((file, s)) = self.index.deserializable_struct(&name, &sec.file) {
                        let inner = Section {
                            prefix: sec.prefix.clone(),
                            file: file.clone(),
                            item: s.clone(),
                        };
                        self.rows(&inner, rows);
                        continue;
                    }
                }
            }
            let (ty, nested, extra) =
                self.render(&f.ty, &sec.file, &path, sd.deserialize_with.as_deref());
            let default = self.default_of(f, &sd, &sec.file, &ty);
            let mut d = doc(&f.attrs);
            if d.is_empty() {
                self.undocumented.push(path.clone());
            }
            if !extra.is_empty() {
                if !d.is_empty() {
                    d.push(' ');
                }
                d.push_str(&extra);
            }
            rows.push(format!("| `{path}` | {ty} | {default} | {d} |"));
            if let Nested::Struct(prefix, file, item) = nested {
                if self.seen.insert(prefix.clone()) {
                    self.queue.push_back(Section {
                        prefix,
                        file,
                        item: *item,
                    });
                }
            }
        }
    }
}

/// The Markdown anchor of a section titled `` `path` ``.
fn anchor(path: &str) -> String {
    path.chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '_' | '-' => Some(c),
            'A'..='Z' => Some(c.to_ascii_lowercase()),
            ' ' => Some('-'),
            _ => None,
        })
        .collect()
}

/// A default function's value as YAML writes it: literals, integer
/// arithmetic, `Duration::from_*`, strings; else the expression's code.
fn value_of(e: &Expr) -> String {
    if let Some(n) = int_of(e) {
        return n.to_string();
    }
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Str(s) => format!("\"{}\"", s.value()),
            Lit::Bool(b) => b.value.to_string(),
            Lit::Float(f) => f.base10_digits().to_string(),
            other => other.to_token_stream().to_string(),
        },
        Expr::MethodCall(m)
            if m.args.is_empty()
                && ["to_string", "into", "to_owned"].contains(&m.method.to_string().as_str()) =>
        {
            value_of(&m.receiver)
        }
        Expr::Call(c) => {
            let f = c.func.to_token_stream().to_string().replace(' ', "");
            let arg = c.args.first().and_then(int_of);
            match (f.rsplit("::").next(), arg) {
                (Some("from_secs"), Some(n)) => duration_text(n * 1000),
                (Some("from_millis"), Some(n)) => duration_text(n),
                (Some("from"), _) if f.starts_with("String") => {
                    c.args.first().map(value_of).unwrap_or_default()
                }
                (Some("new"), _) if f.starts_with("Vec") => "[]".into(),
                _ => e.to_token_stream().to_string(),
            }
        }
        Expr::Paren(p) => value_of(&p.expr),
        Expr::Group(g) => value_of(&g.expr),
        _ => e.to_token_stream().to_string(),
    }
}

fn int_of(e: &Expr) -> Option<i128> {
    match e {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse().ok(),
            _ => None,
        },
        Expr::Paren(p) => int_of(&p.expr),
        Expr::Group(g) => int_of(&g.expr),
        Expr::Binary(b) => {
            let (l, r) = (int_of(&b.left)?, int_of(&b.right)?);
            match b.op {
                syn::BinOp::Shl(_) => u32::try_from(r).ok().and_then(|r| l.checked_shl(r)),
                syn::BinOp::Mul(_) => l.checked_mul(r),
                syn::BinOp::Add(_) => l.checked_add(r),
                syn::BinOp::Sub(_) => l.checked_sub(r),
                syn::BinOp::Div(_) => l.checked_div(r),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Milliseconds as a Prometheus duration (`1h`, `30s`, `250ms`).
fn duration_text(ms: i128) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// The reference of the config whose root is `struct Config` under `src`.
pub fn generate(src: &Path) -> Result<Generated, GenError> {
    let mut files = Vec::new();
    rs_files(src, &mut files)?;
    let mut index = Index::default();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|source| GenError::Read {
            path: f.clone(),
            source,
        })?;
        let parsed = syn::parse_file(&text).map_err(|source| GenError::Parse {
            path: f.clone(),
            source,
        })?;
        let rel = f.strip_prefix(src.parent().unwrap_or(src)).unwrap_or(f);
        index.add(rel, parsed.items);
    }
    let (file, root) = index
        .structs
        .get("Config")
        .and_then(|all| {
            all.iter().find(|(p, s)| {
                p.to_string_lossy().contains("config") && derives_deserialize(&s.attrs)
            })
        })
        .cloned()
        .ok_or(GenError::NoRoot)?;
    let mut w = Walker {
        index: &index,
        queue: VecDeque::new(),
        seen: HashSet::new(),
        undocumented: Vec::new(),
    };
    w.queue.push_back(Section {
        prefix: String::new(),
        file,
        item: root,
    });
    let mut md = String::from(HEADER);
    while let Some(sec) = w.queue.pop_front() {
        let title = if sec.prefix.is_empty() {
            "Top level".to_string()
        } else {
            format!("`{}`", sec.prefix)
        };
        md.push_str(&format!("\n## {title}\n\n"));
        let intro = doc(&sec.item.attrs).replace("\\|", "|");
        if !intro.is_empty() {
            md.push_str(&intro);
            md.push_str("\n\n");
        }
        md.push_str("| path | type | default | description |\n|---|---|---|---|\n");
        let mut rows = Vec::new();
        w.rows(&sec, &mut rows);
        for r in rows {
            md.push_str(&r);
            md.push('\n');
        }
    }
    Ok(Generated {
        markdown: md,
        undocumented: w.undocumented,
    })
}

const HEADER: &str = "# Configuration reference

Generated from the `///` docs of the configuration's serde structs (from
`struct Config` down) by `tests/config_reference.rs`; do not edit by hand.
After changing a config field (or merging a branch that does), regenerate
with:

```sh
scripts/config-reference
```

`cargo test --test config_reference` fails while this file differs from
what the code says. Durations are Prometheus durations (`30s`, `1m30s`,
`2h`); a path `a[].b` is field `b` of each item of the list `a`, `a.<k>`
an entry of the map `a`. `promfed check-config FILE` checks a file against
this schema and reports every problem at once.
";
