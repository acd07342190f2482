"""Webhook secret verification and payload parsing; repo references and hf: sources."""

from __future__ import annotations

import json

import pytest

from hub.core.errors import InvalidInputError
from hub.hf_sync import parse_repo_ref, parse_source, parse_webhook_payload, source_uri, verify_webhook

SHA = "0123456789abcdef0123456789abcdef01234567"


def _payload(**over):
    p = {"event": {"action": "update", "scope": "repo.content"},
         "repo": {"type": "model", "name": "org/lora", "id": "x", "private": False, "headSha": SHA},
         "webhook": {"id": "w", "version": 3}}
    p.update(over)
    return p


def test_verify_webhook():
    assert verify_webhook({"X-Webhook-Secret": "s3cret"}, "s3cret")
    assert verify_webhook({"x-webhook-secret": "s3cret"}, "s3cret")
    assert not verify_webhook({"X-Webhook-Secret": "s3cre"}, "s3cret")
    assert not verify_webhook({}, "s3cret")
    assert not verify_webhook({"X-Webhook-Secret": ""}, "")  # no configured secret accepts nothing
    assert not verify_webhook({"X-Webhook-Secret": "x"}, None)


def test_parse_repo_content_update():
    new = "f" * 40
    upd = parse_webhook_payload(_payload(updatedRefs=[{"ref": "refs/pr/1", "newSha": "e" * 40},
                                                      {"ref": "refs/heads/main", "oldSha": SHA, "newSha": new}]))
    assert (upd.repo_id, upd.sha, upd.ref, upd.action, upd.repo_type) == ("org/lora", new, "refs/heads/main",
                                                                          "update", "model")
    assert parse_webhook_payload(json.dumps(_payload()).encode()).sha == SHA  # headSha when no updatedRefs
    only_pr = _payload(updatedRefs=[{"ref": "refs/pr/1", "newSha": "e" * 40}])
    assert parse_webhook_payload(only_pr) is None
    assert parse_webhook_payload(only_pr, ref="refs/pr/1").sha == "e" * 40


def test_parse_ignores_other_events_and_rejects_garbage():
    assert parse_webhook_payload(_payload(event={"action": "create", "scope": "discussion"})) is None
    assert parse_webhook_payload(_payload(repo={"type": "dataset", "name": "org/d"})) is None
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        parse_webhook_payload(b"{nope")
    with pytest.raises(InvalidInputError, match="'event' and 'repo'"):
        parse_webhook_payload({"repo": {}})
    with pytest.raises(InvalidInputError, match="repo.name"):
        parse_webhook_payload(_payload(repo={"type": "model", "name": "noslash"}))


def test_repo_refs_and_sources():
    assert parse_repo_ref("org/repo") == ("org/repo", None)
    assert parse_repo_ref("org/repo@v1.0") == ("org/repo", "v1.0")
    assert parse_repo_ref(f"hf:org/repo@{SHA}") == ("org/repo", SHA)
    assert source_uri("org/repo", SHA) == f"hf:org/repo@{SHA}"
    assert parse_source(source_uri("org/repo", SHA)) == ("org/repo", SHA)
    for bad in ("repo", "org/", "/repo", "org/re po", "org/a--b", "org/repo@", "a/b/c"):
        with pytest.raises(InvalidInputError):
            parse_repo_ref(bad)
    with pytest.raises(InvalidInputError, match="40-hex"):
        source_uri("org/repo", "main")
    with pytest.raises(InvalidInputError, match="pinned"):
        parse_source("hf:org/repo@main")
