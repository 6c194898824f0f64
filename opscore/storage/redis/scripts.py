"""The Lua scripts of the Redis store: each multi-key change (a record's compare-and-set
with its index writes, a session saved with its indexes, a run as it starts) in one round
trip, atomic in Redis (the queue's are in ``queue_scripts``). ``Ops`` builds the writes a
compare-and-set script makes beside its record."""

from __future__ import annotations

import math

from .queue_scripts import ENQUEUE_FN, LEASED_FN, enqueue_args

# Compare-and-set of one or more records (KEYS) plus their index writes, in one round trip:
# the records are read with one MGET and written with one MSET (each command a script calls
# costs Redis a dispatch, and the bench counts them).
# ARGV: per record, the value read ('' when absent, else '=' .. value) and '1' to write the next
# argument or '0' to leave the record with it; then writes as <n> <command> <args...> groups:
# PUT <key> <value> writes a key no compare-and-set reads (a state report's numbered history
# entry, ``history.py``) with the records, in their MSET; the custom ZMOVE <all> <from> <to>
# <member> moves a member between two sorted sets under its
# score in <all>, ENQ <the arguments of enqueue()> queues a task, ACK <leased> <meta> <since>
# <id> acknowledges its queue entry if still leased (every ACK of a script at its end, together:
# ``acks_settled``; as the ack script does), READ <key> reads a key along
# (its value, or '' when absent, follows the 1 of success), and RECORDS <list> <prefix> <most>
# reads the records a list of ids names (their count, then id and record, alternating; -1 when
# the list holds more than <most>). Returns 0, writing nothing,
# when any record changed since it was read, with every record's current value ('' when
# absent). (Keys in ARGV: a standalone or Sentinel Redis, not Cluster.)
CAS_FN = (
    ENQUEUE_FN
    + LEASED_FN
    + """
-- the entries the ACKs of a script's compare-and-sets acknowledge, at the script's end
local ack_keys, ack_ids = nil, {}
local function acks_settled()
  if #ack_ids > 0 then acknowledged(ack_keys[1], ack_keys[2], ack_keys[3], ack_ids) end
end
-- KEYS and ARGV: one compare-and-set's own (CAS passes the script's, CAS_GROUPS a group's);
-- curs: its records' values as read already (one MGET for all groups), or nil to read them
local function cas(KEYS, ARGV, curs)
curs = curs or redis.call('MGET', unpack(KEYS))
for r = 1, #KEYS do
  local cur = curs[r]
  if (cur and ('=' .. cur) or '') ~= ARGV[3 * r - 2] then
    local now = {0}
    for q = 1, #KEYS do now[q + 1] = curs[q] or '' end
    return now
  end
end
local sets = {}
for r = 1, #KEYS do
  if ARGV[3 * r - 1] == '1' then
    sets[#sets + 1] = KEYS[r]
    sets[#sets + 1] = ARGV[3 * r]
  end
end
local i = 3 * #KEYS + 1
while i <= #ARGV do  -- a PUT is written with the records, in the same MSET
  if ARGV[i + 1] == 'PUT' then
    sets[#sets + 1] = ARGV[i + 2]
    sets[#sets + 1] = ARGV[i + 3]
  end
  i = i + tonumber(ARGV[i]) + 1
end
if #sets > 0 then redis.call('MSET', unpack(sets)) end
local out = {1}
-- A READ keeps its place in out and waits for the next write, a RECORDS or the end: reads in
-- a row, with the records a RECORDS names, go out as one MGET. A write after a read first
-- sends it, so the read answers what was there before the write, as the order says.
local pending = {}
local function read(more)
  local keys = {}
  for _, p in ipairs(pending) do keys[#keys + 1] = p[2] end
  for _, key in ipairs(more) do keys[#keys + 1] = key end
  if #keys == 0 then return {} end
  local values = redis.call('MGET', unpack(keys))
  for k, p in ipairs(pending) do out[p[1]] = values[k] or '' end
  local rest = {}
  for k = #pending + 1, #keys do rest[#rest + 1] = values[k] or '' end
  pending = {}
  return rest
end
i = 3 * #KEYS + 1
while i <= #ARGV do
  local n, op = tonumber(ARGV[i]), ARGV[i + 1]
  if op == 'PUT' then  -- written above, with the records
  elseif op == 'READ' then
    out[#out + 1] = ''
    pending[#pending + 1] = {#out, ARGV[i + 2]}
  elseif op == 'RECORDS' then
    local most = tonumber(ARGV[i + 4])
    local ids = redis.call('LRANGE', ARGV[i + 2], 0, most)
    if #ids > most then
      out[#out + 1] = -1
    else
      out[#out + 1] = #ids
      local keys = {}
      for k, id in ipairs(ids) do keys[k] = ARGV[i + 3] .. id end
      local raws = read(keys)
      for k, id in ipairs(ids) do
        out[#out + 1] = id
        out[#out + 1] = raws[k]
      end
    end
  else
    read({})
    if op == 'ENQ' then
      enqueue(unpack(ARGV, i + 2, i + n))
    elseif op == 'ACK' then
      ack_keys = {ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]}
      ack_ids[#ack_ids + 1] = ARGV[i + 5]
    elseif op == 'ZMOVE' then
      local score = redis.call('ZSCORE', ARGV[i + 2], ARGV[i + 5])
      if score then
        redis.call('ZREM', ARGV[i + 3], ARGV[i + 5])
        redis.call('ZADD', ARGV[i + 4], score, ARGV[i + 5])
      end
    else
      redis.call(unpack(ARGV, i + 1, i + n))
    end
  end
  i = i + n + 1
end
read({})
if #out == 1 then return 1 end
return out
end
"""
)

CAS = CAS_FN + "local answer = cas(KEYS, ARGV, nil)\nacks_settled()\nreturn answer\n"

# Compare-and-sets asked at the same moment (``cas_groups.py``), run in turn as CAS runs each:
# the same writes, in the order asked, in one script (each script call costs Redis a dispatch).
# KEYS: every group's keys in turn. ARGV: per group, its key count and argument count, then
# its arguments as CAS takes them. When no two groups share a key and no group deletes or
# writes anything a compare-and-set reads (only PUT, READ, RECORDS, ENQ, ACK, ZMOVE and writes to
# indexes), every group's records are read with one MGET first: what one group writes, no
# later group reads. Answers each group's answer, in order (an error for a group that failed:
# what it wrote before the failing command stays written, as with a script of its own).
CAS_GROUPS = (
    CAS_FN
    + """
local groups, k, a = {}, 1, 1
local shared, seen = true, {}
local index_ops = {PUT = true, READ = true, RECORDS = true, ENQ = true, ACK = true, ZMOVE = true,
                   ZADD = true, ZREM = true, SADD = true, SREM = true}
while a <= #ARGV do
  local nk, na = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local keys, argv = {}, {}
  for q = 1, nk do
    keys[q] = KEYS[k + q - 1]
    if seen[keys[q]] then shared = false end
    seen[keys[q]] = true
  end
  for q = 1, na do argv[q] = ARGV[a + 1 + q] end
  local i = 3 * nk + 1
  while i <= na do
    if not index_ops[argv[i + 1]] then shared = false end
    i = i + tonumber(argv[i]) + 1
  end
  groups[#groups + 1] = {keys, argv, k}
  k, a = k + nk, a + 2 + na
end
local all = shared and redis.call('MGET', unpack(KEYS)) or nil
local out = {}
for g, group in ipairs(groups) do
  local curs = nil
  if all then
    curs = {}
    for q = 1, #group[1] do curs[q] = all[group[3] + q - 1] end
  end
  -- a group that fails (a command refused) fails alone, as a script of its own would
  local ok, answer = pcall(cas, group[1], group[2], curs)
  if ok then
    out[g] = answer
  else
    out[g] = redis.error_reply(type(answer) == 'table' and answer.err or tostring(answer))
  end
end
acks_settled()
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
# status, the status indexes' key prefix, '1' when the session is likely new (this process
# has not seen it: a run as it starts) else '0'. Keeps the session's place (sequence) when
# replaced, and moves it between status indexes (reading only the old record's status).
# Likely new: its place is taken first (two commands, not three); were it there already,
# it keeps its place and the number taken is left unused. Answers its place.
SAVE_SESSION = """
local seq
if ARGV[5] == '1' then
  seq = redis.call('INCR', KEYS[3])
  if redis.call('ZADD', KEYS[2], 'NX', seq, ARGV[1]) == 0 then
    seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
  end
else
  seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if not seq then
    seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[2], seq, ARGV[1])
  end
end
local old = redis.call('SET', KEYS[1], ARGV[2], 'GET')
if old then
  local status = cjson.decode(old)['status']
  if status ~= ARGV[3] then redis.call('ZREM', ARGV[4] .. status, ARGV[1]) end
end
redis.call('ZADD', ARGV[4] .. ARGV[3], seq, ARGV[1])
return tonumber(seq)
"""

# A run as it starts (save_run): its tasks, then its session as SAVE_SESSION writes it (same
# KEYS[1-3] and ARGV[1-5]); KEYS[4] the run's list of task ids, KEYS[5] the in-flight index,
# KEYS[6-11] the queue keys of enqueue(); ARGV[6] the prefix of task keys, ARGV[7] and [8]
# enqueue()'s span and now, then per task: id, record, its score in the in-flight index
# ('' when not in flight), the time it is ready
# at when it is queued with the run (else ''), its priority. A task seen for the first time
# joins the run's list (written again, it keeps its place).
SAVE_RUN = (
    ENQUEUE_FN
    + """
-- one command of each kind per 500 tasks (unpack() has a limit of a few thousand), not
-- several per task; a task named twice joins the list once
local listed = {}
for first = 9, #ARGV, 2500 do
  local last = math.min(first + 2499, #ARGV)
  local keys, sets, new, inflight, settled = {}, {}, {}, {}, {}
  for i = first, last, 5 do
    local key = ARGV[6] .. ARGV[i]
    keys[#keys + 1] = key
    sets[#sets + 1] = key
    sets[#sets + 1] = ARGV[i + 1]
  end
  -- a run as it starts has only new tasks: one MSETNX writes them all; only if one of them
  -- was there already (the run written again) are the old records read and replaced
  local olds = {}
  if redis.call('MSETNX', unpack(sets)) == 0 then
    olds = redis.call('MGET', unpack(keys))
    redis.call('MSET', unpack(sets))
  end
  for i = first, last, 5 do
    local id, old = ARGV[i], olds[(i - first) / 5 + 1]
    if not old and not listed[id] then
      new[#new + 1] = id
      listed[id] = true
    end
    if ARGV[i + 2] ~= '' then
      inflight[#inflight + 1] = ARGV[i + 2]
      inflight[#inflight + 1] = id
    elseif old then settled[#settled + 1] = id end
    if ARGV[i + 3] ~= '' then
      enqueue(KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11],
              id, ARGV[i + 4], ARGV[i + 3], ARGV[7], ARGV[8])
    end
  end
  if #new > 0 then redis.call('RPUSH', KEYS[4], unpack(new)) end
  if #inflight > 0 then redis.call('ZADD', KEYS[5], unpack(inflight)) end
  if #settled > 0 then redis.call('ZREM', KEYS[5], unpack(settled)) end
end
"""
    + SAVE_SESSION
)


def _score(score: float) -> str:
    return "+inf" if score == math.inf else repr(score)


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

    def zadd(self, key: str, mapping: dict[str, float]) -> None:
        """As redis-py's ``zadd``: members and their scores (inf as Redis writes it)."""
        self._add("ZADD", key, *(w for m, score in mapping.items() for w in (_score(score), m)))

    def zrem(self, key: str, *members: str) -> None:
        self._add("ZREM", key, *members)

    def delete(self, *keys: str) -> None:
        self._add("DEL", *keys)

    def put(self, key: str, value: str) -> None:
        """Write ``key`` with the records, in the same MSET: for a key that no compare-and-set
        reads (nobody else writes it), so it needs no comparing."""
        self._add("PUT", key, value)

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

    def ack(self, keys: list[str], task_id: str) -> None:
        """Acknowledge the task's queue entry if it is still leased, as the ack script does
        (``keys``: the queue's leased and meta keys and 'since'): the hand-over that starts an
        attempt needs no ack of its own after it."""
        self._add("ACK", *keys, task_id)

    def zmove(self, scores: str, source: str, target: str, member: str) -> None:
        """Move ``member`` from sorted set ``source`` to ``target`` keeping its score in
        ``scores`` (nothing when it has none there)."""
        self._add("ZMOVE", scores, source, target, member)


# KEYS[1] the in-flight index; ARGV[1] the prefix of task keys, then the ids of tasks a read
# found settled or gone: each leaves the index unless its record is back in flight by now
# (checked here, atomically: a write may have queued and handed it over again meanwhile).
UNINDEX_SETTLED = """
for i = 2, #ARGV do
  local raw = redis.call('GET', ARGV[1] .. ARGV[i])
  local status = raw and cjson.decode(raw)['status']
  if status ~= 'dispatched' and status ~= 'running' and status ~= 'waiting' then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 1
"""
