"""The API contract, property-tested with schemathesis over the app's own OpenAPI document, anonymous and with a
token: no request gives a 5xx, and every status code a route answers is documented (``hub.api.responses``).

Bounded to about a minute: ``MAX_EXAMPLES`` generated cases per operation (positive and negative), each sent
once per test without and with a token, on SQLite, against the fake Hugging Face Hub served over HTTP.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.hf_sync.fixtures import TOKEN, fake_hub, hf_env  # noqa: F401 (fixtures)

MAX_EXAMPLES = 8


@pytest.fixture
def contract_app(tmp_path_factory, tiny_model, fake_hub):  # noqa: F811 (the imported fixture)
    from hub.api import create_app
    from hub.services.container import Hub
    from hub.settings import get_settings
    from tests.helpers import PICO_BASE_ID, make_peft_adapter
    from tests.services.util import files_of

    root = tmp_path_factory.mktemp("contract")
    hub = Hub(get_settings(data_dir=root / "data", hf_endpoint=fake_hub.url, hf_token=TOKEN, auth_fail_limit=0))
    alice, token = hub.users.create_token("alice")
    hub.base_models.register(PICO_BASE_ID, tiny_model.config.to_json_string().encode())
    hub.publisher.publish(alice, "alice/upper", files_of(make_peft_adapter(tiny_model, root / "a", seed=1)),
                          description="upper case")
    hub.search.search(None, "warm up", k=1)  # the query encoder's one-time export happens here, not in a case
    app = create_app(hub=hub, warm_index=False)
    app.state.contract_token = token
    yield app
    hub.close()


def _run(app, token: str | None) -> list[str]:
    """Every operation, MAX_EXAMPLES generated cases each; the failures as lines."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    checks = [not_a_server_error, status_code_conformance]
    failures: list[str] = []
    ops = [r.ok() for r in schema.get_all_operations()]
    assert len(ops) >= 30, [o.label for o in ops]
    for op in ops:

        @given(case=op.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            case.call_and_validate(headers=headers, checks=checks)

        try:
            run()
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - collect every operation's failures
            failures.append(f"{op.label}: {e}")
    return failures


@pytest.mark.parametrize("auth", ["anonymous", "token"])
def test_no_5xx_and_every_status_is_documented(contract_app, auth):
    failures = _run(contract_app, contract_app.state.contract_token if auth == "token" else None)
    assert not failures, "\n".join(failures)


def test_every_operation_has_a_row_in_the_responses_table(make_api):
    """A new route must say which errors it answers (hub.api.responses.ERRORS), and a removed one leaves no row."""
    from hub.api.responses import ERRORS

    doc = make_api().client.get("/openapi.json").json()
    ops = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    assert ops == set(ERRORS)
    assert doc["paths"]["/api/v1/adapters/{namespace}/{name}"]["get"]["responses"]["404"]["content"][
        "application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_clients_filter_names_are_the_routes_query_parameters(make_api):
    """LoomClient refuses a filter the server does not take; its lists must follow the routes' parameters."""
    from hub.client import LIST_FILTERS, SEARCH_FILTERS

    doc = make_api().client.get("/openapi.json").json()

    def params(path: str) -> set[str]:
        return {p["name"] for p in doc["paths"][path]["get"].get("parameters", []) if p["in"] == "query"}

    assert params("/api/v1/search") - {"q", "k", "rerank"} == set(SEARCH_FILTERS)
    assert params("/api/v1/adapters") - {"offset", "limit"} == set(LIST_FILTERS)
