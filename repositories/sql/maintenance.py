"""Sweeps, retention, usage and worker heartbeats for the SQL store.

Sweeps lock their rows in primary-key order and skip rows another transaction holds, so
two schedulers (or a scheduler and the CLI) can run the same sweep at once safely.
"""
from __future__ import annotations

import functools
import time
from collections import Counter

from sqlalchemy import bindparam, delete, func, literal_column, or_, select, update

from .. import validation as check
from ..records import CleanupCounts, UsageRow, Worker
from ..states import RUNNER_LOST, TERMINAL_STATES, State, check_move, cleanup_states
from ..usage import BY_DAY, check_grouping, day_start, fold_days, hour_of
from . import statements
from .requests import EXPIRED as EXPIRED_REQUESTS, FORGET_SESSION
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

c = sessions.c
SILENT = (select(c.pk, c.id).where(c.state == State.RUNNING.value, c.heartbeat_at < bindparam("p_cutoff"))
          .order_by(c.pk).with_for_update(skip_locked=True))
HEARTBEAT_LOST = (update(sessions).where(c.pk == bindparam("p_pk"))
                  .values(state=State.FAILED.value, error="heartbeat lost", finished_at=bindparam("p_now"),
                          updated_at=bindparam("p_now")))
#: Pending sessions of one kind whose runner has been silent since ``p_cutoff`` (never
#: touched: since their creation), locked; one statement per kind, no expanding IN.
UNATTENDED = (select(c.pk, c.id).where(c.state == State.PENDING.value, c.kind == bindparam("p_kind"),
                                       func.coalesce(c.heartbeat_at, c.created_at) < bindparam("p_cutoff"))
              .order_by(c.pk).with_for_update(skip_locked=True))
#: Conditional on the row still being pending, though its lock already ensures it.
RUNNER_LOST_MOVE = (update(sessions).where(c.pk == bindparam("p_pk"), c.state == State.PENDING.value)
                    .values(state=State.FAILED.value, error=RUNNER_LOST, finished_at=bindparam("p_now"),
                            updated_at=bindparam("p_now")))
#: Touch a queued session: only while it is pending, re-checked on the row's newest version.
TOUCH_QUEUED = (update(sessions).where(c.id == bindparam("p_id"), c.state == State.PENDING.value)
                .values(heartbeat_at=bindparam("p_now"), updated_at=bindparam("p_now")))
DELETE_LOGS = delete(logs).where(logs.c.session_pk == bindparam("p_pk"))
DELETE_SESSION = delete(sessions).where(c.pk == bindparam("p_pk"))
LEASE = select(leases.c.holder, leases.c.expires_at).where(leases.c.name == SCHEDULER).with_for_update()
TICK_RAN = select(ticks.c.tick).where(ticks.c.job == bindparam("p_job"), ticks.c.tick == bindparam("p_tick"))
RENEW_LEASE = (update(leases).where(leases.c.name == SCHEDULER)
               .values(holder=bindparam("p_holder"), expires_at=bindparam("p_expires_at")))
OLD_TICKS = delete(ticks).where(ticks.c.job == bindparam("p_job"), ticks.c.tick < bindparam("p_oldest"))
TICKS = (select(ticks.c.tick, ticks.c.holder).where(ticks.c.job == bindparam("p_job"))
         .order_by(ticks.c.tick.desc()).limit(bindparam("p_limit")))
WORKER_STARTED = select(workers.c.started_at).where(workers.c.worker_id == bindparam("p_worker_id"))
WORKERS = select(*workers.c).order_by(workers.c.last_seen.desc())
#: RETURNING, not rowcount: psycopg reports -1 for ON CONFLICT DO NOTHING.
NEW_LEASE = {name: dialect_insert(name, leases).values(name=SCHEDULER, holder=bindparam("p_holder"),
                                                        expires_at=bindparam("p_expires_at"))
             .on_conflict_do_nothing().returning(leases.c.name) for name in ("sqlite", "postgresql")}
NEW_TICK = {name: dialect_insert(name, ticks).values(job=bindparam("p_job"), tick=bindparam("p_tick"),
                                                      holder=bindparam("p_holder"), ran_at=bindparam("p_now"))
            .on_conflict_do_nothing().returning(ticks.c.tick) for name in ("sqlite", "postgresql")}


@functools.lru_cache(maxsize=16)
def expired_sessions(states: tuple[str, ...], dry_run: bool):
    """Finished sessions past ``p_cutoff`` in ``states`` (all terminal states when empty):
    their count and log entries (``dry_run``), or the next batch of them, locked."""
    expired = c.finished_at < bindparam("p_cutoff")   # only terminal sessions have finished_at
    if states:
        expired = expired & or_(*(c.state == state for state in states))
    if dry_run:
        return select(func.count(), func.coalesce(func.sum(c.log_count), 0)).where(expired)
    return (select(c.pk, c.id, c.state).where(expired).order_by(c.pk).limit(CLEANUP_BATCH)
            .with_for_update(skip_locked=True))


#: Token sums are taken in two halves of 31 bits: SQLite's SUM raises on passing 2**63,
#: and each rollup row stays under 2**62, so the halves of any number of rows fit.
_HALF = 2**31


@functools.lru_cache(maxsize=64)
def usage_query(daily: bool, by: str, since: bool, owner: bool):
    u = usage_daily.c if daily else usage_rollups.c
    period = u.day if daily else u.hour
    key = period if by == BY_DAY else u[by]       # days are folded from hours below
    query = (select(key, func.sum(u.sessions), func.sum(u.tokens.op(">>")(literal_column("31"))),
                    func.sum(u.tokens.op("&")(literal_column(str(_HALF - 1)))), func.sum(u.cost))
             .group_by(key).order_by(key))
    if since:
        query = query.where(period >= bindparam("p_since"))
    if owner:
        query = query.where(u.owner == bindparam("p_owner"))
    return query


class SqlMaintenance:
    def sweep_heartbeats(self, timeout):
        with self._tx() as tx:
            now = self._clock()
            rows = tx.execute(SILENT, {"p_cutoff": now - timeout})
            if not rows:
                return []
            for row in rows:
                check_move(row.id, State.RUNNING, "heartbeat lost", State.FAILED)
            tx.execute_many(HEARTBEAT_LOST, [{"p_pk": row.pk, "p_now": now} for row in rows])
            move_counts(tx, {State.RUNNING: -len(rows), State.FAILED: len(rows)})
            return [r.id for r in rows]

    def touch_queued(self, session_ids):
        """One UPDATE per id in one transaction, ids in sorted order (two touches of the
        same sessions lock them in the same order); each is conditional on the row being
        pending, which PostgreSQL re-checks after waiting on a row another transaction
        (a start, a sweep) holds."""
        keys = check.session_keys(session_ids)
        if not keys:
            return 0
        with self._tx() as tx:
            now = self._clock()
            tx.execute_many(TOUCH_QUEUED, [{"p_id": key, "p_now": now} for key in keys])
            return tx.rowcount

    def sweep_queued(self, timeout, kinds):
        """Like ``sweep_heartbeats``: the stale rows are locked (rows another transaction
        holds are skipped: it is starting, stopping or sweeping them), then failed and
        counted in the same transaction."""
        wanted = check.kind_names(kinds)
        if not wanted:
            return []
        with self._tx() as tx:
            now = self._clock()
            rows = []
            for kind in wanted:
                rows.extend(tx.execute(UNATTENDED, {"p_kind": kind, "p_cutoff": now - timeout}))
            if not rows:
                return []
            rows.sort(key=lambda row: row.pk)
            for row in rows:
                check_move(row.id, State.PENDING, "runner lost", State.FAILED)
            tx.execute_many(RUNNER_LOST_MOVE, [{"p_pk": row.pk, "p_now": now} for row in rows])
            if tx.rowcount != len(rows):      # cannot happen under the row locks; never miscount
                raise RuntimeError(f"sweep_queued: {tx.rowcount} of {len(rows)} locked sessions moved")
            move_counts(tx, {State.PENDING: -len(rows), State.FAILED: len(rows)})
            return [row.id for row in rows]

    def cleanup(self, older_than, *, states=None, dry_run=False):
        wanted = cleanup_states(states)
        chosen = () if len(wanted) == len(TERMINAL_STATES) else tuple(sorted(s.value for s in wanted))
        cutoff = {"p_cutoff": self._clock() - older_than}
        if dry_run:
            with self._tx(write=False) as tx:
                count, entries = tx.first(expired_sessions(chosen, True), cutoff)
            return CleanupCounts(int(count), int(entries))
        removed_sessions = removed_entries = 0
        while True:
            began = time.monotonic()
            with self._tx() as tx:
                rows = tx.execute(expired_sessions(chosen, False), cutoff)
                if not rows:
                    break
                pks = [{"p_pk": r.pk} for r in rows]
                tx.execute_many(DELETE_LOGS, pks)
                removed_entries += tx.rowcount
                tx.execute_many(FORGET_SESSION, [{"p_session_id": r.id} for r in rows])
                tx.execute_many(DELETE_SESSION, pks)
                move_counts(tx, {State(s): -n for s, n in Counter(r.state for r in rows).items()})
                removed_sessions += len(rows)
            if self.name == "sqlite":
                self._pause_after_batch(time.monotonic() - began)
        with self._tx() as tx:
            tx.execute(EXPIRED_REQUESTS, {"p_now": self._clock()})
        return CleanupCounts(removed_sessions, removed_entries)

    def claim_tick(self, job, tick, *, holder, lease):
        with self._tx() as tx:
            current = tx.first(LEASE)
            # The clock is read once the lease row is ours: a time read before waiting for
            # the lock would be older than the expiry its previous holder just wrote.
            now = self._clock()
            if tx.first(TICK_RAN, {"p_job": job, "p_tick": tick}) is not None:
                return False                 # run already; a late caller must not take the lease
            claim = {"p_holder": holder, "p_expires_at": now + lease}
            if current is None:
                if tx.first(NEW_LEASE[self.name], claim) is None:
                    return False             # another process created it first
            elif current.holder != holder and current.expires_at > now:
                return False
            else:
                tx.execute(RENEW_LEASE, claim)
            ran = tx.first(NEW_TICK[self.name], {"p_job": job, "p_tick": tick, "p_holder": holder,
                                                 "p_now": now}) is not None
            # Keep the record of recent ticks only.
            tx.execute(OLD_TICKS, {"p_job": job, "p_oldest": tick - TICKS_KEPT})
            return ran

    def list_ticks(self, job, *, limit=100):
        with self._tx(write=False) as tx:
            rows = tx.execute(TICKS, {"p_job": job, "p_limit": limit})
        return [(int(r.tick), r.holder) for r in rows]

    def _pause_after_batch(self, held: float) -> None:
        """Checkpoint the WAL here, in the cleanup's own time: otherwise the next worker
        whose commit crosses the auto-checkpoint threshold pays for copying every page the
        cleanup wrote (hundreds of milliseconds).  PASSIVE never blocks other writers."""
        began = time.monotonic()
        with self._tx(write=False) as tx:
            tx.execute_text("PRAGMA wal_checkpoint(PASSIVE)")
        time.sleep(max(held * SQLITE_CLEANUP_DUTY_PAUSE - (time.monotonic() - began), 0))

    def usage(self, *, by, since=None, owner=None):
        check_grouping(by)
        since = None if since is None else check.check_time("since", since)
        # Whole days (no ``since``, or since a midnight) read the daily rollups: the same
        # sums, a table a 24th the size; any other ``since`` needs the hours.
        daily = since is None or since == day_start(since)
        values = {"p_owner": owner}
        if since is not None:
            values["p_since"] = since if daily else hour_of(since)
        with self._tx(write=False) as tx:
            rows = tx.execute(usage_query(daily, by, since is not None, owner is not None), values)
        rows = [(r[0], int(r[1]), int(r[2]) * _HALF + int(r[3]), float(r[4])) for r in rows]
        if by == BY_DAY:
            return fold_days(rows)
        return [UsageRow(key, sessions, tokens, round(cost, 6)) for key, sessions, tokens, cost in rows]

    def heartbeat_worker(self, *, worker_id, host, pid, active=0, rss_bytes=None, version=None):
        check.check_worker(worker_id, host, pid, active, rss_bytes, version)
        now = self._clock()
        with self._tx() as tx:
            tx.execute(statements.UPSERT_WORKER[self.name], {
                "worker_id": worker_id, "host": host, "pid": pid, "active": active, "rss_bytes": rss_bytes,
                "version": version, "last_seen": now, "started_at": now})
            started_at = tx.first(WORKER_STARTED, {"p_worker_id": worker_id}).started_at
        return Worker(worker_id, host, pid, active, rss_bytes, version, now, started_at)

    def list_workers(self):
        with self._tx(write=False) as tx:
            rows = tx.execute(WORKERS)
        return [Worker(r.worker_id, r.host, r.pid, r.active, r.rss_bytes, r.version, r.last_seen, r.started_at)
                for r in rows]
