"""Gateway keys seen through the official `openai` SDK (issue 13's "Must show").

Run by tests/gateway/auth.rs against a gateway with `[auth]` on (SQLite store, then
PostgreSQL). `up/` is an openai backend whose fake upstream answers only when it receives the
project's credential (`SWITCHYARD_PROJECT_CREDENTIAL`); the Rust side then checks every request
it received carried that credential and nothing else.
"""

import os

import httpx
import openai
import pytest

BASE = os.environ["SWITCHYARD_BASE"]
ADMIN = {"Authorization": f"Bearer {os.environ['SWITCHYARD_ADMIN_TOKEN']}"}
CREDENTIAL = os.environ["SWITCHYARD_PROJECT_CREDENTIAL"]
MESSAGES = [{"role": "user", "content": "hi there"}]


def admin(method, path, json=None):
    r = httpx.request(method, f"{BASE}/admin/v1{path}", headers=ADMIN, json=json, timeout=10)
    r.raise_for_status()
    return r.json() if r.content else None


def sdk(key):
    return openai.OpenAI(base_url=f"{BASE}/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def project():
    p = admin("POST", "/projects", {"name": "team-a", "models": ["echo/", "up/"]})
    admin("PUT", f"/projects/{p['id']}/credentials/up", {"api_key": CREDENTIAL})
    return p["id"]


def key(project, **spec):
    return admin("POST", f"/projects/{project}/keys", spec)


def test_a_key_scoped_to_echo_answers_and_other_prefixes_are_forbidden(project):
    client = sdk(key(project, models=["echo/"])["key"])
    r = client.chat.completions.create(model="echo/hello", messages=MESSAGES)
    assert r.choices[0].message.content == "hi there"
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="up/gpt-4o", messages=MESSAGES)
    assert e.value.code == "model_not_permitted"
    # A model no route serves is refused the same way: scope first, routes never revealed.
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="other-team/secret-model", messages=MESSAGES)


def test_models_lists_only_what_the_key_may_use(project):
    echo_only = [m.id for m in sdk(key(project, models=["echo/"])["key"]).models.list()]
    assert echo_only == ["echo/hello"]
    both = sorted(m.id for m in sdk(key(project)["key"]).models.list())
    assert both == ["echo/hello", "up/gpt-4o"]


def test_unknown_missing_and_revoked_keys_are_authentication_errors(project):
    with pytest.raises(openai.AuthenticationError) as e:
        sdk("sk-sy-" + "A" * 54).chat.completions.create(model="echo/hello", messages=MESSAGES)
    assert e.value.code == "invalid_api_key"
    r = httpx.post(f"{BASE}/v1/chat/completions", json={"model": "echo/hello", "messages": MESSAGES})
    assert r.status_code == 401
    created = key(project)
    client = sdk(created["key"])
    client.chat.completions.create(model="echo/hello", messages=MESSAGES)
    admin("DELETE", f"/keys/{created['id']}")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="echo/hello", messages=MESSAGES)


def test_a_key_with_max_requests_3_answers_three_times_then_rate_limit(project):
    client = sdk(key(project, max_requests=3)["key"])
    for _ in range(3):
        client.chat.completions.create(model="echo/hello", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="echo/hello", messages=MESSAGES)
    assert e.value.code == "max_requests_reached"


def test_the_project_credential_reaches_the_upstream(project):
    # The fake upstream answers 200 only for `Bearer <project credential>`.
    r = sdk(key(project)["key"]).chat.completions.create(model="up/gpt-4o", messages=MESSAGES)
    assert r.choices[0].message.content == "from the upstream"


def test_a_key_is_shown_once_and_listed_only_by_its_prefix(project):
    created = key(project, name="ci")
    listed = admin("GET", f"/projects/{project}/keys")
    assert created["key"].startswith("sk-sy-") and created["key"].startswith(created["prefix"])
    assert created["key"] not in str(listed)
    assert any(k["id"] == created["id"] and k["prefix"] == created["prefix"] for k in listed)
