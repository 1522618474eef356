"""Helpers shared by the API tests (imported by name: tests are not a package)."""
from __future__ import annotations

import dataclasses

ADMIN_TOKEN = "bootstrap-admin-token-0123456789"
USER_KIND = "demo"


@dataclasses.dataclass
class Caller:
    """A test client bound to one Authorization header (or none)."""

    client: object
    token: str | None
    owner: str | None = None

    def _headers(self, headers):
        merged = dict(headers or {})
        if self.token is not None:
            merged.setdefault("Authorization", f"Bearer {self.token}")
        return merged

    def get(self, path, **kw):
        return self.client.get(f"/api/v1{path}", headers=self._headers(kw.pop("headers", None)), **kw)

    def post(self, path, json=None, **kw):
        if json is None and "data" not in kw:
            return self.client.post(f"/api/v1{path}", headers=self._headers(kw.pop("headers", None)), **kw)
        return self.client.post(f"/api/v1{path}", json=json, headers=self._headers(kw.pop("headers", None)), **kw)


@dataclasses.dataclass
class Callers:
    anonymous: Caller
    bad: Caller
    revoked: Caller
    admin: Caller
    worker: Caller
    alice: Caller
    bob: Caller
    bootstrap: Caller


def error_code(response) -> str:
    assert set(response.json) == {"error"}, response.json
    error = response.json["error"]
    details = {"log_limit_exceeded": {"stored", "limit"}}.get(error.get("code"), set())
    assert set(error) == {"code", "message"} | details, error
    return error["code"]
