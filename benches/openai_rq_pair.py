"""Python side of benches/redis_hop.rs: the openai SDK calling the upstream directly, and
OpenAIRQ (openai-rq 0.1.2) calling it through Redis and whichever worker is running.

Usage: openai_rq_pair.py REDIS_URL UPSTREAM_BASE_URL N WARMUP. Prints JSON: p50 and p99 in ms.
"""

import json
import sys
import time

import openai
from openai_rq import OpenAIRQ

redis_url, upstream, n, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
MESSAGES = [{"role": "user", "content": "hi"}]


def pcts(samples):
    samples.sort()
    at = lambda q: samples[min(int(len(samples) * q), len(samples) - 1)]
    return [at(0.50) * 1e3, at(0.99) * 1e3]


def measure(call):
    samples = []
    for i in range(warmup + n):
        t = time.perf_counter()
        call()
        if i >= warmup:
            samples.append(time.perf_counter() - t)
    return pcts(samples)


def chat(client):
    r = client.chat.completions.create(model="m", messages=MESSAGES)
    assert r.choices[0].message.content


def stream(client):
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        if c.choices
    )
    assert text.startswith("token00")


direct = openai.OpenAI(base_url=upstream, api_key="x", max_retries=0)
rq = OpenAIRQ(redis_url=redis_url, timeout=30)
print(
    json.dumps(
        {
            "direct_chat": measure(lambda: chat(direct)),
            "direct_stream": measure(lambda: stream(direct)),
            "rq_chat": measure(lambda: chat(rq)),
            "rq_stream": measure(lambda: stream(rq)),
        }
    )
)
