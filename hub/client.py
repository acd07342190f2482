"""A Python client of the Loom REST API (httpx), mirroring its routes; the CLI uses it.

Errors come back as the same domain errors the server raised (``NotFoundError``, ``InvalidAdapterError``,
...), rebuilt from the API's one error shape, with the HTTP status in ``details["status"]``.

    from hub.client import LoomClient
    with LoomClient("http://127.0.0.1:8000", token="loom_...") as c:
        c.publish("path/to/peft_folder", "me/upper", description="Uppercases text")
        hits = c.search("make text capital letters", k=3)
        c.pull("me/upper", "out/")
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from hub.core import errors as E
from hub.core.files import ADAPTER_UPLOAD_FILES
from hub.core.refs import AdapterRef

Progress = Callable[[int], None]  # called with the number of bytes just moved

#: every domain error by its code (each class that names a code of its own): the server's error comes back as itself
_ERRORS: dict[str, type[E.LoomError]] = {
    c.__dict__["code"]: c for c in vars(E).values()
    if isinstance(c, type) and issubclass(c, E.LoomError) and "code" in c.__dict__
}
UPLOAD_FILES = ADAPTER_UPLOAD_FILES


#: registering a base may download or convert its weights first
REGISTER_TIMEOUT_S = 3600.0
#: a search that reranks loads (the first time converts) the reranker's model
SEARCH_TIMEOUT_S = 300.0
#: the filters GET /api/v1/search takes (the server ignores any other query parameter)
SEARCH_FILTERS = ("base_model", "tag", "license", "owner", "min_rank", "max_rank", "kind")
#: the filters GET /api/v1/adapters takes
LIST_FILTERS = (*SEARCH_FILTERS, "namespace")

class ServerError(E.LoomError):
    """The server failed in a way that is not a domain error (a 5xx, or not Loom at that address)."""

    code = "server_error"


class ServerUnreachableError(ServerError):
    """No answer from the server: nothing listens at its address, or it did not answer in time."""

    code = "unreachable"


class _Counting:
    """A read-only file wrapper reporting bytes read (upload progress)."""

    def __init__(self, f: BinaryIO, progress: Progress | None) -> None:
        self._f, self._progress = f, progress

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        if data and self._progress:
            self._progress(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def without_none(**kw: Any) -> dict[str, Any]:
    """The keyword arguments that are not None (query parameters and JSON bodies of optional fields)."""
    return {k: v for k, v in kw.items() if v is not None}


def _check_filters(filters: dict[str, Any], known: tuple[str, ...]) -> None:
    """Refuse a filter the server does not take (it would ignore it and answer as if unfiltered)."""
    unknown = sorted(set(filters) - set(known))
    if unknown:
        raise E.InvalidInputError(f"unknown filter{'s' * (len(unknown) > 1)} {', '.join(unknown)}; the filters are {', '.join(known)}",
                                  field=unknown[0])


def split_ref(ref: str) -> tuple[str, str, int | None]:
    """``"ns/name[@version]"`` -> (namespace, name, version or None), by :class:`hub.core.refs.AdapterRef`."""
    r = AdapterRef.parse(ref)
    return r.namespace, r.name, r.version


class LoomClient:
    """HTTP client of one Loom server.

    Args:
        server_url: e.g. ``http://127.0.0.1:8000``.
        token: an API token (``loom token create USER``); needed for writes and private adapters.
        timeout: seconds per request (uploads and downloads stream, so it bounds idle time, not size).
        transport: an httpx transport (tests).
    """

    def __init__(self, server_url: str, token: str | None = None, *, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server_url = server_url.rstrip("/")
        self._http = httpx.Client(base_url=self.server_url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LoomClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------
    @staticmethod
    def _raise(resp: httpx.Response) -> None:
        if resp.is_success:
            return
        try:
            err = resp.json()["error"]
            code, message, details = err["code"], err["message"], dict(err.get("details") or {})
        except Exception:  # noqa: BLE001 - not Loom's error shape
            raise ServerError(f"HTTP {resp.status_code} from {resp.request.url}: {resp.text[:200]}",
                              status=resp.status_code) from None
        cls = _ERRORS.get(code, ServerError)
        details["status"] = resp.status_code
        exc = cls(message, **details)
        exc.code = code
        raise exc

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """httpx's transport errors as :class:`ServerUnreachableError` (a LoomError like the others)."""
        try:
            yield
        except httpx.TimeoutException as e:
            raise ServerUnreachableError(f"{self.server_url} did not answer in time ({type(e).__name__})",
                                         server=self.server_url) from e
        except httpx.TransportError as e:
            raise ServerUnreachableError(f"cannot reach {self.server_url} ({e}); is `loom serve` running there?",
                                         server=self.server_url) from e

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """Send one request to the API (``kw`` as for :meth:`httpx.Client.request`); returns the JSON body.

        Raises:
            LoomError: the server's domain error (or :class:`ServerError`), rebuilt from its error shape;
                :class:`ServerUnreachableError` when the server does not answer.
        """
        with self._reaching():
            resp = self._http.request(method, path, **kw)
        self._raise(resp)
        return resp.json() if resp.content and resp.headers.get("content-type", "").startswith("application/json") \
            else None

    # -- adapters -------------------------------------------------------------------------------
    def publish(self, folder: str | os.PathLike[str], name: str, *, description: str | None = None,
                tags: Iterable[str] | None = None, license: str | None = None, private: bool | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
        """Upload a PEFT folder (config, safetensors, optional README.md and samples.jsonl) as ``name``."""
        d = Path(folder)
        for pickle_name in ("adapter_model.bin", "adapter_model.pt"):
            if (d / pickle_name).exists() and not (d / "adapter_model.safetensors").exists():
                raise E.InvalidAdapterError(f"{pickle_name} is a pickle file and is never uploaded; "
                                            "save the adapter with safetensors")
        for required in UPLOAD_FILES[:2]:
            if not (d / required).is_file():
                raise E.InvalidAdapterError(f"{d} has no {required}")
        handles = {n: (d / n).open("rb") for n in UPLOAD_FILES if (d / n).is_file()}
        try:
            files = {n: (n, _Counting(f, progress)) for n, f in handles.items()}
            data: dict[str, Any] = without_none(name=name, description=description, license=license)
            if tags is not None:
                data["tags"] = ",".join(tags)
            if private is not None:
                data["visibility"] = "private" if private else "public"
            return self.request("POST", "/api/v1/adapters", files=files, data=data)
        finally:
            for f in handles.values():
                f.close()

    def list(self, *, offset: int = 0, limit: int = 50, **filters: Any) -> dict[str, Any]:
        """Adapters visible to this client (filters: base_model, tag, license, owner, min_rank, max_rank, kind,
        namespace).

        Raises:
            InvalidInputError: a filter of another name (the server would ignore it).
        """
        _check_filters(filters, LIST_FILTERS)
        return self.request("GET", "/api/v1/adapters", params=without_none(offset=offset, limit=limit, **filters))

    def get(self, ref: str) -> dict[str, Any]:
        """An adapter with its latest version and lineage (``ns/name@v``: with that version as ``latest``)."""
        ns, name, v = split_ref(ref)
        out = self.request("GET", f"/api/v1/adapters/{ns}/{name}")
        if v is not None and (out.get("latest") or {}).get("number") != v:
            found = [x for x in self.versions(f"{ns}/{name}") if x["number"] == v]
            if not found:
                raise E.NotFoundError(f"{ns}/{name} has no version {v}", status=404)
            out["latest"] = found[0]
        return out

    def versions(self, ref: str) -> list[dict[str, Any]]:
        ns, name, _ = split_ref(ref)
        return self.request("GET", f"/api/v1/adapters/{ns}/{name}/versions")["items"]

    def patch(self, ref: str, **fields: Any) -> dict[str, Any]:
        """Change description, tags, visibility or license."""
        ns, name, _ = split_ref(ref)
        return self.request("PATCH", f"/api/v1/adapters/{ns}/{name}", json=without_none(**fields))

    def delete(self, ref: str) -> None:
        ns, name, _ = split_ref(ref)
        self.request("DELETE", f"/api/v1/adapters/{ns}/{name}")

    def download(self, ref: str, filename: str, dest: str | os.PathLike[str], *, version: int | None = None,
                 progress: Progress | None = None, expected_sha256: str | None = None) -> Path:
        """Stream one file to ``dest`` (written atomically, sha256-checked against the server's)."""
        ns, name, v = split_ref(ref)
        version = version if version is not None else v
        out = Path(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        h = hashlib.sha256()
        with self._reaching(), self._http.stream("GET", f"/api/v1/adapters/{ns}/{name}/files/{filename}",
                               params=without_none(version=version)) as resp:
            if not resp.is_success:
                resp.read()
                self._raise(resp)
            want = expected_sha256 or resp.headers.get("x-loom-sha256")
            with tmp.open("wb") as f:
                for chunk in resp.iter_bytes(1024 * 1024):
                    f.write(chunk)
                    h.update(chunk)
                    if progress:
                        progress(len(chunk))
        if want and h.hexdigest() != want:
            tmp.unlink(missing_ok=True)
            raise E.StorageError(f"{filename} arrived corrupted: sha256 {h.hexdigest()} != {want}")
        os.replace(tmp, out)
        return out

    def pull(self, ref: str, dest: str | os.PathLike[str], *, progress: Progress | None = None,
             on_total: Callable[[int], None] | None = None) -> Path:
        """Download every file of ``ns/name[@version]`` into the folder ``dest`` (a loadable PEFT folder)."""
        ns, name, version = split_ref(ref)
        versions = {v["number"]: v for v in self.versions(f"{ns}/{name}")}
        if not versions:
            raise E.NotFoundError(f"{ns}/{name} has no versions")
        ver = versions.get(version if version is not None else max(versions))
        if ver is None:
            raise E.NotFoundError(f"{ns}/{name} has no version {version}")
        if on_total:
            on_total(sum(f["size"] for f in ver["files"].values()))
        out = Path(dest)
        for filename, info in ver["files"].items():
            if "/" in filename or filename in ("", ".", ".."):
                raise E.InvalidInputError(f"refusing to write file {filename!r} outside {out}")
            self.download(f"{ns}/{name}", filename, out / filename, version=ver["number"], progress=progress,
                          expected_sha256=info["sha256"])
        return out

    # -- search, base models, system -----------------------------------------------------------
    def search(self, q: str, k: int = 10, rerank: bool | None = None, **filters: Any) -> dict[str, Any]:
        """Semantic search (filters: base_model, tag, license, owner, min_rank, max_rank, kind); ``rerank``: reorder
        the best hits with the hub's reranker (None: when the hub has one); a filter of another name is an
        InvalidInputError."""
        _check_filters(filters, SEARCH_FILTERS)
        flag = None if rerank is None else str(rerank).lower()
        return self.request("GET", "/api/v1/search", params=without_none(q=q, k=k, rerank=flag, **filters),
                            timeout=SEARCH_TIMEOUT_S)

    def register_base(self, model_id: str, config: dict[str, Any] | None = None, *, revision: str | None = None,
                      weights: str | None = None) -> dict[str, Any]:
        """Register a base model; ``weights``: a folder or ``.gguf`` file on the server, or a Hugging Face id
        (the server downloads or converts it before answering, so this may take minutes)."""
        return self.request("POST", "/api/v1/base-models", timeout=REGISTER_TIMEOUT_S,
                         json={"id": model_id, "revision": revision, "config": config, "weights": weights})

    def pull_base(self, model_id: str, dest: str | os.PathLike[str], *, revision: str | None = None,
                  progress: Progress | None = None, on_total: Callable[[int], None] | None = None) -> Path:
        """Download the files of a base whose weights the hub holds into the folder ``dest`` (a folder
        ``AutoModelForCausalLM.from_pretrained`` loads)."""
        items = self.request("GET", f"/api/v1/base-models/{model_id}/files",
                             params=without_none(revision=revision))["items"]
        if on_total:
            on_total(sum(f["size"] for f in items))
        out = Path(dest)
        out.mkdir(parents=True, exist_ok=True)
        for f in items:
            if "/" in f["name"] or f["name"] in ("", ".", ".."):
                raise E.InvalidInputError(f"refusing to write file {f['name']!r} outside {out}")
            tmp = out / (f["name"] + ".part")
            with self._reaching(), self._http.stream("GET", f["url"], timeout=None) as resp:
                if not resp.is_success:
                    resp.read()
                    self._raise(resp)
                with tmp.open("wb") as fh:
                    for chunk in resp.iter_bytes(1024 * 1024):
                        fh.write(chunk)
                        if progress:
                            progress(len(chunk))
            if tmp.stat().st_size != f["size"]:
                tmp.unlink(missing_ok=True)
                raise E.StorageError(f"{f['name']} arrived truncated: {tmp.stat().st_size} of {f['size']} bytes")
            os.replace(tmp, out / f["name"])
        return out

    def list_bases(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/base-models")["items"]

    def get_base(self, model_id: str, revision: str | None = None) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/base-models/{model_id}", params=without_none(revision=revision))

    def router_presets(self) -> list[dict[str, Any]]:
        """The router presets: ``[{"name", "granularity", "trainable", "config", "paper"}]``."""
        return self.request("GET", "/api/v1/routers/presets")

    def tokens(self) -> list[dict[str, Any]]:
        """The caller's API tokens (id, prefix, label, created/last used/revoked times)."""
        return self.request("GET", "/api/v1/tokens")["items"]

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        return self.request("DELETE", f"/api/v1/tokens/{token_id}")

    def whoami(self) -> str | None:
        return self.request("GET", "/api/v1/whoami")["user"]

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/healthz")

    # -- compositions and jobs ------------------------------------------------------------------
    def compose(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a composition (``sources``/``weights``/``method``/``params`` or ``task``/``base_model``)."""
        return self.submit_job("/api/v1/compositions", body)

    def submit_job(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a job request (compositions, routers, generators, generations, transfers); returns the job."""
        return self.request("POST", path, json=body)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/jobs/{job_id}")

    def jobs(self, *, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v1/jobs", params=without_none(status=status, limit=limit))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/api/v1/jobs/{job_id}")

    def wait_job(self, job_id: str, *, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """Poll a job until it succeeds, fails or is cancelled (or ``timeout`` seconds pass)."""
        import time

        deadline = time.monotonic() + timeout
        job = self.job(job_id)
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)
            job = self.job(job_id)
        return job
