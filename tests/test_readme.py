"""The README's command blocks run as written against the demo they describe.

Every fenced block of README.md is one of: the two commands at the top (``tests/test_meta.py``), a block tagged
``demo`` (run here, line by line, against a real ``loom demo --size ci`` process), the docker block (checked
by ``tests/storage/test_docker.py``; no Docker daemon here) or the benchmarks block (each script exists and
reads every flag the README gives it). A new block must be one of these, or this test fails.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from testbed.tasks import get_task
from tests.helpers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.M | re.S)
TOKEN_LINE = "export LOOM_TOKEN=<the token loom demo printed>"

pytestmark = pytest.mark.xdist_group("readme_demo")


def blocks() -> list[tuple[str, str, str]]:
    """``(language, tags, body)`` of every fenced block, in order."""
    return [(m.group(1), m.group(2).strip(), m.group(3)) for m in FENCE.finditer(README)]


def demo_block(lang: str) -> str:
    found = [body for lg, tags, body in blocks() if lg == lang and tags == "demo"]
    assert len(found) == 1, f"expected one ```{lang} demo block"
    return found[0]


def test_every_block_is_run_or_checked():
    kinds = []
    for lang, tags, body in blocks():
        if body.startswith("make demo"):
            kinds.append("top")
        elif tags == "demo":
            kinds.append(f"demo:{lang}")
        elif "docker compose" in body:
            kinds.append("docker")
        elif all(ln.startswith("python benchmarks/") for ln in body.splitlines() if ln.strip()):
            kinds.append("benchmarks")
        else:
            pytest.fail(f"README block not run by any test (tag it `demo` and make it run):\n{body[:300]}")
    assert kinds[0] == "top" and {"demo:bash", "demo:python", "benchmarks", "docker"} <= set(kinds), kinds


def test_benchmark_lines_name_scripts_and_flags_that_exist():
    (body,) = [b for _, _, b in blocks() if b.startswith("python benchmarks/")]
    for line in body.splitlines():
        if not line.strip():
            continue
        words = line.split("#", 1)[0].split()
        script = ROOT / words[1]
        assert script.is_file(), line
        source = script.read_text()
        for flag in (w for w in words[2:] if w.startswith("--")):
            assert f'"{flag}"' in source, f"{words[1]} does not read {flag}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``loom demo --size ci`` as a user starts it (the real zoo skipped: it trains for minutes), served on a
    free port: yields ``(url, token, workdir)``."""
    data = tmp_path_factory.mktemp("readme_demo")
    cache = os.environ.get("LOOM_TEST_TESTBED_CACHE")  # a data dir whose testbed/ holds a built ci zoo: a second
    if cache:                                          # start of the demo, as a user's is (local runs only)
        (data / "loom-data").mkdir()
        (data / "loom-data" / "testbed").symlink_to(Path(cache) / "testbed")
    port = free_port()
    env = {**os.environ, "LOOM_DATA_DIR": str(data / "loom-data"), "LOOM_PORT": str(port),
           "LOOM_HF_ENDPOINT": "http://127.0.0.1:9", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("LOOM_TOKEN", None)
    out = (data / "demo.log").open("w+")
    proc = subprocess.Popen(["loom", "demo", "--size", "ci", "--no-real"], cwd=data, env=env, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 900
        token = None
        while token is None:  # the token line follows "demo hub ready"
            assert proc.poll() is None and time.monotonic() < deadline, (data / "demo.log").read_text()[-3000:]
            text = (data / "demo.log").read_text()
            lines = text[text.index("demo hub ready"):].splitlines() if "demo hub ready" in text else []
            marks = [i for i, ln in enumerate(lines) if "a token for user" in ln]
            token = lines[marks[0] + 1].strip() if marks and len(lines) > marks[0] + 1 else None
            time.sleep(1)
        wait_healthy(url, proc, timeout=120)
        env.update(LOOM_SERVER_URL=url, LOOM_TOKEN=token)
        yield url, env, data
    finally:
        proc.terminate()
        proc.wait(30)
        out.close()


def test_demo_says_what_it_does_and_shows_progress_in_a_log(demo):
    _, _, data = demo
    log = (data / "demo.log").read_text()
    assert log.startswith("loom demo: the ci testbed zoo"), log[:300]
    if os.environ.get("LOOM_TEST_TESTBED_CACHE"):  # a second start: nothing to build, and it says so
        assert log.startswith("loom demo: the ci testbed zoo (tiny bases, zoo/<task>): cached"), log[:300]
    else:  # the first start (as in CI): plain progress lines, not a progress bar that a log never shows
        assert "first time" in log.splitlines()[0]
        assert re.search(r"\[\s*\d+ s\] .+: \d+/\d+", log), log[:2000]


def test_the_using_the_hub_block_runs_as_written(demo):
    url, env, data = demo
    lines = [ln for ln in demo_block("bash").splitlines() if ln.strip()]
    assert lines[0] == TOKEN_LINE  # the token comes from the demo's output (in env here)
    for line in lines[1:]:
        proc = subprocess.run(["bash", "-c", line], cwd=data, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert (data / "upper" / "adapter_config.json").is_file()
    headers = {"Authorization": f"Bearer {env['LOOM_TOKEN']}"}
    for name in ("demo/upper-lower", "demo/caps", "demo/mask3", "demo/upper-qwen2"):
        assert httpx.get(f"{url}/api/v1/adapters/{name}", headers=headers).status_code == 200, name
    assert httpx.get(f"{url}/api/v1/adapters/demo/shout", headers=headers).status_code == 404
    # demo/router routes the zoo's own phrasings (it trains on the experts' samples.jsonl, which hold them all)
    right = 0
    for cue, case in [*((c, str.upper) for c in get_task("upper").cues), *((c, str.lower) for c in get_task("lower").cues)]:
        for x in ("hello", "HeLLo"):
            res = httpx.post(f"{url}/v1/completions", headers=headers, timeout=60, json={
                "model": "demo/router", "prompt": f"{x} | {cue}\n", "max_tokens": 8, "temperature": 0})
            right += res.json()["choices"][0]["text"].strip() == case(x)
            if (x, cue) in (("hello", "shout this"), ("HeLLo", "make it quiet")):  # the README's prompt, and its opposite
                assert res.json()["choices"][0]["text"].strip() == case(x), (x, cue, res.json())
    assert right >= 14, f"demo/router answered {right} of 16 zoo phrasings right"
    jobs = httpx.get(f"{url}/api/v1/jobs", headers=headers).json()
    items = jobs["items"] if isinstance(jobs, dict) else jobs
    assert items and all(j["status"] == "succeeded" for j in items), items


def test_the_openai_block_runs_as_written(demo):
    url, env, _ = demo
    code = demo_block("python").replace("http://127.0.0.1:8000", url)
    code = code.replace("<loom token or anything>", env["LOOM_TOKEN"])
    tree = ast.parse(code)
    scope: dict = {}
    results = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr):
            results.append(eval(compile(ast.Expression(stmt.value), "README", "eval"), scope))
        else:
            exec(compile(ast.Module([stmt], []), "README", "exec"), scope)
    completion, chat, auto = results
    assert completion.choices[0].text.strip() == "HELLO"
    assert chat.choices[0].message.content.strip() == "HELLO"
    assert auto.choices[0].message is not None  # SmolLM2 answers it on the full demo; here the tiny base does
    # on the tiny zoo, auto routes the zoo's own phrasing to its adapter (its samples hold every cue of the task)
    res = httpx.post(f"{url}/v1/completions", headers={"Authorization": f"Bearer {env['LOOM_TOKEN']}"}, timeout=60,
                     json={"model": "loom-testbed/llama-ci:auto", "prompt": "hello | shout this\n", "max_tokens": 8,
                           "temperature": 0}).json()
    assert res["choices"][0]["text"].strip() == "HELLO" and "zoo/upper" in json.dumps(res.get("loom")), res
