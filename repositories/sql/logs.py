"""Log methods of the SQL store.

``seq`` comes from the session row's ``log_count``, read under the row lock (SQLite:
the write lock taken at BEGIN IMMEDIATE) in the same transaction as the insert, so
concurrent appenders queue on the row and numbers stay gapless; the (session_pk, seq)
primary key backs that up.
"""
from __future__ import annotations

from sqlalchemy import bindparam, insert, select

from .. import validation as check
from ..errors import LogLimitExceeded
from ..records import AppendResult, LogPage
from ..states import State, check_reportable
from . import statements
from .rows import LOG_COLUMNS, logs, to_log

INSERT_LOG = insert(logs).values({name: bindparam(name) for name in logs.c.keys()})
PAGE = (select(*LOG_COLUMNS).where(logs.c.session_pk == bindparam("p_pk"), logs.c.seq > bindparam("p_after"))
        .order_by(logs.c.seq).limit(bindparam("p_limit")))


class SqlLogs:
    def append_logs(self, session_id, entries):
        batch = check.check_log_batch(entries)
        with self._tx() as tx:
            row = self._fetch(tx, session_id, statements.LOG_SLOT)
            check_reportable(row.id, State(row.state), "logs")
            if row.log_count + len(batch) > self._max_log_entries:
                raise LogLimitExceeded(row.id, row.log_count, len(batch), self._max_log_entries)
            now = self._clock()
            first = row.log_count + 1
            tx.execute_many(INSERT_LOG, [
                {"session_pk": row.pk, "seq": seq, "ts": now, "level": e.level, "message": e.message,
                 "fields": e.fields, "at": e.at} for seq, e in enumerate(batch, start=first)])
            last = row.log_count + len(batch)
            tx.execute(statements.LOGGED, {"p_pk": row.pk, "p_log_count": last, "p_now": now})
            return AppendResult(first, last)

    def read_logs(self, session_id, *, after=0, limit=1000):
        check.check_limit("after", after, 0, check.MAX_LOG_SEQ)
        check.check_limit("limit", limit, 1, check.MAX_LOG_PAGE)
        # One snapshot for both SELECTs: under READ COMMITTED a cleanup committing between
        # them would show an existing session with no logs.
        with self._tx(write=False, snapshot=True) as tx:
            row = self._fetch(tx, session_id, statements.SELECT_STATE)
            entries = [to_log(r) for r in tx.execute(PAGE, {"p_pk": row.pk, "p_after": after, "p_limit": limit})]
        return LogPage(entries, entries[-1].seq if entries else after)
