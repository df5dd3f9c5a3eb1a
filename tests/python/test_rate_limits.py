"""The gateway's rate limits seen through the official `openai` SDK (issue 15's "Must show").

Run by tests/gateway/rate_limits.rs: `limited/` is an echo route allowing 2 requests a minute;
`busy/` is an openai backend whose upstream answers its own 429, which must pass unchanged.
"""

import os
import re

import openai
import pytest

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
MESSAGES = [{"role": "user", "content": "hi"}]
# OpenAI's reset format (Go durations): "120ms", "1s", "6m0s", "1h2m3s".
RESET = re.compile(r"(\d+h)?(\d+m)?\d+(ms|s)")


@pytest.fixture(scope="module")
def client():
    # No retries: the SDK would otherwise wait out `retry-after` and try again.
    return openai.OpenAI(base_url=BASE_URL, api_key="sk-unused", max_retries=0)


def test_the_limit_raises_rate_limit_error_with_openai_headers(client):
    for left in ["1", "0"]:
        raw = client.chat.completions.with_raw_response.create(
            model="limited/hi", messages=MESSAGES
        )
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-remaining-requests"] == left
        assert RESET.fullmatch(raw.headers["x-ratelimit-reset-requests"])
        assert raw.parse().choices[0].message.content == "hi"

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="limited/hi", messages=MESSAGES)

    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    headers = error.response.headers
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert RESET.fullmatch(headers["x-ratelimit-reset-requests"])
    assert 1 <= int(headers["retry-after"]) <= 30


def test_an_upstreams_own_429_passes_through_unchanged(client):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="busy/gpt-4o", messages=MESSAGES)

    error = caught.value
    assert "upstream says slow down" in error.message
    assert error.response.headers["x-ratelimit-limit-requests"] == "500"
    assert error.response.headers["retry-after"] == "7"
