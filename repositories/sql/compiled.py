"""Core statements compiled once per dialect, run on a pooled driver cursor.

SQLAlchemy's own execution path (a ``Connection`` and its result objects) costs about ten
times what SQLite needs to run and commit a one-row UPDATE, and every store method pays it
(see ``docs/benchmarks.md``, "One transaction path").  The statements themselves stay
SQLAlchemy Core, written against the table definitions; what is cached here is what
SQLAlchemy derives from them: the SQL text for the dialect, the order of its parameters,
and the conversion each column type applies to bound values and to result values
(``UtcDateTime``, ``JSON``, ``Boolean``) — so nothing mirrors the models by hand.

Every statement a store runs is a module-level constant or comes from a cached builder, so
the cache is bounded by the code, not by the data.  No statement uses an expanding ``IN``
(its SQL would depend on the values): a choice among a few states is spelled as ``OR``.
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Iterable

from sqlalchemy import Engine
from sqlalchemy.sql import ClauseElement


#: Far above the statements the stores define (fixed ones, and cached builders' variants).
MAX_PLANS = 1000


class Plan:
    """One statement as a dialect runs it."""

    __slots__ = ("statement", "sql", "names", "defaults", "order", "types", "readers", "row", "_dialect")

    def __init__(self, statement: ClauseElement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.statement = statement                   # keeps id(statement) from being reused
        self.sql = compiled.string
        binds = compiled.binds
        # qmark (SQLite) binds by position, pyformat (psycopg) by name.
        self.names = list(compiled.positiontup) if compiled.positional else None
        # Every parameter, with its literal value or None (a column left out is NULL).
        self.defaults = {name: None if bind.required else bind.value for name, bind in binds.items()}
        binders = {name: processor for name, bind in binds.items()
                   if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        # Each parameter the driver receives, in its order: (name, value when not given,
        # the type's conversion or None).
        self.order = tuple((name, self.defaults[name], binders.get(name)) for name in (self.names or self.defaults))
        columns = list(getattr(statement, "exported_columns", ()))
        self._dialect = dialect
        self.types = [column.type.dialect_impl(dialect) for column in columns]
        self.readers = None                         # built from the first result's description
        self.row = collections.namedtuple("Row", [getattr(c, "key", None) or f"c{i}" for i, c in enumerate(columns)],
                                          rename=True) if columns else None

    def parameters(self, values: dict[str, Any] | None, converted: dict | None = None):
        """The driver's parameters for ``values``: a list (qmark) or a dict (pyformat).

        ``converted`` memoises conversions by value identity across the rows of one
        ``execute_many``: a batch's rows share their timestamp, and converting it once
        instead of per row is most of what a 100-entry log append costs in Python."""
        values = values or {}
        out = []
        for name, default, convert in self.order:
            value = values.get(name, default)
            if convert is not None:
                if converted is None:
                    value = convert(value)
                else:
                    key = (name, id(value))
                    done = converted.get(key)
                    if done is None:
                        done = converted[key] = (value, convert(value))    # holds value: its id stays its own
                    value = done[1]
            out.append(value)
        return out if self.names is not None else dict(zip(self.defaults, out))

    def rows(self, raw: Iterable[tuple], description) -> list:
        if self.readers is None:
            # Some conversions depend on the driver's type code (PostgreSQL's numeric types).
            readers = [kind.result_processor(self._dialect, column[1]) for kind, column in zip(self.types, description)]
            self.readers = readers if any(readers) else ()
        readers, make = self.readers, self.row._make
        if not readers:
            return [make(row) for row in raw]
        return [make([value if read is None or value is None else read(value)
                      for read, value in zip(readers, row)]) for row in raw]


class Plans:
    """The plans of one engine's dialect, built on first use."""

    def __init__(self, engine: Engine):
        self._dialect = engine.dialect
        self._plans: dict[int, Plan] = {}
        self._lock = threading.Lock()

    def __getitem__(self, statement: ClauseElement) -> Plan:
        plan = self._plans.get(id(statement))
        if plan is None:
            with self._lock:
                if len(self._plans) >= MAX_PLANS:
                    raise RuntimeError("more statements than the store defines: one is built per call "
                                       "instead of once (see repositories/sql/statements.py)")
                plan = self._plans.setdefault(id(statement), Plan(statement, self._dialect))
        return plan


class Cursor:
    """What a store method runs its statements on, inside ``Transactions``."""

    __slots__ = ("_cursor", "_plans", "rowcount", "sql")

    def __init__(self, cursor, plans: Plans):
        self._cursor, self._plans, self.rowcount, self.sql = cursor, plans, -1, None

    def execute(self, statement: ClauseElement, values: dict[str, Any] | None = None) -> list:
        """Run ``statement``; its rows (named by column key), [] for one that returns none."""
        plan = self._plans[statement]
        cursor = self._cursor
        self.sql = plan.sql
        cursor.execute(plan.sql, plan.parameters(values))
        self.rowcount = cursor.rowcount
        return plan.rows(cursor.fetchall(), cursor.description) if plan.row is not None else []

    def first(self, statement: ClauseElement, values: dict[str, Any] | None = None):
        rows = self.execute(statement, values)
        return rows[0] if rows else None

    def execute_many(self, statement: ClauseElement, values: list[dict[str, Any]]) -> None:
        plan = self._plans[statement]
        self.sql = plan.sql
        converted: dict = {}
        self._cursor.executemany(plan.sql, [plan.parameters(v, converted) for v in values])
        self.rowcount = self._cursor.rowcount

    def execute_text(self, sql: str):
        """A fixed statement of no table (``PRAGMA``); its rows as the driver returns them."""
        self.sql = sql
        self._cursor.execute(sql)
        return self._cursor.fetchall() if self._cursor.description else []

    def close(self) -> None:
        self._cursor.close()
