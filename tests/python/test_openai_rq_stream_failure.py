"""openai-rq 0.1.2's own client (`OpenAIRQ`) when `switchyard worker` ends a stream that had
already sent output with an error: the SDK must raise, not end quietly with a partial answer.

Run by tests/gateway/redis_transport.rs, which starts redis-server and the worker, and breaks
the upstream's stream after the text "partial "; it passes REDIS_URL.
"""

import os

import openai
import pytest
from openai_rq import OpenAIRQ


def test_a_stream_broken_after_partial_text_raises_an_api_error():
    client = OpenAIRQ(redis_url=os.environ["REDIS_URL"], timeout=30, max_retries=0)
    stream = client.chat.completions.create(
        model="m-1", messages=[{"role": "user", "content": "break"}], stream=True
    )
    text = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            if chunk.choices:
                text.append(chunk.choices[0].delta.content or "")
    assert "".join(text) == "partial "
    assert "openai-rq stream error" in err.value.message
