"""Loom's inference service: an OpenAI-compatible front over the routing engine's mixed-adapter batching.

Modules: ``models`` (base model + tokenizer from a registered local folder), ``engines`` (the served
bases), ``cache`` (adapter cache, host and device tiers), ``batcher`` (one batched forward for concurrent
requests), ``resolve`` (what ``model`` means: the forms and the plan), ``resolver`` (resolving them),
``auto`` (``model="auto"``), ``routers`` (routed requests), ``messages`` (request and result types),
``metrics`` (Prometheus view), ``service`` (:class:`InferenceService`, joining them).
Nothing heavy is imported here.
"""

from hub.services.inference.messages import Choice, CompletionRequest, CompletionResult, ContextLengthError
from hub.services.inference.resolve import MergedAdapters, Plan
from hub.services.inference.service import InferenceService

__all__ = ["Choice", "CompletionRequest", "CompletionResult", "ContextLengthError", "InferenceService",
           "MergedAdapters", "Plan"]
