use super::*;

#[test]
fn selector_text_round_trips_through_the_parser() {
    let cases = [
        r#"{__name__="up",job=~"a.*|b\\d"}"#,
        r#"{__name__="x",path="say \"hi\"\\n"}"#,
        r#"{job!="",env!~"dev"}"#,
    ];
    for c in cases {
        let expr = promql_parser::parser::parse(c).expect("test selector parses");
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            panic!("not a selector: {c}");
        };
        let text = selector_text(&vs.matchers.matchers);
        let again = promql_parser::parser::parse(&text).expect("rendered selector parses");
        let promql_parser::parser::Expr::VectorSelector(vs2) = again else {
            panic!("not a selector: {text}");
        };
        assert_eq!(vs.matchers.matchers, vs2.matchers.matchers, "{c} -> {text}");
    }
}

#[test]
fn all_empty_matchers_get_a_name_matcher() {
    let m = vec![Matcher::new(MatchOp::Equal, "job", "")];
    assert_eq!(selector_text(&m), r#"{job="",__name__=~".+"}"#);
}

#[test]
fn label_name_escaping_round_trips() {
    for n in ["job", "http.method", "a_b", "ünïcode name", "_x"] {
        assert_eq!(unescape_label_name(&escape_label_name(n)), n);
    }
    assert_eq!(escape_label_name("http.method"), "U__http_2e_method");
    assert_eq!(unescape_label_name("U__http_2e_method"), "http.method");
    assert_eq!(unescape_label_name("U__bad_zz"), "U__bad_zz");
}

#[test]
fn api_time_has_millisecond_precision() {
    assert_eq!(format_api_time(1_724_000_000_123), "1724000000.123");
    assert_eq!(format_api_time(5), "0.005");
    assert_eq!(format_api_time(-1500), "-1.500");
}

#[test]
fn special_values() {
    assert!(parse_value("NaN").is_some_and(f64::is_nan));
    assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
    assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
    assert_eq!(parse_value("1.5e-7"), Some(1.5e-7));
    assert_eq!(parse_value("bogus"), None);
}
