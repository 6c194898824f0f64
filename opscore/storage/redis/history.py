"""An agent's state history on Redis: one key per report, numbered, written in the same MSET
as the agent's record (no command of its own), and a span that says which numbers are kept.

Each report is written under ``hist:<agent>:<n>``, ``n`` counting up from 0; the span key
``history_span:<agent>`` holds "<next n> <lowest n kept> <how many a reader shows>". The span
is a record of the report's compare-and-set like the agent's, so the number a report takes is
decided with the report, atomically across replicas, and the history's key is written blind
(``Ops.put``: nobody else writes that number). Old reports are deleted in steps: when the
span holds a quarter more than it keeps, one DEL drops the oldest (one command per that many
reports, not one per report); a reader shows the newest it keeps, also between two steps.

An earlier version kept the history as a list (``history:<agent>``, newest first, with
``history_kept:<agent>`` saying how many it shows). Such a list is read after the numbered
reports, as older ones, until the first step of deletions drops it: no migration to run.
"""

from __future__ import annotations

from typing import NamedTuple

# reports a DEL drops at most (a span's step after a much smaller limit may drop thousands)
DELETE_CHUNK = 1000


class Span(NamedTuple):
    """Which numbered reports an agent's history holds: ``low`` up to ``next`` (excluded),
    of which a reader shows the newest ``shown``. (A tuple: parsed at every report.)"""

    next: int = 0
    low: int = 0
    shown: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> Span:
        """The span as stored; none yet (or unreadable) is an empty one."""
        if raw is None:
            return cls()
        try:
            first, low, shown = (int(part) for part in raw.split(" "))
        except ValueError:
            return cls()
        return cls(first, low, shown) if min(first, low, shown) >= 0 else cls()

    def dump(self) -> str:
        return f"{self.next} {self.low} {self.shown}"

    def add(self, kept: int) -> tuple[Span, int, range]:
        """The span after one more report, under a limit of ``kept``: the number the report
        takes, and the numbers to delete now (empty but every quarter of ``kept``)."""
        number, after = self.next, self.next + 1
        low = self.low
        dropped = range(0)
        if after - low > kept + max(1, kept // 4):
            dropped = range(low, after - kept)
            low = after - kept
        return Span(after, low, kept), number, dropped


def deletions(prefix: str, numbers: range, *others: str) -> list[list[str]]:
    """The keys of ``numbers``' reports and ``others``, in DELs of at most ``DELETE_CHUNK``
    keys (one DEL in all, as a rule)."""
    keys = [*others, *(prefix + str(n) for n in numbers)]
    return [keys[i : i + DELETE_CHUNK] for i in range(0, len(keys), DELETE_CHUNK)]


# One page of an agent's history, newest first, with the total a reader is shown.
# KEYS: the span, the list an earlier version kept, and its count of what it shows.
# ARGV: the numbered reports' key prefix, the page's offset and limit. Answers the total,
# then the page's records.
HISTORY_PAGE = """
local nxt, low, shown = 0, 0, nil
local span = redis.call('GET', KEYS[1])
if span then
  local a, b, c = string.match(span, '^(%d+) (%d+) (%d+)$')
  if a then nxt, low, shown = tonumber(a), tonumber(b), tonumber(c) end
end
local listed = redis.call('LLEN', KEYS[2])
if listed > 0 then
  local kept = redis.call('GET', KEYS[3])
  if kept then listed = math.min(listed, tonumber(kept)) end
end
local numbered = nxt - low
local total = numbered + listed
if shown then
  numbered = math.min(numbered, shown)
  total = math.min(total, shown)
end
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local last = math.min(offset + limit, total)
local out = {total}
local first = offset
while first < math.min(last, numbered) do  -- MGET in chunks: unpack() has a limit
  local keys = {}
  for i = first, math.min(last, numbered, first + 999) - 1 do
    keys[#keys + 1] = ARGV[1] .. string.format('%d', nxt - 1 - i)
  end
  for _, raw in ipairs(redis.call('MGET', unpack(keys))) do
    if raw then out[#out + 1] = raw end
  end
  first = first + #keys
end
if last > numbered then
  local from = math.max(offset, numbered) - numbered
  for _, raw in ipairs(redis.call('LRANGE', KEYS[2], from, last - numbered - 1)) do
    out[#out + 1] = raw
  end
end
return out
"""
