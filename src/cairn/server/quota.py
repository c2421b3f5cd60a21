"""Each user's upload quota: the bytes of the objects they sent that were new to them.

An object counts once per user, at its size, when it reaches the server from them while it was
new to them (not already uploaded by them, nor held by a project they may read: the same answer
``POST /objects/missing`` gives them, so the count never depends on what other projects hold).
The sizes are kept on the user's upload receipts (``object_receipts.size``). An upload that
would take a user past ``quota`` bytes is refused as a whole (413 ``quota_exceeded``) before
anything of it is stored. Administrators (and everyone on an open server) have no quota; a
quota of 0 turns it off. Two uploads of one user running at the same moment are each checked
against the usage before both, so together they may pass the quota by one request.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cairn.errors import QuotaExceededError
from cairn.metadata.accounts import ObjectReceipt
from cairn.metadata.engine import transaction
from cairn.service.accounts import Principal

DEFAULT_QUOTA = 1 << 40  # 1 TiB per user


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


class Quota:
    def __init__(self, engine: Engine, quota: int = DEFAULT_QUOTA) -> None:
        self.engine = engine
        self.quota = quota

    def applies(self, principal: Principal) -> bool:
        return self.quota > 0 and not principal.is_admin and principal.user_id is not None

    def usage(self, principal: Principal) -> int:
        """The bytes counted against the user so far."""
        if principal.user_id is None:
            return 0
        found = transaction(
            self.engine,
            lambda s: s.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(ObjectReceipt.size), 0)).where(
                    ObjectReceipt.user_id == principal.user_id
                )
            ),
            write=False,
        )
        return int(found or 0)

    def check(self, principal: Principal, incoming: int = 0) -> None:
        """Raise QuotaExceededError when ``incoming`` more bytes would take the user past the
        quota (with ``incoming`` 0: when they are at it already)."""
        if not self.applies(principal):
            return
        used = self.usage(principal)
        if used + incoming > self.quota or (incoming == 0 and used >= self.quota):
            raise QuotaExceededError(
                f"user {principal.name!r} has uploaded {_gib(used)} of their "
                f"{_gib(self.quota)} quota; this upload adds {_gib(incoming)}. Nothing of it "
                "was stored: ask an administrator to raise the server's --user-quota-gb",
            )

    def record(self, principal: Principal, sizes: Mapping[str, int]) -> None:
        """Remember the user's receipts of these objects with the bytes counted for each (0
        for objects that were not new to them); a receipt already recorded keeps its count."""
        if principal.user_id is None or not sizes:
            return
        at = datetime.now(UTC)
        rows = [
            {"user_id": principal.user_id, "digest": d, "at": at, "size": n}
            for d, n in sorted(sizes.items())
        ]

        def work(s: Session) -> None:
            if s.get_bind().dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                make: Any = pg_insert
            else:
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                make = sqlite_insert
            for start in range(0, len(rows), 1000):
                stmt = make(ObjectReceipt)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["user_id", "digest"],
                    set_={"size": stmt.excluded.size},
                    where=ObjectReceipt.size.is_(None),
                )
                s.execute(stmt, rows[start : start + 1000])

        transaction(self.engine, work, write=True)


__all__ = ["DEFAULT_QUOTA", "Quota"]
