"""The human queue as the review console's queue page reads it: one page of handoffs of a tab,
some handoffs by id (the rows an open page shows, for its live updates), the newest id, and the
open handoffs that arrived after a given one. Each is one indexed query (handoffs_by_status or
the primary key), never the whole table, so the page costs the same with 100 handoffs or 100,000.
"""

from __future__ import annotations

from escalation.queue import Handoff
from storage.db import Database

PAGE = 100  # rows of one tab's page


async def handoff_page(db: Database, status: str, page: int = 1, limit: int = PAGE) -> tuple[list[Handoff], bool]:
    """`status` 'active': open and claimed, oldest first (the longest waiting on top); any other
    status: newest first. Returns the rows and whether there are more."""
    offset = (max(page, 1) - 1) * limit
    if status == "active":
        sql = "SELECT * FROM handoffs WHERE status IN ('open', 'claimed') ORDER BY id LIMIT ? OFFSET ?"
        params: list = [limit + 1, offset]
    else:
        sql = "SELECT * FROM handoffs WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        params = [status, limit + 1, offset]
    rows = [Handoff(**r) for r in await db.fetchall(sql, params, ("packet",))]
    return rows[:limit], len(rows) > limit


async def handoffs_by_id(db: Database, ids: list[int]) -> dict[int, Handoff]:
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    rows = await db.fetchall(f"SELECT * FROM handoffs WHERE id IN ({marks})", ids, ("packet",))
    return {int(r["id"]): Handoff(**r) for r in rows}


async def newest_handoff(db: Database) -> int:
    row = await db.fetchone("SELECT MAX(id) AS n FROM handoffs")
    return int(row["n"] or 0) if row else 0


async def open_after(db: Database, after: int) -> int:
    """How many handoffs newer than `after` are open."""
    row = await db.fetchone("SELECT COUNT(*) AS n FROM handoffs WHERE id > ? AND status = 'open'", (after,))
    return int(row["n"]) if row else 0
