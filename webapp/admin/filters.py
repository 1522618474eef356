"""GET filter forms: query strings parsed into small records, never 500 on bad input.

Values that cannot be used (an unknown state, a malformed date) are dropped with a
message for the page, so a hand-edited URL still gives a working page.
"""
from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta, timezone
from urllib.parse import urlencode

from repositories import validation as check
from repositories.errors import ValidationError
from repositories.states import TERMINAL_STATES
from repositories.validation import KIND_RE, MAX_KIND, MAX_LABEL, MAX_OWNER

FINISHED = [s.value for s in TERMINAL_STATES]


def _text(args, name: str, limit: int) -> str:
    return (args.get(name) or "").strip()[:limit]


@dataclasses.dataclass(frozen=True)
class SessionFilters:
    owner: str = ""
    kind: str = ""
    q: str = ""
    problems: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args) -> "SessionFilters":
        kind, problems = _text(args, "kind", MAX_KIND), []
        if kind and not KIND_RE.fullmatch(kind):
            problems.append("kind: use lower-case letters, digits, '_', '.' or '-'")
            kind = ""
        return cls(_text(args, "owner", MAX_OWNER), kind, _text(args, "q", MAX_LABEL), tuple(problems))

    def matches(self, session) -> bool:
        return ((not self.owner or session.owner == self.owner)
                and (not self.kind or session.kind == self.kind)
                and (not self.q or self.q.casefold() in session.label.casefold()))

    def query(self, **extra) -> str:
        values = {k: v for k, v in {"owner": self.owner, "kind": self.kind, "q": self.q, **extra}.items() if v}
        return urlencode(values)

    @property
    def active(self) -> bool:
        return bool(self.owner or self.kind or self.q)


@dataclasses.dataclass(frozen=True)
class HistoryFilters(SessionFilters):
    state: str = ""
    date_from: date | None = None
    date_to: date | None = None

    @classmethod
    def from_args(cls, args) -> "HistoryFilters":
        base = SessionFilters.from_args(args)
        problems = list(base.problems)
        state = _text(args, "state", 16)
        if state and state not in FINISHED:
            problems.append(f"state: one of {', '.join(FINISHED)}")
            state = ""
        dates = []
        for name in ("from", "to"):
            raw = _text(args, name, 10)
            try:
                dates.append(check.check_date(name, date.fromisoformat(raw)) if raw else None)
            except ValueError:
                problems.append(f"{name}: a date such as 2026-01-31")
                dates.append(None)
            except ValidationError as exc:
                problems.append(exc.message)
                dates.append(None)
        return cls(base.owner, base.kind, base.q, tuple(problems), state, *dates)

    def created_in_range(self, session) -> int:
        """0 inside the created-date range, 1 newer than it, -1 older (UTC dates)."""
        if self.date_to and session.created_at >= _midnight(self.date_to + timedelta(days=1)):
            return 1
        if self.date_from and session.created_at < _midnight(self.date_from):
            return -1
        return 0

    def query(self, **extra) -> str:
        return super().query(state=self.state, **{"from": self.date_from and self.date_from.isoformat(),
                                                   "to": self.date_to and self.date_to.isoformat()}, **extra)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=timezone.utc)
