"""This process's connection to the Ray cluster of ``LOOM_JOBS=ray`` / ``LOOM_INFERENCE=ray`` (``loom-hub[cluster]``).

One :class:`RayConnection` per process (the composition root builds it; nothing connects at import or when it is
built): the job dispatcher and the inference gateway call :meth:`RayConnection.connect` when they start, and a
cluster that cannot be reached is ONE :class:`~hub.core.errors.ClusterUnavailableError` naming
``LOOM_RAY_ADDRESS`` (``loom serve`` prints it as one line). ``ray`` itself is imported only here and in the
modules that run on the cluster.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from hub.core.errors import ClusterUnavailableError

if TYPE_CHECKING:  # pragma: no cover
    from hub.settings import Settings

#: Ray's namespace for Loom's named tasks and its Serve application
NAMESPACE = "loom"


#: settings never sent through Ray's object store (a task or replica reads secrets from its own environment)
SECRET_FIELDS = frozenset({"hf_token", "hf_webhook_secret", "token"})


def task_settings(settings: Settings) -> dict[str, Any]:
    """What a Ray task or Serve replica builds its own Hub from: this process's settings, without secrets."""
    d = settings.model_dump(mode="json", exclude=set(SECRET_FIELDS))
    d.update(jobs="local", inference="local")  # a task or a replica runs the work itself
    return d


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``ray://host:port`` address; None for ``local``/``auto``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


class RayConnection:
    """Connect this process to ``address`` once (a driver of the cluster), and tell what the cluster has.

    Args:
        address: ``LOOM_RAY_ADDRESS``: ``host:port`` of the head, ``ray://host:port`` (Ray Client) or ``local``
            (a one-machine cluster started in this process).
        init_kwargs: extra ``ray.init`` arguments (``num_cpus``/``num_gpus`` of a ``local`` cluster).
        connect_timeout_s: how long the reachability check of ``host:port`` waits.
    """

    def __init__(self, address: str | None, *, init_kwargs: dict[str, Any] | None = None,
                 connect_timeout_s: float = 3.0) -> None:
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})
        self.connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._started = False

    def _unavailable(self, why: str) -> ClusterUnavailableError:
        return ClusterUnavailableError(f"cannot reach the Ray cluster at LOOM_RAY_ADDRESS={self.address!r}: {why}",
                                       ray_address=self.address)

    @property
    def connected(self) -> bool:
        import ray

        return bool(ray.is_initialized())

    def connect(self) -> None:
        """Join the cluster unless this process already has (idempotent).

        Raises:
            ClusterUnavailableError: ``LOOM_RAY_ADDRESS`` is unset, Ray is not installed, or the cluster does not
                answer.
        """
        if not self.address:
            raise ClusterUnavailableError("LOOM_JOBS=ray / LOOM_INFERENCE=ray need LOOM_RAY_ADDRESS (host:port of "
                                          "the Ray head, or 'local')", ray_address=None)
        try:
            import ray
        except ImportError:
            raise self._unavailable("ray is not installed (pip install 'loom-hub[cluster]')") from None
        with self._lock:
            if ray.is_initialized():
                return
            hp = _host_port(self.address)
            if hp is not None:
                try:
                    socket.create_connection(hp, timeout=self.connect_timeout_s).close()
                except OSError as e:
                    raise self._unavailable(f"{hp[0]}:{hp[1]} does not answer ({e.strerror or e})") from None
            os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")  # never start a stray cluster on a ray call
            extra = {"include_dashboard": False} if self.address == "local" else {}
            try:
                ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False, **{**extra, **self.init_kwargs})
            except Exception as e:  # noqa: BLE001 - every way joining fails is the same error to the operator
                raise self._unavailable(f"{type(e).__name__}: {e}".splitlines()[0]) from None
            self._started = True

    def has_gpus(self) -> bool:
        """Whether the cluster declares any GPU (logical ones count)."""
        import ray

        return float(ray.cluster_resources().get("GPU", 0)) > 0

    def close(self) -> None:
        """Leave the cluster (a ``local`` one stops) if this object joined it."""
        with self._lock:
            if self._started:
                import ray

                if ray.is_initialized():
                    ray.shutdown()
            self._started = False
