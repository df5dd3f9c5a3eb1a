"""The Responses API and legacy completions through Switchyard on backends without them.

Run by tests/gateway/responses.rs, which starts an Ollama-like upstream replaying the transcripts
of tests/fixtures/upstream/ollama (documented in its README) cut in the middle of every line,
and a gateway routing `local/` to it (`kind = "ollama"`) and `echo/` to the echo backend. The
official `openai` SDK and the OpenAI Agents SDK are used unmodified but for their base URL;
what they read must be exactly what the transcript says (computed here from the files).
"""

import asyncio
import json
import os
from pathlib import Path

import openai
import pytest
from agents import Agent, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.models.multi_provider import MultiProvider

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
FIXTURES = Path(os.environ["OLLAMA_FIXTURES"])

# The Agents SDK would upload traces to OpenAI; nothing here leaves the loopback.
set_tracing_disabled(True)


def transcript(name):
    """Text (chat `message.content` or generate `response` pieces) and last line."""
    text, last = "", None
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            last = json.loads(line)
            text += last.get("message", {}).get("content", "") or last.get("response", "")
    return text, last


def calls_of(name):
    """The tool calls of a transcript: (name, arguments object) in order."""
    calls = []
    for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines():
        if line.strip():
            for call in json.loads(line).get("message", {}).get("tool_calls", []):
                calls.append((call["function"]["name"], call["function"]["arguments"]))
    return calls


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-unused", max_retries=0)


TOOLS = [
    {
        "type": "function",
        "name": "get_current_weather",
        "description": "Get the current weather for a location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "format": {"type": "string"}},
            "required": ["location", "format"],
        },
    }
]


def test_a_plain_response_has_the_transcripts_text_and_usage(client):
    text, done = transcript("chat.json")
    r = client.responses.create(model="local/llama3.2", input="Hello!", instructions="Be kind.")
    assert isinstance(r, openai.types.responses.Response)
    assert r.status == "completed"
    assert r.model == "local/llama3.2"
    assert r.output_text == text
    assert r.usage.input_tokens == done["prompt_eval_count"]
    assert r.usage.output_tokens == done["eval_count"]
    assert r.usage.total_tokens == done["prompt_eval_count"] + done["eval_count"]


def test_a_streamed_response_parses_every_event_and_ends_with_the_whole_response(client):
    text, done = transcript("chat_stream.ndjson")
    stream = client.responses.create(model="local/llama3.2", input="Why?", stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    # Every event is one of the SDK's typed events, not a raw dict.
    assert all(type(e).__module__.startswith("openai.types.responses") for e in events)
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == text
    final = events[-1].response
    assert final.output_text == text
    assert final.usage.input_tokens == done["prompt_eval_count"]
    assert final.usage.output_tokens == done["eval_count"]


def test_the_stream_helper_accumulates_the_same_response(client):
    text, _ = transcript("chat_stream.ndjson")
    with client.responses.stream(model="local/llama3.2", input="Why?") as stream:
        final = stream.get_final_response()
    assert final.output_text == text


@pytest.mark.parametrize("stream", [False, True])
def test_a_function_tool_round_trip(client, stream):
    call_transcript = "chat_tools_stream.ndjson" if stream else "chat_tools.json"
    answer_transcript = "chat_stream.ndjson" if stream else "chat.json"
    expected_calls = calls_of(call_transcript)
    history = [{"role": "user", "content": "What is the weather in Paris?"}]

    def create(input_items):
        if not stream:
            return client.responses.create(
                model="local/llama3.2-tools", input=input_items, tools=TOOLS
            )
        with client.responses.stream(
            model="local/llama3.2-tools", input=input_items, tools=TOOLS
        ) as s:
            return s.get_final_response()

    # The model's function calls, as the transcript has them.
    first = create(history)
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == expected_calls
    assert all(c.call_id for c in calls)
    assert len({c.call_id for c in calls}) == len(calls)
    # The client runs them and sends the outputs back; the model answers.
    history += [c.model_dump(exclude_none=True) for c in calls]
    history += [
        {"type": "function_call_output", "call_id": c.call_id, "output": "22 degrees"}
        for c in calls
    ]
    final = create(history)
    assert final.output_text == transcript(answer_transcript)[0]


def test_a_stream_that_fails_midway_raises_after_response_failed(client):
    stream = client.responses.create(model="local/broken", input="hi", stream=True)
    seen = []
    with pytest.raises(openai.APIError) as raised:
        for event in stream:
            seen.append(event.type)
    assert "an error was encountered while running the model" in str(raised.value)
    assert seen[-1] == "response.failed"
    assert "response.completed" not in seen


def test_stored_state_is_refused_with_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="local/llama3.2", input="hi", previous_response_id="resp_1")
    assert raised.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="local/llama3.2", input="hi", store=True)
    assert raised.value.body["param"] == "store"


def test_legacy_completions_on_ollama_plain_and_streamed(client):
    text, done = transcript("generate.json")
    c = client.completions.create(model="local/llama3.2", prompt="Why is the sky blue?")
    assert c.object == "text_completion"
    assert c.choices[0].text == text
    assert c.usage.prompt_tokens == done["prompt_eval_count"]
    assert c.usage.completion_tokens == done["eval_count"]
    text, done = transcript("generate_stream.ndjson")
    chunks = list(
        client.completions.create(
            model="local/llama3.2",
            prompt="Why?",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == text
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    assert chunks[-1].usage.completion_tokens == done["eval_count"]
    assert chunks[-1].usage.prompt_tokens == done["prompt_eval_count"]


def test_the_echo_backend_answers_both_apis(client):
    r = client.responses.create(model="echo/x", input="hello brave world")
    assert r.output_text == "hello brave world"
    assert r.usage.output_tokens == 3
    events = list(client.responses.create(model="echo/x", input="hello brave world", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == (
        "hello brave world"
    )
    assert events[-1].response.usage.output_tokens == 3
    c = client.completions.create(model="echo/x", prompt="say this")
    assert c.choices[0].text == "say this"
    assert c.usage.completion_tokens == 2
    chunks = list(
        client.completions.create(
            model="echo/x", prompt="say this", stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "say this"
    assert chunks[-1].usage.total_tokens == 4


def test_the_agents_sdk_runs_one_turn_with_a_function_tool():
    calls = []

    @function_tool
    def get_current_weather(location: str, format: str) -> str:
        """Get the current weather for a location."""
        calls.append((location, format))
        return "22 degrees"

    agent = Agent(
        name="weather",
        instructions="Answer with the weather.",
        model="local/llama3.2-tools",
        tools=[get_current_weather],
    )
    # The Agents SDK reads `local/` as a provider prefix of its own; `model_id` passes the
    # whole name to the OpenAI provider, i.e. to the gateway.
    provider = MultiProvider(
        openai_client=openai.AsyncOpenAI(base_url=BASE_URL, api_key="sk-unused", max_retries=0),
        unknown_prefix_mode="model_id",
    )
    result = asyncio.run(
        Runner.run(agent, "Weather in Paris?", run_config=RunConfig(model_provider=provider))
    )
    expected = [(a["location"], a["format"]) for _, a in calls_of("chat_tools.json")]
    assert calls == expected
    assert result.final_output == transcript("chat.json")[0]
    # Two model calls (the tool call, then the answer), both through the Responses API.
    assert [r.response_id[:5] for r in result.raw_responses] == ["resp_", "resp_"]
