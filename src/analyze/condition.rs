//! Evaluates `successCondition`/`failureCondition` against a measurement's
//! `result` and turns the two into a phase, as Argo Rollouts'
//! `utils/evaluate` does (`EvalCondition`, `EvaluateResult`).

use super::expr::{parse, Node};
use super::Phase;

/// A value inside an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
}

impl Val {
    fn type_name(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Bool(_) => "bool",
            Val::Int(_) => "int",
            Val::Float(_) => "float64",
            Val::Str(_) => "string",
            Val::List(_) => "[]interface {}",
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Why a condition could not be evaluated (the measurement is an Error).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    #[error("{0}")]
    Parse(#[from] super::expr::ParseError),
    #[error("{0}")]
    Eval(String),
    #[error("expected bool, but got {0}")]
    NotBool(&'static str),
}

/// `EvalCondition`: the condition's value for `result`, which must be a bool.
pub fn eval_condition(result: &Val, condition: &str) -> Result<bool, ConditionError> {
    let node = parse(condition)?;
    let env = Env { result, item: None };
    match env.eval(&node)? {
        Val::Bool(b) => Ok(b),
        other => Err(ConditionError::NotBool(other.type_name())),
    }
}

/// `EvaluateResult`: the measurement's phase from its result and the
/// metric's conditions (either may be empty).
pub fn evaluate_result(
    result: &Val,
    success: &str,
    failure: &str,
) -> Result<Phase, ConditionError> {
    let mut ok = if success.is_empty() {
        false
    } else {
        eval_condition(result, success)?
    };
    let mut failed = if failure.is_empty() {
        false
    } else {
        eval_condition(result, failure)?
    };
    match (success.is_empty(), failure.is_empty()) {
        (true, true) => return Ok(Phase::Successful),
        (false, true) => failed = !ok,
        (true, false) => ok = !failed,
        (false, false) => {}
    }
    Ok(if failed {
        Phase::Failed
    } else if !ok {
        Phase::Inconclusive
    } else {
        Phase::Successful
    })
}

struct Env<'a> {
    result: &'a Val,
    /// `#` inside a closure.
    item: Option<&'a Val>,
}

fn err<T>(msg: impl Into<String>) -> Result<T, ConditionError> {
    Err(ConditionError::Eval(msg.into()))
}

fn mismatched<T>(op: &str, a: &Val, b: &Val) -> Result<T, ConditionError> {
    err(format!(
        "invalid operation: {op} (mismatched types {} and {})",
        a.type_name(),
        b.type_name()
    ))
}

/// expr's `runtime.Equal`: numbers by value across int and float, else
/// values of one type.
fn equal(a: &Val, b: &Val) -> bool {
    match (a.number(), b.number()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn as_bool(v: Val, op: &str) -> Result<bool, ConditionError> {
    match v {
        Val::Bool(b) => Ok(b),
        other => err(format!(
            "invalid operation: {op} (non-bool {})",
            other.type_name()
        )),
    }
}

impl Env<'_> {
    fn eval(&self, node: &Node) -> Result<Val, ConditionError> {
        Ok(match node {
            Node::Nil => Val::Nil,
            Node::Bool(b) => Val::Bool(*b),
            Node::Int(i) => Val::Int(*i),
            Node::Float(f) => Val::Float(*f),
            Node::Str(s) => Val::Str(s.clone()),
            Node::Ident(name) => match name.as_str() {
                "result" => self.result.clone(),
                _ => return err(format!("unknown name {name}")),
            },
            Node::Pointer => match self.item {
                Some(v) => v.clone(),
                None => return err("cannot use pointer accessor outside closure"),
            },
            Node::Array(items) => Val::List(
                items
                    .iter()
                    .map(|n| self.eval(n))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Index(from, index) => {
                let from = self.eval(from)?;
                let index = self.eval(index)?;
                fetch(&from, &index)?
            }
            Node::Closure(_) => return err("closure outside a builtin"),
            Node::Call(name, args) => self.call(name, args)?,
            Node::Unary(op, operand) => {
                let v = self.eval(operand)?;
                match (*op, v) {
                    ("not" | "!", v) => Val::Bool(!as_bool(v, op)?),
                    ("-", Val::Int(i)) => Val::Int(i.wrapping_neg()),
                    ("-", Val::Float(f)) => Val::Float(-f),
                    ("+", v @ (Val::Int(_) | Val::Float(_))) => v,
                    (op, v) => {
                        return err(format!(
                            "invalid operation: {op} (mismatched type {})",
                            v.type_name()
                        ))
                    }
                }
            }
            Node::Binary(op, l, r) => self.binary(op, l, r)?,
            Node::Conditional(c, yes, no) => {
                if as_bool(self.eval(c)?, "?:")? {
                    self.eval(yes)?
                } else {
                    self.eval(no)?
                }
            }
        })
    }

    fn binary(&self, op: &str, l: &Node, r: &Node) -> Result<Val, ConditionError> {
        // Short-circuiting operators first.
        match op {
            "and" | "&&" => {
                return Ok(Val::Bool(
                    as_bool(self.eval(l)?, op)? && as_bool(self.eval(r)?, op)?,
                ))
            }
            "or" | "||" => {
                return Ok(Val::Bool(
                    as_bool(self.eval(l)?, op)? || as_bool(self.eval(r)?, op)?,
                ))
            }
            "??" => {
                let a = self.eval(l)?;
                return if a == Val::Nil { self.eval(r) } else { Ok(a) };
            }
            _ => {}
        }
        let a = self.eval(l)?;
        let b = self.eval(r)?;
        Ok(match op {
            "==" => Val::Bool(equal(&a, &b)),
            "!=" => Val::Bool(!equal(&a, &b)),
            "in" => match &b {
                Val::List(items) => Val::Bool(items.iter().any(|x| equal(x, &a))),
                _ => return mismatched(op, &a, &b),
            },
            "<" | ">" | "<=" | ">=" => {
                let ord = match (&a, &b) {
                    (Val::Str(x), Val::Str(y)) => x.partial_cmp(y),
                    _ => match (a.number(), b.number()) {
                        (Some(x), Some(y)) => x.partial_cmp(&y),
                        _ => return mismatched(op, &a, &b),
                    },
                };
                // NaN compares false either way, as in Go.
                Val::Bool(ord.is_some_and(|o| match op {
                    "<" => o.is_lt(),
                    ">" => o.is_gt(),
                    "<=" => o.is_le(),
                    _ => o.is_ge(),
                }))
            }
            "+" | "-" | "*" => match (&a, &b) {
                (Val::Int(x), Val::Int(y)) => Val::Int(match op {
                    "+" => x.wrapping_add(*y),
                    "-" => x.wrapping_sub(*y),
                    _ => x.wrapping_mul(*y),
                }),
                (Val::Str(x), Val::Str(y)) if op == "+" => Val::Str(format!("{x}{y}")),
                _ => match (a.number(), b.number()) {
                    (Some(x), Some(y)) => Val::Float(match op {
                        "+" => x + y,
                        "-" => x - y,
                        _ => x * y,
                    }),
                    _ => return mismatched(op, &a, &b),
                },
            },
            "/" => match (a.number(), b.number()) {
                (Some(x), Some(y)) => Val::Float(x / y),
                _ => return mismatched(op, &a, &b),
            },
            "%" => match (&a, &b) {
                (Val::Int(_), Val::Int(0)) => return err("integer divide by zero"),
                (Val::Int(x), Val::Int(y)) => Val::Int(x.wrapping_rem(*y)),
                _ => return mismatched(op, &a, &b),
            },
            "**" | "^" => match (a.number(), b.number()) {
                (Some(x), Some(y)) => Val::Float(x.powf(y)),
                _ => return mismatched(op, &a, &b),
            },
            _ => return err(format!("unknown operator {op}")),
        })
    }

    fn list_arg(&self, name: &str, args: &[Node]) -> Result<Vec<Val>, ConditionError> {
        match args.first().map(|a| self.eval(a)).transpose()? {
            Some(Val::List(items)) => Ok(items),
            Some(other) => err(format!("cannot use {} in {name}", other.type_name())),
            None => err(format!("not enough arguments to call {name}")),
        }
    }

    /// Evaluates a closure for each item.
    fn each(&self, name: &str, args: &[Node]) -> Result<Vec<(Val, Val)>, ConditionError> {
        let items = self.list_arg(name, args)?;
        let Some(Node::Closure(body)) = args.get(1) else {
            return err(format!("{name} needs a closure"));
        };
        items
            .into_iter()
            .map(|item| {
                let v = Env {
                    result: self.result,
                    item: Some(&item),
                }
                .eval(body)?;
                Ok((item, v))
            })
            .collect()
    }

    fn one_number(&self, name: &str, args: &[Node]) -> Result<Val, ConditionError> {
        if args.len() != 1 {
            return err(format!(
                "invalid number of arguments for {name} (expected 1, got {})",
                args.len()
            ));
        }
        self.eval(&args[0])
    }

    fn call(&self, name: &str, args: &[Node]) -> Result<Val, ConditionError> {
        let float_of = |v: Val, f: &str| -> Result<f64, ConditionError> {
            v.number()
                .ok_or_else(|| ConditionError::Eval(format!("invalid argument for {f}")))
        };
        Ok(match name {
            // The functions Argo puts in the environment.
            "isNaN" => Val::Bool(float_of(self.one_number(name, args)?, name)?.is_nan()),
            "isInf" => Val::Bool(float_of(self.one_number(name, args)?, name)?.is_infinite()),
            "asFloat" | "float" => match self.one_number(name, args)? {
                Val::Str(s) => match s.trim().parse::<f64>() {
                    Ok(f) => Val::Float(f),
                    Err(e) => return err(format!("strconv.ParseFloat: parsing {s:?}: {e}")),
                },
                v => Val::Float(float_of(v, name)?),
            },
            "asInt" | "int" => match self.one_number(name, args)? {
                Val::Str(s) => match s.parse::<i64>() {
                    Ok(i) => Val::Int(i),
                    Err(e) => return err(format!("strconv.ParseInt: parsing {s:?}: {e}")),
                },
                Val::Float(f) => Val::Int(f as i64),
                Val::Int(i) => Val::Int(i),
                v => return err(format!("asInt() not supported on {}", v.type_name())),
            },
            // The provider's result is never nil (an empty list at worst).
            "isNil" => Val::Bool(*self.result == Val::Nil),
            "default" => match (self.result, args.get(1)) {
                (Val::Nil, Some(d)) => self.eval(d)?,
                (r, _) => r.clone(),
            },
            "len" => match self.one_number(name, args)? {
                Val::List(items) => Val::Int(items.len() as i64),
                Val::Str(s) => Val::Int(s.chars().count() as i64),
                v => return err(format!("invalid argument for len (type {})", v.type_name())),
            },
            "abs" => match self.one_number(name, args)? {
                Val::Int(i) => Val::Int(i.wrapping_abs()),
                v => Val::Float(float_of(v, name)?.abs()),
            },
            "ceil" => Val::Float(float_of(self.one_number(name, args)?, name)?.ceil()),
            "floor" => Val::Float(float_of(self.one_number(name, args)?, name)?.floor()),
            "round" => Val::Float(float_of(self.one_number(name, args)?, name)?.round()),
            "first" | "last" => {
                let items = self.list_arg(name, args)?;
                let pick = if name == "first" {
                    items.first()
                } else {
                    items.last()
                };
                pick.cloned().unwrap_or(Val::Nil)
            }
            "sum" | "mean" => {
                let items = self.list_arg(name, args)?;
                let all_int = items.iter().all(|v| matches!(v, Val::Int(_)));
                let mut total = 0.0;
                for v in &items {
                    total += float_of(v.clone(), name)?;
                }
                match name {
                    "sum" if all_int => Val::Int(total as i64),
                    "sum" => Val::Float(total),
                    _ if items.is_empty() => Val::Float(0.0),
                    _ => Val::Float(total / items.len() as f64),
                }
            }
            "max" | "min" => {
                let vals: Vec<Val> = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<_, _>>()?;
                let vals = match vals.as_slice() {
                    [Val::List(items)] => items.clone(),
                    _ => vals,
                };
                let mut best: Option<Val> = None;
                for v in vals {
                    let x = float_of(v.clone(), name)?;
                    let better = match &best {
                        None => true,
                        Some(b) => {
                            let y = float_of(b.clone(), name)?;
                            if name == "max" {
                                x > y
                            } else {
                                x < y
                            }
                        }
                    };
                    if better {
                        best = Some(v);
                    }
                }
                match best {
                    Some(v) => v,
                    None => return err(format!("not enough arguments to call {name}")),
                }
            }
            "all" | "any" | "none" | "one" | "count" | "filter" | "map" => {
                let pairs = self.each(name, args)?;
                if name == "map" {
                    return Ok(Val::List(pairs.into_iter().map(|(_, v)| v).collect()));
                }
                let total = pairs.len();
                let mut hits = Vec::new();
                for (item, v) in pairs {
                    if as_bool(v, name)? {
                        hits.push(item);
                    }
                }
                let n = hits.len();
                match name {
                    "all" => Val::Bool(n == total),
                    "any" => Val::Bool(n > 0),
                    "none" => Val::Bool(n == 0),
                    "one" => Val::Bool(n == 1),
                    "count" => Val::Int(n as i64),
                    _ => Val::List(hits),
                }
            }
            _ => return err(format!("unknown func {name}")),
        })
    }
}

/// `a[i]`: lists by integer index (negative from the end).
fn fetch(from: &Val, index: &Val) -> Result<Val, ConditionError> {
    let Val::List(items) = from else {
        return err(format!(
            "cannot fetch {} from {}",
            index_text(index),
            from.type_name()
        ));
    };
    let i = match index {
        Val::Int(i) => *i,
        Val::Float(f) => *f as i64,
        other => {
            return err(format!(
                "cannot use {} as index to {}",
                other.type_name(),
                from.type_name()
            ))
        }
    };
    let len = items.len() as i64;
    let at = if i < 0 { len + i } else { i };
    if at < 0 || at >= len {
        return err(format!("index out of range: {at} (array length is {len})"));
    }
    Ok(items[at as usize].clone())
}

fn index_text(v: &Val) -> String {
    match v {
        Val::Int(i) => i.to_string(),
        Val::Float(f) => f.to_string(),
        Val::Str(s) => s.clone(),
        other => other.type_name().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(xs: &[f64]) -> Val {
        Val::List(xs.iter().map(|x| Val::Float(*x)).collect())
    }

    fn phase(r: &Val, s: &str, f: &str) -> Result<Phase, ConditionError> {
        evaluate_result(r, s, f)
    }

    // Expected phases below are the rules of Argo's `EvaluateResult` and
    // `EvalCondition` (utils/evaluate/evaluate.go and its tests); the
    // integration tests compare with Argo's own code on real answers.
    #[test]
    fn phases_follow_argos_rules() {
        let r = list(&[0.95]);
        assert_eq!(phase(&r, "result[0] > 0.90", ""), Ok(Phase::Successful));
        assert_eq!(phase(&r, "result[0] > 0.99", ""), Ok(Phase::Failed));
        assert_eq!(phase(&r, "", "result[0] < 0.5"), Ok(Phase::Successful));
        assert_eq!(phase(&r, "", "result[0] > 0.5"), Ok(Phase::Failed));
        // Neither condition holds: inconclusive.
        assert_eq!(
            phase(&r, "result[0] > 0.99", "result[0] < 0.5"),
            Ok(Phase::Inconclusive)
        );
        // Both hold: failure wins.
        assert_eq!(
            phase(&r, "result[0] > 0.5", "result[0] > 0.9"),
            Ok(Phase::Failed)
        );
        assert_eq!(phase(&r, "", ""), Ok(Phase::Successful));
    }

    #[test]
    fn empty_results_nan_and_type_errors() {
        // An empty vector: index out of range is an error.
        assert!(matches!(
            phase(&list(&[]), "result[0] > 0.90", ""),
            Err(ConditionError::Eval(_))
        ));
        // NaN compares false: the success condition fails.
        assert_eq!(
            phase(&list(&[f64::NAN]), "result[0] > 0.90", ""),
            Ok(Phase::Failed)
        );
        assert_eq!(
            eval_condition(&list(&[f64::NAN]), "isNaN(result[0])"),
            Ok(true)
        );
        // A number is not a bool.
        assert_eq!(
            eval_condition(&list(&[1.0]), "result[0]"),
            Err(ConditionError::NotBool("float64"))
        );
        // A list compared to a number is a type error.
        assert!(eval_condition(&list(&[1.0]), "result > 0").is_err());
        assert!(eval_condition(&list(&[1.0]), "result[0] >").is_err());
    }

    #[test]
    fn builtins_and_operators() {
        let r = list(&[0.5, 0.95, 0.99]);
        let t = |c: &str| eval_condition(&r, c);
        assert_eq!(t("all(result, {# > 0.4})"), Ok(true));
        assert_eq!(t("any(result, # > 0.98)"), Ok(true));
        assert_eq!(t("none(result, {# > 1})"), Ok(true));
        assert_eq!(t("one(result, {# < 0.9})"), Ok(true));
        assert_eq!(t("len(result) == 3 and result[-1] == 0.99"), Ok(true));
        assert_eq!(t("count(result, {# > 0.9}) >= 2"), Ok(true));
        assert_eq!(t("len(filter(result, {# > 0.9})) == 2"), Ok(true));
        assert_eq!(t("asInt(result[1] * 100) == 95"), Ok(true));
        assert_eq!(t("default(result, [1])[0] == 0.5"), Ok(true));
        assert_eq!(t("not isNil(result)"), Ok(true));
        assert_eq!(t("max(result) == 0.99 && min(result) == 0.5"), Ok(true));
        assert_eq!(t("1 + 2 * 3 == 7 && 7 / 2 == 3.5 && 7 % 2 == 1"), Ok(true));
        assert_eq!(t("2 ** 10 == 1024"), Ok(true));
        assert_eq!(t("0.5 in result && 2 not in result"), Ok(true));
        assert_eq!(t("result[0] > 1 ? false : true"), Ok(true));
        assert_eq!(t("!(result[0] > 1) || result[5] > 0"), Ok(true));
        // Short-circuit: the right side is never evaluated.
        assert_eq!(t("result[0] > 1 && result[9] > 0"), Ok(false));
        assert!(t("result[9] > 0").is_err());
        assert_eq!(eval_condition(&Val::Float(3.0), "result > 2"), Ok(true));
    }
}
