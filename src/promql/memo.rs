//! Remembers recently parsed queries: an analysis run sends the same text
//! again and again, and parsing it (the lexer, the grammar, compiling each
//! `=~`/`!~` matcher's regex) costs more than a small query's evaluation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use promql_parser::parser::Expr;

/// Most queries remembered; past it the memo starts over.
const MAX_ENTRIES: usize = 256;
/// Longest query text remembered, bytes (longer ones are parsed each time).
const MAX_QUERY_BYTES: usize = 4096;

type Memo = HashMap<String, Arc<Expr>, foldhash::fast::RandomState>;

static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

/// The parsed `query`: from the memo when it was parsed lately, else
/// parsed with `parse` and remembered. Errors are not remembered.
pub(crate) fn parsed<E>(
    query: &str,
    parse: impl FnOnce(&str) -> Result<Expr, E>,
) -> Result<Arc<Expr>, E> {
    if query.len() > MAX_QUERY_BYTES {
        return parse(query).map(Arc::new);
    }
    if let Ok(memo) = MEMO.lock() {
        if let Some(e) = memo.as_ref().and_then(|m| m.get(query)) {
            return Ok(Arc::clone(e));
        }
    }
    let expr = Arc::new(parse(query)?);
    if let Ok(mut memo) = MEMO.lock() {
        let m = memo.get_or_insert_with(Memo::default);
        if m.len() >= MAX_ENTRIES {
            m.clear();
        }
        m.insert(query.to_string(), Arc::clone(&expr));
    }
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_parsed_once_and_errors_are_not_remembered() {
        let parse = |q: &str| promql_parser::parser::parse(q);
        let q = r#"sum(rate(memo_test_total{code=~"5.."}[5m]))"#;
        let a = parsed(q, parse).expect("parses");
        let b = parsed(q, |_| Err::<Expr, String>("not asked again".into())).expect("memo");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(*a, parse(q).expect("parses"));
        let bad = "sum(memo_test_bad";
        assert!(parsed(bad, parse).is_err());
        assert!(parsed(bad, parse).is_err());
    }
}
