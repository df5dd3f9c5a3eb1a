"""The official `openai` SDK against a Switchyard route to an Ollama server (native API).

Run by tests/gateway/ollama.rs, which starts an Ollama-like upstream replaying the transcripts
of tests/fixtures/upstream/ollama (documented in its README) cut in the middle of every line,
and a gateway routing `local/` to it with `kind = "ollama"`. What the SDK reads must be exactly
what the transcript says: the expectations are computed here from the fixture files.
"""

import base64
import json
import os
import struct
from pathlib import Path

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
FIXTURES = Path(os.environ["OLLAMA_FIXTURES"])


def transcript(name):
    """Text, done_reason and token counts of an Ollama transcript (one JSON object per line)."""
    text, done = "", None
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        text += obj.get("message", {}).get("content", "")
        if obj.get("done"):
            done = obj
    return text, done


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-unused", max_retries=0)


def test_stream_gives_exactly_the_transcripts_text_finish_reason_and_usage(client):
    text, done = transcript("chat_stream.ndjson")
    stream = client.chat.completions.create(
        model="local/llama3.2",
        messages=[{"role": "user", "content": "Why is the sky blue?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    got, finish, usage, ids, roles = "", [], None, set(), []
    for chunk in stream:
        ids.add(chunk.id)
        assert chunk.model == "local/llama3.2"
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            delta = chunk.choices[0].delta
            if delta.role:
                roles.append(delta.role)
            got += delta.content or ""
            if chunk.choices[0].finish_reason:
                finish.append(chunk.choices[0].finish_reason)
        if chunk.usage:
            usage = chunk.usage
    assert got == text
    assert finish == [done["done_reason"]]
    assert roles == ["assistant"]
    assert len(ids) == 1
    assert usage.prompt_tokens == done["prompt_eval_count"]
    assert usage.completion_tokens == done["eval_count"]
    assert usage.total_tokens == done["prompt_eval_count"] + done["eval_count"]


def test_chat_completion(client):
    text, done = transcript("chat.json")
    r = client.chat.completions.create(
        model="local/llama3.2", messages=[{"role": "user", "content": "Hello!"}]
    )
    assert r.model == "local/llama3.2"
    assert r.choices[0].message.content == text
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (
        done["prompt_eval_count"],
        done["eval_count"],
    )


def test_tool_calls(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_current_weather",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
            },
        }
    ]
    messages = [{"role": "user", "content": "What is the weather today in Paris?"}]
    r = client.chat.completions.create(model="local/llama3.2-tools", messages=messages, tools=tools)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "get_current_weather"
    assert json.loads(call.function.arguments) == {"format": "celsius", "location": "Paris, FR"}

    # The same, streamed: the SDK's own accumulation of tool-call deltas.
    stream = client.chat.completions.create(
        model="local/llama3.2-tools", messages=messages, tools=tools, stream=True
    )
    calls, finish = {}, None
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = delta.id or entry["id"]
            entry["name"] += delta.function.name or ""
            entry["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [json.loads(c["arguments"])["location"] for _, c in sorted(calls.items())] == [
        "Paris, FR",
        "Lyon, FR",
    ]
    assert all(c["id"].startswith("call_") for c in calls.values())


def test_embeddings_decode_to_the_transcripts_floats(client):
    expected = json.loads((FIXTURES / "embed_multiple.json").read_text())["embeddings"]
    as_f32 = [[struct.unpack("<f", struct.pack("<f", x))[0] for x in v] for v in expected]
    # The SDK asks for base64 by default and decodes it itself.
    r = client.embeddings.create(model="local/all-minilm", input=["a", "b"])
    assert [d.index for d in r.data] == [0, 1]
    assert [d.embedding for d in r.data] == as_f32
    raw = client.embeddings.with_raw_response.create(
        model="local/all-minilm", input=["a", "b"], encoding_format="base64"
    )
    first = json.loads(raw.text)["data"][0]["embedding"]
    assert list(struct.unpack(f"<{len(expected[0])}f", base64.b64decode(first))) == as_f32[0]


def test_missing_model_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(
            model="local/missing", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"
    assert "missing" in err.value.message


def test_error_mid_stream_raises_with_ollamas_message(client):
    stream = client.chat.completions.create(
        model="local/broken", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    got = ""
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            if chunk.choices:
                got += chunk.choices[0].delta.content or ""
    assert got == "The sky"
    assert "an error was encountered while running the model" in err.value.message
