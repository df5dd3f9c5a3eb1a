"""The official `openai` SDK under bounded load against routes whose backends fail.

Run by tests/gateway/failover.rs, which starts fault-injecting upstreams and a gateway with:
- `mix/`: two healthy backends among backends that refuse connections, answer 500, answer 429
  with retry-after, stall before the headers or before the first event;
- `mid/`: backends that send one chunk and then stall or reset;
- `down/`: backends that all refuse connections.
The SDK's own retries are off, so every failure the gateway lets through is seen here.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
HEALTHY = {"answer from good-a", "answer from good-b"}
MID_STREAM = {"partial from stall-mid", "partial from reset-mid"}
REQUESTS = 240
THREADS = 8


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-unused", max_retries=0, timeout=30)


def ask(client, i):
    """One request, streamed every other time; returns the whole answer text."""
    messages = [{"role": "user", "content": f"request {i}"}]
    if i % 2:
        stream = client.chat.completions.create(model="mix/m", messages=messages, stream=True)
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    r = client.chat.completions.create(model="mix/m", messages=messages)
    return r.choices[0].message.content


def test_every_request_that_can_be_saved_is_answered_by_one_healthy_backend(client):
    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(lambda i: ask(client, i), range(REQUESTS)))
    # One whole answer each, from one backend: nothing spliced, nothing lost.
    wrong = [(i, a) for i, a in enumerate(answers) if a not in HEALTHY]
    assert not wrong, wrong[:5]


def stream_until_error(client, i):
    stream = client.chat.completions.create(
        model="mid/m", messages=[{"role": "user", "content": f"s{i}"}], stream=True
    )
    text = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    return text, err.value


def test_a_backend_dying_mid_stream_gives_an_error_event_after_its_own_partial_answer(client):
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda i: stream_until_error(client, i), range(16)))
    for text, err in results:
        # Never restarted elsewhere: the content is the one backend's first chunk, then the error.
        assert text in MID_STREAM, text
        assert err.message


def test_a_route_with_no_backend_left_gets_the_openai_error(client):
    for _ in range(4):
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(
                model="down/m", messages=[{"role": "user", "content": "x"}]
            )
        assert err.value.status_code == 502
        assert err.value.body["code"] == "upstream_unreachable"
