//! Turns YAML text into a typed value, reporting every bad field it can
//! find in one pass, each with its path (`backends[0].timeout`) and line.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml_ng::Value;

/// How many bad fields one parse reports at most.
const MAX_PROBLEMS: usize = 32;

/// Deserializes `text` as a `T`. On failure, returns every problem found:
/// after each bad field, the field is taken out (so its default applies)
/// and deserialization tried again, until it succeeds, a required field is
/// missing, or [`MAX_PROBLEMS`] are collected.
pub fn parse_all<T: DeserializeOwned>(text: &str) -> Result<T, Vec<String>> {
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) if problems.is_empty() => return Ok(t),
            Ok(_) => return Err(problems),
            Err(e) => e,
        };
        let mut segments: Vec<Segment> = err.path().iter().cloned().collect();
        let message = err.inner().to_string();
        // An unknown field is reported at its parent: point at the field.
        if let Some(name) = unknown_field(&message) {
            if !matches!(segments.last(), Some(Segment::Map { key }) if key == name) {
                segments.push(Segment::Map {
                    key: name.to_string(),
                });
            }
        }
        let path = render(&segments);
        let line = locate(text, &segments)
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        let message = strip_location(&message);
        problems.push(if path.is_empty() {
            format!("{message}{line}")
        } else {
            format!("{path}: {message}{line}")
        });
        if message.starts_with("missing field") || !remove(&mut value, &segments) {
            break;
        }
    }
    Err(problems)
}

/// The field name of serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// serde_yaml_ng appends " at line L column C" of the enclosing mapping;
/// [`locate`] finds the field's own line instead.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

/// `backends[0].timeout` for the segments of a path.
fn render(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => out.push_str(".?"),
        }
    }
    out
}

/// Takes the value at `segments` out of `value`; false when there is none.
fn remove(value: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut at = value;
    for s in parents {
        let next = match (s, at) {
            (Segment::Map { key }, Value::Mapping(m)) => m.get_mut(key.as_str()),
            (Segment::Seq { index }, Value::Sequence(v)) => v.get_mut(*index),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match (last, at) {
        (Segment::Map { key }, Value::Mapping(m)) => m.remove(key.as_str()).is_some(),
        (Segment::Seq { index }, Value::Sequence(v)) if *index < v.len() => {
            v.remove(*index);
            true
        }
        _ => false,
    }
}

/// The 1-based line of the field at `segments` in block-style YAML: each
/// key is looked for below its parent, deeper than the parent's indent;
/// each sequence index counts `- ` items at one indent. Flow-style parts
/// end the search at the last line found.
fn locate(text: &str, segments: &[Segment]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0usize;
    let mut min_indent = 0usize;
    let mut found = None;
    for s in segments {
        let hit = match s {
            Segment::Map { key } | Segment::Enum { variant: key } => {
                find_key(&lines, from, min_indent, key)
            }
            Segment::Seq { index } => find_item(&lines, from, min_indent, *index),
            Segment::Unknown => None,
        };
        let Some((line, indent)) = hit else { break };
        found = Some(line + 1);
        from = line;
        min_indent = indent + 1;
    }
    found
}

/// Indent and text of a line, with a leading `- ` counted as indent.
fn split_indent(line: &str) -> (usize, &str) {
    let trimmed = line.trim_start();
    let mut indent = line.len() - trimmed.len();
    let mut rest = trimmed;
    while let Some(r) = rest.strip_prefix("- ") {
        indent += 2 + (r.len() - r.trim_start().len());
        rest = r.trim_start();
    }
    (indent, rest)
}

/// The first line at or after `from` holding `key:` at an indent of at
/// least `min_indent`, before the block ends (a line indented less).
fn find_key(lines: &[&str], from: usize, min_indent: usize, key: &str) -> Option<(usize, usize)> {
    for (i, line) in lines.iter().enumerate().skip(from) {
        let (indent, rest) = split_indent(line);
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        if i > from && indent < min_indent {
            return None;
        }
        let bare = rest.trim_start_matches(['"', '\'']);
        if let Some(after) = bare.strip_prefix(key) {
            let after = after.trim_start_matches(['"', '\'']);
            if after.starts_with(':') {
                return Some((i, indent));
            }
        }
    }
    None
}

/// The line of the `index`-th `- ` item of the block sequence starting
/// after `from`.
fn find_item(
    lines: &[&str],
    from: usize,
    min_indent: usize,
    index: usize,
) -> Option<(usize, usize)> {
    let mut seen = 0usize;
    let mut item_indent = None;
    for (i, line) in lines.iter().enumerate().skip(from + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent + 1 < min_indent {
            return None;
        }
        if !trimmed.starts_with("- ") && trimmed != "-" {
            continue;
        }
        match item_indent {
            None => item_indent = Some(indent),
            Some(d) if d != indent => continue,
            Some(_) => {}
        }
        if seen == index {
            return Some((i, indent));
        }
        seen += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: String,
        #[serde(default)]
        size: u32,
        #[serde(default)]
        on: bool,
    }

    #[test]
    fn every_bad_field_is_named_with_its_line() {
        let text = "name: doc\nitems:\n  - id: a\n    size: big\n  - id: b\n    on: maybe\n    colour: red\n";
        let problems = parse_all::<Doc>(text).expect_err("invalid");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("items[0].size: invalid type"),
            "{problems:?}"
        );
        assert!(problems[0].ends_with("(line 4)"), "{problems:?}");
        assert!(problems[1].starts_with("items[1].on: "), "{problems:?}");
        assert!(problems[1].ends_with("(line 6)"), "{problems:?}");
        assert!(
            problems[2].starts_with("items[1].colour: unknown field `colour`"),
            "{problems:?}"
        );
        assert!(problems[2].ends_with("(line 7)"), "{problems:?}");
    }

    #[test]
    fn a_missing_required_field_ends_the_list() {
        let problems = parse_all::<Doc>("items: []\n").expect_err("invalid");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("missing field `name`"), "{problems:?}");
    }

    #[test]
    fn a_valid_document_parses() {
        let d = parse_all::<Doc>("name: x\nitems:\n- {id: a, size: 3}\n").expect("valid");
        assert_eq!(d.items[0].size, 3);
    }

    #[test]
    fn yaml_syntax_errors_keep_their_location() {
        let problems = parse_all::<Doc>("name: [unclosed\n").expect_err("invalid");
        assert!(problems[0].contains("line"), "{problems:?}");
    }
}
