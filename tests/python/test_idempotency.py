"""`Idempotency-Key` through the official `openai` SDK, sent with `extra_headers` (the OpenAI
SDK has an `idempotency_key` option but never sends it: its client names no header for it).

Run by tests/gateway/idempotency.rs against a gateway with a store and an `up/` route to a
counting upstream; the Rust side checks that only the first request of each key reached it.
"""

import os
import uuid

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-client", max_retries=0)


def keyed(key):
    return {"Idempotency-Key": key}


def test_a_repeated_chat_is_answered_from_the_kept_answer(client):
    key = str(uuid.uuid4())
    first = client.chat.completions.with_raw_response.create(
        model="up/gpt-4o", messages=MESSAGES, extra_headers=keyed(key)
    )
    again = client.chat.completions.with_raw_response.create(
        model="up/gpt-4o", messages=MESSAGES, extra_headers=keyed(key)
    )
    assert first.headers.get("idempotent-replayed") is None
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parse().id == first.parse().id
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content

    with pytest.raises(openai.ConflictError) as refused:
        client.chat.completions.create(
            model="up/gpt-4o",
            messages=[{"role": "user", "content": "something else"}],
            extra_headers=keyed(key),
        )
    assert refused.value.code == "idempotency_key_reused"


def test_a_repeated_embedding_is_answered_from_the_kept_answer(client):
    key = str(uuid.uuid4())
    first = client.embeddings.create(model="up/e", input="hello", extra_headers=keyed(key))
    again = client.embeddings.create(model="up/e", input="hello", extra_headers=keyed(key))
    assert again.data[0].embedding == first.data[0].embedding


def test_a_stream_with_a_key_is_refused(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="up/gpt-4o", messages=MESSAGES, stream=True, extra_headers=keyed("k-stream")
        )
    assert refused.value.code == "idempotency_key_with_stream"
    assert refused.value.param == "stream"
