"""The generate page in the browser: a real SG-LoRA generation job queued from the form and followed live to its
published result with lineage; the API's errors next to their fields with nothing queued; the adapter page's
"Move to another base" link; the notice for visitors who are not signed in."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import SERVED_ADAPTER, SERVED_BASE, sign_in
from tests.web.test_browser import A11Y_AUDIT


@pytest.fixture(scope="module")
def gen(live, tmp_path_factory):
    """Two users of their own: ``carol`` with a trained SG-LoRA generator (private, through the service and the
    live hub's worker) and ``dave`` with a private adapter that has sample data and no jobs at all."""
    from transformers import LlamaForCausalLM

    from hub.services.generation import TrainGeneratorRequest
    from hub.services.publish import PublishFiles
    from tests.helpers import make_peft_adapter

    hub = live.hub
    carol, carol_token = hub.users.create_token("carol")
    dave, dave_token = hub.users.create_token("dave")
    model = LlamaForCausalLM.from_pretrained(hub.base_models.get(SERVED_BASE).weights).eval()
    root = tmp_path_factory.mktemp("generate")

    def publish(user, name, seed, description, samples=None):
        d = make_peft_adapter(model, root / name.replace("/", "-"), seed=seed, base_id=SERVED_BASE)
        hub.publisher.publish(user, name, PublishFiles(config=(d / "adapter_config.json").read_bytes(),
                                                      weights=d / "adapter_model.safetensors", samples=samples),
                             description=description, visibility="private")

    publish(carol, "carol/shout", 31, "Convert text to upper case letters.")
    samples = "\n".join(json.dumps({"input": f"repeat {w}", "output": w}) for w in ("one", "two", "three"))
    publish(dave, "dave/echo", 32, "Repeat the last word of a sentence.", samples.encode())

    svc = hub.generation
    job, _ = svc.submit_train_generator(carol, TrainGeneratorRequest(
        method="sg_lora", base_model=SERVED_BASE, name="carol/gen", sources=(SERVED_ADAPTER, "carol/shout"),
        params={"steps": 20, "k": 2}, description="Writes adapters of the served tiny Llama from a description."))
    deadline = time.monotonic() + 60
    while (done := svc.jobs.get(job.id, carol.id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"generator training did not finish: {done.status} {done.log}"
        time.sleep(0.2)
    assert done.status == "succeeded", done.error
    hub.adapters.patch(carol, "carol", "gen", visibility="private")  # nobody else's pages change
    return {"carol": carol_token, "dave": dave_token}


def _jobs(live, token: str) -> list:
    r = httpx.get(f"{live.url}/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_generate_from_a_description_end_to_end(page, live, gen, artifacts):
    sign_in(page, gen["carol"])
    page.goto("/generate")
    expect(page.get_by_role("link", name="Generate")).to_have_attribute("aria-current", "page")
    form = page.locator("#generate-form")
    # the only generator carol can see is offered (and prefilled); a kind-"adapter" row is not
    expect(form.get_by_label("Generator")).to_have_value("carol/gen")
    options = page.locator("#generate-generators option")
    expect(options).to_have_count(1)
    expect(options.first).to_have_attribute("value", "carol/gen")
    form.get_by_label("Task").fill("make text upper case")
    form.get_by_label("Sample prompts").fill("hello world\n\nshout this")
    form.get_by_label("Seed").fill("3")
    form.get_by_label("Result name").fill("carol/made")
    form.get_by_label("Private").check()
    form.get_by_role("button", name="Start job").click()

    link = page.locator("#job-result-link")
    expect(link).to_have_text("carol/made@1", timeout=60_000)
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-progress")).to_have_attribute("value", "1")
    expect(page.locator("#job-result")).to_contain_text("with sg_lora.")
    expect(page.locator("#job-cancel")).to_be_hidden()
    assert re.search(r"/generate\?job=[\w-]+$", page.url)
    job_id = page.locator("#job-id").inner_text()
    [job] = [j for j in _jobs(live, gen["carol"]) if j["id"] == job_id]
    assert job["kind"] == "generate" and job["result"]["adapter"] == "carol/made"
    page.screenshot(path=str(artifacts / "generate-done.png"), full_page=True)

    # a reload of the job's URL shows the finished job again (the shared job follower resumes it)
    page.reload()
    expect(page.locator("#job-result-link")).to_have_text("carol/made@1")
    expect(page.locator("#job-status")).to_have_text("succeeded")

    link.click()
    page.wait_for_url(re.compile(r"/a/carol/made\?version=1$"))
    parents = page.locator(".lin-col").first
    expect(parents.get_by_role("link", name="carol/gen@1")).to_be_visible()
    expect(page.get_by_label("Visibility", exact=True)).to_have_value("private")
    # nothing of carol's is visible to others
    r = httpx.get(f"{live.url}/api/v1/adapters/carol/made", timeout=30)
    assert r.status_code == 404, r.text


def test_generate_and_transfer_errors_next_to_fields(page, live, gen, artifacts):
    sign_in(page, gen["dave"])
    page.goto("/generate")
    assert page.evaluate(A11Y_AUDIT) == []
    gform, tform = page.locator("#generate-form"), page.locator("#transfer-form")
    # checked in the page: nothing filled
    gform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-g-generator")).to_contain_text("Name a generator")
    expect(page.locator("#err-g-task")).to_have_text("Describe the task.")
    expect(page.locator("#g-task")).to_have_attribute("aria-invalid", "true")
    # the server's answers: an unknown generator -> its 404 message, next to the generator field
    api = httpx.post(f"{live.url}/api/v1/generations", headers={"Authorization": f"Bearer {gen['dave']}"},
                     json={"generator": "dave/no-such-generator", "task": "summarise contracts"}, timeout=30)
    assert api.status_code == 404, api.text
    gform.get_by_label("Generator").fill("dave/no-such-generator")
    gform.get_by_label("Task").fill("summarise contracts")
    gform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-g-generator")).to_have_text(api.json()["error"]["message"])
    expect(page.locator("#g-generator")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#err-g-task")).to_be_hidden()
    expect(page.locator("#g-task")).not_to_have_attribute("aria-invalid", "true")
    # an adapter is not a generator
    gform.get_by_label("Generator").fill("dave/echo")
    gform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-g-generator")).to_contain_text("dave/echo is an adapter, not a generator")
    gform.get_by_label("Seed").fill("1.5")
    gform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-g-seed")).to_contain_text("whole number")
    gform.get_by_label("Seed").fill("0")

    # transfer: checked in the page
    tform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-t-source")).to_contain_text("Name the adapter to move")
    expect(page.locator("#err-t-target")).to_contain_text("Name the base model")
    expect(page.locator("#err-g-generator")).to_be_hidden()  # the other form's old errors are cleared
    tform.get_by_label("Source adapter").fill("dave/echo@1")
    tform.get_by_label("Target base model").fill(SERVED_BASE)
    tform.get_by_label("Parameters").fill("{student_steps: }")
    tform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-t-params")).to_contain_text("JSON object")
    tform.get_by_label("Parameters").fill("")
    # the server's answers: an unknown target base -> next to the target base
    tform.get_by_label("Target base model").fill("nobody/no-such-base")
    tform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-t-target")).to_have_text("base model nobody/no-such-base is not registered")
    expect(page.locator("#err-t-source")).to_be_hidden()
    # the source's own base -> about the target; a source without sample data -> about the source
    tform.get_by_label("Target base model").fill(SERVED_BASE)
    tform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-t-target")).to_contain_text(f"dave/echo is already an adapter of {SERVED_BASE}")
    tform.get_by_label("Source adapter").fill("alice/news-summariser")
    tform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-t-source")).to_contain_text("has no sample data")
    expect(page.locator("#err-t-target")).to_be_hidden()
    tform.get_by_label("Source adapter").fill("dave/echo")
    tform.get_by_label("Parameters").fill('{"bogus": 1}')
    tform.get_by_role("button", name="Start job").click()
    expect(page.locator("#err-t-params")).to_contain_text("bad params for trans_lora")
    page.screenshot(path=str(artifacts / "generate-errors.png"), full_page=True)

    expect(page.locator("#job")).to_be_hidden()
    assert _jobs(live, gen["dave"]) == []  # nothing was queued


def test_adapter_page_links_to_move_with_the_source_prefilled(page, live):
    sign_in(page, live.alice)
    page.goto("/a/alice/news-summariser")
    page.get_by_role("link", name="Move to another base").click()
    page.wait_for_url(re.compile(r"/generate\?source=alice/news-summariser%401#transfer$"))
    expect(page.locator("#t-source")).to_have_value("alice/news-summariser@1")
    expect(page.locator("#transfer-form").get_by_label("Target base model")).to_have_value("")
    expect(page.locator("#transfer-bases option")).to_have_count(1)
    expect(page.locator("#transfer-bases option").first).to_have_attribute("value", SERVED_BASE)


def test_signed_out_visitors_see_the_notice(page, live):
    page.goto("/generate")
    expect(page.locator("p.notice")).to_contain_text("Generating needs an API token")
    expect(page.locator("p.notice").get_by_role("link", name="sign in")).to_have_attribute("href", "/signin")
    form = page.locator("#generate-form")
    form.get_by_label("Generator").fill("alice/anything")
    form.get_by_label("Task").fill("summarise contracts")
    form.get_by_role("button", name="Start job").click()
    top = page.locator("#form-errors")
    expect(top).to_be_visible()
    expect(top.get_by_role("link", name="Sign in with a token")).to_be_visible()
    expect(page.locator("#job")).to_be_hidden()
