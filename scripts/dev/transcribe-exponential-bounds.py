#!/usr/bin/env python3
"""Writes src/model/histogram/bounds_table.rs from Prometheus v3.8's
model/histogram/generic.go `exponentialBounds`: the exact float64 bucket
bounds in [0.5, 1) per schema 0..8 that Prometheus uses (the wire and the
JSON API print them, so they must match bit for bit). Usage:
  scripts/dev/transcribe-exponential-bounds.py "$(go env GOMODCACHE)/github.com/prometheus/prometheus@v0.308.0/model/histogram/generic.go" > src/model/histogram/bounds_table.rs
"""
import re, sys

src = open(sys.argv[1]).read()
i = src.index("var exponentialBounds = [][]float64{")
j = src.index("\n}\n", i)
body = src[i:j]
rows = []
for m in re.finditer(r"\{([^{}]*)\}", body[body.index("{") + 1:]):
    vals = [v.strip() for v in re.sub(r"//[^\n]*", "", m.group(1)).split(",") if v.strip()]
    rows.append(vals)
assert [len(r) for r in rows] == [2 ** s for s in range(9)], [len(r) for r in rows]
print("//! Prometheus's exact exponential bucket bounds in [0.5, 1) per schema 0..8,")
print("//! transcribed from model/histogram/generic.go (v3.8) by")
print("//! scripts/dev/transcribe-exponential-bounds.py.")
print()
print("#[rustfmt::skip]")
print("#[allow(clippy::excessive_precision, clippy::approx_constant)]")
print("pub(super) static EXPONENTIAL_BOUNDS: [&[f64]; 9] = [")
for r in rows:
    print("    &[" + ", ".join(r) + "],")
print("];")
