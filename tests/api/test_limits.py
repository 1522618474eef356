"""The API's declared bounds are the store's own (repositories.validation), not copies: the
OpenAPI document shows them, and a request just past one is refused by the schema."""
from __future__ import annotations

import pytest

from repositories import errors
from repositories import credentials, validation as limits


@pytest.fixture
def document(callers):
    return callers.anonymous.get("/openapi.json").json["components"]["schemas"]


def test_the_document_declares_the_stores_limits(document):
    create = document["CreateSession"]["properties"]
    assert create["kind"]["pattern"] == limits.KIND_PATTERN
    assert create["label"]["maxLength"] == limits.MAX_LABEL
    assert create["owner"]["anyOf"][0]["maxLength"] == limits.MAX_OWNER
    entry = document["LogEntryIn"]["properties"]
    assert tuple(entry["level"]["enum"]) == limits.LOG_LEVELS
    assert entry["message"]["maxLength"] == limits.MAX_MESSAGE_BYTES
    assert document["LogBatch"]["properties"]["entries"]["maxItems"] == limits.MAX_LOG_BATCH
    assert document["ListQuery"]["properties"]["limit"]["maximum"] == limits.MAX_LIST_LIMIT
    assert document["LogsQuery"]["properties"]["limit"]["maximum"] == limits.MAX_LOG_PAGE
    assert document["SnapshotQuery"]["properties"]["limit"]["maximum"] == limits.MAX_SNAPSHOT_LIMIT
    assert document["StartSession"]["properties"]["worker_id"]["anyOf"][0]["maxLength"] == limits.MAX_WORKER_ID


def test_the_compiled_patterns_match_their_text():
    assert limits.KIND_RE.pattern == limits.KIND_PATTERN and limits.UUID_RE.pattern == limits.UUID_PATTERN
    assert limits.KIND_RE.fullmatch("batch.v2_x-y") and not limits.KIND_RE.fullmatch("batch\n")
    assert not limits.KIND_RE.fullmatch("x" * (limits.MAX_KIND + 1))


@pytest.mark.parametrize("path, body, field", [
    ("/sessions", {"kind": "x" * (limits.MAX_KIND + 1)}, "kind"),
    ("/sessions", {"kind": "x", "owner": "o" * (limits.MAX_OWNER + 1)}, "owner"),
])
def test_one_past_a_limit_is_refused_naming_the_field(callers, path, body, field):
    response = callers.admin.post(path, body)
    assert response.status_code == 400 and response.json["error"]["message"].startswith(field)


def test_credential_not_found_is_a_domain_error_kept_with_the_others():
    assert credentials.CredentialNotFound is errors.CredentialNotFound
    assert issubclass(errors.CredentialNotFound, errors.RunboardError)
    assert errors.CredentialNotFound.code == "not_found"
