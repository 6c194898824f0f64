"""The Lua scripts of the Redis store's queue: its entries queued, claimed (leased),
acknowledged and put back, each in one round trip, atomic in Redis. ``ENQUEUE_FN`` is also
run by a compare-and-set (``scripts.CAS``'s ENQ) and by a run as it starts (``SAVE_RUN``)."""

from __future__ import annotations

import time

SEQ_SPAN = 2**41  # FIFO sequence room under each priority in one float score


def enqueue_args(task_id: str, priority: int, ready_at: float) -> list[object]:
    """The arguments of enqueue() after its keys: for the script and for a CAS's ENQ alike."""
    return [task_id, priority, ready_at, SEQ_SPAN, time.time()]


# An entry's ready score (its place among the ready: priority, then sequence) is its score in
# 'ready'; while it waits in 'delayed' or is leased out, 'meta' (KEYS[4]) keeps it, so it can
# go back. An older release wrote "score|priority|seq" there for every entry: read alike.
SCORE_OF_META_FN = """
local function score_of(meta)
  local bar = string.find(meta, '|')
  if bar then return string.sub(meta, 1, bar - 1) end
  return meta
end
"""

# With ARGV[6] == '1' (other replicas up), each claimed task's record also names the row its
# completion may write along, and those rows are read in the same script: the replica that
# hands the task over most often writes that completion (dispatch/affinity.py), and would
# otherwise read the row first. The stored JSON ends with the task's next step's id (models:
# NextStep.task_id, TaskRun.ends_run are its last fields), or with ends_run true, and then the
# session's id is the record's second field: both read where nothing else can be.
FOLLOW_FN = """
local function follow_key(raw)
  local tail = string.sub(raw, -256)
  local next_id = string.match(tail, '"task_id":"([^"]+)"},"ends_run":false}$')
  if next_id then return ARGV[4] .. next_id end
  if string.find(tail, '"next_step":null,"ends_run":true}', 1, true) then
    local sid = string.match(raw, '^{"task_id":"[^"]*","session_id":"([^"]+)"')
    if sid then return ARGV[7] .. sid end
  end
  return nil
end
"""

DEQUEUE = (
    SCORE_OF_META_FN
    + FOLLOW_FN
    + """
local function back_to_ready(id)
  local meta = redis.call('HGET', KEYS[4], id)
  if meta then redis.call('ZADD', KEYS[2], score_of(meta), id) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[1], id)
  back_to_ready(id)
end
if ARGV[5] == '1' then  -- leases that ran out (looked for once a second: they last 30)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])) do
    redis.call('ZREM', KEYS[3], id)
    back_to_ready(id)
  end
end
local popped = redis.call('ZPOPMIN', KEYS[2], ARGV[3])
local out, follow_keys = {}, {}
-- leased, their scores kept and their tasks read with one command each per 1000 entries
-- (unpack() has a limit of a few thousand), not three per entry
for first = 1, #popped, 2000 do
  local leased, metas, tasks = {}, {}, {}
  for i = first, math.min(first + 1999, #popped), 2 do
    local id = popped[i]
    leased[#leased + 1] = ARGV[2]
    leased[#leased + 1] = id
    metas[#metas + 1] = id
    metas[#metas + 1] = popped[i + 1]
    tasks[#tasks + 1] = ARGV[4] .. id
  end
  redis.call('ZADD', KEYS[3], unpack(leased))
  redis.call('HSET', KEYS[4], unpack(metas))
  local raws = redis.call('MGET', unpack(tasks))
  for k, raw in ipairs(raws) do
    out[#out + 1] = metas[2 * k - 1]
    out[#out + 1] = metas[2 * k]
    out[#out + 1] = raw or ''
    if raw and ARGV[6] == '1' then
      local key = follow_key(raw)
      if key then follow_keys[#follow_keys + 1] = key end
    end
  end
end
local follows = {}
for first = 1, #follow_keys, 1000 do
  local keys = {unpack(follow_keys, first, math.min(first + 999, #follow_keys))}
  local docs = redis.call('MGET', unpack(keys))
  for i, key in ipairs(keys) do
    follows[#follows + 1] = key
    follows[#follows + 1] = docs[i] or ''
  end
end
return {out, follows}
"""
)

# An entry is in one of delayed, ready and leased at most (every script moves it out of one
# before it adds it to another), and in 'since' while in any: so an entry acknowledged out of
# 'leased' is in none (queued again meanwhile, it left 'leased'), and goes whole.
# leased(key, ids, settle) takes those of ``ids`` still leased out of 'leased' (``key``) and
# calls settle(taken) with them, 1000 at a time (unpack() has a limit of a few thousand): one
# command of each kind per call, not one per entry; a single entry is asked for directly.
# acknowledged(leased, meta, since, ids) is the ack: also run by a compare-and-set that starts
# a task's attempt (``scripts.CAS``'s ACK), so that the hand-over needs no ack of its own.
LEASED_FN = """
local function leased(key, ids, settle)
  if #ids == 1 then
    if redis.call('ZREM', key, ids[1]) == 1 then settle(ids) end
    return
  end
  for first = 1, #ids, 1000 do
    local chunk = {unpack(ids, first, math.min(first + 999, #ids))}
    local scores = redis.call('ZMSCORE', key, unpack(chunk))
    local taken = {}
    for k, id in ipairs(chunk) do
      if scores[k] then taken[#taken + 1] = id end
    end
    if #taken > 0 then
      redis.call('ZREM', key, unpack(taken))
      settle(taken)
    end
  end
end
local function acknowledged(leased_key, meta, since, ids)
  leased(leased_key, ids, function(taken)
    redis.call('HDEL', meta, unpack(taken))
    redis.call('ZREM', since, unpack(taken))
  end)
end
"""

# KEYS: the queue's leased and meta keys and 'since' (``_ack_keys``, as a CAS's ACK takes
# them); ARGV: the ids.
ACK = (
    LEASED_FN
    + """
acknowledged(KEYS[1], KEYS[2], KEYS[3], ARGV)
return 1
"""
)

REQUEUE = (
    LEASED_FN
    + SCORE_OF_META_FN
    + """
leased(KEYS[3], ARGV, function(ids)
  local metas = redis.call('HMGET', KEYS[4], unpack(ids))
  local ready = {}
  for k, id in ipairs(ids) do
    if metas[k] then
      ready[#ready + 1] = score_of(metas[k])
      ready[#ready + 1] = id
    end
  end
  if #ready > 0 then redis.call('ZADD', KEYS[2], unpack(ready)) end
end)
return 1
"""
)


# Queue (or re-queue) a task: the queue's delayed, ready, leased and meta keys, the sequence
# counter and 'since' (each entry's ready-at, until it is acknowledged: so an entry already in
# 'since' is queued, in one of the three sets); then the task id, its priority, ready-at
# timestamp, the score span per priority and the time now. An entry already due goes straight
# to the ready set: no later move out of 'delayed', and no meta (its score in 'ready' says it).
ENQUEUE_FN = """
local function enqueue(delayed, ready, leased, meta, seqkey, since, id, priority, at, span, now)
  local seq = redis.call('INCR', seqkey)
  local score = string.format('%.0f', (1000 - tonumber(priority)) * tonumber(span) + seq)
  local queued = redis.call('ZADD', since, at, id) == 0
  if queued then redis.call('ZREM', leased, id) end
  if tonumber(at) <= tonumber(now) then
    if queued then redis.call('ZREM', delayed, id) end
    redis.call('ZADD', ready, score, id)
  else
    if queued then redis.call('ZREM', ready, id) end
    redis.call('HSET', meta, id, score)
    redis.call('ZADD', delayed, at, id)
  end
  return seq
end
"""

# KEYS: the six queue keys of enqueue(). ARGV: task id, priority, ready-at, span, now.
ENQUEUE = (
    ENQUEUE_FN
    + """
return enqueue(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
               ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
"""
)
