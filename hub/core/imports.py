"""Thread-safe lazy imports of heavy libraries (transformers, peft, sentence-transformers).

transformers resolves its public names lazily (``_LazyModule.__getattr__``), and that is not thread-safe: when
several threads ask for a first name at once (concurrent publishes right after a start), some see a
half-initialised submodule and fail with ``ImportError: cannot import name 'AutoConfig' from 'transformers'``.
Every lazy import of such a library goes through :func:`import_once`, which resolves each name once under one
process-wide lock; later calls read the cached object without locking. :func:`import_lock` is the same lock for
code that makes transformers import a model's module lazily (``AutoModelForCausalLM.from_config``).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_LOCK = threading.RLock()
_RESOLVED: dict[tuple[str, str], Any] = {}


def import_once(module: str, *names: str) -> tuple[Any, ...]:
    """``(module.name, ...)`` for each of ``names`` (the module itself when no name is given), thread-safely.

    Args:
        module: a dotted module name, e.g. ``"transformers"``.
        names: attributes of the module, e.g. ``"AutoConfig", "AutoModelForCausalLM"``.

    Raises:
        ImportError: the module or a name does not exist (the same error a plain import gives).
    """
    keys = [(module, n) for n in names] or [(module, "")]
    try:
        return tuple(_RESOLVED[k] for k in keys)
    except KeyError:
        pass
    with _LOCK:
        mod = importlib.import_module(module)
        for key in keys:
            if key not in _RESOLVED:
                try:
                    _RESOLVED[key] = getattr(mod, key[1]) if key[1] else mod
                except AttributeError:
                    raise ImportError(f"cannot import name {key[1]!r} from {module!r}") from None
        return tuple(_RESOLVED[k] for k in keys)


@contextmanager
def import_lock() -> Iterator[None]:
    """Hold the lock of :func:`import_once` while code imports modules lazily (e.g. a model class on first use)."""
    with _LOCK:
        yield
