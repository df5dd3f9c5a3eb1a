-- POST the body in $WRK_BODY and print one JSON line of results (latencies in microseconds).
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY")
wrk.headers["Content-Type"] = "application/json"
-- A gateway key, for the gateway with [auth] on.
if os.getenv("WRK_AUTH") then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_AUTH")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"p50":%d,"p99":%d,"p999":%d,"mean":%.1f}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.mean))
end
