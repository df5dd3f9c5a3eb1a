"""`/metrics` after a known load, parsed by Prometheus' own Python client (its OpenMetrics text
parser, which refuses malformed exposition).

Run by tests/gateway/observe.rs against a live gateway with `[metrics]` on (SWITCHYARD_BASE),
routes `echo/` (echo backend) and `up/`. What an operator would check on a dashboard: the
counts equal what was sent, and no label holds a key or a model name a client made up.
"""

import os

import httpx
from prometheus_client.openmetrics.parser import text_string_to_metric_families

BASE = os.environ["SWITCHYARD_BASE"]
SECRET = "sk-this-key-must-never-become-a-label"
UNKNOWN = "nobody/made-up-model-name"
PLAIN, STREAMED, NOT_FOUND = 5, 3, 2


def chat(model, stream=False):
    return {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": "one two three"}],
    }


def scrape(client):
    response = client.get(f"{BASE}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def value(families, family, sample, **labels):
    found = [
        s.value
        for s in families[family].samples
        if s.name == sample and s.labels == labels
    ]
    assert len(found) == 1, (family, sample, labels, families[family].samples)
    return found[0]


def send_the_load(client):
    for _ in range(PLAIN):
        assert client.post(f"{BASE}/v1/chat/completions", json=chat("echo/hello")).status_code == 200
    for _ in range(STREAMED):
        with client.stream("POST", f"{BASE}/v1/chat/completions", json=chat("echo/hello", True)) as r:
            assert r.status_code == 200
            assert b"[DONE]" in b"".join(r.iter_bytes())
    for _ in range(NOT_FOUND):
        assert client.post(f"{BASE}/v1/chat/completions", json=chat(UNKNOWN)).status_code == 404


def test_a_scrape_after_a_known_load_counts_exactly_what_was_sent():
    # One connection, one request at a time: each answer has ended before the next is sent.
    with httpx.Client(timeout=30, headers={"authorization": f"Bearer {SECRET}"}) as client:
        send_the_load(client)
        families = scrape(client)

    echo = {"route": "echo/"}
    answered = PLAIN + STREAMED
    assert value(families, "switchyard_requests", "switchyard_requests_total",
                 route="echo/", backend="echo", status="200") == answered
    assert value(families, "switchyard_requests", "switchyard_requests_total",
                 route="-", backend="-", status="404") == NOT_FOUND
    assert value(families, "switchyard_request_duration_seconds",
                 "switchyard_request_duration_seconds_count", **echo) == answered
    assert value(families, "switchyard_gateway_duration_seconds",
                 "switchyard_gateway_duration_seconds_count", **echo) == answered
    assert value(families, "switchyard_time_to_first_token_seconds",
                 "switchyard_time_to_first_token_seconds_count", **echo) == STREAMED
    # The echo backend has no upstream: no upstream time is recorded for it.
    upstream = families.get("switchyard_upstream_duration_seconds")
    assert upstream is None or not any(s.labels.get("route") == "echo/" for s in upstream.samples)
    # The scrape itself is the one request in flight; every stream has ended.
    assert value(families, "switchyard_requests_in_flight", "switchyard_requests_in_flight") == 1
    assert value(families, "switchyard_open_streams", "switchyard_open_streams") == 0

    # Nothing the client chose became a label.
    for family in families.values():
        for sample in family.samples:
            for label in sample.labels.values():
                assert SECRET not in label and "made-up" not in label, sample
