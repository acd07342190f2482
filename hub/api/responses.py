"""Every response a route gives, in the OpenAPI document: one table of the error statuses each operation can
answer, checked by a schemathesis run (``tests/api/test_contract.py``: no undocumented status code).

Some statuses come with how a route is built, for every operation alike: 422 (a malformed path or query, e.g. a
NUL byte, :mod:`hub.api.guards`), 413 and 422 for one with a body (the upload limit, validation), 401 and 429 for
one that reads a Bearer token (not valid; too many invalid ones). :data:`ERRORS` adds what the services raise.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

#: operation id -> the error statuses its service can answer, beyond those every route of its shape has
ERRORS: dict[str, tuple[int, ...]] = {
    "publish_adapter": (403, 409, 503),
    "list_adapters": (),
    "get_adapter": (404,),
    "patch_adapter": (403, 404),
    "delete_adapter": (403, 404),
    "list_versions": (404,),
    "download_file": (404, 503),
    "search_adapters": (),
    "list_base_models": (),
    "register_base_model": (403, 404, 409, 502, 503),
    "get_base_model": (404,),
    "list_base_model_files": (404,),
    "download_base_model_file": (404,),
    "create_composition": (403, 404),
    "list_composition_methods": (),
    "list_jobs": (),
    "get_job": (404,),
    "cancel_job": (404, 409),
    "train_router": (403, 404),
    "list_router_presets": (),
    "train_generator": (403, 404),
    "generate_adapter": (403, 404),
    "transfer_adapter": (403, 404),
    "hf_import": (403, 404, 409, 502, 503),
    "hf_search": (403, 404, 502, 503),
    "hf_sync": (403, 404, 502, 503),
    "hf_export": (403, 404, 409, 502, 503),
    "hf_webhook": (401, 403),
    "openai_create_completion": (400, 404, 429),
    "openai_create_chat_completion": (400, 404, 429),
    "openai_list_models": (),
    "openai_retrieve_model": (404,),
    "healthz": (),
    "metrics": (),
    "whoami": (),
    "list_tokens": (),
    "revoke_token": (404,),
}

ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message", "details"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}},
    }},
}


def statuses(operation: dict[str, Any]) -> set[int]:
    """The error statuses of one OpenAPI operation: those of its shape plus :data:`ERRORS`."""
    out = {422, *ERRORS.get(operation.get("operationId", ""), ())}
    if operation.get("requestBody"):
        out |= {413, 422}
    if operation.get("security"):
        out |= {401, 429}
    return out


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add every operation's error responses (the one error shape) to the OpenAPI ``schema``, in place."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            responses = op.setdefault("responses", {})
            for status in sorted(statuses(op)):
                entry = responses.setdefault(str(status), {"description": HTTPStatus(status).phrase})
                entry["content"] = {"application/json": {"schema": ref}}  # FastAPI's 422 schema is not ours
    return schema
