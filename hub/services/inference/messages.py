"""The request and result types of the inference service, its one HTTP-400 error, and the token queue of a
streamed row."""

from __future__ import annotations

import asyncio
import functools
import queue
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.core.errors import InvalidInputError
from hub.services.inference.resolve import MergedAdapters


class TokenQueue(queue.Queue[int | None]):
    """The tokens of one streamed row, put by the scheduler thread, then None, read by a coroutine with
    ``await drain()``, which waits on its event loop without holding a thread (a thread per stream, blocked until
    its row's next step, would cap the streams served at once at the thread pool's size: six on a 2-core
    machine). A ``queue.Queue`` still, so the schedulers' ``Job.tokens`` takes either.

    Args:
        interval: a waiting ``drain`` wakes for the row's first token, then once ``interval`` tokens are queued
            (``LOOM_INFERENCE_STREAM_INTERVAL``, vLLM's ``--stream-interval``), and for the end (None).
    """

    def __init__(self, interval: int = 1) -> None:
        super().__init__()
        self.interval = interval
        self._first = True
        self._wakers: list[Callable[[], object]] = []

    def _put(self, item: int | None) -> None:  # queue.Queue's hook, called with its mutex held
        super()._put(item)
        if self._wakers and self._ready():
            wakers, self._wakers = self._wakers, []
            for wake in wakers:
                wake()

    def _ready(self) -> bool:
        """Whether a ``drain`` may take the queued tokens now (mutex held)."""
        q = self.queue
        return bool(q) and (self._first or q[-1] is None or len(q) >= self.interval)

    async def drain(self, timeout: float) -> list[int | None]:
        """Every token queued once there are enough (see ``interval``), waiting up to ``timeout`` seconds.

        Raises:
            TimeoutError: none came in time.
        """
        loop = asyncio.get_running_loop()
        while True:
            with self.mutex:
                if self._ready():
                    items = list(self.queue)
                    self.queue.clear()
                    self._first = False
                    return items
                ready = asyncio.Event()
                self._wakers.append(functools.partial(_call_soon, loop, ready.set))
            await asyncio.wait_for(ready.wait(), timeout)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], object]) -> None:
    """``fn`` on ``loop`` from another thread; nothing when the loop has closed (its reader is gone)."""
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:
        pass


class ContextLengthError(InvalidInputError):
    """The prompt (plus the requested completion) does not fit the model's context: HTTP 400."""

    code = "context_length_exceeded"


@dataclass
class CompletionRequest:
    """What the OpenAI routes pass in.

    Attributes:
        model: see :mod:`hub.services.inference.resolve`. prompts: one text per choice group.
        route_texts: the text ``auto`` embeds per prompt (default: the prompt itself).
        max_tokens: completion limit (None: up to the context, capped by ``inference_max_tokens``).
        temperature: 0 = greedy. top_p, n, stop, seed: as in OpenAI's API.
        merged: the ``merged_adapters`` extension.
        chat: the prompts were rendered from a chat template (encoded without adding special tokens).
        ignore_eos: rows do not end at the eos token (vLLM's extension): each runs ``max_tokens`` tokens unless
            a stop string ends it.
    """

    model: str
    prompts: list[str]
    route_texts: list[str] | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    n: int = 1
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    merged: MergedAdapters | None = None
    chat: bool = False
    ignore_eos: bool = False


@dataclass
class Choice:
    """One generated completion and how it was produced."""

    index: int
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    adapters: dict[str, float]
    route: str
    scores: dict[str, float] | None = None
    batch_size: int = 1
    tokens: list[int] = field(default_factory=list)
    gate_weights: dict[str, list[float]] | None = None


@dataclass
class CompletionResult:
    model: str
    base: str
    choices: list[Choice]

    @property
    def usage(self) -> dict[str, int]:
        seen: set[int] = set()
        prompt = 0
        for c in self.choices:  # n choices of one prompt count its tokens once
            key = c.index // max(1, self._n)
            if key not in seen:
                seen.add(key)
                prompt += c.prompt_tokens
        comp = sum(c.completion_tokens for c in self.choices)
        return {"prompt_tokens": prompt, "completion_tokens": comp, "total_tokens": prompt + comp}

    _n: int = 1
    router: str | None = None



class IncrementalText:
    """Decode a growing token list into text pieces for streaming.

    A piece is sent only when it is final: text that ends in an incomplete UTF-8 sequence (U+FFFD) or
    that could still become a stop sequence is held back. ``sent`` is everything sent so far.
    """

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.tokenizer, self.stop = tokenizer, [s for s in stop if s]
        self.tokens: list[int] = []
        self.sent = ""
        self.stopped = False

    def add(self, token: int) -> str:
        """Take one token; return the text that may be sent now ('' if none)."""
        if self.stopped:
            return ""
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        cut = min((text.find(s) for s in self.stop if s in text), default=-1)
        if cut >= 0:
            text, self.stopped = text[:cut], True
        else:
            hold = max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            text = text[: len(text) - hold]
            text = text.rstrip("\ufffd")
        if not text.startswith(self.sent) or len(text) <= len(self.sent):
            return ""
        piece, self.sent = text[len(self.sent):], text
        return piece
