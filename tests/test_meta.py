"""Meta-tests that keep the project's structure honest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    """hub.core imports nothing of ours; merging/routing only hub.core; the API only via services."""
    exe = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "broken" not in proc.stdout.lower() or "0 broken" in proc.stdout.lower()


def test_readme_opens_with_the_two_commands():
    lines = [ln.strip() for ln in (ROOT / "README.md").read_text().splitlines() if ln.strip()]
    block = lines[lines.index("```bash") + 1 : lines.index("```bash") + 3]
    assert block[0].startswith("make demo") and block[1].startswith("make test")
    makefile = (ROOT / "Makefile").read_text()
    assert "\ndemo:" in makefile and "\ntest:" in makefile
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_no_skips_or_xfails_in_the_suite():
    offenders = []
    for p in (ROOT / "tests").rglob("*.py"):
        text = p.read_text()
        for marker in ("pytest.skip(", "mark.skip", "mark.xfail", "pytest.xfail(", "skipif", "importorskip"):
            if marker in text and p.name != "test_meta.py":
                offenders.append(f"{p.relative_to(ROOT)}: {marker}")
    assert not offenders, offenders


def test_every_api_route_has_a_unique_operation_id(tmp_path):
    from hub.api import create_app
    from hub.settings import get_settings

    app = create_app(get_settings(data_dir=tmp_path / "data"), warm_index=False)
    spec = app.openapi()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values() if "operationId" in op]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    paths = set(spec["paths"])
    # the contract paths of the issues are all served by the one app
    for p in ("/api/v1/adapters", "/api/v1/adapters/{namespace}/{name}", "/api/v1/search", "/healthz", "/metrics",
              "/api/v1/compositions", "/api/v1/jobs/{job_id}", "/v1/completions", "/v1/chat/completions",
              "/v1/models", "/api/v1/hf/import", "/api/v1/base-models", "/api/v1/routers"):
        assert p in paths, p
    from fastapi.testclient import TestClient

    with TestClient(app) as client:  # the web pages are served by the same app
        home = client.get("/")
        assert home.status_code == 200 and "<html" in home.text.lower()
        assert client.get("/a/nobody/nothing").status_code == 404


@pytest.mark.xdist_group("meta")
def test_xdist_groups_take_effect(request):
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) a test marked with a group carries it in its node
    id: that is how pytest-xdist sends a group's tests, and their shared fixtures, to one worker. A pytest that
    ignores it (9.2 with xdist 3.8) made every expensive fixture build twice."""
    if getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@meta"), request.node.nodeid
