-- wrk script for the serving benchmark: POST the bodies of an ndjson file (one JSON body per
-- line), round robin, and print p50/p99 and the non-200 count as one JSON line at the end.
--   WRK_BODIES=bodies.ndjson wrk -t2 -c32 -d10s --latency -s benchmarks/wrk_post.lua http://127.0.0.1:8000/forecast
local bodies, counter, bad = {}, 0, 0

function init(args)
  for line in io.lines(os.getenv("WRK_BODIES")) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local non200 = summary.errors.status
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "req_per_s": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, "non200": %d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, non200))
end
