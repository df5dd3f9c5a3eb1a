"""The gateway's own Files and Batches API through the official `openai` SDK, unmodified but
for base_url: upload a JSONL file, create a batch, poll it until it is done, download its
output and error files; on the echo backend and on an Ollama-backed route, neither of which
has a Batch API of its own.

Run by tests/gateway/own_batches.rs, which points `SWITCHYARD_MODELS` at the routes to try and
serves an Ollama-like upstream that fails any request saying "please fail" with a 500.
"""

import json
import os
import time

import openai
import pytest
from openai.types import Batch, FileDeleted, FileObject

BASE_URL = os.environ["SWITCHYARD_BASE_URL"]
MODELS = os.environ["SWITCHYARD_MODELS"].split(",")
# Bounded polling: a batch of a few lines on loopback is done in seconds.
DEADLINE_SECONDS = 60
ENDED = ("completed", "failed", "expired", "cancelled")

client = openai.OpenAI(base_url=BASE_URL, api_key="sk-team-a", max_retries=0)


def upload(lines):
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file = client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert file.purpose == "batch" and file.bytes == len(data)
    return file


def wait_until_done(batch):
    deadline = time.monotonic() + DEADLINE_SECONDS
    while batch.status not in ENDED:
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.1)
        batch = client.batches.retrieve(batch.id)
    return batch


def by_custom_id(file_id):
    if file_id is None:
        return {}
    text = client.files.content(file_id).text
    lines = [json.loads(line) for line in text.splitlines()]
    return {line["custom_id"]: line for line in lines}


def live(body):
    """What the live endpoint answers for `body`: (status, JSON body)."""
    try:
        reply = client.chat.completions.with_raw_response.create(**body)
        return reply.status_code, json.loads(reply.text)
    except openai.APIStatusError as err:
        return err.status_code, err.response.json()


def comparable(answer):
    """An answer without what differs between two runs of one request (ids, times)."""
    if "choices" not in answer:
        return answer
    return {"model": answer["model"], "choices": answer["choices"], "usage": answer.get("usage")}


@pytest.mark.parametrize("model", MODELS)
def test_a_whole_batch_answers_each_line_as_the_live_endpoint_does(model):
    # Arrange: four good lines and two bad ones (an invalid body, and one its upstream fails).
    bodies = {
        f"line-{i}": {"model": model, "messages": [{"role": "user", "content": f"hello {i}"}]}
        for i in range(4)
    }
    bodies["bad-body"] = {"model": model, "messages": "not a list"}
    if "ollama" in model:
        bodies["upstream-fails"] = {
            "model": model, "messages": [{"role": "user", "content": "please fail"}]
        }
    lines = [
        {"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}
        for cid, body in bodies.items()
    ]
    file = upload(lines)

    # Act
    batch = client.batches.create(
        input_file_id=file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    batch = wait_until_done(batch)

    # Assert: every line is in one of the two files, answered as the live endpoint answers it.
    assert batch.status == "completed", batch
    good = len(bodies) - (2 if "ollama" in model else 1)
    assert batch.request_counts.total == len(bodies)
    assert batch.request_counts.completed == good
    assert batch.request_counts.failed == len(bodies) - good
    outputs, errors = by_custom_id(batch.output_file_id), by_custom_id(batch.error_file_id)
    assert set(outputs) | set(errors) == set(bodies) and not set(outputs) & set(errors)
    for cid, body in bodies.items():
        line = outputs.get(cid) or errors[cid]
        status, answer = live(body)
        assert line["response"]["status_code"] == status, (cid, line)
        assert comparable(line["response"]["body"]) == comparable(answer), cid
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"]
        assert (cid in outputs) == (200 <= status < 300)
    assert errors["bad-body"]["response"]["status_code"] == 400
    if "ollama" in model:
        assert errors["upstream-fails"]["response"]["status_code"] == 500


def test_expiry_asked_at_upload_and_for_the_outputs_is_kept():
    data = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": MODELS[0], "messages": [{"role": "user", "content": "hi"}]}})
    file = client.files.create(
        file=("in.jsonl", data.encode()),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert file.expires_at == file.created_at + 3600
    batch = client.batches.create(
        input_file_id=file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": 7200},
    )
    output = client.files.retrieve(wait_until_done(batch).output_file_id)
    assert output.purpose == "batch_output"
    assert output.expires_at == output.created_at + 7200
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(
            file=("in.jsonl", data.encode()),
            purpose="batch",
            expires_after={"anchor": "created_at", "seconds": 60},
        )
    assert refused.value.body["param"] == "expires_after.seconds"


def test_the_sdks_own_types_validate_every_object_and_pages_follow_after():
    # Strict validation (the SDK itself only constructs): every field has OpenAI's type.
    file = upload([
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": MODELS[0], "messages": [{"role": "user", "content": "hi"}]}}
    ])
    raw = client.files.with_raw_response.retrieve(file.id)
    FileObject.model_validate_json(raw.text)
    ids = []
    for _ in range(3):
        batch = client.batches.create(
            input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        ids.append(batch.id)
        Batch.model_validate_json(client.batches.with_raw_response.retrieve(batch.id).text)
    done = wait_until_done(client.batches.retrieve(ids[-1]))
    Batch.model_validate_json(client.batches.with_raw_response.retrieve(done.id).text)
    # The SDK's auto-paging follows `after` = the last id, one batch per page.
    listed = [b.id for b in client.batches.list(limit=1)]
    assert listed[:3] == ids[::-1]
    assert file.id in [f.id for f in client.files.list(purpose="batch")]
    deleted = client.files.delete(file.id)
    FileDeleted.model_validate(deleted.model_dump())
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file.id)
