-- Agents as AgentKit runs them: each agent sends its next state report only after the previous
-- one was answered. A wrk thread owns agents thread_index, thread_index + threads, ...; a
-- request takes a free agent, the response (whose body names the agent) frees it again.
--
-- Without this, a report written on a connection the server has not accepted yet can be
-- overtaken by the same agent's newer report on another connection, and Ops-Core rightly
-- refuses the stale one (409 STATE_OUT_OF_ORDER): an artefact of the load generator, not of
-- agents, which never have two reports in flight.
local pool = {}

function pool.new(thread_index, threads_total, agents)
  local free, first, last = {}, 1, 0
  for k = 0, math.floor(agents / threads_total) - 1 do
    last = last + 1
    free[last] = "agent-" .. (thread_index + threads_total * k)
  end
  local self = {}
  function self.take()
    if first > last then return nil end
    local agent = free[first]
    free[first] = nil
    first = first + 1
    return agent
  end
  function self.give(agent)
    last = last + 1
    free[last] = agent
  end
  -- an accepted state report's answer, Ops-Core's or the baseline's, names its agent; other
  -- answers (reads, triggers) free nothing
  function self.release(body)
    local agent = body and body:match('^{"status":"success","message":"[^"]*","agentId":"([^"]+)"')
    if agent then self.give(agent) end
  end
  return self
end

return pool
