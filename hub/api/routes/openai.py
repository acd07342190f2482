"""OpenAI-compatible inference routes: ``/v1/completions``, ``/v1/chat/completions`` (SSE too), ``/v1/models``.

``model`` selects a base, an adapter (``ns/name[@version]``), ``<base>:<adapter>``, a router artifact
or ``auto``; the extension field ``merged_adapters`` gives an explicit mixture (LoRAX style). Every
response carries ``loom: {"adapters": {key: weight}, "route": ..., "gate_weights": ...}``.

Authentication is optional here: a valid ``Authorization: Bearer`` token lets the caller use its
private adapters; no token, or one that is not a Loom token (``api_key="EMPTY"`` in OpenAI clients),
serves public adapters only.

Chat prompts use the tokenizer's chat template when it has one; otherwise each message becomes a line
``"<role>: <content>"`` and the prompt ends with ``"assistant:"``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from hub.core.errors import (
    AuthenticationError,
    InvalidInputError,
    LoomError,
    NotFoundError,
    RequestCancelledError,
)
from hub.db.models import User
from hub.services.users import TOKEN_PREFIX

router = APIRouter(tags=["inference (OpenAI-compatible)"])
_lock = threading.Lock()


def get_inference(request: Request) -> Any:
    """The app's :class:`~hub.services.inference.InferenceService` (built on first use)."""
    from hub.services.container import inference_service

    state = request.app.state
    with _lock:
        svc = getattr(state, "inference", None)
        if svc is None:
            hub = state.hub
            if not hub.settings.inference_enabled:
                raise InvalidInputError("inference is disabled on this server (LOOM_INFERENCE_ENABLED=false)")
            svc = state.inference = inference_service(hub)
    return svc


def optional_user(request: Request) -> User | None:
    """A valid Bearer token's user; anything else (no token, ``EMPTY``, a foreign key) is anonymous."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    token = header[7:].strip()
    try:
        return request.app.state.hub.users.authenticate(token or None)
    except AuthenticationError:
        request.state.refused_token = token.startswith(TOKEN_PREFIX)  # a Loom token, revoked or mistyped
        return None


def _token_hint(request: Request, e: NotFoundError) -> NotFoundError:
    """``e`` with a note, when the caller sent a Loom token that was refused, that only public models were served
    (an owner whose token was revoked otherwise reads that their private adapter does not exist)."""
    if getattr(request.state, "refused_token", False):
        e.message = (f"{e.message}; note: the Authorization token is not a valid Loom token (revoked or mistyped), "
                     "so only public models are served")
    return e


#: the error statuses of the completion routes, documented in the OpenAPI document
COMPLETION_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "the prompt plus max_tokens does not fit the model's context (context_length_exceeded)"},
    401: {"description": "anonymous, and LOOM_ANONYMOUS_INFERENCE=false"},
    404: {"description": "unknown model, adapter or version"},
    413: {"description": "body over LOOM_MAX_JSON_BYTES, or n x prompts over LOOM_INFERENCE_MAX_ROWS_PER_REQUEST"},
    422: {"description": "invalid parameters"},
    429: {"description": "queue full or too many concurrent requests from this caller; see Retry-After"},
}

InferenceDep = Annotated[Any, Depends(get_inference)]
ViewerDep = Annotated[User | None, Depends(optional_user)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = Field(False, description="end the stream with a chunk that has no choice and the usage "
                                "(as OpenAI: without it, no such chunk; the usual `chunk.choices[0]` loop works)")


class _Common(BaseModel):
    model_config = ConfigDict(extra="allow")  # other OpenAI fields: metadata (user ...) is accepted, unused;
    # what would change the answer is refused (refuse_unsupported)

    model: str = Field(min_length=1, max_length=600)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    ignore_eos: bool = Field(False, description="vLLM's extension: do not end a choice at the eos token (it is "
                             "kept, and hidden from the text); each runs max_tokens tokens unless a stop string "
                             "ends it. For benchmarks that need fixed output lengths.")
    merged_adapters: dict[str, Any] | None = Field(
        None, description="LoRAX-style mixture: {ids: [...], weights: [...], merge_strategy: 'linear'}")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def stops(self) -> list[str]:
        s = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(s) > 4:
            raise InvalidInputError("stop holds at most 4 sequences", field="stop")
        return s


class CompletionBody(_Common):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatBody(_Common):
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for p in content:
        if p.get("type") != "text" or not isinstance(p.get("text"), str):
            raise InvalidInputError(f"only text content parts are supported, got type {p.get('type')!r}",
                                    field="messages")
        parts.append(p["text"])
    return "".join(parts)


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, bool]:
    """``(prompt, templated)``: the tokenizer's chat template (which writes its own special tokens), or
    ``"role: content"`` lines ending with ``"assistant:"`` (encoded like a plain prompt)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:", False


#: OpenAI fields a request may carry only as null/false/0 (or the listed no-op value): Loom would answer without
#: doing them, and asked for and not done is worse than refused
UNSUPPORTED = ("logprobs", "top_logprobs", "echo", "suffix", "tools", "functions", "function_call", "logit_bias",
               "presence_penalty", "frequency_penalty")
NO_OP = {"tool_choice": ("none", "auto"), "best_of": (1,), "response_format": ({"type": "text"},)}


def refuse_unsupported(extra: dict[str, Any]) -> None:
    """Raise for an OpenAI field in ``extra`` that asks for something Loom does not do.

    Raises:
        InvalidInputError: naming the field.
    """
    for name, value in extra.items():
        if (name in UNSUPPORTED and value) or (name in NO_OP and value is not None and value not in NO_OP[name]):
            raise InvalidInputError(f"{name} is not supported by Loom's OpenAI API (leave it out or null)",
                                    field=name)


def _request(body: _Common, prompts: list[str], max_tokens: int | None, route_texts: list[str] | None = None,
             chat: bool = False) -> Any:
    from hub.services.inference import CompletionRequest, MergedAdapters

    refuse_unsupported(body.model_extra or {})
    merged = MergedAdapters.parse(body.merged_adapters) if body.merged_adapters is not None else None
    return CompletionRequest(model=body.model, prompts=prompts, route_texts=route_texts, max_tokens=max_tokens,
                             temperature=body.temperature, top_p=body.top_p, n=body.n, stop=body.stops(),
                             seed=body.seed, merged=merged, chat=chat, ignore_eos=body.ignore_eos)


def _loom(res: Any) -> dict[str, Any]:
    c0 = res.choices[0]
    out: dict[str, Any] = {"base": res.base, "route": c0.route, "adapters": c0.adapters, "gate_weights": c0.gate_weights,
                           "batch_size": c0.batch_size}
    if c0.route == "router":
        out["router"] = res.router
    if c0.scores is not None:
        out["scores"] = c0.scores
    if len(res.choices) > 1:
        out["choices"] = [{"index": c.index, "adapters": c.adapters, "route": c.route} for c in res.choices]
    return out


def _retrieved(fut: asyncio.Future) -> None:
    """Mark a worker thread's result as seen (its error, if any, was expected)."""
    if not fut.cancelled():
        fut.exception()


def _caller(request: Request, viewer: User | None, svc: Any) -> str:
    """The key of the per-user concurrency limit: the user, or an anonymous client's address.

    Raises:
        AuthenticationError: anonymous, and ``LOOM_ANONYMOUS_INFERENCE=false``.
    """
    if viewer is not None:
        return f"user:{viewer.id}"
    if not svc.settings.anonymous_inference:
        raise AuthenticationError("anonymous inference is turned off on this server (LOOM_ANONYMOUS_INFERENCE="
                                  "false); send a Loom token as 'Authorization: Bearer <token>'")
    return f"anon:{request.client.host if request.client else 'unknown'}"


async def _complete(request: Request, svc: Any, viewer: User | None, req: Any) -> Any:
    """``svc.acomplete`` as a task; a client that disconnects cancels its rows (they leave at the next step)
    and the request ends with :class:`RequestCancelledError` (499 in the logs).

    The body is already read, so the next ASGI message is ``http.disconnect``: a task waits for it.
    """
    cancel = threading.Event()
    fut = asyncio.ensure_future(svc.acomplete(viewer, req, cancel))
    listener = asyncio.ensure_future(request.receive())
    try:
        await asyncio.wait({fut, listener}, return_when=asyncio.FIRST_COMPLETED)
        if not fut.done():
            cancel.set()
            fut.add_done_callback(_retrieved)  # its RequestCancelledError is expected: no warning
            raise RequestCancelledError("the client closed the request")
        return fut.result()
    finally:
        cancel.set()  # nothing of this request is left running, whatever ended it
        listener.cancel()


def _sse(request: Request, chunks: AsyncIterator[dict[str, Any]], cancel: threading.Event,
         release: Any) -> StreamingResponse:
    """Server-sent events of ``chunks``. When the client leaves, the response task is cancelled: ``cancel`` is
    set at once, so the request's rows leave at the next step."""

    async def gen() -> AsyncIterator[bytes]:
        try:
            async for c in chunks:
                yield f"data: {json.dumps(c)}\n\n".encode()
        except RequestCancelledError:
            return
        except Exception as e:  # noqa: BLE001 - the status is already sent: report the error in the stream
            from hub.api.errors import log

            log.exception("inference stream failed")
            msg = e.message if isinstance(e, LoomError) else "internal server error"
            code = e.code if isinstance(e, LoomError) else "internal_error"
            yield f"data: {json.dumps({'error': {'code': code, 'message': msg, 'details': {}}})}\n\n".encode()
        finally:
            cancel.set()
            release()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _serve(request: Request, svc: Any, viewer: User | None, stream: bool, prepare: Any, respond: Any,
                 chunks: Any) -> Any:
    """Run one OpenAI request under the caller's concurrency limit: ``prepare()`` (a worker thread) gives the
    CompletionRequest; ``respond(res)`` the JSON answer, ``chunks(events)`` the stream's chunks. Generation is
    awaited on the event loop (``svc.acomplete`` / ``svc.astream``), so requests in flight hold no thread."""
    held = svc.user_limits.hold(_caller(request, viewer, svc))
    held.__enter__()
    streaming = False
    try:
        req = await run_in_threadpool(prepare)
        if not stream:
            return respond(await _complete(request, svc, viewer, req))
        cancel = threading.Event()
        events = await svc.astream(viewer, req, cancel)  # request errors are raised here
        streaming = True
        return _sse(request, chunks(events), cancel, lambda: held.__exit__(None, None, None))
    except NotFoundError as e:
        raise _token_hint(request, e) from None
    finally:
        if not streaming:
            held.__exit__(None, None, None)


@router.post("/v1/completions", operation_id="openai_create_completion", responses=COMPLETION_ERRORS,
             summary="OpenAI-compatible text completion (streams with stream=true)")
async def completions(request: Request, svc: InferenceDep, viewer: ViewerDep, body: CompletionBody) -> Any:
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": cid, "object": "text_completion", "created": created, "model": body.model}

    def prepare() -> Any:
        return _request(body, prompts, body.max_tokens)

    def respond(res: Any) -> dict[str, Any]:
        return {**head, "choices": [{"index": c.index, "text": c.text, "finish_reason": c.finish_reason,
                                     "logprobs": None} for c in res.choices],
                "usage": res.usage, "loom": _loom(res)}

    async def chunks(events: Any) -> AsyncIterator[dict[str, Any]]:
        async for ev in events:
            if isinstance(ev, tuple):
                yield {**head, "choices": [{"index": ev[0], "text": ev[1], "finish_reason": None, "logprobs": None}]}
                continue
            for c in ev.choices:  # the loom extension rides on each finish chunk
                yield {**head, "choices": [{"index": c.index, "text": "", "finish_reason": c.finish_reason,
                                            "logprobs": None}], "loom": _loom(ev)}
            if body.include_usage:
                yield {**head, "choices": [], "usage": ev.usage, "loom": _loom(ev)}

    return await _serve(request, svc, viewer, body.stream, prepare, respond, chunks)


@router.post("/v1/chat/completions", operation_id="openai_create_chat_completion", responses=COMPLETION_ERRORS,
             summary="OpenAI-compatible chat completion (streams with stream=true)")
async def chat_completions(request: Request, svc: InferenceDep, viewer: ViewerDep, body: ChatBody) -> Any:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    head = {"id": cid, "object": "chat.completion", "created": created, "model": body.model}

    def prepare() -> Any:  # resolving the model loads the base: a worker thread, not the event loop
        from hub.services.inference.resolve import AUTO, split_model

        messages = [{"role": m.role, "content": _text(m.content)} for m in body.messages]
        users = [m["content"] for m in messages if m["role"] == "user"]
        route_text = users[-1] if users else messages[-1]["content"]
        plan_base = None
        if body.merged_adapters is None and split_model(body.model)[1] != AUTO:
            plan_base = svc.resolve(viewer, body.model).base_id
        tok = svc.tokenizer(plan_base or svc.base_for(body.model))
        prompt, templated = render_chat(tok, messages)
        req = _request(body, [prompt], body.max_completion_tokens or body.max_tokens, [route_text], chat=templated)
        return req

    def respond(res: Any) -> dict[str, Any]:
        return {**head, "choices": [{"index": c.index, "message": {"role": "assistant", "content": c.text},
                                     "finish_reason": c.finish_reason, "logprobs": None} for c in res.choices],
                "usage": res.usage, "loom": _loom(res)}

    chunk_head = {**head, "object": "chat.completion.chunk"}

    def role(i: int) -> dict[str, Any]:
        return {**chunk_head, "choices": [{"index": i, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}]}

    async def chunks(events: Any) -> AsyncIterator[dict[str, Any]]:
        seen: set[int] = set()
        async for ev in events:
            if isinstance(ev, tuple):
                if ev[0] not in seen:
                    seen.add(ev[0])
                    yield role(ev[0])
                yield {**chunk_head, "choices": [{"index": ev[0], "delta": {"content": ev[1]},
                                                  "finish_reason": None}]}
                continue
            for c in ev.choices:  # the loom extension rides on each finish chunk
                if c.index not in seen:
                    yield role(c.index)
                yield {**chunk_head, "choices": [{"index": c.index, "delta": {}, "finish_reason": c.finish_reason}],
                       "loom": _loom(ev)}
            if body.include_usage:
                yield {**chunk_head, "choices": [], "usage": ev.usage, "loom": _loom(ev)}

    return await _serve(request, svc, viewer, body.stream, prepare, respond, chunks)


def create_inference_app(settings: Any = None, *, hub: Any = None, migrate: bool = True,
                         preload: list[str] | None = None, pin: list[str] | None = None,
                         device: str | None = None) -> Any:
    """An app serving only the inference API (``loom serve-inference``, for a GPU host).

    Args:
        settings: the deployment's settings (default: from the environment). hub: an existing hub.
        migrate: apply migrations when building the hub. preload: base model ids to load at start.
        pin: adapters (``ns/name[@version]``) never evicted from the caches. device: ``cpu``/``cuda``.
    """
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from hub.api import errors
    from hub.api.limits import UPLOAD_SLACK, BodyLimit
    from hub.api.routes import system
    from hub.services.container import Hub, inference_service
    from hub.settings import get_settings

    own = hub is None
    the_hub = hub if hub is not None else Hub(settings or get_settings(), migrate=migrate)
    svc = inference_service(the_hub, device)
    for base in preload or []:
        svc.engine(base)
    for ref in pin or []:
        svc.pin(None, ref)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        svc.close()
        if own:
            the_hub.close()

    app = FastAPI(title="Loom inference", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible completions over Loom's registry of LoRA adapters.")
    app.state.hub, app.state.inference = the_hub, svc
    errors.install(app)
    s = the_hub.settings
    app.add_middleware(BodyLimit, upload_limit=s.max_upload_bytes + UPLOAD_SLACK, json_limit=s.max_json_bytes)
    app.include_router(router)
    app.include_router(system.router)  # /healthz, /metrics (vllm:lora_requests_info) ...
    return app


@router.get("/v1/models", operation_id="openai_list_models",
            summary="Bases and adapters (adapters carry parent = base and root = ns/name@version)")
def list_models(svc: InferenceDep, viewer: ViewerDep) -> dict[str, Any]:
    return {"object": "list", "data": svc.available(viewer)}


@router.get("/v1/models/{model:path}", operation_id="openai_retrieve_model",
            summary="One model of /v1/models (a base, an adapter or a router); 404 listing what exists")
def retrieve_model(request: Request, model: str, svc: InferenceDep, viewer: ViewerDep) -> dict[str, Any]:
    try:
        return dict(svc.model(viewer, model))
    except NotFoundError as e:
        raise _token_hint(request, e) from None
