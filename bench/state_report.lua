-- wrk script: POST AgentKit state reports, round-robin over N agents, each thread owning its
-- own agents so every agent's timestamps increase. Args: <key> <agents> <base-epoch>
local counter = 0
local threads_total = 1
local key, agents, base
thread_index = 0  -- set per thread by setup() below
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
end

function request()
  counter = counter + 1
  local per_thread = math.floor(agents / threads_total)
  local agent = thread_index + threads_total * (counter % per_thread)
  local micro = counter % 1000000
  local seconds = base + math.floor(counter / 1000000)
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%06d+00:00", micro)
  local id = "agent-" .. agent
  local state = (counter % 2 == 0) and "idle" or "active"
  local body = '{"agentId":"' .. id .. '","timestamp":"' .. stamp .. '","state":"' .. state .. '","details":{}}'
  return wrk.format("POST", "/v1/opscore/agent/" .. id .. "/state",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\":%d,\"duration_us\":%d,\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"timeouts\":%d,\"status_errors\":%d,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f}\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
