"""docker/ as far as it can be checked without a Docker daemon: compose parses, its services have healthchecks,
every LOOM_* variable it sets is a setting Loom reads and builds a working configuration, and every variable it
substitutes is in .env.example; the Dockerfile takes its base image by build argument and copies what exists."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from hub.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
VAR = re.compile(r"\$\{([A-Z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def _env_example() -> dict[str, str]:
    out = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip()
    return out


def _substitute(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${V}, ${V:-default}, ${V-default}, ${V:?error}, ${V?error}."""

    def one(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} is not set by docker/.env.example")

    return VAR.sub(one, value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_topology_and_healthchecks(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "seaweedfs", "ray-head", "ray-gpu-worker", "api"}
    for name, svc in services.items():
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    gpu = services["ray-gpu-worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "cuda" in gpu["build"]["args"]["BASE_IMAGE"]
    assert services["api"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    for svc in services.values():
        if "build" in svc:
            assert (DOCKER / svc["build"]["context"]).resolve() == ROOT
            assert (ROOT / svc["build"]["dockerfile"]).is_file()


def test_loom_variables_are_settings_loom_reads(compose):
    fields = {f"LOOM_{name.upper()}" for name in Settings.model_fields}
    used = {k for svc in compose["services"].values() for k in (svc.get("environment") or {})
            if k.startswith("LOOM_")}
    assert {"LOOM_BLOB_URL", "LOOM_S3_ENDPOINT", "LOOM_DATABASE_URL"} <= used
    assert used <= fields, f"compose sets variables Loom does not read: {sorted(used - fields)}"


def test_every_substituted_variable_is_in_env_example(compose):
    env = _env_example()
    text = (DOCKER / "compose.yaml").read_text()
    for m in VAR.finditer(text):
        if m.group(2) not in (":-", "-"):
            assert m.group(1) in env, f"{m.group(1)} is required by compose.yaml but missing from .env.example"


def test_api_environment_builds_a_working_configuration(compose, tmp_path, monkeypatch):
    from hub.storage import S3BlobStore, open_store

    env = _env_example()
    api = {k: _substitute(str(v), env) for k, v in compose["services"]["api"]["environment"].items()}
    for k, v in api.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LOOM_DATA_DIR", str(tmp_path))  # /data inside the container
    s = get_settings()
    assert s.resolved_database_url.startswith("postgresql+psycopg://loom:") and s.host == "0.0.0.0"
    assert s.blob_url == "s3://loom/blobs" and s.s3_endpoint == "http://seaweedfs:8333"
    store = open_store(s)  # builds the S3 client (no request is sent)
    assert isinstance(store, S3BlobStore) and store.cache.max_bytes == int(env["BLOB_CACHE_BYTES"])


def test_dockerfile_base_image_by_argument_and_sources_exist():
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", text, re.M) and "FROM ${BASE_IMAGE}" in text
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    default_extra = re.search(r"^ARG LOOM_EXTRAS=(\S+)", text, re.M).group(1)
    assert default_extra in extras and any(d.startswith("obstore") for d in extras["s3"])
    assert '"loom", "serve"' in text


def test_api_runs_jobs_and_inference_on_the_ray_head(compose, tmp_path, monkeypatch):
    env = _env_example()
    api = {k: _substitute(str(v), env) for k, v in compose["services"]["api"]["environment"].items()}
    for k, v in api.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LOOM_DATA_DIR", str(tmp_path))
    s = get_settings()
    assert (s.jobs, s.inference, s.ray_address) == ("ray", "ray", "ray-head:6379")
    assert s.inference_replicas == int(env["INFERENCE_REPLICAS"]) and s.adapter_cache_gpu == int(env["ADAPTER_CACHE_GPU"])
    assert api["RAY_AUTH_TOKEN"] == env["RAY_AUTH_TOKEN"]  # the API is a Ray driver: it needs the cluster's token
    assert "ray-head" in compose["services"]["api"]["depends_on"]
