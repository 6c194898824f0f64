"""PostgresStorage: documents (subscriptions, deliveries, schedules), one table by kind and id.

What is due is claimed with ``FOR UPDATE SKIP LOCKED``, as the queue is: replicas claiming at
once each get different documents, and none waits on another's lock."""

from __future__ import annotations

from datetime import datetime, timedelta

from ...models import Page
from .base import _Base


class DocumentRecords(_Base):
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
        async with self._conn() as conn:
            if only_new:
                status = await conn.execute(
                    "INSERT INTO opscore_documents (kind, id, doc, due_at) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (kind, id) DO NOTHING",
                    kind,
                    doc_id,
                    doc,
                    due_at,
                )
                return str(status).endswith(" 1")
            if expect is None:
                await conn.execute(
                    "INSERT INTO opscore_documents (kind, id, doc, due_at) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, due_at = excluded.due_at",
                    kind,
                    doc_id,
                    doc,
                    due_at,
                )
                return True
            status = await conn.execute(
                "UPDATE opscore_documents SET doc = $3, due_at = $4 "
                "WHERE kind = $1 AND id = $2 AND doc = $5",
                kind,
                doc_id,
                doc,
                due_at,
                expect,
            )
            return str(status).endswith(" 1")

    async def get_document(self, kind: str, doc_id: str) -> str | None:
        async with self._conn() as conn:
            found = await conn.fetchval(
                "SELECT doc FROM opscore_documents WHERE kind = $1 AND id = $2", kind, doc_id
            )
        return str(found) if found is not None else None

    async def list_documents(
        self, kind: str, *, prefix: str = "", offset: int, limit: int, newest_first: bool = False
    ) -> Page[str]:
        # a range on the primary key (COLLATE "C": byte order, as the other stores) rather
        # than LIKE, which would read % and _ in ids as wildcards
        where = 'kind = $1 AND id COLLATE "C" >= $2 AND id COLLATE "C" < $3'
        high = prefix + "\U0010ffff"
        order = "DESC" if newest_first else "ASC"
        async with self._conn() as conn:
            total = await conn.fetchval(
                f"SELECT count(*) FROM opscore_documents WHERE {where}", kind, prefix, high
            )
            rows = await conn.fetch(
                f"SELECT doc FROM opscore_documents WHERE {where} "
                f'ORDER BY id COLLATE "C" {order} LIMIT $4 OFFSET $5',
                kind,
                prefix,
                high,
                limit,
                offset,
            )
        return Page(items=[r["doc"] for r in rows], total=int(total), offset=offset, limit=limit)

    async def delete_document(self, kind: str, doc_id: str) -> bool:
        async with self._conn() as conn:
            status = await conn.execute(
                "DELETE FROM opscore_documents WHERE kind = $1 AND id = $2", kind, doc_id
            )
        return str(status).endswith(" 1")

    async def claim_due(
        self, kind: str, now: datetime, *, limit: int, lease_seconds: float
    ) -> list[str]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "UPDATE opscore_documents d SET due_at = $3 FROM ("
                "  SELECT kind, id FROM opscore_documents WHERE kind = $1 AND due_at <= $2"
                "  ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) c "
                "WHERE d.kind = c.kind AND d.id = c.id RETURNING d.doc",
                kind,
                now,
                now + timedelta(seconds=lease_seconds),
                limit,
            )
        return [r["doc"] for r in rows]
