//! Reads Prometheus's promqltest files (`load`, `clear`, `eval` commands).

use std::sync::Arc;

use promfed::model::histogram::FloatHistogram;
use promfed::model::Labels;

/// One value slot of a series: a float, a native histogram, or a staleness marker.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Float(f64),
    Histogram(Arc<FloatHistogram>),
    Stale,
}

/// A series with its values, as written in `load` bodies and expectations.
#[derive(Debug, Clone)]
pub struct SeriesLine {
    pub labels: Labels,
    /// One entry per slot; `None` for `_`.
    pub vals: Vec<Option<Point>>,
}

/// What an annotation or error line wants.
#[derive(Debug, Clone)]
pub enum MsgMatch {
    Any,
    Exact(String),
    Regex(String),
}

#[derive(Debug, Clone)]
pub enum EvalKind {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Debug, Clone)]
pub enum Expected {
    /// Series (possibly none: an empty result).
    Series(Vec<SeriesLine>),
    Scalar(f64),
    String(String),
    /// An instant query returning a matrix whose value i is at start + i*step.
    RangeVector {
        start: i64,
        step: i64,
        series: Vec<SeriesLine>,
    },
}

#[derive(Debug, Clone)]
pub struct Eval {
    pub line: usize,
    pub expr: String,
    pub kind: EvalKind,
    pub fail: Option<MsgMatch>,
    pub warns: Vec<MsgMatch>,
    pub infos: Vec<MsgMatch>,
    pub no_warn: bool,
    pub no_info: bool,
    pub ordered: bool,
    pub expected: Expected,
}

#[derive(Debug, Clone)]
pub enum Cmd {
    Clear,
    Load {
        nhcb: bool,
        series: Vec<(Labels, Vec<(i64, Point)>)>,
    },
    Eval(Box<Eval>),
}

/// Parses a duration like `1h30m`, `10s53ms` or `0` into ms (negative with a leading `-`).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if s == "0" {
        return Ok(0);
    }
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    if b.is_empty() {
        return Err("empty duration".into());
    }
    while i < b.len() {
        let st = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if st == i {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = s[st..i].parse().map_err(|e| format!("{e}"))?;
        let unit = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let u = match b.get(i) {
                Some(b'y') => 365 * 86_400_000,
                Some(b'w') => 7 * 86_400_000,
                Some(b'd') => 86_400_000,
                Some(b'h') => 3_600_000,
                Some(b'm') => 60_000,
                Some(b's') => 1000,
                _ => return Err(format!("bad duration {s:?}")),
            };
            i += 1;
            u
        };
        total += n * unit;
    }
    Ok(if neg { -total } else { total })
}

/// Parses a float the way the test language writes them.
pub fn parse_number(s: &str) -> Option<f64> {
    let (sign, body) = match s.as_bytes().first() {
        Some(b'-') => (-1.0, &s[1..]),
        Some(b'+') => (1.0, &s[1..]),
        _ => (1.0, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == "inf" {
        return Some(sign * f64::INFINITY);
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    if let Some(h) = lower.strip_prefix("0x") {
        return i64::from_str_radix(h, 16).ok().map(|v| sign * v as f64);
    }
    if body.is_empty()
        || !body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    body.parse::<f64>().ok().map(|v| sign * v)
}

/// Length of the number at the start of `s` (sign included).
fn number_prefix(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let rest = s[i..].to_ascii_lowercase();
    if rest.starts_with("inf") || rest.starts_with("nan") {
        return i + 3;
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    i
}

/// Expands one value item (`1`, `_x3`, `stale`, `1+2x4`, `{{…}}x2`, …).
fn expand_item(item: &str, out: &mut Vec<Option<Point>>) -> Result<(), String> {
    if item == "_" {
        out.push(None);
        return Ok(());
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: usize = n.parse().map_err(|_| format!("bad item {item}"))?;
        out.extend(std::iter::repeat_n(None, n));
        return Ok(());
    }
    if item == "stale" {
        out.push(Some(Point::Stale));
        return Ok(());
    }
    if item.starts_with("{{") {
        // Native histogram, optionally `{{…}}xN` or `{{…}}+{{…}}xN`.
        for h in super::histogram::expand(item)? {
            out.push(Some(Point::Histogram(Arc::new(h))));
        }
        return Ok(());
    }
    // `0x59` is 60 zeros here, not hex: only whole items without an `x` repeat are plain numbers.
    if let Some(v) = parse_number(item).filter(|_| !item.contains(['x', 'X'])) {
        out.push(Some(Point::Float(v)));
        return Ok(());
    }
    let a_len = number_prefix(item);
    let a = parse_number(&item[..a_len]).ok_or_else(|| format!("bad number in {item}"))?;
    let rest = &item[a_len..];
    if rest.is_empty() {
        out.push(Some(Point::Float(a)));
        return Ok(());
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().map_err(|_| format!("bad item {item}"))?;
        out.extend(std::iter::repeat_n(Some(Point::Float(a)), n + 1));
        return Ok(());
    }
    let b_len = number_prefix(rest);
    let b = parse_number(&rest[..b_len]).ok_or_else(|| format!("bad increment in {item}"))?;
    let n: usize = rest[b_len..]
        .strip_prefix('x')
        .ok_or_else(|| format!("bad item {item}"))?
        .parse()
        .map_err(|_| format!("bad item {item}"))?;
    let mut v = a;
    for _ in 0..=n {
        out.push(Some(Point::Float(v)));
        v += b;
    }
    Ok(())
}

/// Splits value items, keeping `{{ … }}` histograms (which contain spaces) whole.
fn split_items(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c == '{' && cs.get(i + 1) == Some(&'{') {
            depth += 1;
            cur.push_str("{{");
            i += 2;
            continue;
        }
        if c == '}' && cs.get(i + 1) == Some(&'}') {
            depth -= 1;
            cur.push_str("}}");
            i += 2;
            continue;
        }
        if c.is_whitespace() && depth == 0 {
            if !cur.is_empty() {
                items.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
        i += 1;
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

/// Reads a Go-quoted string at the start of `s`; returns it and the bytes consumed.
pub fn parse_quoted(s: &str) -> Result<(String, usize), String> {
    let mut it = s.char_indices();
    let (_, q) = it.next().ok_or("empty string")?;
    if q == '`' {
        let end = s[1..].find('`').ok_or("unterminated raw string")?;
        return Ok((s[1..1 + end].to_string(), end + 2));
    }
    if q != '"' && q != '\'' {
        return Err(format!("expected a quoted string at {s:?}"));
    }
    let mut out = String::new();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some((i, c)) = it.next() {
        if c == q {
            if !bytes.is_empty() {
                out.push_str(&String::from_utf8_lossy(&bytes));
            }
            return Ok((out, i + 1));
        }
        if c != '\\' {
            if !bytes.is_empty() {
                out.push_str(&String::from_utf8_lossy(&bytes));
                bytes.clear();
            }
            out.push(c);
            continue;
        }
        let (_, e) = it.next().ok_or("bad escape")?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' => {
                let h: String = (0..2).filter_map(|_| it.next().map(|x| x.1)).collect();
                bytes.push(u8::from_str_radix(&h, 16).map_err(|e| format!("{e}"))?);
            }
            'u' => {
                let h: String = (0..4).filter_map(|_| it.next().map(|x| x.1)).collect();
                let cp = u32::from_str_radix(&h, 16).map_err(|e| format!("{e}"))?;
                out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Err("unterminated string".into())
}

/// Parses `name{l="v", …}` at the start of `s`; returns the labels and the rest.
pub fn parse_series_desc(s: &str) -> Result<(Labels, &str), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if i > 0 {
        pairs.push(("__name__".into(), s[..i].to_string()));
    }
    let mut rest = &s[i..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = r.trim_start();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (name, r) = if rest.starts_with('"') {
                let (n, used) = parse_quoted(rest)?;
                (n, &rest[used..])
            } else {
                let e = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(rest.len());
                (rest[..e].to_string(), &rest[e..])
            };
            let r = r.trim_start();
            let r = r
                .strip_prefix('=')
                .ok_or_else(|| format!("expected = in {s:?}"))?;
            let r = r.trim_start();
            let (value, used) = parse_quoted(r)?;
            pairs.push((name, value));
            rest = r[used..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
            }
        }
    }
    if i == 0 && rest.len() == s.len() {
        return Err(format!("not a series: {s:?}"));
    }
    Ok((Labels::from_pairs(pairs), rest))
}

/// Parses a series line with its values.
pub fn parse_series_line(s: &str) -> Result<SeriesLine, String> {
    let (labels, rest) = parse_series_desc(s)?;
    let mut vals = Vec::new();
    for item in split_items(rest) {
        expand_item(&item, &mut vals)?;
    }
    Ok(SeriesLine { labels, vals })
}

fn parse_msg(rest: &str) -> MsgMatch {
    let rest = rest.trim();
    if let Some(m) = rest.strip_prefix("msg:") {
        MsgMatch::Exact(m.trim().to_string())
    } else if let Some(r) = rest.strip_prefix("regex:") {
        MsgMatch::Regex(r.trim().to_string())
    } else {
        MsgMatch::Any
    }
}

/// Splits off the first whitespace-separated word.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    let e = s.find(char::is_whitespace).unwrap_or(s.len());
    (&s[..e], s[e..].trim_start())
}

fn parse_eval(header: &str, body: &[(usize, &str)], line: usize) -> Result<Eval, String> {
    let (cmd, rest) = word(header);
    let cmd = cmd.to_ascii_lowercase();
    let (kind_word, rest) = word(rest);
    let (kind, expr) = match kind_word {
        "instant" => {
            let (at_kw, rest) = word(rest);
            if at_kw != "at" {
                return Err(format!("line {line}: expected `at`"));
            }
            let (t, expr) = word(rest);
            (
                EvalKind::Instant {
                    at: parse_duration(t)?,
                },
                expr,
            )
        }
        "range" => {
            let (_, rest) = word(rest); // from
            let (a, rest) = word(rest);
            let (_, rest) = word(rest); // to
            let (b, rest) = word(rest);
            let (_, rest) = word(rest); // step
            let (st, expr) = word(rest);
            (
                EvalKind::Range {
                    start: parse_duration(a)?,
                    end: parse_duration(b)?,
                    step: parse_duration(st)?,
                },
                expr,
            )
        }
        other => return Err(format!("line {line}: unknown eval kind {other}")),
    };
    let mut ev = Eval {
        line,
        expr: expr.trim().to_string(),
        kind,
        fail: None,
        warns: Vec::new(),
        infos: Vec::new(),
        no_warn: false,
        no_info: false,
        ordered: false,
        expected: Expected::Series(Vec::new()),
    };
    match cmd.as_str() {
        "eval" => {}
        "eval_fail" => ev.fail = Some(MsgMatch::Any),
        "eval_warn" => ev.warns.push(MsgMatch::Any),
        "eval_info" => ev.infos.push(MsgMatch::Any),
        "eval_ordered" => ev.ordered = true,
        other => return Err(format!("line {line}: unknown command {other}")),
    }
    let mut series = Vec::new();
    let mut range_vector: Option<(i64, i64)> = None;
    for &(l, text) in body {
        if let Some(rest) = text.strip_prefix("expect ") {
            let (what, rest) = word(rest);
            match what {
                "fail" => ev.fail = Some(parse_msg(rest)),
                "warn" => ev.warns.push(parse_msg(rest)),
                "info" => ev.infos.push(parse_msg(rest)),
                "no_warn" => ev.no_warn = true,
                "no_info" => ev.no_info = true,
                "ordered" => ev.ordered = true,
                "string" => {
                    let (s, _) = parse_quoted(rest.trim())?;
                    ev.expected = Expected::String(s);
                }
                "range" => {
                    // range vector from A to B step S
                    let (_, r) = word(rest);
                    let (_, r) = word(r);
                    let (a, r) = word(r);
                    let (_, r) = word(r);
                    let (_, r) = word(r);
                    let (_, r) = word(r);
                    let (st, _) = word(r);
                    range_vector = Some((parse_duration(a)?, parse_duration(st)?));
                }
                other => return Err(format!("line {l}: unknown expectation {other}")),
            }
            continue;
        }
        if let Some(v) = parse_number(text.trim()) {
            ev.expected = Expected::Scalar(v);
            break;
        }
        series.push(parse_series_line(text).map_err(|e| format!("line {l}: {e}"))?);
    }
    if let Some((start, step)) = range_vector {
        ev.expected = Expected::RangeVector {
            start,
            step,
            series,
        };
    } else if matches!(ev.expected, Expected::Series(_)) {
        ev.expected = Expected::Series(series);
    }
    Ok(ev)
}

/// Parses a whole test file into commands.
pub fn parse_file(text: &str) -> Result<Vec<Cmd>, String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .collect();
    let blank = |l: &str| l.is_empty() || l.starts_with('#');
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (ln, l) = lines[i];
        if blank(l) {
            i += 1;
            continue;
        }
        let first = l
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut j = i + 1;
        // `clear` takes no body; the others run to the next blank line.
        while first != "clear" && j < lines.len() && !blank(lines[j].1) {
            j += 1;
        }
        let body = &lines[i + 1..j];
        match first.as_str() {
            "clear" => cmds.push(Cmd::Clear),
            "load" | "load_with_nhcb" => {
                let step = parse_duration(l.split_whitespace().nth(1).unwrap_or("0"))?;
                let mut series = Vec::new();
                for &(bl, text) in body {
                    let s = parse_series_line(text).map_err(|e| format!("line {bl}: {e}"))?;
                    let pts = s
                        .vals
                        .iter()
                        .enumerate()
                        .filter_map(|(k, v)| v.clone().map(|p| (k as i64 * step, p)))
                        .collect();
                    series.push((s.labels, pts));
                }
                cmds.push(Cmd::Load {
                    nhcb: first == "load_with_nhcb",
                    series,
                });
            }
            f if f.starts_with("eval") => {
                cmds.push(Cmd::Eval(Box::new(parse_eval(l, body, ln)?)));
            }
            other => return Err(format!("line {ln}: unknown command {other}")),
        }
        i = j;
    }
    Ok(cmds)
}
