"""Which state reports trim their agent's history on PostgreSQL and SQLite: in steps."""

from __future__ import annotations

from opscore.storage.history_trims import HistoryTrims


def test_a_history_is_trimmed_at_the_first_report_then_once_a_quarter_of_its_limit() -> None:
    trims = HistoryTrims()
    due = [trims.due("a1", 8) for _ in range(7)]
    assert due == [True, False, True, False, True, False, True]
    # each agent counts on its own; a limit under 4 trims at every report
    assert trims.due("a2", 100) and not trims.due("a2", 100)
    assert all(trims.due("a3", 3) for _ in range(3))
    # 25 reports between two trims under the default limit
    assert sum(trims.due("a4", 100) for _ in range(100)) == 4


def test_an_agent_this_process_no_longer_counts_is_trimmed_at_its_next_report() -> None:
    trims = HistoryTrims(agents=2)
    assert trims.due("a1", 100) and not trims.due("a1", 100)
    trims.due("a2", 100)
    trims.due("a3", 100)  # a1, written least recently, is forgotten
    assert trims.due("a1", 100)
