"""The official OpenAI SDK against Switchyard's `redis` backend, answered by openai-rq 0.1.2's
own worker (`openai-rq worker`).

Run by tests/gateway/redis_transport.rs, which starts redis-server, the upstream, the Python
worker and the gateway (route prefix `dc/`), and passes SWITCHYARD_BASE_URL.
"""

import os

import openai
import pytest

import openai_rq_cases as cases

MODEL = "dc/m-1"


@pytest.fixture(scope="module")
def client():
    return openai.OpenAI(
        base_url=os.environ["SWITCHYARD_BASE_URL"],
        api_key="sk-client-key-never-in-redis",
        max_retries=0,
        timeout=30,
    )


def test_chat(client):
    cases.check_chat(client, MODEL)


def test_streaming_chat(client):
    cases.check_streaming_chat(client, MODEL)


def test_embeddings(client):
    cases.check_embeddings(client, MODEL)


def test_4xx_passes_through(client):
    cases.check_4xx_passes_through(client, "dc/missing")


def test_unknown_endpoint_is_relayed(client):
    cases.check_unknown_endpoint(client, MODEL)
