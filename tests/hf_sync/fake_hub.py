"""A fake Hugging Face Hub: a real HTTP server on 127.0.0.1 speaking the routes huggingface_hub 2.x calls.

Start it, point ``HfApi(endpoint=hub.url)`` at it, and the real client creates repos, commits
(regular files and LFS batch + PUT), lists and filters models, reads model info by branch, tag
or sha, and downloads files (HEAD + GET with Range). Behaviour follows the real Hub where it
matters to callers: anonymous requests for missing *or* private repos get 401 ``RepoNotFound``,
gated repos 401/403 ``GatedRepo``, unknown revisions 404 ``RevisionNotFound``. Faults on demand:
:meth:`FakeHub.rate_limit` answers 429 with ``Retry-After`` and ``RateLimit`` headers, and
:meth:`FakeHub.fail_requests` answers 5xx, and :meth:`FakeHub.drop_downloads` cuts a download's connection
after some bytes; :meth:`FakeHub.stop` also cuts open keep-alive connections.

Usage::

    with FakeHub(tokens={"hf_secret": "alice"}) as hub:
        hub.upload_folder("alice/my-lora", folder)
        HfApi(endpoint=hub.url, token="hf_secret").model_info("alice/my-lora")
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.hf_sync import fake_hub_routes as routes
from tests.hf_sync.fake_hub_state import HubState, Repo


@dataclass
class _Fault:
    times: int
    path_contains: str | None
    value: int  # retry_after seconds (rate limit) or bytes sent before the cut (drop)
    method: str | None = None
    status: int = 429

    def take(self, method: str, path: str) -> bool:
        if self.times <= 0 or (self.path_contains and self.path_contains not in path):
            return False
        if self.method and self.method != method:
            return False
        self.times -= 1
        return True


@dataclass
class Request:
    """What a route sees: method, path segments, query, body, the caller's user name and token."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    user: str | None
    token: str | None
    base_url: str

    def q(self, name: str) -> str | None:
        vals = self.query.get(name)
        return vals[0] if vals else None


class FakeHub:
    """An in-memory Hub served over HTTP on a free port of 127.0.0.1 (threaded, thread-safe).

    Args:
        tokens: token string -> user name. A request with an unknown token gets 401.
        orgs: organisation -> member user names (members may write to the org's repos).
    """

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, set[str]] | None = None) -> None:
        self.state = HubState(tokens, orgs)
        self.requests: list[tuple[str, str]] = []
        self.authorization_seen: list[bool] = []
        self._faults_lock = threading.Lock()
        self._rate_limits: list[_Fault] = []
        self._drops: list[_Fault] = []
        self._server: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    # ----- lifecycle -----
    def start(self) -> FakeHub:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.hub = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open keep-alive connection (clients then see a dead server)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._faults_lock:
            conns, self._connections = list(self._connections), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeHub is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ----- seeding (no HTTP) -----
    def create_repo(self, repo_id: str, *, private: bool = False, gated: bool | str = False) -> Repo:
        return self.state.create_repo(repo_id, private=private, gated=gated)

    def commit(self, repo_id: str, add: dict[str, bytes | str | Path], **kw: Any) -> str:
        return self.state.commit(repo_id, add, **kw)

    def upload_folder(self, repo_id: str, folder: str | Path, **kw: Any) -> str:
        return self.state.upload_folder(repo_id, folder, **kw)

    def tag(self, repo_id: str, tag: str, revision: str = "main") -> None:
        self.state.tag(repo_id, tag, revision)

    def create_branch(self, repo_id: str, branch: str, revision: str = "main") -> None:
        self.state.create_branch(repo_id, branch, revision)

    def grant(self, repo_id: str, user: str) -> None:
        """Accept a gated repo's conditions for ``user``."""
        self.state.repos[repo_id].granted.add(user)

    def repo(self, repo_id: str) -> Repo:
        return self.state.repos[repo_id]

    # ----- faults -----
    def rate_limit(self, times: int = 1, retry_after: int = 1, path_contains: str | None = None,
                   method: str | None = None) -> None:
        """Answer the next ``times`` matching requests with 429 + ``Retry-After`` / ``RateLimit`` headers."""
        with self._faults_lock:
            self._rate_limits.append(_Fault(times, path_contains, retry_after, method))

    def fail_requests(self, times: int = 1, status: int = 503, path_contains: str | None = None,
                      method: str | None = None) -> None:
        """Answer the next ``times`` matching requests with ``status`` and no retry hint (a flaky server)."""
        with self._faults_lock:
            self._rate_limits.append(_Fault(times, path_contains, 0, method, status))

    def drop_downloads(self, times: int = 1, after_bytes: int = 64, path_contains: str | None = None) -> None:
        """Cut the connection of the next ``times`` matching file GETs after ``after_bytes`` body bytes."""
        with self._faults_lock:
            self._drops.append(_Fault(times, path_contains, after_bytes, "GET"))

    def _take(self, faults: list[_Fault], method: str, path: str) -> _Fault | None:
        with self._faults_lock:
            for f in faults:
                if f.take(method, path):
                    return f
        return None

    def count(self, method: str | None = None, contains: str = "") -> int:
        """How many requests matched ``method`` and had ``contains`` in their path."""
        return sum(1 for m, p in list(self.requests) if (method is None or m == method) and contains in p)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15  # idle keep-alive connections end on their own

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        return

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def setup(self) -> None:
        super().setup()
        with self.hub._faults_lock:
            self.hub._connections.add(self.connection)

    def finish(self) -> None:
        with self.hub._faults_lock:
            self.hub._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined,no-any-return]

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path
        hub = self.hub
        body = self._read_body() if method in ("POST", "PUT", "DELETE") else b""
        hub.requests.append((method, path))
        auth = self.headers.get("Authorization")
        hub.authorization_seen.append(auth is not None)
        try:
            fault = hub._take(hub._rate_limits, method, path)
            if fault is not None and fault.status != 429:
                raise routes.HubError(fault.status, "injected server failure")
            if fault is not None:
                t = fault.value
                raise routes.HubError(429, "rate limited", {
                    "Retry-After": str(t), "RateLimit": f'"api";r=0;t={t}',
                    "RateLimit-Policy": '"fixed window";"api";q=500;w=300'})
            token = auth.split(" ", 1)[1].strip() if auth and auth.lower().startswith("bearer ") else None
            user = hub.state.tokens.get(token) if token else None
            if token and user is None:
                raise routes.HubError(401, "Invalid credentials in Authorization header",
                                      {"X-Error-Message": "Invalid credentials in Authorization header"})
            host, port = self.server.server_address[:2]
            req = Request(method, path, parse_qs(url.query), body, user, token, f"http://{host}:{port}")
            for route_method, pattern, handler in routes.ROUTES:
                if route_method != method and not (route_method == "GET" and method == "HEAD"):
                    continue
                m = pattern.fullmatch(path)
                if m:
                    params = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                    result = handler(hub.state, req, **params)
                    if isinstance(result, routes.FileReply):
                        self._send_file(method, path, result)
                    elif isinstance(result, routes.JsonReply):
                        self._send(method, 200, result.body, result.headers)
                    else:
                        self._send(method, 200, result, {})
                    return
            raise routes.HubError(404, f"no route for {method} {path}")
        except routes.HubError as e:
            self._send(method, e.status, {"error": e.message, **e.extra}, e.headers)
        except Exception as e:  # noqa: BLE001 - a bug in the fake must show up as a 500, not a hang
            self._send(method, 500, {"error": f"fake hub bug: {e!r}"}, {})

    def _send(self, method: str, status: int, body: Any, headers: dict[str, str]) -> None:
        import json

        raw = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(raw)

    def _send_file(self, method: str, path: str, f: routes.FileReply) -> None:
        data, start, status = f.data, 0, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and method == "GET":
            first, _, last = rng[6:].partition("-")
            start = int(first or 0)
            end = int(last) if last else len(data) - 1
            data, status = f.data[start:end + 1], 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{len(f.data)}")
        for k, v in f.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if method == "HEAD":
            return
        drop = self.hub._take(self.hub._drops, method, path)
        if drop is not None and len(data) > drop.value:
            self.wfile.write(data[: drop.value])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(data)
