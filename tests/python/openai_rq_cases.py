"""The cases both Redis-transport interop tests run, through whichever client they are given.

The upstream (a wiremock server set up by tests/gateway/redis_transport.rs) answers:
- chat (non-stream): content "hello from upstream";
- chat with stream=true: SSE deltas "one ", "two ", "three";
- embeddings: one 3-dimensional vector;
- chat for model MISSING: 404 with an OpenAI error body;
- POST /v1/widgets/frobnicate?level=3: {"frobnicated": true} (an endpoint no SDK knows).
Every mock requires the worker's credential, so a passing case also shows the worker injected it.
"""

import httpx
import openai
import pytest


def check_chat(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}]
    )
    assert r.choices[0].message.content == "hello from upstream"
    assert r.choices[0].finish_reason == "stop"


def check_streaming_chat(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "count"}], stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three"


def check_embeddings(client, model):
    r = client.embeddings.create(model=model, input="abc")
    assert r.data[0].embedding == [0.25, 0.5, 0.75]


def check_4xx_passes_through(client, model):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 404
    assert err.value.body["code"] == "model_not_found"
    assert "no such model upstream" in err.value.body["message"]


def check_unknown_endpoint(client, model):
    r = client.post(
        "/widgets/frobnicate?level=3",
        body={"model": model, "size": 7},
        cast_to=httpx.Response,
    )
    assert r.status_code == 200
    assert r.json() == {"frobnicated": True}
