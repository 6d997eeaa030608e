-- wrk script of loadtest/run.py: exact status counts and latency percentiles.
-- Every thread counts statuses in its own Lua state; done() (main state)
-- collects them through thread:get and prints one line. The script argument
-- (wrk ... URL -- N) caps the answers per thread: the thread stops at N, so
-- a run is bounded in count as well as by -d.
--   WRKJSON {"requests":N,"duration_us":N,"latency_us":{...},"status":{...},"errors":{...}}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  answered = 0
  limit = tonumber(args[1]) or math.huge
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  answered = answered + 1
  if answered >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {}
    for code, n in pairs(s) do
      total[code] = (total[code] or 0) + n
    end
  end
  local st = {}
  for code, n in pairs(total) do
    table.insert(st, string.format('"%d":%d', code, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d,"mean":%.1f},' ..
    '"status":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    table.concat(st, ","),
    e.connect, e.read, e.write, e.status, e.timeout))
end
