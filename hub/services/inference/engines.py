"""The served base models of one process: each loaded on first use, with its adapter slot bank and scheduler.

An :class:`Engine` is one base: the model and tokenizer (:class:`~hub.services.inference.models.LoadedBase`),
its device tier of adapters (:class:`~hub.services.inference.cache.GpuTier`) and its batcher, the only user
of the model. :class:`BaseEngines` loads each base once (concurrent first requests wait for one load) and
stops the batchers on close.

After a load the process's live objects (the model, the app, the ORM) are frozen out of Python's cyclic
garbage collector (``LOOM_INFERENCE_GC_FREEZE``, as vLLM does after start-up): a full collection otherwise walks
them all, about half a million objects on the tiny bench base, and stops the scheduler thread for ~250 ms
each time it runs under load; frozen, it takes ~10-20 ms. Engines are never unloaded while the process
serves; :meth:`BaseEngines.close` unfreezes, so a closed service's objects can be collected again.

Before the first load the process's torch intra-op threads are set (``LOOM_INFERENCE_THREADS``; auto: one fewer
than the CPUs, as vLLM's CPU backend reserves a core for its API server): the scheduler thread's forwards then
never wait for an OpenMP worker that the event loop, tokenization or streaming took the core from. On the
2-core bench machine, above saturation, continuous batching served 590 output tokens/s with one thread and 334
with two (``serving_bench.py``, README Serving). :meth:`BaseEngines.close` restores the count.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import TYPE_CHECKING, Any, NamedTuple

from hub.core.errors import InvalidInputError
from hub.services.inference.resolve import split_model

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import BaseModel
    from hub.services.base_models import BaseModelService
    from hub.settings import Settings

log = logging.getLogger("loom.inference")


def inference_threads(setting: int) -> int | None:
    """The intra-op thread count ``LOOM_INFERENCE_THREADS=setting`` asks for, or None to leave torch's own.

    ``setting`` > 0 is taken as is; 0 (auto) is one fewer than the CPUs this process may run on (at least 1),
    or None when ``OMP_NUM_THREADS`` is set (an operator's or Ray's choice, per replica).
    """
    if setting > 0:
        return setting
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    return max(1, len(os.sched_getaffinity(0)) - 1)


class Engine(NamedTuple):
    """One served base: ``(base, gpu, batcher)``; the batcher is the continuous
    :class:`~hub.services.inference.scheduler.Scheduler` or the window
    :class:`~hub.services.inference.batcher.Batcher` (``LOOM_SCHEDULER``)."""

    base: Any
    gpu: Any
    batcher: Any


class BaseEngines:
    """Load, hold and stop the engines of the registered bases.

    Args:
        settings: inference settings (cache sizes, batch size and window, default base).
        base_models: the registered bases. device: force ``cpu``/``cuda`` (default: cuda if available).
    """

    def __init__(self, settings: Settings, base_models: BaseModelService, device: str | None = None,
                 observer: Any = None) -> None:
        self.settings, self.base_models, self.device = settings, base_models, device
        self.observer = observer  # the serving metrics the schedulers report finished rows to
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self._base_locks: dict[str, threading.Lock] = {}
        self._threads_before: int | None = None  # torch's thread count before the first load set it

    def get(self, base_id: str) -> Engine:
        """The engine of ``base_id``, loading it on first use.

        Raises:
            NotFoundError: the base is not registered. InvalidInputError: it cannot be loaded.
        """
        from hub.services.inference.cache import GpuTier
        from hub.services.inference.models import load_base

        with self._lock:
            if base_id in self._engines:
                return self._engines[base_id]
            lock = self._base_locks.setdefault(base_id, threading.Lock())
        with lock:
            with self._lock:
                if base_id in self._engines:
                    return self._engines[base_id]
            row = self.base_models.get(base_id)
            self._set_threads()
            lb = load_base(row.model_id, row.revision, row.weights, self.device)
            gpu = GpuTier(lb.mixed, self.settings.adapter_cache_gpu)
            batcher = self._scheduler(lb, gpu)
            batcher.observer = self.observer
            engine = Engine(lb, gpu, batcher)
            with self._lock:
                self._engines[base_id] = engine
            if self.settings.inference_gc_freeze:
                gc.collect()  # what is garbage now is not frozen with the rest
                gc.freeze()
            return engine

    def _set_threads(self) -> None:
        """Set torch's intra-op threads once, before the first base loads (``LOOM_INFERENCE_THREADS``)."""
        import torch

        n = inference_threads(self.settings.inference_threads)
        with self._lock:
            if n is None or self._threads_before is not None:
                return
            self._threads_before = torch.get_num_threads()
            if n != self._threads_before:
                torch.set_num_threads(n)
                log.info("torch intra-op threads: %d (was %d; LOOM_INFERENCE_THREADS)", n, self._threads_before)

    def _scheduler(self, lb: Any, gpu: Any) -> Any:
        """The base's scheduler: ``LOOM_SCHEDULER=continuous`` (default) or ``window``; the window batcher also
        for a base with sliding-window or linear-attention layers (Gemma 3, Mistral), which the continuous
        batch's padded cache does not handle."""
        from routing.continuous import supports

        s = self.settings
        if s.scheduler == "window" or not supports(lb.mixed.model):
            from hub.services.inference.batcher import Batcher

            if s.scheduler != "window":
                log.info("%s has sliding-window or linear-attention layers: served by the window batcher",
                         lb.model_id)

            return Batcher(lb, gpu, s.inference_max_batch, s.inference_batch_window_ms / 1000.0)
        from hub.services.inference.scheduler import Scheduler

        return Scheduler(lb, gpu, s.inference_max_batch, s.inference_max_queued,
                         max_wait=s.inference_max_queue_wait)

    def loaded(self) -> dict[str, Engine]:
        """A snapshot of the engines loaded so far (base id -> engine)."""
        with self._lock:
            return dict(self._engines)

    def served_bases(self) -> list[BaseModel]:
        """Registered base rows (all of them; a base that cannot be loaded errors only when used)."""
        return list(self.base_models.list())

    def default_base(self) -> str:
        """The base ``auto`` and mixtures use when the request names none."""
        if self.settings.inference_default_base:
            return self.settings.inference_default_base
        ids = sorted({b.model_id for b in self.served_bases()})
        if len(ids) == 1:
            return ids[0]
        raise InvalidInputError(f"several base models are registered ({ids}); name one as '<base>:auto' or set "
                                "LOOM_INFERENCE_DEFAULT_BASE", field="model")

    def base_for(self, model: str) -> str:
        """The base a ``<base>:auto`` / ``auto`` / mixture request runs on."""
        base_id, _ = split_model(model)
        if base_id is None and self.base_models.find(model.strip()) is not None:
            return model.strip()
        return base_id or self.default_base()

    def close(self) -> None:
        """Stop the batchers; put torch's thread count back."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
            before, self._threads_before = self._threads_before, None
        for e in engines:
            e.batcher.close()
        if before is not None:
            import torch

            torch.set_num_threads(before)
        if engines and self.settings.inference_gc_freeze:
            gc.unfreeze()  # the closed engines' objects (and any cycles among them) become collectable again
