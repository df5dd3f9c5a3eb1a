"""The official `openai` SDK against a live Switchyard, unmodified but for base_url.

Run by tests/gateway/python_sdk.rs, which starts the gateway with an `echo/` route (the echo
backend) and an `up/` route (an openai backend pointing back at the gateway, so `up/echo/...`
crosses a real HTTP hop and SSE relay before the echo backend answers).
"""

import os

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-unused", max_retries=0)


@pytest.mark.parametrize("model", ["echo/hello", "up/echo/hello"])
def test_chat(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello from python"}]
    )
    assert r.choices[0].message.content == "hello from python"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 3


@pytest.mark.parametrize("model", ["echo/hello", "up/echo/hello"])
def test_streaming_chat(client, model):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text == "one two three four"
    assert finish == "stop"
    assert usage.completion_tokens == 4


def test_extra_body_is_accepted(client):
    r = client.chat.completions.create(
        model="up/echo/hello",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"guided_json": {"type": "object"}, "top_k": 5},
    )
    assert r.choices[0].message.content == "x"


@pytest.mark.parametrize("model", ["echo/embed", "up/echo/embed"])
def test_embeddings(client, model):
    # The SDK asks for base64 by default and decodes it itself.
    r = client.embeddings.create(model=model, input=["alpha", "beta"])
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 8
    assert r.data[0].embedding != r.data[1].embedding
    floats = client.embeddings.create(model=model, input="alpha", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(r.data[0].embedding)


def test_models_list_and_retrieve(client):
    ids = [m.id for m in client.models.list()]
    assert ids == ["up/gpt-4o", "echo/hello"]
    assert client.models.retrieve("echo/hello").id == "echo/hello"


def test_unknown_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope/x", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"


def test_bad_request_raises_bad_request_error(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="echo/hello", messages=[{"role": "user", "content": "x"}], temperature="hot"
        )
    assert err.value.param == "temperature"
