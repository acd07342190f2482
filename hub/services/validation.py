"""Validation of user-supplied names and metadata at the service boundary.

Names and references (``namespace/name[@version]``) are validated by :mod:`hub.core.refs`; this
module re-exports its name checks for the services.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hub.core.errors import InvalidInputError, PayloadTooLargeError, PermissionDeniedError
from hub.core.refs import NAME_PART_RE, check_name_part, parse_name  # noqa: F401  (re-exported)

TAG_RE = re.compile(r"^[a-z0-9][a-z0-9._:/+-]{0,63}$")
LICENSE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
VISIBILITIES = ("public", "private")
MAX_DESCRIPTION = 4000
MAX_TAGS = 32
MAX_SAMPLES_BYTES = 1024 * 1024
MAX_SAMPLES = 1000
MAX_README_BYTES = 1024 * 1024


def article(noun: str) -> str:
    """``"an adapter"``, ``"a router"``: for messages that name a kind of artifact."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def check_namespace(user_name: str, name: str, field: str = "name") -> tuple[str, str]:
    """``(namespace, name)`` of ``name`` if ``user_name`` may publish there: a namespace belongs to the user of
    the same name (organisations later).

    Raises:
        InvalidInputError: a malformed name. PermissionDeniedError: another namespace (403 naming it).
    """
    ns, nm = parse_name(name)
    if ns != user_name:
        raise PermissionDeniedError(
            f"the namespace {ns} belongs to {ns}; {user_name} can publish only under {user_name}/",
            field=field, namespace=ns)
    return ns, nm


def check_visibility(v: str) -> str:
    if v not in VISIBILITIES:
        raise InvalidInputError(f"visibility must be one of {VISIBILITIES}, got {v!r}", field="visibility", value=v)
    return v


def check_description(d: str) -> str:
    if len(d) > MAX_DESCRIPTION:
        raise InvalidInputError(f"description is {len(d)} characters, over the limit of {MAX_DESCRIPTION}")
    return d


def check_tags(tags: list[str] | tuple[str, ...] | None) -> list[str]:
    """Lowercase, validate and de-duplicate tags (order kept)."""
    out: list[str] = []
    for t in tags or []:
        t2 = str(t).strip().lower()
        if not TAG_RE.match(t2):
            raise InvalidInputError(
                f"tag {t!r} is not allowed: use 1-64 of a-z 0-9 . _ : / + -", field="tags", value=t
            )
        if t2 not in out:
            out.append(t2)
    if len(out) > MAX_TAGS:
        raise InvalidInputError(f"{len(out)} tags given, at most {MAX_TAGS} allowed", field="tags")
    return out


def check_license(lic: str | None) -> str | None:
    if lic is None or lic == "":
        return None
    if not LICENSE_RE.match(lic):
        raise InvalidInputError(f"license {lic!r} is not an SPDX-like identifier", field="license", value=lic)
    return lic


def sample_pairs(raw: bytes) -> list[dict[str, str]]:
    """The ``{"input", "output"}`` pairs of a samples.jsonl (checked by :func:`parse_samples`; no bytes -> [])."""
    return [{"input": r["input"], "output": r["output"]} for r in parse_samples(raw)] if raw else []


def parse_samples(raw: bytes) -> list[dict[str, Any]]:
    """Validate ``samples.jsonl``: JSON objects with string ``input`` and ``output``, size-capped."""
    if len(raw) > MAX_SAMPLES_BYTES:
        raise PayloadTooLargeError(f"samples.jsonl is {len(raw)} bytes, over the limit of {MAX_SAMPLES_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("samples.jsonl is not UTF-8 text") from None
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"samples.jsonl line {i} is not JSON: {e.msg}") from None
        except RecursionError:
            raise InvalidInputError(f"samples.jsonl line {i} nests too deep") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("input"), str) or not isinstance(obj.get("output"), str):
            raise InvalidInputError(f"samples.jsonl line {i} must be an object with string 'input' and 'output'")
        rows.append(obj)
    if len(rows) > MAX_SAMPLES:
        raise InvalidInputError(f"samples.jsonl has {len(rows)} samples, at most {MAX_SAMPLES} allowed")
    return rows
