"""SQLiteStorage: workflow templates, each version a row."""

from __future__ import annotations

from ...models import (
    Page,
    WorkflowTemplate,
)
from .base import _Base, _doc, _load
from .calls import off_loop, quick, scan


class TemplateRecords(_Base):
    @off_loop
    def save_workflow(self, template: WorkflowTemplate) -> WorkflowTemplate | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT doc FROM workflows WHERE id=? AND version=?",
                (template.id, template.version),
            ).fetchone()
            if row:
                return _load(WorkflowTemplate, row[0])
            db.execute(
                "INSERT INTO workflows VALUES (?, ?, ?, ?)",
                (template.id, template.version, self._next(db, "workflows"), _doc(template)),
            )
            return None

    @quick
    def get_workflow(self, workflow_id: str, version: str | None) -> WorkflowTemplate | None:
        with self._tx(write=False) as db:
            if version is None:
                row = db.execute(
                    "SELECT doc FROM workflows WHERE id=? ORDER BY seq DESC LIMIT 1", (workflow_id,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT doc FROM workflows WHERE id=? AND version=?", (workflow_id, version)
                ).fetchone()
        return _load(WorkflowTemplate, row[0]) if row else None

    @scan
    def list_workflows(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        latest = (
            "SELECT w.doc FROM workflows w WHERE w.seq = (SELECT MAX(seq) FROM workflows x "
            "WHERE x.id = w.id)"
        )
        with self._tx(write=False) as db:
            total = db.execute("SELECT COUNT(DISTINCT id) FROM workflows").fetchone()[0]
            rows = db.execute(
                f"{latest} ORDER BY w.id LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return Page(
            items=[_load(WorkflowTemplate, r[0]) for r in rows],
            total=total,
            offset=offset,
            limit=limit,
        )

    @scan
    def workflow_versions(self, workflow_id: str) -> list[str]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT version FROM workflows WHERE id=? ORDER BY seq", (workflow_id,)
            ).fetchall()
        return [r[0] for r in rows]

    @off_loop
    def delete_workflow(self, workflow_id: str, version: str | None) -> int:
        with self._tx() as db:
            if version is None:
                cursor = db.execute("DELETE FROM workflows WHERE id=?", (workflow_id,))
            else:
                cursor = db.execute(
                    "DELETE FROM workflows WHERE id=? AND version=?", (workflow_id, version)
                )
            return cursor.rowcount
