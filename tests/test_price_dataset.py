"""Real provider usage bodies (genai-prices' own dataset, `tests/data/README.md`): tracked prices each one
exactly as genai-prices' own `extract_usage` + `calc_price` does, with the same installed version.

The bodies are as genai-prices keeps them, `{"model", "usage"}`: no `object` or `type` field tells the API
apart, so tracked reads each by its shape alone, as it would a dict a user's function returned.
"""

from __future__ import annotations

import collections
import json
import warnings
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from workloads import finished_call

DATASET = json.loads((Path(__file__).parent / "data" / "genai_prices_usages.json").read_text())
BODIES: list[dict[str, Any]] = DATASET["bodies"]


def genai_prices_cost(entry: dict[str, Any]) -> float:
    """The cost genai-prices computes from the raw body, with the extractor its dataset prices it by."""
    extracted = genai_prices.extract_usage(
        entry["body"], provider_id=entry["provider_id"], api_flavor=entry["api_flavor"]
    )
    return float(extracted.calc_price().total_price)


def test_the_dataset_holds_the_bodies_the_issue_counted():
    """The trimmed copy holds the 644 OpenAI chat, OpenAI Responses and Anthropic bodies of genai-prices'
    dataset (183, 235, 226), with their source and license noted."""
    counts = collections.Counter()
    for entry in BODIES:
        counts[entry["provider_id"], entry["api_flavor"]] += entry["n"]
    assert counts == {("openai", "chat"): 183, ("openai", "responses"): 235, ("anthropic", "default"): 226}
    assert DATASET["source"].startswith("https://github.com/pydantic/genai-prices/blob/")
    assert DATASET["license"].startswith("MIT")


@pytest.mark.parametrize(
    "entry",
    BODIES,
    ids=[f"{e['provider_id']}-{e['api_flavor']}-{e['body']['model']}-{i}" for i, e in enumerate(BODIES)],
)
def test_tracked_prices_every_real_body_as_genai_prices_does(entry):
    """A real body returned by a tracked function costs what genai-prices computes from it, tokens included."""
    body = json.loads(json.dumps(entry["body"]))  # a fresh copy: nothing read may change the dataset
    want = genai_prices_cost(entry)
    extracted = genai_prices.extract_usage(body, provider_id=entry["provider_id"], api_flavor=entry["api_flavor"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call = finished_call(body)
    assert (call.tokens_in, call.tokens_out) == (extracted.usage.input_tokens, extracted.usage.output_tokens)
    assert call.cost_source.startswith("genai-prices ")
    assert call.cost_usd == pytest.approx(want, rel=1e-9, abs=1e-15)
