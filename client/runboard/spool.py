"""Reports that could not be delivered before a run ended, kept on disk for ``runboard sync``.

One file per run, JSON Lines: a header (server URL, session id if known), then one line per
request in sending order with its idempotency key and its exact body.  ``sync`` sends them
in order with the same keys and bodies, so a request the server did receive before the
network failed is answered from the server's memory instead of being stored twice
(within its 24 hours of keeping keys), and running ``sync`` again changes nothing: a file
goes once every request in it was answered.  The token is never written: ``sync`` uses
``RUNBOARD_TOKEN``, and it must be the run's own, since keys are kept per token.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

from .backoff import Backoff
from .http import HttpTransport, body_of, encode
from .transport import LogsFull, Op, Rejected, RetryLater, SessionGone

log = logging.getLogger("runboard")
SUFFIX = ".jsonl"


def default_dir() -> Path:
    configured = os.environ.get("RUNBOARD_SPOOL_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "runboard" / "spool"


@dataclass
class Spooled:
    path: Path
    url: str
    session_id: Optional[str]
    ops: List[Op] = field(default_factory=list)


def write(directory: Path, url: str, session_id: Optional[str], ops: List[Op]) -> Path:
    """Write ``ops`` atomically (a reader never sees half a file); the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{session_id or 'new-' + uuid.uuid4().hex[:12]}{SUFFIX}"
    path = directory / name
    lines = [json.dumps({"runboard_spool": 1, "url": url, "session_id": session_id})]
    for op in ops:
        wire = op.wire if op.wire is not None else encode(body_of(op))
        lines.append(json.dumps({"kind": op.kind, "key": op.key, "body": wire.decode("utf-8")}, ensure_ascii=False))
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read(path: Path) -> Spooled:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    if header.get("runboard_spool") != 1:
        raise ValueError(f"{path} is not a Runboard spool file")
    spooled = Spooled(path, header["url"], header.get("session_id"))
    for line in lines[1:]:
        if line.strip():
            item = json.loads(line)
            op = Op(item["kind"], None, key=item["key"])
            op.wire = item["body"].encode("utf-8")
            op.tried = True
            spooled.ops.append(op)
    return spooled


def files(directory: Path) -> Iterator[Path]:
    return iter(sorted(directory.glob(f"*{SUFFIX}"))) if directory.is_dir() else iter(())


def send(spooled: Spooled, transport: HttpTransport, *, deadline: float) -> str:
    """Send a spool file's requests in order; remove it when all were answered.  What
    happened, for the command's output.  A server still unreachable at ``deadline``
    leaves the file with what is left, to try again later."""
    backoff, sent, session_id = Backoff(), 0, spooled.session_id
    while spooled.ops:
        op = spooled.ops[0]
        try:
            answer = transport.send(session_id, op)
        except RetryLater as exc:
            delay = backoff.failed(exc.retry_after)
            if time.monotonic() + delay > deadline:
                write_back(spooled, session_id)
                return f"{spooled.path.name}: server unreachable ({exc}); {len(spooled.ops)} requests kept"
            time.sleep(delay)
            continue
        except (SessionGone, Rejected, LogsFull) as exc:
            spooled.path.unlink()
            return (f"{spooled.path.name}: session {session_id} refused the rest ({exc}); "
                    f"{sent} requests sent, {len(spooled.ops)} dropped")
        backoff.succeeded()
        if op.kind == "create":
            session_id = answer
        spooled.ops.pop(0)
        sent += 1
    spooled.path.unlink()
    return f"{spooled.path.name}: session {session_id}: {sent} requests sent"


def write_back(spooled: Spooled, session_id: Optional[str]) -> None:
    """Keep what is left, under the same name, the session id learned meanwhile included."""
    fresh = write(spooled.path.parent, spooled.url, session_id, spooled.ops)
    os.replace(fresh, spooled.path)
