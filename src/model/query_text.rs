//! The one way promfed turns PromQL text into an expression.
//!
//! `promql-parser` panics on a few inputs instead of returning an error
//! (e.g. `x[5e1000011]`: a duration literal whose seconds overflow reaches
//! `Duration::from_secs_f64`). Query text comes from clients, so every
//! caller parses through [`parse`], which turns such a panic into a
//! [`ParseError`] (answered as `bad_data`, 400) and keeps it out of the log
//! and out of any panic hook that would abort (a fuzzer's).

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use promql_parser::parser::Expr;

/// A query that does not parse, or that the parser could not handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

thread_local! {
    /// True while this thread is inside the parser: a panic there is
    /// caught by [`parse`] and must not reach the process's panic hook.
    static PARSING: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Installs (once) a panic hook that stays silent for panics raised inside
/// [`parse`] and hands every other panic to the hook that was there before.
fn install_quiet_hook() {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !PARSING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Parses `text` as a PromQL expression.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    install_quiet_hook();
    PARSING.with(|p| p.set(true));
    // The parser holds no state across calls: nothing observable is left
    // half-updated by an unwind, so asserting unwind safety is sound.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| promql_parser::parser::parse(text)));
    PARSING.with(|p| p.set(false));
    match outcome {
        Ok(Ok(expr)) => Ok(expr),
        Ok(Err(message)) => Err(ParseError(message)),
        Err(_) => Err(ParseError(
            "the query could not be parsed (a number or duration in it is out of range)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_duration_is_a_parse_error_not_a_panic() {
        // promql-parser 0.11 panics on each of these when called directly.
        for q in [
            "Z[5e1000011]",
            "rate(x[1e400])",
            "x offset 1e400",
            "x[5m:1e400]",
        ] {
            match parse(q) {
                Err(ParseError(m)) => assert!(!m.is_empty(), "{q}"),
                Ok(e) => panic!("{q} parsed as {e}"),
            }
        }
    }

    #[test]
    fn good_and_bad_text_answer_as_the_parser_does() {
        let q = r#"sum(rate(x{a="b"}[5m]))"#;
        assert_eq!(
            parse(q).expect("parses"),
            promql_parser::parser::parse(q).expect("parses")
        );
        let bad = "sum(x";
        assert_eq!(
            parse(bad),
            Err(ParseError(
                promql_parser::parser::parse(bad).expect_err("does not parse")
            ))
        );
    }
}
