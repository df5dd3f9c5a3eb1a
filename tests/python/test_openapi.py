"""The OpenAPI document checked by an independent validator (`openapi-spec-validator`).

Run by tests/gateway/openapi.rs against a live gateway: SWITCHYARD_BASE is its base URL. Both
the committed `openapi/openapi.json` and what the gateway serves at `/openapi.json` must be
valid OpenAPI 3.1.
"""

import json
import os
import pathlib
import urllib.request

from openapi_spec_validator import OpenAPIV31SpecValidator, validate

ROOT = pathlib.Path(__file__).resolve().parents[2]


def served():
    with urllib.request.urlopen(f"{os.environ['SWITCHYARD_BASE']}/openapi.json", timeout=10) as r:
        assert r.status == 200
        assert r.headers["content-type"].startswith("application/json")
        return json.load(r)


def test_the_committed_document_is_valid_openapi_3_1():
    spec = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def test_the_served_document_is_valid_openapi_3_1():
    spec = served()
    validate(spec, cls=OpenAPIV31SpecValidator)
    # The live route table's models are the examples of the `model` field.
    model = spec["components"]["schemas"]["ChatCompletionRequest"]["properties"]["model"]
    assert "echo/hello" in model["examples"]


def test_the_validator_is_not_a_rubber_stamp():
    # The same document with one broken reference must be refused, or the tests above prove
    # nothing.
    spec = served()
    spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] = {"$ref": "#/components/schemas/NoSuchSchema"}
    try:
        validate(spec, cls=OpenAPIV31SpecValidator)
    except Exception as err:  # the validator's own error classes vary between versions
        assert "NoSuchSchema" in str(err)
    else:
        raise AssertionError("a dangling $ref was accepted")
