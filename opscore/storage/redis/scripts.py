"""The Lua scripts of the Redis store: each multi-key change (a queue move, a record's
compare-and-set with its index writes, a session saved with its indexes) in one round trip,
atomic in Redis. ``Ops`` builds the writes a compare-and-set script makes beside its record."""

from __future__ import annotations

import time

SEQ_SPAN = 2**41  # FIFO sequence room under each priority in one float score


def enqueue_args(task_id: str, priority: int, ready_at: float) -> list[object]:
    """The arguments of enqueue() after its keys: for the script and for a CAS's ENQ alike."""
    return [task_id, priority, ready_at, SEQ_SPAN, time.time()]


DEQUEUE = """
local function back_to_ready(id)
  local meta = redis.call('HGET', KEYS[4], id)
  if meta then
    local score = string.sub(meta, 1, string.find(meta, '|') - 1)
    redis.call('ZADD', KEYS[2], score, id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[1], id)
  back_to_ready(id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[3], id)
  back_to_ready(id)
end
local popped = redis.call('ZPOPMIN', KEYS[2], ARGV[3])
local out = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  redis.call('ZADD', KEYS[3], ARGV[2], id)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', KEYS[4], id) or '')
  table.insert(out, redis.call('GET', ARGV[4] .. id) or '')
end
return out
"""

# An entry is in one of delayed, ready and leased at most (every script moves it out of one
# before it adds it to another), and has its meta while in any: so an entry acknowledged out
# of 'leased' is in none (queued again meanwhile, it left 'leased'), and goes whole.
ACK = """
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
  end
end
return 1
"""

REQUEUE = """
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    local meta = redis.call('HGET', KEYS[4], id)
    if meta then
      redis.call('ZADD', KEYS[2], string.sub(meta, 1, string.find(meta, '|') - 1), id)
    end
  end
end
return 1
"""


# Queue (or re-queue) a task: the queue's delayed, ready, leased and meta keys, the sequence
# counter and 'since' (each entry's ready-at, until it is acknowledged); then the task id, its
# priority, ready-at timestamp, the score span per priority and the time now. An entry already
# due goes straight to the ready set: no later move out of 'delayed'. A task with no meta yet
# is in none of the sets (see ACK): nothing to take it out of.
ENQUEUE_FN = """
local function enqueue(delayed, ready, leased, meta, seqkey, since, id, priority, at, span, now)
  local seq = redis.call('INCR', seqkey)
  local score = string.format('%.0f', (1000 - tonumber(priority)) * tonumber(span) + seq)
  local queued = redis.call('HSET', meta, id, score .. '|' .. priority .. '|' .. seq) == 0
  if queued then redis.call('ZREM', leased, id) end
  if tonumber(at) <= tonumber(now) then
    if queued then redis.call('ZREM', delayed, id) end
    redis.call('ZADD', ready, score, id)
  else
    if queued then redis.call('ZREM', ready, id) end
    redis.call('ZADD', delayed, at, id)
  end
  redis.call('ZADD', since, at, id)
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


# Compare-and-set of one or more records (KEYS) plus their index writes, in one round trip.
# ARGV: per record, the value read ('' when absent, else '=' .. value) and '1' to write the next
# argument or '0' to leave the record with it; then writes as <n> <command> <args...> groups:
# the custom ZMOVE <all> <from> <to> <member> moves a member between two sorted sets under its
# score in <all>, ENQ <the arguments of enqueue()> queues a task, READ <key> reads a key along
# (its value, or '' when absent, follows the 1 of success), and RECORDS <list> <prefix> <most>
# reads the records a list of ids names (their count, then id and record, alternating; -1 when
# the list holds more than <most>). Returns 0, writing nothing,
# when any record changed since it was read, with every record's current value ('' when
# absent). (Keys in ARGV: a standalone or Sentinel Redis, not Cluster.)
CAS = (
    ENQUEUE_FN
    + """
for r = 1, #KEYS do
  local cur = redis.call('GET', KEYS[r])
  if (cur and ('=' .. cur) or '') ~= ARGV[3 * r - 2] then
    local now = {0}
    for q = 1, #KEYS do
      now[q + 1] = (q == r) and (cur or '') or (redis.call('GET', KEYS[q]) or '')
    end
    return now
  end
end
for r = 1, #KEYS do
  if ARGV[3 * r - 1] == '1' then redis.call('SET', KEYS[r], ARGV[3 * r]) end
end
local out = {1}
local i = 3 * #KEYS + 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'READ' then
    out[#out + 1] = redis.call('GET', ARGV[i + 2]) or ''
  elseif ARGV[i + 1] == 'RECORDS' then
    local most = tonumber(ARGV[i + 4])
    local ids = redis.call('LRANGE', ARGV[i + 2], 0, most)
    if #ids > most then
      out[#out + 1] = -1
    else
      out[#out + 1] = #ids
      for _, id in ipairs(ids) do
        out[#out + 1] = id
        out[#out + 1] = redis.call('GET', ARGV[i + 3] .. id) or ''
      end
    end
  elseif ARGV[i + 1] == 'ENQ' then
    enqueue(unpack(ARGV, i + 2, i + n))
  elseif ARGV[i + 1] == 'ZMOVE' then
    local score = redis.call('ZSCORE', ARGV[i + 2], ARGV[i + 5])
    if score then
      redis.call('ZREM', ARGV[i + 3], ARGV[i + 5])
      redis.call('ZADD', ARGV[i + 4], score, ARGV[i + 5])
    end
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
if #out == 1 then return 1 end
return out
"""
)


# The records a list or set of ids names, in one round trip. KEYS: the list or set.
# ARGV: 'list' or 'set', the records' key prefix, and optionally one more key whose value
# comes first (or '' when it is absent). Answers ids and records, alternating.
RECORDS = """
local out = {}
if ARGV[3] then out[1] = redis.call('GET', ARGV[3]) or '' end
local ids
if ARGV[1] == 'list' then ids = redis.call('LRANGE', KEYS[1], 0, -1)
else ids = redis.call('SMEMBERS', KEYS[1]) end
for first = 1, #ids, 1000 do  -- MGET in chunks: unpack() has a limit of a few thousand
  local keys = {}
  local last = math.min(first + 999, #ids)
  for i = first, last do keys[#keys + 1] = ARGV[2] .. ids[i] end
  local raws = redis.call('MGET', unpack(keys))
  for i = first, last do
    local raw = raws[i - first + 1]
    if raw then
      out[#out + 1] = ids[i]
      out[#out + 1] = raw
    end
  end
end
return out
"""


# KEYS: the session, the index of all sessions, the sequence counter. ARGV: session id, JSON,
# status, the status indexes' key prefix. Keeps the session's place (sequence) when replaced,
# and moves it between status indexes (reading only the old record's status).
SAVE_SESSION = """
local seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not seq then seq = redis.call('INCR', KEYS[3]) end
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
if old then
  local status = cjson.decode(old)['status']
  if status ~= ARGV[3] then redis.call('ZREM', ARGV[4] .. status, ARGV[1]) end
end
redis.call('ZADD', ARGV[4] .. ARGV[3], seq, ARGV[1])
return 1
"""

# A run as it starts (save_run): its tasks, then its session as SAVE_SESSION writes it (same
# KEYS[1-3] and ARGV[1-4]); KEYS[4] the run's list of task ids, KEYS[5] the in-flight set,
# KEYS[6-11] the queue keys of enqueue(); ARGV[5] the prefix of task keys, ARGV[6] and [7]
# enqueue()'s span and now, then per task: id, record, 1 if in flight, the time it is ready
# at when it is queued with the run (else ''), its priority. A task seen for the first time
# joins the run's list (written again, it keeps its place).
SAVE_RUN = (
    ENQUEUE_FN
    + """
for i = 8, #ARGV, 5 do
  local id = ARGV[i]
  local old = redis.call('SET', ARGV[5] .. id, ARGV[i + 1], 'GET')
  if not old then redis.call('RPUSH', KEYS[4], id) end
  if ARGV[i + 2] == '1' then redis.call('SADD', KEYS[5], id)
  elseif old then redis.call('SREM', KEYS[5], id) end
  if ARGV[i + 3] ~= '' then
    enqueue(KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11],
            id, ARGV[i + 4], ARGV[i + 3], ARGV[6], ARGV[7])
  end
end
"""
    + SAVE_SESSION
)


class Ops:
    """Writes that a compare-and-set script makes beside the record (same round trip)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        # keys read along, and (list, prefix) of lists whose records are read along
        self.reads: list[str | tuple[str, str]] = []

    def _add(self, *words: object) -> None:
        self.args += [str(len(words)), *(str(w) for w in words)]

    def sadd(self, key: str, *members: str) -> None:
        self._add("SADD", key, *members)

    def srem(self, key: str, *members: str) -> None:
        self._add("SREM", key, *members)

    def delete(self, *keys: str) -> None:
        self._add("DEL", *keys)

    def lpush(self, key: str, value: str) -> None:
        self._add("LPUSH", key, value)

    def ltrim(self, key: str, start: int, stop: int) -> None:
        self._add("LTRIM", key, start, stop)

    def read(self, key: str) -> None:
        """Read ``key`` in the same round trip, after the writes (see ``_Base._read_along``)."""
        self.reads.append(key)
        self._add("READ", key)

    def read_records(self, ids: str, prefix: str, most: int) -> None:
        """Read the records the list ``ids`` names (``prefix`` + id) along, unless it holds
        more than ``most`` ids."""
        self.reads.append((ids, prefix))
        self._add("RECORDS", ids, prefix, most)

    def enqueue(self, keys: list[str], task_id: str, priority: int, ready_at: float) -> None:
        """Queue the task as the enqueue script does (``keys``: its six queue keys)."""
        self._add("ENQ", *keys, *enqueue_args(task_id, priority, ready_at))

    def zmove(self, scores: str, source: str, target: str, member: str) -> None:
        """Move ``member`` from sorted set ``source`` to ``target`` keeping its score in
        ``scores`` (nothing when it has none there)."""
        self._add("ZMOVE", scores, source, target, member)
