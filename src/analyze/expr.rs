//! Parses the subset of the `expr` language (antonmedv/expr v1.15, what Argo
//! Rollouts v1.9 evaluates `successCondition`/`failureCondition` with) that
//! analysis templates use, with expr's operator precedence.
//!
//! Supported: number, string, `true`/`false`/`nil` literals; identifiers;
//! `a[i]` (negative `i` counts from the end); calls `f(x, ...)` with
//! closures `{ # > 0.9 }`; unary `not ! - +`; binary `or || and && == != <
//! > <= >= in not in + - * / % ** ^ ??`; `cond ? a : b`; `[a, b]`.

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A variable of the environment (`result`).
    Ident(String),
    /// `#`: the current element inside a closure.
    Pointer,
    Array(Vec<Node>),
    Index(Box<Node>, Box<Node>),
    Call(String, Vec<Node>),
    /// `{ ... }` passed to a builtin such as `all`.
    Closure(Box<Node>),
    Unary(&'static str, Box<Node>),
    Binary(&'static str, Box<Node>, Box<Node>),
    Conditional(Box<Node>, Box<Node>, Box<Node>),
}

/// Why a condition does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} (at character {at})")]
pub struct ParseError {
    pub message: String,
    /// Character offset in the condition.
    pub at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Str(String),
    Ident(String),
    /// Operators and brackets, as written (`and`, `not`, `in` included).
    Op(&'static str),
    End,
}

/// Binary operators with their precedence; all left-associative but `**`
/// and `^`.
const BINARY: &[(&str, u16)] = &[
    ("or", 10),
    ("||", 10),
    ("and", 15),
    ("&&", 15),
    ("==", 20),
    ("!=", 20),
    ("<", 20),
    (">", 20),
    (">=", 20),
    ("<=", 20),
    ("in", 20),
    ("+", 30),
    ("-", 30),
    ("*", 60),
    ("/", 60),
    ("%", 60),
    ("**", 100),
    ("^", 100),
    ("??", 500),
];

/// Unary operators with their precedence.
const UNARY: &[(&str, u16)] = &[("not", 50), ("!", 50), ("-", 90), ("+", 90)];

/// Symbols, longest first so that `**` is not read as `*`.
const SYMBOLS: &[&str] = &[
    "**", "==", "!=", ">=", "<=", "&&", "||", "??", "<", ">", "+", "-", "*", "/", "%", "^", "!",
    "(", ")", "[", "]", "{", "}", ",", "?", ":", "#",
];

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |message: String, at: usize| ParseError { message, at };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || chars[i] == '_'
                    || ((chars[i] == '+' || chars[i] == '-')
                        && matches!(chars[i - 1], 'e' | 'E')
                        && !chars[start..i].iter().any(|c| *c == 'x' || *c == 'X')))
            {
                i += 1;
            }
            out.push((Tok::Num(chars[start..i].iter().collect()), start));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = match word.as_str() {
                "and" => Tok::Op("and"),
                "or" => Tok::Op("or"),
                "not" => Tok::Op("not"),
                "in" => Tok::Op("in"),
                _ => Tok::Ident(word),
            };
            out.push((tok, start));
            continue;
        }
        if c == '"' || c == '\'' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err("literal not terminated".into(), start)),
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let e = chars.get(i + 1).copied().unwrap_or('\\');
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push((Tok::Str(s), start));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            Some(sym) => {
                i += sym.len();
                out.push((Tok::Op(sym), start));
            }
            None => return Err(err(format!("unexpected token {c:?}"), start)),
        }
    }
    out.push((Tok::End, chars.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Closure nesting: `#` is allowed only inside one.
    depth: usize,
}

/// Parses `src` into an expression.
pub fn parse(src: &str) -> Result<Node, ParseError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        depth: 0,
    };
    let node = p.expression(0)?;
    match p.peek() {
        Tok::End => Ok(node),
        t => Err(p.error(format!("unexpected token {t:?}"))),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos.min(self.toks.len() - 1)].0
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: String) -> ParseError {
        ParseError {
            message,
            at: self.toks[self.pos.min(self.toks.len() - 1)].1,
        }
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn expect(&mut self, op: &str) -> Result<(), ParseError> {
        if self.is_op(op) {
            self.next();
            Ok(())
        } else {
            Err(self.error(format!("expected {op:?}, found {:?}", self.peek())))
        }
    }

    /// expr's `parseExpression`: a primary, then binary operators of at
    /// least `precedence`, then (at the top) `? :`.
    fn expression(&mut self, precedence: u16) -> Result<Node, ParseError> {
        let mut left = self.primary()?;
        loop {
            // `not in`
            let negate = self.is_op("not")
                && matches!(self.toks.get(self.pos + 1), Some((Tok::Op("in"), _)));
            let at = if negate { self.pos + 1 } else { self.pos };
            let Some((Tok::Op(op), _)) = self.toks.get(at).cloned() else {
                break;
            };
            let Some(&(op, prec)) = BINARY.iter().find(|(o, _)| *o == op) else {
                break;
            };
            if prec < precedence {
                break;
            }
            self.pos = at + 1;
            let right_assoc = op == "**" || op == "^";
            let right = self.expression(if right_assoc { prec } else { prec + 1 })?;
            left = Node::Binary(op, Box::new(left), Box::new(right));
            if negate {
                left = Node::Unary("not", Box::new(left));
            }
        }
        if precedence == 0 && self.is_op("?") {
            self.next();
            let yes = self.expression(0)?;
            self.expect(":")?;
            let no = self.expression(0)?;
            left = Node::Conditional(Box::new(left), Box::new(yes), Box::new(no));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        if let Tok::Op(op) = self.peek().clone() {
            if let Some(&(op, prec)) = UNARY.iter().find(|(o, _)| *o == op) {
                self.next();
                let operand = self.expression(prec)?;
                return self.postfix(Node::Unary(op, Box::new(operand)));
            }
        }
        let node = match self.next() {
            Tok::Op("(") => {
                let e = self.expression(0)?;
                self.expect(")")?;
                e
            }
            Tok::Op("#") if self.depth > 0 => Node::Pointer,
            Tok::Op("#") => {
                return Err(self.error("cannot use pointer accessor outside closure".into()))
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    items.push(self.expression(0)?);
                    if !self.is_op("]") {
                        self.expect(",")?;
                    }
                }
                self.expect("]")?;
                Node::Array(items)
            }
            Tok::Num(n) => number(&n).ok_or_else(|| self.error(format!("invalid number {n}")))?,
            Tok::Str(s) => Node::Str(s),
            Tok::Ident(name) => match name.as_str() {
                "true" => Node::Bool(true),
                "false" => Node::Bool(false),
                "nil" => Node::Nil,
                _ if self.is_op("(") => {
                    self.next();
                    let args = self.arguments(&name)?;
                    Node::Call(name, args)
                }
                _ => Node::Ident(name),
            },
            t => return Err(self.error(format!("unexpected token {t:?}"))),
        };
        self.postfix(node)
    }

    /// Arguments after `name(`, through `)`; the second argument of the
    /// closure builtins is a closure.
    fn arguments(&mut self, name: &str) -> Result<Vec<Node>, ParseError> {
        let takes_closure = matches!(
            name,
            "all" | "none" | "any" | "one" | "filter" | "map" | "count"
        );
        let mut args = Vec::new();
        while !self.is_op(")") {
            if takes_closure && args.len() == 1 {
                let braced = self.is_op("{");
                if braced {
                    self.next();
                }
                self.depth += 1;
                let body = self.expression(0);
                self.depth -= 1;
                if braced {
                    self.expect("}")?;
                }
                args.push(Node::Closure(Box::new(body?)));
            } else {
                args.push(self.expression(0)?);
            }
            if !self.is_op(")") {
                self.expect(",")?;
            }
        }
        self.expect(")")?;
        Ok(args)
    }

    fn postfix(&mut self, mut node: Node) -> Result<Node, ParseError> {
        while self.is_op("[") {
            self.next();
            let index = self.expression(0)?;
            self.expect("]")?;
            node = Node::Index(Box::new(node), Box::new(index));
        }
        Ok(node)
    }
}

/// An integer (decimal, `0x`, `0o`, `0b`, `_` separators) or a float.
fn number(text: &str) -> Option<Node> {
    let t = text.replace('_', "");
    let radix = |p: &str, r| {
        t.strip_prefix(p)
            .and_then(|d| i64::from_str_radix(d, r).ok())
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0X", 16)) {
        return Some(Node::Int(n));
    }
    if let Some(n) = radix("0o", 8).or_else(|| radix("0b", 2)) {
        return Some(Node::Int(n));
    }
    if let Ok(n) = t.parse::<i64>() {
        return Some(Node::Int(n));
    }
    t.parse::<f64>().ok().map(Node::Float)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(op: &'static str, l: Node, r: Node) -> Node {
        Node::Binary(op, Box::new(l), Box::new(r))
    }

    fn idx(i: i64) -> Node {
        Node::Index(
            Box::new(Node::Ident("result".into())),
            Box::new(Node::Int(i)),
        )
    }

    #[test]
    fn precedence_follows_expr() {
        assert_eq!(
            parse("result[0] > 0.90").expect("parses"),
            b(">", idx(0), Node::Float(0.9))
        );
        // and binds tighter than or; comparison tighter than and.
        assert_eq!(
            parse("result[0] < 1 || result[1] >= 2 && true").expect("parses"),
            b(
                "||",
                b("<", idx(0), Node::Int(1)),
                b("&&", b(">=", idx(1), Node::Int(2)), Node::Bool(true))
            )
        );
        // Unary not binds tighter than a comparison, as in expr.
        assert_eq!(
            parse("not true == false").expect("parses"),
            b(
                "==",
                Node::Unary("not", Box::new(Node::Bool(true))),
                Node::Bool(false)
            )
        );
        // ** is right-associative and binds tighter than unary minus.
        assert_eq!(
            parse("-2 ** 3 ** 2").expect("parses"),
            Node::Unary(
                "-",
                Box::new(b("**", Node::Int(2), b("**", Node::Int(3), Node::Int(2))))
            )
        );
        assert_eq!(parse("1 - 2 - 3").expect("parses"), {
            b("-", b("-", Node::Int(1), Node::Int(2)), Node::Int(3))
        });
    }

    #[test]
    fn closures_and_calls() {
        assert_eq!(
            parse("all(result, {# > 0.5})").expect("parses"),
            Node::Call(
                "all".into(),
                vec![
                    Node::Ident("result".into()),
                    Node::Closure(Box::new(b(">", Node::Pointer, Node::Float(0.5))))
                ]
            )
        );
        assert!(parse("# > 1").is_err());
        assert!(parse("result[0] >").is_err());
        assert!(parse("(1").is_err());
        assert!(parse("1 2").is_err());
    }
}
