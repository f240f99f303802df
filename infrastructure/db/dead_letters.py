"""The one owner of ``geoetl.dead_letters``: messages no worker could use, with the reason."""

from __future__ import annotations

from typing import Any

import psycopg

from infrastructure.db.database import Database


def record_dead_letter(
    conn: psycopg.Connection[Any], queue: str, message_id: str, body: str, reason: str, delivery_count: int
) -> None:
    conn.execute(
        "INSERT INTO geoetl.dead_letters (queue_name, message_id, body, reason, delivery_count) "
        "VALUES (%s, %s, %s, %s, %s)",
        (queue, message_id[:1000], body[:100000], reason[:2000], delivery_count),
    )


def list_dead_letters(db: Database, queue: str | None, limit: int) -> list[dict[str, Any]]:
    with db.transaction() as conn:
        return conn.execute(  # type: ignore[return-value]
            "SELECT id, queue_name, message_id, body, reason, delivery_count, dead_lettered_at "
            "FROM geoetl.dead_letters WHERE (%s::text IS NULL OR queue_name = %s) ORDER BY id DESC LIMIT %s",
            (queue, queue, limit),
        ).fetchall()


def count_recent(db: Database, hours: float) -> int:
    row = db.fetch_one(
        "SELECT count(*) AS n FROM geoetl.dead_letters WHERE dead_lettered_at > now() - make_interval(hours => %s)",
        (hours,),
    )
    return int(row["n"]) if row else 0
