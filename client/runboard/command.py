"""The ``runboard`` command: ``runboard run -- CMD…`` tracks any program, ``runboard sync``
sends spooled reports.

``run`` starts the program in its own process group (so a stop reaches its children too),
echoes its output, and turns each stdout line into an ``info`` entry, each stderr line into
a ``warning`` entry, and ``::progress {json}`` lines into progress reports.  A stop request
sends SIGTERM to the group, SIGKILL after ``--grace``.  The session ends with the program:
output still open ``OUTPUT_GRACE`` after it (held by what it left running) is not waited
for.  ``runboard`` exits with the
program's own status (128 + the signal when it was killed), so it can stand in for the
program in scripts and cron lines.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional

from . import spool
from .client import Client
from .http import HttpTransport

PROGRESS_PREFIX = "::progress "
#: How long the pipes may stay open after the program ends (held by what it left running).
OUTPUT_GRACE = 2.0
KIND = re.compile(r"[a-z0-9_.-]{1,64}")
KIND_CHARS = re.compile(r"[^a-z0-9_.-]+")
MAX_KIND = 64
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    match = DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 10s, 500ms or 2m")
    return float(match.group(1)) * UNITS[match.group(2)]


def kind_name(text: str) -> str:
    """Refused here, a kind the server would refuse cannot abandon the run after the program started."""
    if not KIND.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} does not match the kind pattern [a-z0-9_.-]{{1,64}}")
    return text


def meta_item(text: str) -> tuple:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    parsed = storable_json(value)
    return key, value if parsed is None else parsed[0]


def storable_json(text: str) -> Optional[tuple]:
    """``(value,)`` when ``text`` is JSON every store keeps, else None.  Strict: the server
    refuses NaN, Infinity, NUL and lone surrogates, and one refused report abandons the whole
    run, so such text stays text.  Nesting deep enough to exhaust the parser's recursion is
    just malformed, never a crash of the reader that drains the program's pipe."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
        return (value,) if _storable(value) else None
    except (ValueError, RecursionError):
        return None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _storable(value) -> bool:
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)        # json.loads turns 1e999 into inf without a constant
    if isinstance(value, str):
        return "\x00" not in value and (value.isascii() or _is_utf8(value))
    return True


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def default_kind(program: str) -> str:
    """``cmd.<program name>``, normalised to the kind pattern ``[a-z0-9_.-]{1,64}``."""
    name = KIND_CHARS.sub("_", Path(program).name.lower()).strip("_") or "program"
    return f"cmd.{name}"[:MAX_KIND]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="runboard", description="Track work as Runboard sessions.")
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a program as a session",
                              description="Run CMD as a Runboard session (RUNBOARD_URL, RUNBOARD_TOKEN).")
    run.add_argument("--kind", type=kind_name, help="the session's kind (default: cmd.<program name>)")
    run.add_argument("--label", help="the session's label (default: the command line)")
    run.add_argument("--meta", action="append", type=meta_item, default=[], metavar="KEY=VALUE",
                     help="a meta field; VALUE is JSON when it parses as JSON (repeatable)")
    run.add_argument("--grace", type=duration, default=10.0,
                     help="after a stop's SIGTERM, wait this long before SIGKILL (default 10s)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    sync = commands.add_parser("sync", help="send spooled reports",
                               description="Send reports spooled by runs that could not reach the server.")
    sync.add_argument("--spool", type=Path, help="the spool directory (default: RUNBOARD_SPOOL_DIR or "
                                                 "~/.cache/runboard/spool)")
    sync.add_argument("--url", help="send to this server instead of the one each file names")
    sync.add_argument("--timeout", type=duration, default=60.0,
                      help="give up on an unreachable server after this long (default 60s)")
    return top


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        if args.command == "run":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                parser().error("run needs a command after --")
            return run_command(cmd, kind=args.kind, label=args.label, meta=dict(args.meta), grace=args.grace)
        return sync_spool(args.spool or spool.default_dir(), url=args.url, timeout=args.timeout)
    except ValueError as exc:                  # RUNBOARD_URL or RUNBOARD_TOKEN missing
        print(f"runboard: {exc}", file=sys.stderr)
        return 2


def run_command(cmd: List[str], *, kind: Optional[str], label: Optional[str], meta: dict, grace: float) -> int:
    client = Client()
    run = client.track(kind or default_kind(cmd[0]), label=label if label is not None else shlex.join(cmd)[:256],
                       meta=meta or None)
    try:
        process = subprocess.Popen(cmd, stdin=None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   start_new_session=True)
    except OSError as exc:
        run.log("error", f"cannot run {cmd[0]}: {exc.strerror or exc}")
        run.finish("failed", error=f"cannot run {cmd[0]}: {exc.strerror or exc}")
        client.close()
        print(f"runboard: cannot run {cmd[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    output = _Output(run)
    readers = [threading.Thread(target=output.read, args=(process.stdout, sys.stdout, True), daemon=True),
               threading.Thread(target=output.read, args=(process.stderr, sys.stderr, False), daemon=True)]
    for reader in readers:
        reader.start()
    forwarded = _forward_signals(process)
    stopped = _wait(process, run, grace)
    deadline = time.monotonic() + OUTPUT_GRACE
    for reader in readers:
        reader.join(max(deadline - time.monotonic(), 0.0))
    if any(reader.is_alive() for reader in readers):
        output.let_go(f"processes the program started still hold its output {OUTPUT_GRACE:g}s after it "
                      "ended; what they write from now on is not captured")
    for number, previous in forwarded.items():
        signal.signal(number, previous)
    status = process.returncode
    if stopped:
        run.log("info", f"stopped: {_ended(status)}")
        run.finish("stopped", result={"exit_code": status} if status >= 0 else None)
    elif status == 0:
        run.finish("completed", result={"exit_code": 0})
    else:
        run.finish("failed", error=_ended(status))
    client.close()
    return status if status >= 0 else 128 - status


def _ended(status: int) -> str:
    if status >= 0:
        return f"exit code {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"killed by {name}"


class _Output:
    """The program's two pipes, read into the run until they close or the run lets go of
    them: a process the program left running in the background (``cmd &``) keeps the
    pipes open after the program has ended, and the session ends with the program."""

    def __init__(self, run):
        self._run = run
        self._lock = threading.Lock()
        self._reporting = True

    def read(self, stream, echo, is_stdout: bool) -> None:
        """Each line read becomes an entry (or a progress report), in the order read.  Nothing
        here may end the loop early: a reader that stops draining its pipe blocks the program."""
        for raw in iter(stream.readline, b""):
            _echo(echo, raw)
            line = raw.decode("utf-8", "replace").rstrip("\r\n").replace("\x00", "\ufffd")
            with self._lock:
                if self._reporting:
                    self._report(line, is_stdout)
        stream.close()

    def _report(self, line: str, is_stdout: bool) -> None:
        if is_stdout and line.startswith(PROGRESS_PREFIX):
            parsed = storable_json(line[len(PROGRESS_PREFIX):])
            if parsed is not None and isinstance(parsed[0], dict):
                self._run.progress(**parsed[0])
                return
        self._run.log("info" if is_stdout else "warning", line)

    def let_go(self, why: str) -> None:
        """Report nothing more from the pipes (still echoed while this process lives)."""
        with self._lock:
            self._reporting = False
            self._run.log("warning", why)


def _echo(echo, raw: bytes) -> None:
    """The program's bytes as it wrote them (no re-encoding that a locale could refuse).
    When our own output is gone (``runboard run … | head``), point it at /dev/null, as the
    Python docs advise for a broken pipe, so this and the exit-time flush stay quiet."""
    try:
        echo.buffer.write(raw)
        echo.buffer.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, echo.fileno())
        os.close(devnull)


def _forward_signals(process: subprocess.Popen) -> dict:
    """SIGINT and SIGTERM to ``runboard`` go to the program's group: the program decides."""
    def forward(number, _frame):
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            pass
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, forward)
    return previous


def _wait(process: subprocess.Popen, run, grace: float) -> bool:
    """Wait for the program; on a stop request SIGTERM its group, SIGKILL after ``grace``.
    True when it ended because of a stop.  (A report the server refused ends the run's
    reporting, not the program: it raises no stop flag.)"""
    terminated_at, killed = None, False
    while True:
        try:
            process.wait(timeout=0.1)
            return terminated_at is not None
        except subprocess.TimeoutExpired:
            pass
        if terminated_at is None and run.should_stop():
            terminated_at = time.monotonic()
            run.log("info", f"stop requested: sending SIGTERM, SIGKILL after {grace:g}s")
            _signal_group(process, signal.SIGTERM)
        elif terminated_at is not None and not killed and time.monotonic() - terminated_at >= grace:
            run.log("warning", f"still running {grace:g}s after SIGTERM: sending SIGKILL")
            _signal_group(process, signal.SIGKILL)
            killed = True


def _signal_group(process: subprocess.Popen, number: int) -> None:
    try:
        os.killpg(process.pid, number)
    except ProcessLookupError:
        pass


def sync_spool(directory: Path, *, url: Optional[str], timeout: float) -> int:
    """Send every spool file, oldest first; 0 when none is left, 1 otherwise."""
    token = os.environ.get("RUNBOARD_TOKEN")
    if not token:
        raise ValueError("no token: set RUNBOARD_TOKEN to the token the spooled runs used")
    paths = list(spool.files(directory))
    if not paths:
        print(f"nothing to send in {directory}")
        return 0
    left = 0
    for path in paths:
        try:
            spooled = spool.read(path)
        except (OSError, ValueError, KeyError, IndexError) as exc:
            print(f"{path.name}: unreadable ({exc}); left in place", file=sys.stderr)
            left += 1
            continue
        transport = HttpTransport(url or spooled.url, token)
        try:
            print(spool.send(spooled, transport, deadline=time.monotonic() + timeout))
        finally:
            transport.close()
        left += path.exists()
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
