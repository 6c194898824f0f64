-- wrk script: POST AgentKit state reports over N agents, at most one in flight per agent (see
-- agent_pool.lua), each agent's timestamps increasing. Args: <key> <agents> <base-epoch> <threads>
local pool = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "agent_pool.lua")
local counter = 0
local key, base, agents
thread_index = 0  -- set per thread by setup() below
local next_index = 0

function setup(thread)
  thread:set("thread_index", next_index)
  next_index = next_index + 1
end

function init(args)
  key = args[1]
  base = tonumber(args[3])
  agents = pool.new(thread_index, tonumber(args[4] or "1"), tonumber(args[2]))
end

function request()
  counter = counter + 1
  local id = agents.take() or ("agent-" .. thread_index)
  local micro = counter % 1000000
  local seconds = base + math.floor(counter / 1000000)
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%06d+00:00", micro)
  local state = (counter % 2 == 0) and "idle" or "active"
  local body = '{"agentId":"' .. id .. '","timestamp":"' .. stamp .. '","state":"' .. state .. '","details":{}}'
  return wrk.format("POST", "/v1/opscore/agent/" .. id .. "/state",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}, body)
end

function response(status, headers, body)
  agents.release(body)
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\":%d,\"duration_us\":%d,\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"timeouts\":%d,\"status_errors\":%d,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f}\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
