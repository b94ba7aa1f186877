-- wrk script for the reload runs: also counts every response whose status is not 200
-- (wrk's own "status" error counts only >= 400), per thread, summed in done().
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  non200 = 0
end

response = function(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
end

done = function(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + (t:get("non200") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_SUMMARY requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d non200=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, n,
    latency:percentile(50), latency:percentile(99)))
end
