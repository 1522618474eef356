"""Log methods of the SQL store.

``seq`` comes from the session row's ``log_count``, read under the row lock (SQLite:
the write lock taken at BEGIN IMMEDIATE) in the same transaction as the insert, so concurrent appenders queue on the row and numbers stay
gapless; the (session_pk, seq) primary key backs that up.
"""
from __future__ import annotations

from sqlalchemy import select

from .. import validation as check
from ..errors import LogLimitExceeded
from ..records import AppendResult, LogPage
from ..states import State, check_reportable
from .rows import LOG_COLUMNS, logs, to_log
from .statements import SELECT_PK


class SqlLogs:
    def append_logs(self, session_id, entries):
        batch = check.check_log_batch(entries)
        d = self._dialect
        with self._transactions.cursor() as cursor:
            pk, key, state, log_count = d.fetch(cursor, d.log_row, session_id)
            check_reportable(key, State(state), "logs")
            if log_count + len(batch) > self._max_log_entries:
                raise LogLimitExceeded(key, log_count, len(batch), self._max_log_entries)
            stamp = d.dump_ts(self._clock())
            first = log_count + 1
            d.insert_logs(cursor, pk, first, stamp, batch)
            last = log_count + len(batch)
            cursor.execute(d.log_update, (last, stamp, stamp, pk))
            return AppendResult(first, last)

    def read_logs(self, session_id, *, after=0, limit=1000):
        check.check_limit("after", after, 0, 2**62)
        check.check_limit("limit", limit, 1, 5000)
        # One snapshot for both SELECTs: under READ COMMITTED a cleanup committing between
        # them would show an existing session with no logs.
        with self._tx(write=False, snapshot=True) as connection:
            row = self._fetch(connection, session_id, SELECT_PK)
            entries = [to_log(r) for r in connection.execute(
                select(*LOG_COLUMNS).where(logs.c.session_pk == row.pk, logs.c.seq > after)
                .order_by(logs.c.seq).limit(limit))]
        return LogPage(entries, entries[-1].seq if entries else after)
