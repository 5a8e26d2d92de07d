-- wrk script: POSTs one instant query as a form, as Argo Rollouts does.
-- The form body comes from the environment (BENCH_BODY), URL-encoded.
-- No per-response callback: Lua parsing every answer would make wrk, which
-- shares the cores with the server under test, the bottleneck. Answers
-- with a status of 400 or more are counted by wrk itself (errors.status).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = os.getenv("BENCH_BODY")

done = function(summary, latency, requests)
  -- Machine-readable line for scripts/bench-cache.
  io.write(string.format("BENCH rps=%.1f p50_us=%d p99_us=%d requests=%d errors=%d non200=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
