"""The official `openai` SDK over HTTPS, trusting only the test CA in SWITCHYARD_CA (made at
test time by tests/gateway/tls.rs). Run before and after the certificate files are replaced."""

import os

import httpx
import openai

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
CA = os.environ["SWITCHYARD_CA"]


def test_chat_and_stream_over_https_with_the_test_ca():
    client = openai.OpenAI(
        base_url=BASE_URL,
        api_key="sk-unused",
        max_retries=0,
        http_client=httpx.Client(verify=CA),
    )
    r = client.chat.completions.create(
        model="echo/hello", messages=[{"role": "user", "content": "over tls"}]
    )
    assert r.choices[0].message.content == "over tls"
    stream = client.chat.completions.create(
        model="echo/hello", messages=[{"role": "user", "content": "one two"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two"


def test_a_client_that_does_not_trust_the_ca_is_refused():
    client = openai.OpenAI(base_url=BASE_URL, api_key="sk-unused", max_retries=0)
    try:
        client.models.list()
    except openai.APIConnectionError:
        return
    raise AssertionError("the system trust store accepted the test certificate")
