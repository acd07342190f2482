"""Ray unreachable at start: ONE clear error naming LOOM_RAY_ADDRESS (the CLI prints one line, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers import free_port


@pytest.mark.parametrize("mode", ["LOOM_JOBS", "LOOM_INFERENCE"])
def test_loom_serve_with_an_unreachable_ray_cluster_ends_with_one_line_naming_the_address(tmp_path, mode):
    port = free_port()  # nothing listens there
    env = {**os.environ, "LOOM_DATA_DIR": str(tmp_path / "data"), mode: "ray",
           "LOOM_RAY_ADDRESS": f"127.0.0.1:{port}", "LOOM_PORT": str(free_port())}
    p = subprocess.run([sys.executable, "-m", "hub.cli", "serve"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1, (p.stdout, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert f"LOOM_RAY_ADDRESS='127.0.0.1:{port}'" in lines[0] and "cluster_unavailable" in lines[0], lines[0]
    assert "Traceback" not in p.stderr


def test_an_unset_address_is_named_too():
    from hub.core.errors import ClusterUnavailableError
    from hub.services.ray_cluster import RayConnection

    with pytest.raises(ClusterUnavailableError, match="LOOM_RAY_ADDRESS"):
        RayConnection(None).connect()
