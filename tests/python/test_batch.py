"""The `batch` backend through the official `openai` SDK: ordinary calls to a batch route are
answered, each client with its own line, once the gateway's batches are done.

Run by tests/gateway/batch.rs against a gateway whose `cheap/` route is a batch backend on a
fake Files + Batches upstream (see tests/gateway/support/batch_upstream.rs for its scripted
misbehaviour); the Rust side checks afterwards that no request reached the upstream twice.
"""

import asyncio
import os

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
# The SDK's default timeout is 600 s; a batch route may answer hours later, so set it long.
TIMEOUT = 120


def client(key):
    return openai.AsyncOpenAI(base_url=BASE_URL, api_key=key, max_retries=0, timeout=TIMEOUT)


async def chat(c, model, text):
    reply = await c.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content


def test_two_hundred_clients_over_two_models_and_two_keys_get_their_own_answers():
    async def main():
        clients = [client("sk-a"), client("sk-b")]
        models = ["cheap/gpt-a", "cheap/gpt-b"]
        calls = [
            chat(clients[i % 2], models[(i // 2) % 2], f"client-{i}") for i in range(200)
        ]
        embeds = [
            clients[i % 2].embeddings.create(model="cheap/emb", input=f"embed-{i:03}")
            for i in range(10)
        ]
        answers = await asyncio.gather(*calls)
        vectors = await asyncio.gather(*embeds)
        return answers, vectors

    answers, vectors = asyncio.run(main())
    assert answers == [f"echo: client-{i}" for i in range(200)]
    # The fake puts the input's length first: each embedding is its own request's.
    assert [v.data[0].embedding[0] for v in vectors] == [9.0] * 10


def test_error_file_lines_and_lost_lines_fail_as_openai_errors():
    async def main():
        c = client("sk-a")
        return await asyncio.gather(
            chat(c, "cheap/gpt-c", "FAIL-1"),
            chat(c, "cheap/gpt-c", "LOSE-1"),
            chat(c, "cheap/gpt-c", "fine-c"),
            return_exceptions=True,
        )

    failed, lost, fine = asyncio.run(main())
    assert isinstance(failed, openai.BadRequestError), failed
    assert failed.status_code == 400 and failed.code == "bad_line"
    assert isinstance(lost, openai.APIStatusError) and lost.status_code == 502, lost
    assert lost.code == "batch_line_unanswered"
    assert fine == "echo: fine-c"


def test_an_expired_batch_answers_its_finished_lines_and_fails_the_rest():
    async def main():
        c = client("sk-b")
        return await asyncio.gather(
            chat(c, "cheap/gpt-d", "EXPIRE-1"),
            chat(c, "cheap/gpt-d", "fine-d"),
            return_exceptions=True,
        )

    unfinished, fine = asyncio.run(main())
    assert isinstance(unfinished, openai.APIStatusError) and unfinished.status_code == 502
    assert "expired" in unfinished.message
    assert fine == "echo: fine-d"


def test_a_batch_the_upstream_refuses_fails_its_clients_instead_of_hanging():
    sync = openai.OpenAI(base_url=BASE_URL, api_key="sk-a", max_retries=0, timeout=TIMEOUT)
    with pytest.raises(openai.APIStatusError) as refused:
        sync.chat.completions.create(
            model="cheap/refused", messages=[{"role": "user", "content": "refused-1"}]
        )
    assert refused.value.status_code == 502 and refused.value.code == "batch_refused"


def test_the_responses_api_is_batched_too():
    sync = openai.OpenAI(base_url=BASE_URL, api_key="sk-a", max_retries=0, timeout=TIMEOUT)
    response = sync.responses.create(model="cheap/gpt-a", input="responses-1")
    assert response.output_text == "echo: responses-1"


def test_a_stream_is_refused_with_a_clear_400():
    sync = openai.OpenAI(base_url=BASE_URL, api_key="sk-a", max_retries=0, timeout=TIMEOUT)
    with pytest.raises(openai.BadRequestError) as refused:
        sync.chat.completions.create(
            model="cheap/gpt-a", messages=[{"role": "user", "content": "x"}], stream=True
        )
    assert refused.value.param == "stream"
