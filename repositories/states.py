"""Session states and the only place that knows which moves between them are legal.

Every backend asks this module before it writes a state, so the diagram in SPEC §1
cannot drift between the memory store and the SQL store.
"""
from __future__ import annotations

import enum

from .errors import InvalidTransition, ValidationError


class State(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    def __str__(self) -> str:  # so f-strings and logs show "running", not "State.RUNNING"
        return self.value


TERMINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.STOPPED})

#: The error of a pending session failed by ``sweep_queued``: the runner process holding
#: it in its queue died (SIGKILL, OOM) before starting it, so nothing will ever start it.
RUNNER_LOST = "runner lost: the process that queued it ended before starting it"

#: (from state, action) -> resulting state.  ``stop`` on a running session keeps it
#: running (only ``stop_requested`` flips), so it maps to RUNNING.
_MOVES: dict[tuple[State, str], frozenset[State]] = {
    (State.PENDING, "start"): frozenset({State.RUNNING}),
    (State.PENDING, "stop"): frozenset({State.STOPPED}),
    (State.PENDING, "finish"): frozenset({State.FAILED, State.STOPPED}),
    (State.RUNNING, "stop"): frozenset({State.RUNNING}),
    (State.RUNNING, "finish"): TERMINAL_STATES,
    (State.RUNNING, "heartbeat lost"): frozenset({State.FAILED}),
    (State.PENDING, "runner lost"): frozenset({State.FAILED}),
}

#: States in which a session accepts progress reports and log entries.
REPORTABLE_STATES = {
    "progress": frozenset({State.RUNNING}),
    "logs": frozenset({State.PENDING, State.RUNNING}),
}


def parse_state(value: str | State, field: str = "state") -> State:
    """Turn user input into a State, or raise ValidationError naming the field."""

    try:
        return State(value)
    except ValueError:
        allowed = ", ".join(s.value for s in State)
        raise ValidationError(field, f"must be one of {allowed}, not {value!r}") from None


def parse_terminal_state(value: str | State, field: str = "state") -> State:
    """A finish target: one of the terminal states, else ValidationError naming the field."""
    state = parse_state(value, field)
    if not state.is_terminal:
        allowed = ", ".join(sorted(s.value for s in TERMINAL_STATES))
        raise ValidationError(field, f"must be one of {allowed}, not {state.value!r}")
    return state


def check_move(session_id: str, current: State, action: str, target: State) -> None:
    """Raise InvalidTransition unless ``action`` may take ``current`` to ``target``."""
    if target not in _MOVES.get((current, action), frozenset()):
        raise InvalidTransition(session_id, current, action, target)


def check_reportable(session_id: str, current: State, what: str) -> None:
    """Raise InvalidTransition unless the session accepts ``what`` ("progress"/"logs")."""
    if current not in REPORTABLE_STATES[what]:
        raise InvalidTransition(session_id, current, what, None)


def wanted_states(state, states) -> frozenset[State] | None:
    """A listing's state filter: ``state`` and/or any of ``states``; None admits all."""
    if state is None and states is None:
        return None
    wanted = frozenset(parse_state(s) for s in (states or ()))
    if state is not None:
        single = frozenset({parse_state(state)})
        wanted = single if states is None else wanted & single
    return wanted


def cleanup_states(states) -> frozenset[State]:
    """The terminal states a cleanup may remove (all of them by default); a live state is
    a ValidationError: retention never removes pending or running sessions."""
    if states is None:
        return TERMINAL_STATES
    wanted = frozenset(parse_state(s) for s in states)
    live = sorted(s.value for s in wanted - TERMINAL_STATES)
    if live:
        raise ValidationError("state", f"cleanup removes finished sessions only, not {', '.join(live)}")
    return wanted


def stop_target(current: State) -> State:
    """The state a stop request leads to: pending is cancelled, running keeps running."""
    return State.STOPPED if current is State.PENDING else State.RUNNING
