"""Rate limits, dropped connections and token hygiene, against the fake Hub."""

from __future__ import annotations

import logging
import traceback

import pytest

from hub.core.errors import PermissionDeniedError, UpstreamError
from hub.hf_sync import RetryPolicy, fetch_adapter, upstream_sha
from tests.hf_sync.fixtures import OTHER_TOKEN, TOKEN

REPO = "alice/pico-lora"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_rate_limit_is_retried_with_the_servers_wait(fake_hub, anon_api, peft_dirs, tmp_path):
    sha = fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.rate_limit(times=2, retry_after=7, path_contains="/api/models/")
    sleeps = Sleeps()
    got = fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out", policy=RetryPolicy(attempts=3, sleep=sleeps))
    assert got.sha == sha
    assert sleeps.waits == [7.0, 7.0]  # from the RateLimit header t=7
    assert fake_hub.count("GET", f"/api/models/{REPO}") == 3


def test_backoff_without_server_hint_doubles(fake_hub, anon_api, peft_dirs):
    sha = fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.fail_requests(times=2, status=503, path_contains=f"/api/models/{REPO}")
    sleeps = Sleeps()
    assert upstream_sha(anon_api, REPO, policy=RetryPolicy(attempts=4, base_delay=0.5, sleep=sleeps)) == sha
    assert sleeps.waits == [0.5, 1.0]


def test_server_errors_and_unreachable_hub_are_upstream_errors(fake_hub, anon_api, peft_dirs):
    from huggingface_hub import HfApi

    fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.fail_requests(times=5, status=500)
    with pytest.raises(UpstreamError, match="answered HTTP 500 .*gave up after 2 attempts"):
        upstream_sha(anon_api, REPO, policy=RetryPolicy(attempts=2, sleep=Sleeps()))
    url = fake_hub.url
    fake_hub.stop()
    with pytest.raises(UpstreamError, match="network failure while checking"):
        upstream_sha(HfApi(endpoint=url, token=False), REPO, policy=RetryPolicy(sleep=Sleeps()))


def test_rate_limit_exhausted_is_upstream_error(fake_hub, anon_api, peft_dirs, tmp_path):
    fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.rate_limit(times=10, retry_after=2, path_contains="/api/models/")
    sleeps = Sleeps()
    with pytest.raises(UpstreamError, match=r"rate limited .*\(gave up after 3 attempts\)") as e:
        fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out", policy=RetryPolicy(attempts=3, sleep=sleeps))
    assert sleeps.waits == [2.0, 2.0] and e.value.details["status"] == 429
    assert not (tmp_path / "out").exists()


def test_long_rate_limit_is_reported_not_slept(fake_hub, anon_api, peft_dirs, tmp_path):
    fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.rate_limit(times=1, retry_after=300, path_contains="/api/models/")
    sleeps = Sleeps()
    with pytest.raises(UpstreamError, match="retry after 300 s") as e:
        upstream_sha(anon_api, REPO, policy=RetryPolicy(max_delay=30, sleep=sleeps))
    assert sleeps.waits == [] and e.value.details["retry_after"] == 300


def test_dropped_connection_once_is_resumed(fake_hub, anon_api, peft_dirs, tmp_path):
    sha = fake_hub.upload_folder(REPO, peft_dirs["one"])
    fake_hub.drop_downloads(times=1, after_bytes=100, path_contains="adapter_model.safetensors")
    got = fetch_adapter(anon_api, REPO, dest_dir=tmp_path / "out")
    assert got.sha == sha
    assert (got.path / "adapter_model.safetensors").read_bytes() == (
        peft_dirs["one"] / "adapter_model.safetensors").read_bytes()
    assert fake_hub.count("GET", "adapter_model.safetensors") == 2  # the cut one, then the resumed range


def test_network_failure_mid_download_leaves_nothing_and_retry_completes(fake_hub, anon_api, peft_dirs, tmp_path):
    sha = fake_hub.upload_folder(REPO, peft_dirs["one"])
    # the client resumes a cut download 5 times; cut all 6 tries so the fetch fails
    fake_hub.drop_downloads(times=6, after_bytes=100, path_contains="adapter_model.safetensors")
    dest = tmp_path / "lib" / "pico"
    with pytest.raises(UpstreamError, match="network failure while downloading .*retry"):
        fetch_adapter(anon_api, REPO, dest_dir=dest)
    assert list((tmp_path / "lib").iterdir()) == []  # no dest, no staging folder, no partial file
    got = fetch_adapter(anon_api, REPO, dest_dir=dest)
    assert got.sha == sha and sorted(p.name for p in dest.iterdir()) == list(got.files)


def test_token_never_logged_or_kept(fake_hub, peft_dirs, tmp_path, caplog):
    from huggingface_hub import HfApi
    from huggingface_hub.utils import logging as hf_logging

    fake_hub.upload_folder(REPO, peft_dirs["one"], private=True, gated="manual")
    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_debug()
    try:
        with caplog.at_level(logging.DEBUG):
            got = fetch_adapter(HfApi(endpoint=fake_hub.url, token=TOKEN), REPO, dest_dir=tmp_path / "a")
            fake_hub.state.repos[REPO].private = False
            with pytest.raises(PermissionDeniedError) as denied:
                fetch_adapter(HfApi(endpoint=fake_hub.url, token=OTHER_TOKEN), REPO, dest_dir=tmp_path / "b")
    finally:
        hf_logging.set_verbosity(old)
    assert fake_hub.authorization_seen and all(fake_hub.authorization_seen)  # the tokens were really sent
    assert caplog.records  # debug logging really ran
    for secret in (TOKEN, OTHER_TOKEN):
        assert secret not in caplog.text
        assert secret not in repr(got) and secret not in str(got.__dict__)
        assert secret not in str(denied.value) and secret not in repr(denied.value.details)
        assert secret not in "".join(traceback.format_exception(denied.value))
    assert denied.value.__suppress_context__  # the HTTP error (whose request holds the header) is not shown
    for path in (tmp_path / "a").rglob("*"):
        assert TOKEN.encode() not in path.read_bytes()
