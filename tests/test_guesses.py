"""The guesses a shared store keeps for its compare-and-sets (``storage/seen.py``): bounded
in records and in bytes, least recently used first, and never left stale."""

from __future__ import annotations

from opscore.storage.seen import UNSEEN, Seen


def test_the_least_recently_used_go_first_past_the_count() -> None:
    seen = Seen(3)
    for key in "abc":
        seen.put(key, key)
    assert seen.get("a") == "a"  # now the most recently used
    seen.put("d", "d")
    assert seen.get("b") is UNSEEN
    assert [seen.get(k) for k in "acd"] == ["a", "c", "d"]


def test_values_are_bounded_in_bytes_too() -> None:
    seen = Seen(1000, max_bytes=6400)
    for i in range(10):
        seen.put(f"k{i}", "x" * 100)  # 1,000 bytes in all
    assert all(seen.get(f"k{i}") is not UNSEEN for i in range(10))
    for i in range(10, 70):
        seen.put(f"k{i}", "x" * 100)
    # 6,400 bytes hold 64 of them: the oldest went, however many records are allowed
    kept = [i for i in range(70) if seen.get(f"k{i}") is not UNSEEN]
    assert kept == list(range(6, 70))


def test_a_value_too_large_to_keep_leaves_no_stale_guess() -> None:
    seen = Seen(10, max_bytes=6400)
    seen.put("task", "small")
    seen.put("task", "x" * 101)  # more than a 64th of the bytes: not kept
    assert seen.get("task") is UNSEEN  # not the old, now wrong, value
    seen.put("other", "y" * 100)
    assert seen.get("other") == "y" * 100


def test_forgetting_and_replacing_give_their_bytes_back() -> None:
    seen = Seen(1000, max_bytes=6400)
    for i in range(64):
        seen.put(f"k{i}", "x" * 100)
    seen.forget("k0", "k1", "absent")
    seen.put("k2", "x" * 50)  # replaced by a smaller value
    for i in range(64, 66):
        seen.put(f"k{i}", "x" * 100)
    assert all(seen.get(f"k{i}") is not UNSEEN for i in range(2, 66))
    seen.put("gone", None)  # a record known to be absent weighs nothing
    assert seen.get("gone") is None and seen.get("k2") == "x" * 50


def test_a_read_of_the_fleet_keeps_guesses_of_at_most_2048_agents() -> None:
    """Each dispatch pass reads the fleet and would put every agent's guess again: worth it
    for a small fleet, milliseconds a pass for a large one."""
    assert Seen(16384).has_room_for(2048)
    assert not Seen(16384).has_room_for(2049)
    assert not Seen(1000).has_room_for(501)  # nor more than half of what is kept


def test_a_guess_put_again_unchanged_only_moves_and_weighs_the_same() -> None:
    """A read of the fleet puts every agent's guess at every pass, most of them unchanged:
    such a put only refreshes the guess's place (least recently used order), and its bytes
    are counted once."""
    seen = Seen(3, max_bytes=6400)
    for key in "abc":
        seen.put(key, "x" * 100)
    seen.put("a", "".join(["x"] * 100))  # equal, not the same object
    seen.put("d", "d")
    assert seen.get("b") is UNSEEN and seen.get("a") == "x" * 100  # "a" was refreshed
    seen.put("gone", None)
    seen.put("gone", None)
    assert seen.get("gone") is None
    seen.forget("a", "c", "d", "gone")
    assert seen._bytes == 0
