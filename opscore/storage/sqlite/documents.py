"""SQLiteStorage: documents (subscriptions, deliveries, schedules), one table by kind and id."""

from __future__ import annotations

from datetime import datetime

from ...models import Page
from .base import _Base
from .calls import off_loop, quick, scan


class DocumentRecords(_Base):
    @quick
    def put_document(
        self,
        kind: str,
        doc_id: str,
        doc: str,
        *,
        due_at: datetime | None,
        expect: str | None = None,
        only_new: bool = False,
    ) -> bool:
        due = due_at.timestamp() if due_at else None
        with self._tx() as db:
            if only_new:
                added = db.execute(
                    "INSERT OR IGNORE INTO documents VALUES (?, ?, ?, ?)", (kind, doc_id, doc, due)
                ).rowcount
                return bool(added)
            if expect is None:
                db.execute(
                    "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?)", (kind, doc_id, doc, due)
                )
                return True
            changed = db.execute(
                "UPDATE documents SET doc = ?, due_at = ? WHERE kind = ? AND id = ? AND doc = ?",
                (doc, due, kind, doc_id, expect),
            ).rowcount
            return bool(changed)

    @quick
    def get_document(self, kind: str, doc_id: str) -> str | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT doc FROM documents WHERE kind = ? AND id = ?", (kind, doc_id)
            ).fetchone()
        return str(row[0]) if row else None

    @scan
    def list_documents(
        self, kind: str, *, prefix: str = "", offset: int, limit: int, newest_first: bool = False
    ) -> Page[str]:
        # a range on the primary key rather than LIKE, which would treat % and _ in ids as
        # wildcards; the upper bound is the prefix followed by the highest code point
        where = "kind = ? AND id >= ? AND id < ?"
        args = (kind, prefix, prefix + "\U0010ffff")
        order = "DESC" if newest_first else "ASC"
        with self._tx(write=False) as db:
            total = int(
                db.execute(f"SELECT COUNT(*) FROM documents WHERE {where}", args).fetchone()[0]
            )
            rows = db.execute(
                f"SELECT doc FROM documents WHERE {where} ORDER BY id {order} LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return Page(items=[str(r[0]) for r in rows], total=total, offset=offset, limit=limit)

    @quick
    def delete_document(self, kind: str, doc_id: str) -> bool:
        with self._tx() as db:
            gone = db.execute(
                "DELETE FROM documents WHERE kind = ? AND id = ?", (kind, doc_id)
            ).rowcount
        return bool(gone)

    @off_loop
    def claim_due(self, kind: str, now: datetime, *, limit: int, lease_seconds: float) -> list[str]:
        stamp = now.timestamp()
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, doc FROM documents WHERE kind = ? AND due_at <= ? "
                "ORDER BY due_at LIMIT ?",
                (kind, stamp, limit),
            ).fetchall()
            db.executemany(
                "UPDATE documents SET due_at = ? WHERE kind = ? AND id = ?",
                [(stamp + lease_seconds, kind, r[0]) for r in rows],
            )
        return [str(r[1]) for r in rows]
