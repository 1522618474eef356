"""Admin panel benchmark: the server time of every admin page with a large store.

    python bench/pages.py              # 1,000,000 sessions on PostgreSQL, 100,000 on SQLite
    python bench/pages.py --quick      # 50,000 on both
    python bench/pages.py --stores postgresql --postgresql-sessions 200000

Each store is bulk-loaded with bench/populate.py's mix (mostly completed, some failed and
stopped, the newest 300 pending or running, 500 owners, five kinds), spread over 30 days,
with the hourly usage rollups those sessions imply, 5,000 log entries on one running
session (the one whose detail page is measured) and 20 registered workers (3 stale).
Then, in this process with Flask's test client logged in as an admin (so the figure is
request handling + queries + rendering, no network), every page is requested 3 times to
warm up and --samples times measured: median and p95 in ms, target < 100 ms median.

One more request per page runs with every statement recorded (each store method runs
compiled Core statements through ``repositories/sql/compiled.Cursor``).  A statement that counts ``sessions`` without WHERE, or reads it
with neither WHERE nor LIMIT, is flagged; on PostgreSQL each recorded SELECT is run again
under EXPLAIN ANALYZE to sum the rows it examined per table, and the plan of the slowest
statement of a page that misses the target is printed.  "SQL ms" sums the recorded
statements, each SELECT timed again (execute + fetchall, best of 3) on that connection of
its own.  The
rest of the median is Python: request handling, building records and rendering.
"""
from __future__ import annotations

import argparse
import contextlib
import html
import os
import re
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import populate  # noqa: E402
import report  # noqa: E402
import repository as repobench  # noqa: E402  (bench/repository.py: scratch stores, machine facts)
from repositories.sql import compiled  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.store import CREDENTIALS_KEY, EXTENSION_KEY, close_repository  # noqa: E402

TARGET_MS = 100.0
WARMUPS = 3
DAYS = 30
LOG_ENTRIES = 5_000
WORKERS, STALE_WORKERS = 20, 3
ADMIN, PASSWORD = "bench-admin", "bench-admin-password"
OWNER = populate.owner_of(7)
KIND = populate.KINDS[7 % len(populate.KINDS)]      # owner 7's sessions are all of this kind
HISTORY_ROW = b'data-testid="history-row"'


# -- loading -----------------------------------------------------------------------------------------
def load(kind: str, url: str, count: int) -> tuple[str, int]:
    """Fill the store; returns the detail session's (id, log_count)."""
    chosen: list[tuple[int, str]] = []

    def sessions():
        spacing = timedelta(days=DAYS) / count
        for row in populate.session_rows(1, count, seed=count, spacing=spacing):
            if not chosen and row[5] == "running":        # the oldest of the live ones
                chosen.append((row[0], row[1]))
                row = row[:-1] + (LOG_ENTRIES,)
            yield row

    def logs():                                         # consumed after sessions()
        yield from populate.log_rows(chosen[0][0], 1, LOG_ENTRIES, datetime.now(timezone.utc))

    rows, usage = populate.with_usage(sessions())
    if kind == "sqlite":
        populate.load_sqlite(repobench.sqlite_path(url), rows, logs(), usage)
    else:
        populate.load_postgres(repobench.driver_dsn(url), rows, logs(), usage)
    return chosen[0][1], LOG_ENTRIES


def register_workers(repo) -> None:
    """WORKERS heartbeats, the first STALE_WORKERS of them ten minutes old."""
    original = repo._clock
    try:
        for i in range(WORKERS):
            moment = original() - timedelta(minutes=10 if i < STALE_WORKERS else 0)
            repo._clock = lambda moment=moment: moment
            repo.heartbeat_worker(worker_id=f"bench-{i:02d}", host=f"host-{i % 4}", pid=1000 + i,
                                  active=i % 4, rss_bytes=(200 + i) * 2**20, version="bench")
    finally:
        repo._clock = original


def admin_client(url: str):
    app = create_app({"RUNBOARD_DATABASE_URL": url, "RUNBOARD_SCHEDULER": "off",
                      "RUNBOARD_SECRET_KEY": secrets.token_urlsafe(24), "WTF_CSRF_ENABLED": False,
                      "RUNBOARD_MAX_LOG_ENTRIES": 10 * LOG_ENTRIES})
    app.extensions[EXTENSION_KEY].create_schema()
    app.extensions[CREDENTIALS_KEY].create_user(name=ADMIN, password=PASSWORD, is_admin=True)
    client = app.test_client()
    response = client.post("/admin/login", data={"name": ADMIN, "password": PASSWORD})
    assert response.status_code == 302, response.status_code
    return app, client


# -- the pages -----------------------------------------------------------------------------------------
@dataclass
class Page:
    name: str
    url: str
    headers: dict = field(default_factory=dict)
    status: int = 200


def older_link(body: str) -> str:
    found = re.search(r'id="history-older" rel="next" href="([^"]+)"', body)
    assert found, "history page without an older link"
    return html.unescape(found.group(1))


def page_plan(client, session_id: str, log_count: int) -> list[Page]:
    etag = client.get("/admin/overview/fragment").headers["ETag"]
    tenth = "/admin/history"
    for _ in range(9):
        tenth = older_link(client.get(tenth).get_data(as_text=True))
    today = datetime.now(timezone.utc).date()
    detail = f"/admin/sessions/{session_id}"
    return [
        Page("overview", "/admin/"),
        Page("overview owner=…", f"/admin/?owner={OWNER}"),
        Page("overview q=…", "/admin/?q=input-9"),
        Page("overview fragment", "/admin/overview/fragment"),
        Page("overview fragment If-None-Match", "/admin/overview/fragment", {"If-None-Match": etag}, 304),
        Page("session detail", detail),
        Page("session summary", f"{detail}/summary"),
        Page("log tail after=0", f"{detail}/logs?after=0"),
        Page("log tail after=near end", f"{detail}/logs?after={log_count - 20}"),
        Page("history page 1", "/admin/history"),
        Page("history page 10", tenth),
        Page("history state+owner+kind+dates", f"/admin/history?state=completed&owner={OWNER}&kind={KIND}"
                                               f"&from={today - timedelta(days=7)}&to={today - timedelta(days=2)}"),
        Page("workers", "/admin/workers"),
        Page("usage 30d", "/admin/usage?range=30d"),
    ]


def timed(client, page: Page, samples: int) -> tuple[float, float, list[float], object]:
    for _ in range(WARMUPS):
        response = client.get(page.url, headers=page.headers)
        assert response.status_code == page.status, (page.url, response.status_code)
    taken = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get(page.url, headers=page.headers)
        taken.append((time.perf_counter() - started) * 1000)
    taken.sort()
    return statistics.median(taken), taken[max(0, round(len(taken) * 0.95) - 1)], taken, response


# -- statement recording ------------------------------------------------------------------------------
@dataclass
class Statement:
    sql: str
    params: object
    ms: float = 0.0

    @property
    def is_select(self) -> bool:
        return self.sql.lstrip().upper().startswith("SELECT")


@contextlib.contextmanager
def recording(repo):
    """Every statement ``repo`` runs inside the block, in order, with the parameters the
    driver received (the stores run compiled plans on driver cursors, which SQLAlchemy's
    cursor events do not see, so ``compiled.Cursor`` is wrapped for the block)."""
    log: list[Statement] = []
    plans = repo.transactions.plans
    original = compiled.Cursor.execute, compiled.Cursor.execute_many

    def execute(cursor, statement, values=None):
        plan = plans[statement]
        log.append(Statement(plan.sql, plan.parameters(values)))
        started = time.perf_counter()
        try:
            return original[0](cursor, statement, values)
        finally:
            log[-1].ms += (time.perf_counter() - started) * 1000

    def execute_many(cursor, statement, values):
        plan = plans[statement]
        log.append(Statement(plan.sql, [plan.parameters(v) for v in values][:1]))
        started = time.perf_counter()
        try:
            return original[1](cursor, statement, values)
        finally:
            log[-1].ms += (time.perf_counter() - started) * 1000

    compiled.Cursor.execute, compiled.Cursor.execute_many = execute, execute_many
    try:
        yield log
    finally:
        compiled.Cursor.execute, compiled.Cursor.execute_many = original


def flag(sql: str) -> str | None:
    """Why a statement looks like a whole-table read of ``sessions``, or None."""
    text = " ".join(sql.lower().split())
    if not re.search(r"\bfrom sessions\b", text):
        return None
    if "count(" in text and " where " not in text:
        return "count over sessions without WHERE"
    if " where " not in text and " limit " not in text:
        return "reads sessions with neither WHERE nor LIMIT"
    return None


def short(sql: str, width: int = 110) -> str:
    text = " ".join(sql.split())
    text = re.sub(r"SELECT (.{40}).*? FROM ", r"SELECT \1… FROM ", text, count=1)
    return text if len(text) <= width else text[:width - 1] + "…"


class Explainer:
    """Runs recorded SELECTs again under EXPLAIN on a connection of its own."""

    def __init__(self, kind: str, url: str):
        self.kind = kind
        if kind == "postgresql":
            self.connection = psycopg.connect(repobench.driver_dsn(url), autocommit=True,
                                              options="-c timezone=UTC")
        else:
            self.connection = sqlite3.connect(repobench.sqlite_path(url))
            self.connection.create_function("runboard_casefold", 1, lambda t: t and t.casefold())

    def rerun_ms(self, statement: Statement) -> float:
        """Best of three runs of ``statement`` (execute + fetchall) on this connection."""
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            self.connection.execute(statement.sql, statement.params or ()).fetchall()
            runs.append((time.perf_counter() - started) * 1000)
        return min(runs)

    def examined(self, statement: Statement) -> Counter:
        """Rows each table's scans read (returned + filtered out), PostgreSQL only."""
        rows: Counter = Counter()
        if self.kind != "postgresql" or not statement.is_select:
            return rows
        plan = self.connection.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement.sql,
                                       statement.params).fetchone()[0][0]["Plan"]
        _add_examined(plan, rows)
        return rows

    def plan_text(self, statement: Statement) -> str:
        if self.kind == "postgresql":
            lines = self.connection.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement.sql,
                                            statement.params).fetchall()
            return "\n".join(line[0] for line in lines)
        lines = self.connection.execute("EXPLAIN QUERY PLAN " + statement.sql, statement.params or ()).fetchall()
        return "\n".join(str(line[-1]) for line in lines)

    def close(self):
        self.connection.close()


def _add_examined(plan: dict, rows: Counter) -> None:
    if "Relation Name" in plan:
        read = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
                + plan.get("Rows Removed by Index Recheck", 0))
        rows[plan["Relation Name"]] += int(read * plan.get("Actual Loops", 1))
    for child in plan.get("Plans", []):
        _add_examined(child, rows)


# -- one store -----------------------------------------------------------------------------------------
@dataclass
class Result:
    page: Page
    store: str
    sessions: int
    median: float
    p95: float
    samples: int
    response: str
    statements: list[Statement]
    examined: Counter
    flags: list[str]
    plan: str = ""

    @property
    def passed(self) -> bool:
        return self.median < TARGET_MS

    @property
    def slowest(self) -> Statement | None:
        return max(self.statements, key=lambda s: s.ms, default=None)


def describe(response) -> str:
    body = response.get_data()
    extra = ""
    if b'id="history-table"' in body or b'id="history-empty"' in body:
        extra = f" · {body.count(HISTORY_ROW)} rows"
    if response.is_json and "entries" in (response.json or {}):
        extra = f" · {len(response.json['entries'])} entries"
    return f"{response.status_code} · {len(body) / 1024:.0f} KB{extra}"


def measure_store(kind: str, count: int, samples: int, workdir: Path) -> list[Result]:
    scratch, app, explainer = repobench.Scratch(kind, workdir), None, None
    try:
        url = scratch.url()
        app, client = admin_client(url)
        repo = app.extensions[EXTENSION_KEY]
        started = time.perf_counter()
        session_id, log_count = load(kind, url, count)
        register_workers(repo)
        print(f"{kind}: loaded {count:,} sessions over {DAYS} days, {log_count:,} log entries, "
              f"{WORKERS} workers in {time.perf_counter() - started:.0f} s", flush=True)
        explainer = Explainer(kind, url)
        results = []
        for page in page_plan(client, session_id, log_count):
            median, p95, taken, response = timed(client, page, samples)
            with recording(repo) as log:
                assert client.get(page.url, headers=page.headers).status_code == page.status
            examined: Counter = Counter()
            for statement in log:
                if statement.is_select:
                    statement.ms = explainer.rerun_ms(statement)
                for table, n in explainer.examined(statement).items():
                    examined[table] = max(examined[table], n)
            result = Result(page, kind, count, median, p95, len(taken), describe(response), log, examined,
                            [f for f in (flag(s.sql) for s in log) if f])
            if not result.passed and result.slowest is not None:
                result.plan = explainer.plan_text(result.slowest)
            results.append(result)
            print(f"  {page.name}: {median:.1f} ms (p95 {p95:.1f})", flush=True)
        return results
    finally:
        if explainer is not None:
            explainer.close()
        if app is not None:
            close_repository(app)
        scratch.close()


# -- report ------------------------------------------------------------------------------------------------
def print_results(results: list[Result]) -> None:
    header = ["page", "store", "sessions", "median ms", "p95 ms", "n", "response", "stmts", "SQL ms", "slowest stmt",
              "rows examined (max per stmt)", "whole-table flags", "target", "result"]
    table = [header]
    for r in results:
        slowest = r.slowest
        examined = ", ".join(f"{t} {n:,}" for t, n in r.examined.most_common()) or "—"
        table.append([r.page.name, r.store, f"{r.sessions:,}", f"{r.median:.1f}", f"{r.p95:.1f}", str(r.samples),
                      r.response, str(len(r.statements)), f"{sum(s.ms for s in r.statements):.1f}",
                      f"{slowest.ms:.1f} ms" if slowest else "—",
                      examined if r.store == "postgresql" else "n/a", "; ".join(r.flags) or "none",
                      f"< {TARGET_MS:.0f} ms", "PASS" if r.passed else "FAIL"])
    report.print_table(header, table[1:])
    print("\nSlowest statement per page:")
    for r in results:
        if r.slowest is not None:
            print(f"- {r.store} · {r.page.name}: {r.slowest.ms:.1f} ms · {short(r.slowest.sql)}")
    for r in results:
        if r.plan:
            print(f"\n{r.store} · {r.page.name} missed the target; its slowest statement:\n"
                  f"{' '.join(r.slowest.sql.split())}\nparameters: {r.slowest.params!r}\n{r.plan}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stores", default="postgresql,sqlite")
    parser.add_argument("--postgresql-sessions", type=int, default=1_000_000)
    parser.add_argument("--sqlite-sessions", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=30, help="measured requests per page (≥ 30)")
    parser.add_argument("--quick", action="store_true", help="50,000 sessions on both stores")
    args = parser.parse_args()
    if args.quick:
        args.postgresql_sessions = args.sqlite_sessions = 50_000
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if set(stores) - {"sqlite", "postgresql"}:
        parser.error("--stores: sqlite and/or postgresql")
    sizes = {"postgresql": args.postgresql_sessions, "sqlite": args.sqlite_sessions}
    print(repobench.machine_facts(), flush=True)
    print(f"settings: {WARMUPS} warm-ups + {args.samples} measured requests per page, in-process test "
          f"client · sessions over {DAYS} days · {LOG_ENTRIES:,} log entries on the detail session · "
          f"{WORKERS} workers", flush=True)
    begun = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="runboard-pagebench-") as workdir:
        for kind in stores:
            results += measure_store(kind, sizes[kind], args.samples, Path(workdir))
    print()
    print_results(results)
    passed = sum(r.passed for r in results)
    print(f"\n{passed} of {len(results)} pages under {TARGET_MS:.0f} ms median · "
          f"{sum(bool(r.flags) for r in results)} pages flagged · load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} · total {time.perf_counter() - begun:.0f} s")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
