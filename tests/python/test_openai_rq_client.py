"""openai-rq 0.1.2's own client (`OpenAIRQ`) against `switchyard worker`.

Run by tests/gateway/redis_transport.rs, which starts redis-server, the upstream and the
worker, and passes REDIS_URL.
"""

import os

import pytest
from openai_rq import OpenAIRQ

import openai_rq_cases as cases

MODEL = "m-1"


@pytest.fixture(scope="module")
def client():
    return OpenAIRQ(redis_url=os.environ["REDIS_URL"], timeout=30)


def test_chat(client):
    cases.check_chat(client, MODEL)


def test_streaming_chat(client):
    cases.check_streaming_chat(client, MODEL)


def test_embeddings(client):
    cases.check_embeddings(client, MODEL)


def test_4xx_passes_through(client):
    cases.check_4xx_passes_through(client, "missing")


def test_unknown_endpoint_is_relayed(client):
    cases.check_unknown_endpoint(client, MODEL)
