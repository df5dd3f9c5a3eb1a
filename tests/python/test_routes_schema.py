"""routes.toml's JSON Schema, checked by an independent validator (the `jsonschema` package).

The schema must accept the shipped routes.toml and every ```toml example of the README, and
refuse each file that `switchyard check` refuses for a shape reason (unknown key, wrong type,
unknown kind, a key of another kind). The check half runs the real binary on the same text, so
the two can never drift apart silently.

Environment: SWITCHYARD_SCHEMA (the schema file), SWITCHYARD_BIN (the binary), SWITCHYARD_ROOT.
"""

import json
import os
import re
import subprocess
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(os.environ["SWITCHYARD_ROOT"])
SCHEMA = json.loads(Path(os.environ["SWITCHYARD_SCHEMA"]).read_text())
BIN = os.environ["SWITCHYARD_BIN"]
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def errors(text: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(tomllib.loads(text))]


def check(text: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "routes.toml"
        path.write_text(text)
        env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_CONFIG"}
        return subprocess.run([BIN, "check", str(path)], capture_output=True, text=True, env=env,
                              timeout=60)


def readme_examples() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```toml\n(.*?)```", readme, flags=re.S)


def test_the_schema_itself_is_valid_draft_7():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_the_shipped_routes_toml_is_valid():
    assert errors((ROOT / "routes.toml").read_text()) == []


def test_every_readme_example_is_valid():
    examples = readme_examples()
    assert len(examples) >= 3, "the README's ```toml examples were not found"
    for example in examples:
        assert errors(example) == [], example


GOOD = """
[backends.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[routes]]
prefix = "up/"
backend = "up"
"""

# Each: (what is wrong, the file). All of them are refused by `check` for their shape.
SHAPE_FAULTS = [
    ("unknown top-level key", GOOD + "\n[limits]\nrpm = 3\n"),
    ("unknown backend key", GOOD.replace('kind = "openai"', 'kind = "openai"\nretries = 3')),
    ("unknown route key", GOOD + 'weight = 2\n'),
    ("unknown server key", "[server]\nlisten_addr = \"127.0.0.1:1\"\n" + GOOD),
    ("unknown kind", GOOD.replace('kind = "openai"', 'kind = "vllm"')),
    ("wrong type: bool as string", GOOD + 'strip_prefix = "yes"\n'),
    ("wrong type: models not a list", GOOD + 'models = "gpt-4o"\n'),
    ("wrong type: workers as string", "[server]\nworkers = \"2\"\n" + GOOD),
    ("wrong type: headers as list", GOOD.replace('kind = "openai"', 'kind = "openai"\nheaders = ["a"]')),
    ("a key of another kind", GOOD.replace('kind = "openai"', 'kind = "openai"\nredis_url = "redis://x"')),
    ("echo with a base_url", GOOD.replace('kind = "openai"', 'kind = "echo"')),
    ("http kind without base_url", GOOD.replace('base_url = "http://127.0.0.1:9/v1"', "")),
    ("redis without redis_url", GOOD.replace('kind = "openai"\nbase_url = "http://127.0.0.1:9/v1"', 'kind = "redis"')),
    ("duration that is not one", GOOD.replace('kind = "openai"', 'kind = "openai"\nconnect_timeout = "soon"')),
    ("route without backend", GOOD.replace('backend = "up"', "")),
]


def test_the_good_base_passes_both():
    assert errors(GOOD) == []
    assert check(GOOD).returncode == 0


@pytest.mark.parametrize("what,text", SHAPE_FAULTS, ids=[w for w, _ in SHAPE_FAULTS])
def test_check_and_the_schema_both_refuse_shape_faults(what, text):
    result = check(text)
    assert result.returncode == 1, f"check accepted {what}:\n{result.stdout}"
    assert errors(text), f"the schema accepted {what}"
