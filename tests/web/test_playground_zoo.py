"""The web playground on the demo's tiny zoo (Chromium): every ci family's adapter answers its task, and the
adapter page's try-it box answers a zoo prompt as the playground does.

The zoo fixture is the testbed's (imported here, so this web worker builds its own small ci zoo, cached by
recipe); the browser is the web tests' one Chromium.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from testbed.tasks import get_task
from tests.helpers import served_zoo
from tests.testbed.conftest import ci_zoo  # noqa: F401 (the session fixture)


@pytest.fixture(scope="module")
def zoo_url(ci_zoo, tmp_path_factory):  # noqa: F811
    with served_zoo(ci_zoo, tmp_path_factory.mktemp("playground_zoo")) as (url, _):
        yield url


def test_the_playground_answers_every_family(ci_zoo, zoo_url, browser):  # noqa: F811
    ctx = browser.new_context(base_url=zoo_url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    try:
        for entry in ci_zoo.adapters:
            e = get_task(entry.task).examples(1, seed=31)[0]
            page.goto(f"/playground?model={entry.name}")
            page.get_by_label("Message").fill(e.prompt)
            page.get_by_label("Max tokens").fill("24")
            page.get_by_role("button", name="Send").click()
            expect(page.locator("#answer-text")).to_have_text(e.output)
    finally:
        ctx.close()


def test_the_try_it_box_answers_a_zoo_prompt_as_the_playground(ci_zoo, zoo_url, browser):  # noqa: F811
    # the prompt a newcomer copies from the model card, without the trailing newline the raw completion needs
    ctx = browser.new_context(base_url=zoo_url, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(60_000)
    page = ctx.new_page()
    try:
        page.goto("/a/zoo/upper")
        page.get_by_label("Prompt").fill("hello | shout this")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#try-output pre.completion")).to_have_text("HELLO")
    finally:
        ctx.close()
