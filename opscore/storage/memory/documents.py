"""MemoryStorage: documents (subscriptions, deliveries, schedules) in a dict per kind."""

from __future__ import annotations

from datetime import datetime, timedelta

from ...models import Page
from .base import _Base, _page


class DocumentRecords(_Base):
    def _kind(self, kind: str) -> dict[str, tuple[str, datetime | None]]:
        return self._documents.setdefault(kind, {})

    async def put_document(
        self,
        kind: str,
        doc_id: str,
        doc: str,
        *,
        due_at: datetime | None,
        expect: str | None = None,
        only_new: bool = False,
    ) -> bool:
        with self._lock:
            docs = self._kind(kind)
            if only_new and doc_id in docs:
                return False
            if expect is not None and (doc_id not in docs or docs[doc_id][0] != expect):
                return False
            docs[doc_id] = (doc, due_at)
            return True

    async def get_document(self, kind: str, doc_id: str) -> str | None:
        with self._lock:
            found = self._kind(kind).get(doc_id)
            return found[0] if found else None

    async def list_documents(
        self, kind: str, *, prefix: str = "", offset: int, limit: int, newest_first: bool = False
    ) -> Page[str]:
        with self._lock:
            docs = self._kind(kind)
            ids = sorted((i for i in docs if i.startswith(prefix)), reverse=newest_first)
            return _page([docs[i][0] for i in ids], offset, limit)

    async def delete_document(self, kind: str, doc_id: str) -> bool:
        with self._lock:
            return self._kind(kind).pop(doc_id, None) is not None

    async def claim_due(
        self, kind: str, now: datetime, *, limit: int, lease_seconds: float
    ) -> list[str]:
        lease = now + timedelta(seconds=lease_seconds)
        with self._lock:
            docs = self._kind(kind)
            due = sorted(
                (due_at, doc_id)
                for doc_id, (_, due_at) in docs.items()
                if due_at is not None and due_at <= now
            )[:limit]
            for _, doc_id in due:
                docs[doc_id] = (docs[doc_id][0], lease)
            return [docs[doc_id][0] for _, doc_id in due]
