"""Loom's inference service: an OpenAI-compatible front over the routing engine's mixed-adapter batching.

Modules: ``models`` (base model + tokenizer from a registered local folder), ``cache`` (adapter cache,
host and device tiers), ``batcher`` (one batched forward for concurrent requests), ``resolve`` (what
``model`` means), ``service`` (:class:`InferenceService`), ``routers`` (router artifacts).
Nothing heavy is imported here.
"""

from hub.services.inference.resolve import MergedAdapters, Plan
from hub.services.inference.service import (
    Choice,
    CompletionRequest,
    CompletionResult,
    ContextLengthError,
    InferenceService,
)

__all__ = ["Choice", "CompletionRequest", "CompletionResult", "ContextLengthError", "InferenceService",
           "MergedAdapters", "Plan"]
