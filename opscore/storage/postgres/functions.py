"""The PostgreSQL functions this Ops-Core calls, put in place at every start
(``install_functions``, from ``migrations.migrate``, under its lock).

**Why a function.** A state report that moves a task, and the dispatcher's hand-over, write an
agent's row and a task's row together, both or neither, with what goes with them. As one
statement of a dozen CTEs, PostgreSQL planned it afresh at every call (a custom plan: the
generic one looked dearer to it) and opened every table each CTE names, written or not. A
function's statements are planned once per connection, and only those a call needs run. In
the workflow benchmark (``bench.stores``, three rounds each way) the server's CPU per
workflow fell by a quarter and workflows/s rose by a fifth (bench/README.md).

**Why not a migration.** Functions are code, not data: a database restored from a dump of
the ``opscore_*`` tables (``pg_dump -t``) has none, so each start creates what is missing or
different. A function whose parameters or meaning change takes a new name, so that replicas
of the previous version keep calling theirs during a rolling upgrade.
"""

from __future__ import annotations

from typing import Any

# name -> its CREATE OR REPLACE. opscore_agent_and_task: ``base.AGENT_AND_TASK`` says what
# its parameters are and what it answers.
FUNCTIONS: dict[str, str] = {
    "opscore_agent_and_task": """
CREATE OR REPLACE FUNCTION opscore_agent_and_task(
    a_id text, a_state text, a_seen timestamptz, a_doc text, a_guess text,
    t_id text, t_status text, t_doc text, t_guess text,
    report text, kept integer, ack boolean,
    n_id text, n_status text, n_doc text, n_guess text, n_priority integer,
    n_ready timestamptz, n_channel text, n_payload text,
    s_id text, s_status text, s_workflow text, s_agent text, s_finished timestamptz,
    s_doc text, s_guess text,
    OUT written boolean, OUT agent_doc text, OUT task_doc text, OUT followed boolean)
LANGUAGE plpgsql AS $$
BEGIN
    written := false;
    followed := false;
    PERFORM 1 FROM opscore_agents WHERE agent_id = a_id AND doc = a_guess FOR UPDATE;
    IF FOUND THEN
        PERFORM 1 FROM opscore_tasks WHERE task_id = t_id AND doc = t_guess FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        SELECT doc INTO agent_doc FROM opscore_agents WHERE agent_id = a_id;
        SELECT doc INTO task_doc FROM opscore_tasks WHERE task_id = t_id;
        RETURN;
    END IF;
    written := true;
    UPDATE opscore_agents SET state = a_state, last_seen = a_seen, doc = a_doc
        WHERE agent_id = a_id;
    UPDATE opscore_tasks SET status = t_status, doc = t_doc WHERE task_id = t_id;
    IF report IS NOT NULL THEN
        IF kept >= 0 THEN
            DELETE FROM opscore_state_history WHERE agent_id = a_id AND id <= (
                SELECT id FROM opscore_state_history WHERE agent_id = a_id
                ORDER BY id DESC LIMIT 1 OFFSET kept);
        END IF;
        INSERT INTO opscore_state_history (agent_id, doc) VALUES (a_id, report);
    END IF;
    IF ack THEN
        DELETE FROM opscore_queue WHERE task_id = t_id AND lease_until IS NOT NULL;
    END IF;
    IF n_id IS NOT NULL THEN
        UPDATE opscore_tasks SET status = n_status, doc = n_doc
            WHERE task_id = n_id AND doc = n_guess;
        IF FOUND THEN
            INSERT INTO opscore_queue (task_id, priority, ready_at, seq, lease_until)
            VALUES (n_id, n_priority, n_ready, nextval('opscore_queue_seq'), NULL)
            ON CONFLICT (task_id) DO UPDATE SET priority = n_priority, ready_at = n_ready,
                seq = nextval('opscore_queue_seq'), lease_until = NULL;
            PERFORM pg_notify(n_channel, n_payload);
            followed := true;
        END IF;
    ELSIF s_id IS NOT NULL THEN
        UPDATE opscore_sessions SET status = s_status, workflow_id = s_workflow,
            agent_id = s_agent, finished_at = s_finished, doc = s_doc
            WHERE session_id = s_id AND doc = s_guess;
        followed := FOUND;
    END IF;
END $$;
""",
}


def _source(sql: str) -> str:
    """The function's body as ``pg_proc.prosrc`` keeps it: the text between its ``$$``."""
    return sql.split("$$")[1]


async def install_functions(conn: Any) -> list[str]:
    """Create the functions that are missing or differ from this Ops-Core's; returns their
    names. Those already in place are left alone: replacing one invalidates the plans every
    other replica's connections hold for it."""
    installed = []
    for name, sql in FUNCTIONS.items():
        current = await conn.fetchval(
            "SELECT prosrc FROM pg_proc "
            "WHERE proname = $1 AND pronamespace = current_schema()::regnamespace",
            name,
        )
        if current != _source(sql):
            await conn.execute(sql)
            installed.append(name)
    return installed
