"""Changing one store document by compare-and-set: read it, decide, write only over what was
read (or only if there still is none), and try again when another writer got in between.

Slot pools (``dispatch/limits.py``) and usage totals (``workflow/usage.py``) change shared
documents this way, so that replicas never lose each other's changes."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import StorageError
from .base import Storage


class ContendedError(StorageError):
    """Other writers kept changing the document: the change was not made."""


async def change_document(
    storage: Storage,
    kind: str,
    doc_id: str,
    change: Callable[[str | None], str | None],
    *,
    attempts: int = 50,
) -> str | None:
    """Apply ``change`` (the stored document, None when absent, to the new one, or None to
    leave it as it is) atomically. Returns the document as stored afterwards. Raises
    ContendedError after ``attempts`` tries lost to other writers."""
    for _ in range(attempts):
        current = await storage.get_document(kind, doc_id)
        new = change(current)
        if new is None:
            return current
        if current is None:
            written = await storage.put_document(kind, doc_id, new, due_at=None, only_new=True)
        else:
            written = await storage.put_document(kind, doc_id, new, due_at=None, expect=current)
        if written:
            return new
    raise ContendedError(f"{kind} {doc_id} kept changing under other writers; not changed")
