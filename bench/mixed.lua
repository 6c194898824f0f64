-- wrk script for the soak: 84.5% state reports, 15% reads, 0.5% workflow triggers (three
-- no-op tasks each, within what the 32 fast agents finish, so the backlog does not grow).
-- State reports go out at most one in flight per agent (see agent_pool.lua).
-- Args: <key> <agents> <base-epoch> <threads>
local pool = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "agent_pool.lua")
local counter = 0
local threads_total = 1
local key, agents, base, reporters
thread_index = 0
local next_index = 0

function setup(thread)
  thread:set("thread_index", next_index)
  next_index = next_index + 1
end

function init(args)
  key = args[1]
  agents = tonumber(args[2])
  base = tonumber(args[3])
  threads_total = tonumber(args[4] or "1")
  reporters = pool.new(thread_index, threads_total, agents)
end

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
  local roll = counter % 200
  local per_thread = math.floor(agents / threads_total)
  local agent = "agent-" .. (thread_index + threads_total * (counter % per_thread))
  if roll == 0 then
    return wrk.format("POST", "/v1/opscore/workflows/chain3/runs", headers, "{}")
  elseif roll <= 30 then
    return wrk.format("GET", "/v1/opscore/agents/" .. agent, headers)
  end
  agent = reporters.take() or agent
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S", base + math.floor(counter / 1000000)) ..
    string.format(".%06d+00:00", counter % 1000000)
  local body = '{"agentId":"' .. agent .. '","timestamp":"' .. stamp .. '","state":"idle","details":{}}'
  return wrk.format("POST", "/v1/opscore/agent/" .. agent .. "/state", headers, body)
end

function response(status, headers, body)
  reporters.release(body)
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\":%d,\"duration_us\":%d,\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"timeouts\":%d,\"status_errors\":%d,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f}\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
