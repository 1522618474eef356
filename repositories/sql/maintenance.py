"""Sweeps, retention, usage and worker heartbeats for the SQL store.

Sweeps lock their rows in primary-key order and skip rows another transaction holds, so
two schedulers (or a scheduler and the CLI) can run the same sweep at once safely.
"""
from __future__ import annotations

import time
from collections import Counter

from sqlalchemy import delete, func, select, update

from .. import validation as check
from ..records import CleanupCounts, UsageRow, Worker
from ..states import TERMINAL_STATES, State, check_move, cleanup_states
from ..usage import BY_DAY, check_grouping, day_start, fold_days, hour_of
from . import statements
from .rows import leases, logs, sessions, ticks, usage_daily, usage_rollups, workers
from .statements import dialect_insert, move_counts

#: Sessions removed per cleanup transaction: each batch removes whole sessions, and the
#: write lock is released between batches so workers' reports are not held up for seconds.
CLEANUP_BATCH = 200
#: SQLite: after each batch, pause for as long as it held the write lock.  A writer in
#: another process waits in SQLite's busy handler, which sleeps between tries; without a
#: pause, back-to-back batches win the lock every time and starve it.
SQLITE_CLEANUP_DUTY_PAUSE = 1.0
SCHEDULER = "scheduler"
TICKS_KEPT = 10_000


class SqlMaintenance:
    def sweep_heartbeats(self, timeout):
        c = sessions.c
        with self._tx() as connection:
            now = self._clock()
            rows = connection.execute(
                select(c.pk, c.id).where(c.state == State.RUNNING.value, c.heartbeat_at < now - timeout)
                .order_by(c.pk).with_for_update(skip_locked=True)).all()
            if not rows:
                return []
            for row in rows:
                check_move(row.id, State.RUNNING, "heartbeat lost", State.FAILED)
            connection.execute(update(sessions).where(c.pk.in_([r.pk for r in rows])).values(
                state=State.FAILED.value, error="heartbeat lost", finished_at=now, updated_at=now))
            move_counts(connection, {State.RUNNING: -len(rows), State.FAILED: len(rows)})
            return [r.id for r in rows]

    def cleanup(self, older_than, *, states=None, dry_run=False):
        c = sessions.c
        wanted = cleanup_states(states)
        cutoff = self._clock() - older_than
        expired = c.finished_at < cutoff   # only terminal sessions have finished_at
        if len(wanted) < len(TERMINAL_STATES):
            expired = expired & c.state.in_(sorted(s.value for s in wanted))
        if dry_run:
            with self._tx(write=False) as connection:
                count, entries = connection.execute(
                    select(func.count(), func.coalesce(func.sum(c.log_count), 0)).where(expired)).one()
            return CleanupCounts(int(count), int(entries))
        removed_sessions = removed_entries = 0
        while True:
            began = time.monotonic()
            with self._tx() as connection:
                rows = connection.execute(
                    select(c.pk, c.state).where(expired).order_by(c.pk).limit(CLEANUP_BATCH)
                    .with_for_update(skip_locked=True)).all()
                if not rows:
                    break
                pks = [r.pk for r in rows]
                removed_entries += connection.execute(delete(logs).where(logs.c.session_pk.in_(pks))).rowcount
                connection.execute(delete(sessions).where(c.pk.in_(pks)))
                move_counts(connection, {State(s): -n for s, n in Counter(r.state for r in rows).items()})
                removed_sessions += len(rows)
            if self.name == "sqlite":
                self._pause_after_batch(time.monotonic() - began)
        return CleanupCounts(removed_sessions, removed_entries)

    def claim_tick(self, job, tick, *, holder, lease):
        with self._tx() as connection:
            current = connection.execute(select(leases.c.holder, leases.c.expires_at)
                                         .where(leases.c.name == SCHEDULER).with_for_update()).first()
            # The clock is read once the lease row is ours: a time read before waiting for
            # the lock would be older than the expiry its previous holder just wrote.
            now = self._clock()
            ran = connection.execute(select(ticks.c.tick).where(ticks.c.job == job, ticks.c.tick == tick)).first()
            if ran is not None:
                return False                 # run already; a late caller must not take the lease
            if current is None:
                # RETURNING, not rowcount: psycopg reports -1 for ON CONFLICT DO NOTHING.
                inserted = connection.execute(dialect_insert(self.name, leases).values(
                    name=SCHEDULER, holder=holder, expires_at=now + lease)
                    .on_conflict_do_nothing().returning(leases.c.name)).first()
                if inserted is None:         # another process created it first
                    return False
            elif current.holder != holder and current.expires_at > now:
                return False
            else:
                connection.execute(update(leases).where(leases.c.name == SCHEDULER)
                                   .values(holder=holder, expires_at=now + lease))
            ran = connection.execute(dialect_insert(self.name, ticks).values(
                job=job, tick=tick, holder=holder, ran_at=now).on_conflict_do_nothing()
                .returning(ticks.c.tick)).first() is not None
            # Keep the record of recent ticks only.
            connection.execute(delete(ticks).where(ticks.c.job == job, ticks.c.tick < tick - TICKS_KEPT))
            return bool(ran)

    def list_ticks(self, job, *, limit=100):
        with self._tx(write=False) as connection:
            rows = connection.execute(select(ticks.c.tick, ticks.c.holder).where(ticks.c.job == job)
                                      .order_by(ticks.c.tick.desc()).limit(limit)).all()
        return [(int(r.tick), r.holder) for r in rows]

    def _pause_after_batch(self, held: float) -> None:
        """Checkpoint the WAL here, in the cleanup's own time: otherwise the next worker
        whose commit crosses the auto-checkpoint threshold pays for copying every page the
        cleanup wrote (hundreds of milliseconds).  PASSIVE never blocks other writers."""
        began = time.monotonic()
        with self._tx(write=False) as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
        time.sleep(max(held * SQLITE_CLEANUP_DUTY_PAUSE - (time.monotonic() - began), 0))

    def usage(self, *, by, since=None, owner=None):
        check_grouping(by)
        # Whole days (no ``since``, or since a midnight) read the daily rollups: the same
        # sums, a table a 24th the size; any other ``since`` needs the hours.
        daily = since is None or since == day_start(since)
        u = usage_daily.c if daily else usage_rollups.c
        period = u.day if daily else u.hour
        key = period if by == BY_DAY else u[by]       # days are folded from hours below
        query = select(key, func.sum(u.sessions), func.sum(u.tokens), func.sum(u.cost)).group_by(key).order_by(key)
        if since is not None:
            query = query.where(period >= (since if daily else hour_of(since)))
        if owner is not None:
            query = query.where(u.owner == owner)
        with self._tx(write=False) as connection:
            rows = connection.execute(query).all()
        if by == BY_DAY:
            return fold_days((r[0], int(r[1]), int(r[2]), float(r[3])) for r in rows)
        return [UsageRow(r[0], int(r[1]), int(r[2]), round(float(r[3]), 6)) for r in rows]

    def heartbeat_worker(self, *, worker_id, host, pid, active=0, rss_bytes=None, version=None):
        check.check_worker(worker_id, host, pid, active, rss_bytes, version)
        now = self._clock()
        with self._tx() as connection:
            connection.execute(statements.UPSERT_WORKER[self.name], {
                "worker_id": worker_id, "host": host, "pid": pid, "active": active, "rss_bytes": rss_bytes,
                "version": version, "last_seen": now, "started_at": now})
            started_at = connection.execute(select(workers.c.started_at)
                                            .where(workers.c.worker_id == worker_id)).scalar_one()
        return Worker(worker_id, host, pid, active, rss_bytes, version, now, started_at)

    def list_workers(self):
        with self._tx(write=False) as connection:
            rows = connection.execute(select(workers).order_by(workers.c.last_seen.desc())).all()
        return [Worker(r.worker_id, r.host, r.pid, r.active, r.rss_bytes, r.version, r.last_seen, r.started_at)
                for r in rows]
