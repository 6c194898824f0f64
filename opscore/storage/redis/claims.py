"""A step leased to this process with the write that queues it (``Storage.set_claimant``).

At idle, each step of a run costs the dispatcher a round trip before its hand-over: the
claim of the entry just queued, and the read of the agents beside it. When no dispatch pass
is under way here, the script that queues a step (a completion's compare-and-set, a run's
start) also leases that entry, if the ready set holds nothing else, and reads the fleet
after its own writes: the dispatcher gets both with the write's answer
(``Claimant.take_claimed``, ``dispatch/first_look.py``) and goes straight to the hand-over.
With a backlog, the ready set holds other entries and nothing is claimed (one ZCARD).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...models import QueueEntry, TaskRun
from .queue_scripts import SEQ_SPAN

# records_of(ids, prefix, out) appends each id of ``ids`` whose record (``prefix`` .. id) is
# there, and that record, to ``out``; answers how many. MGET in chunks: unpack() has a limit
# of a few thousand. (The RECORDS script's reads too.)
RECORDS_OF_FN = """
local function records_of(ids, prefix, out)
  local found = 0
  for first = 1, #ids, 1000 do
    local keys = {}
    local last = math.min(first + 999, #ids)
    for i = first, last do keys[#keys + 1] = prefix .. ids[i] end
    local raws = redis.call('MGET', unpack(keys))
    for i = first, last do
      local raw = raws[i - first + 1]
      if raw then
        out[#out + 1] = ids[i]
        out[#out + 1] = raw
        found = found + 1
      end
    end
  end
  return found
end
"""

# claim_alone(out, ready, leased, meta, agents, prefix, lease, id) after enqueue() of a CAS's
# ENQ: the entry leased as a dequeue leases it (out of 'ready', into 'leased' until ``lease``,
# its score kept in 'meta'), when the ready set holds it alone; then out gets its score, the
# number of agents and each agent's id and record. '' when it was not claimed.
CLAIM_FN = (
    RECORDS_OF_FN
    + """
local function claim_alone(out, ready, leased, meta, agents, prefix, lease, id)
  local score = redis.call('ZCARD', ready) == 1 and redis.call('ZSCORE', ready, id)
  if not score then
    out[#out + 1] = ''
    return
  end
  redis.call('ZREM', ready, id)
  redis.call('ZADD', leased, lease, id)
  redis.call('HSET', meta, id, score)
  out[#out + 1] = score
  local count_at = #out + 1
  out[count_at] = 0
  out[count_at] = records_of(redis.call('SMEMBERS', agents), prefix, out)
end
"""
)


@dataclass(frozen=True)
class ClaimRead:
    """What a CLAIM op (``Ops.claim``) answers, in a compare-and-set's reads: the step as
    queued with it, and when it was due."""

    task: TaskRun
    ready_at: datetime

    def taken(self, values: Iterator[Any]) -> tuple[QueueEntry, list[tuple[str, str]]] | None:
        """(the entry as leased, every agent's id and record) from the answer, or None when
        the step was not claimed (another entry was ready, or it is delayed)."""
        score = next(values)
        if score == "":
            return None
        rows = [(next(values), next(values)) for _ in range(int(next(values)))]
        # its ready score, as the dequeue script reads it: (1000 - priority) * SEQ_SPAN + seq
        rank, seq = divmod(int(float(score)), SEQ_SPAN)
        entry = QueueEntry(
            task_id=self.task.task_id,
            priority=1000 - rank,
            ready_at=self.ready_at,
            seq=seq,
            task=self.task,
            read=True,
        )
        return entry, rows
