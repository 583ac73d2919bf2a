-- Shared wrk summary: requests/s, latency percentiles, and non-2xx count.
-- With RATE set (requests/s over all CONNS connections), each connection pauses
-- CONNS/RATE seconds (whole milliseconds, wrk's unit) after every answer, so the load is paced
-- near RATE instead of saturating the machine; RESULT reports the rate actually reached.
local rate = tonumber(os.getenv("RATE") or "")
if rate then
  local pause = math.floor(1000 * tonumber(os.getenv("CONNS") or "32") / rate)
  delay = function() return pause end
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
