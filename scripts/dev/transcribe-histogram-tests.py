#!/usr/bin/env python3
"""Transcribes the case tables of Prometheus v3.8's model/histogram tests
(TestFloatHistogramDetectReset, TestFloatHistogramAdd, TestFloatHistogramSub)
into Rust data for src/model/histogram/upstream_cases.rs. Usage:
  scripts/dev/transcribe-histogram-tests.py "$(go env GOMODCACHE)/github.com/prometheus/prometheus@v0.308.0/model/histogram/float_histogram_test.go" > src/model/histogram/upstream_cases.rs
"""
import re, sys

src = open(sys.argv[1]).read()

def func_body(name):
    i = src.index("func %s(t *testing.T) {" % name)
    j = src.index("\n}\n", i)
    return src[i:j]

def balanced(s, i):
    """s[i] == '{'; returns index after the matching '}'."""
    d = 0
    while True:
        c = s[i]
        if c == '{': d += 1
        elif c == '}':
            d -= 1
            if d == 0: return i + 1
        i += 1

def num(x):
    x = x.strip()
    m = {"math.Inf(1)": "f64::INFINITY", "math.Inf(-1)": "f64::NEG_INFINITY", "math.NaN()": "f64::NAN",
         "math.MaxFloat64": "f64::MAX"}
    if x in m: return m[x]
    if not re.fullmatch(r"[-+*/ ().0-9eE]+", x):
        raise ValueError(x)
    v = float(eval(x))
    r = repr(v)
    return r if ('.' in r or 'e' in r or 'inf' in r or 'nan' in r) else r + ".0"

HINTS = {"UnknownCounterReset": "Unknown", "CounterReset": "CounterReset",
         "NotCounterReset": "NotCounterReset", "GaugeType": "Gauge"}

def hist(lit):
    """lit: the text inside FloatHistogram{...}."""
    f = {}
    for key in ["Schema", "ZeroThreshold", "ZeroCount", "Count", "Sum", "CounterResetHint"]:
        m = re.search(r"\b%s:\s*([^,\n]+)," % key, lit)
        if m: f[key] = m.group(1).strip()
    def arr(key, kind):
        m = re.search(r"\b%s:\s*\[\]%s\{" % (key, kind), lit)
        if not m: return None
        start = m.end() - 1
        end = balanced(lit, start)
        return lit[start + 1:end - 1]
    def spans(key):
        a = arr(key, "Span")
        if not a: return "&[]"
        pairs = re.findall(r"\{\s*(-?\d+)\s*,\s*(\d+)\s*\}", a)
        return "&[" + ", ".join("(%s, %s)" % p for p in pairs) + "]"
    def floats(key):
        a = arr(key, "float64")
        if not a or not a.strip(): return "&[]"
        return "&[" + ", ".join(num(x) for x in a.split(",") if x.strip()) + "]"
    schema = f.get("Schema", "0")
    if schema == "CustomBucketsSchema": schema = "-53"
    hint = HINTS.get(f.get("CounterResetHint", "UnknownCounterReset"), "Unknown")
    return "H { schema: %s, zt: %s, zc: %s, count: %s, sum: %s, ps: %s, pb: %s, ns: %s, nb: %s, cv: %s, hint: %s }" % (
        schema, num(f.get("ZeroThreshold", "0")), num(f.get("ZeroCount", "0")), num(f.get("Count", "0")),
        num(f.get("Sum", "0")), spans("PositiveSpans"), floats("PositiveBuckets"), spans("NegativeSpans"),
        floats("NegativeBuckets"), floats("CustomValues"), hint)

def histograms(case):
    out = []
    for m in re.finditer(r"&FloatHistogram\{", case):
        s = m.end() - 1
        out.append((m.start(), hist(case[s + 1:balanced(case, s) - 1])))
    return out

def cases(body):
    i = body.index("}{", body.index("cases := []struct")) + 1
    end = balanced(body, i)
    table = body[i + 1:end - 1]
    k = 0
    while True:
        s = table.find("{", k)
        if s < 0: return
        e = balanced(table, s)
        yield table[s:e]
        k = e

print("//! Cases transcribed from Prometheus v3.8's model/histogram/float_histogram_test.go")
print("//! by scripts/dev/transcribe-histogram-tests.py: the oracle for this module's tests.")
print("#![allow(clippy::all)]")
print("use super::tests::H;")
print("use crate::model::histogram::CounterResetHint::*;")
print()
print("/// (name, previous, current, reset expected)")
print("pub(super) const DETECT_RESET: &[(&str, H, H, bool)] = &[")
for c in cases(func_body("TestFloatHistogramDetectReset")):
    name = re.search(r'"([^"]*)"', c).group(1)
    hs = histograms(c)
    res = re.findall(r"\b(true|false)\b", c)[-1]
    print("    (%r, %s, %s, %s)," % (name, hs[0][1], hs[1][1], res) if False else
          '    ("%s", %s, %s, %s),' % (name, hs[0][1], hs[1][1], res))
print("];")
for fn, const in [("TestFloatHistogramAdd", "ADD"), ("TestFloatHistogramSub", "SUB")]:
    print()
    print("/// (name, in1, in2, expected or None, error message, counter reset collision, NHCB bounds reconciled)")
    print("pub(super) const %s: &[(&str, H, H, Option<H>, &str, bool, bool)] = &[" % const)
    for c in cases(func_body(fn)):
        name = re.search(r'name:\s*"([^"]*)"', c).group(1)
        hs = dict()
        for key in ["in1", "in2", "expected"]:
            m = re.search(r"\b%s:\s*&FloatHistogram\{" % key, c)
            if m:
                s = m.end() - 1
                hs[key] = hist(c[s + 1:balanced(c, s) - 1])
        err = re.search(r'expErrMsg:\s*"([^"]*)"', c)
        crc = re.search(r"expCounterResetCollision:\s*(true|false)", c)
        rec = re.search(r"expNHCBBoundsReconciled:\s*(true|false)", c)
        exp = "Some(%s)" % hs["expected"] if "expected" in hs else "None"
        print('    ("%s", %s, %s, %s, "%s", %s, %s),' % (name, hs["in1"], hs["in2"], exp,
              err.group(1) if err else "", crc.group(1) if crc else "false", rec.group(1) if rec else "false"))
    print("];")
