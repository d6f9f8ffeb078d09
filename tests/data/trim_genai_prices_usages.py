"""Rebuild `genai_prices_usages.json` from genai-prices' `tests/dataset/usages.json` (see README.md).

    git -C <genai-prices checkout> show HEAD:tests/dataset/usages.json > usages.json
    python tests/data/trim_genai_prices_usages.py usages.json <commit>

Keeps the bodies that genai-prices' dataset prices with OpenAI's chat or Responses extractor or
Anthropic's default one, each with that extractor's provider and flavour; keeps only `model` and the
counts of `usage` (strings, booleans and lists, which no extractor reads, are dropped); merges
identical entries, counting them in `n`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

WANTED = (("openai", "chat"), ("openai", "responses"), ("anthropic", "default"))
SOURCE = "https://github.com/pydantic/genai-prices/blob/{commit}/tests/dataset/usages.json"


def counts(value: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a usage mapping, nested mappings included; nothing else."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            inner = counts(item)
            if inner:
                out[key] = inner
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out[key] = item
    return out


def main(path: str, commit: str) -> None:
    merged: dict[str, dict[str, Any]] = {}
    for entry in json.loads(Path(path).read_text()):
        priced = [
            (ex["provider_id"], ex["api_flavor"])
            for extracted in entry["extracted"]
            for ex in extracted["extractors"]
            if (ex["provider_id"], ex["api_flavor"]) in WANTED and "input_price" in ex
        ]
        if not priced:
            continue
        provider_id, api_flavor = priced[0]
        body = {"model": entry["body"]["model"], "usage": counts(entry["body"]["usage"])}
        item = {"provider_id": provider_id, "api_flavor": api_flavor, "body": body}
        key = json.dumps(item, sort_keys=True)
        merged.setdefault(key, {**item, "n": 0})["n"] += 1
    bodies = sorted(
        merged.values(), key=lambda e: (WANTED.index((e["provider_id"], e["api_flavor"])), e["body"]["model"])
    )
    out = {
        "source": SOURCE.format(commit=commit),
        "license": "MIT, Copyright (c) Pydantic Services Inc. 2025 to present (see README.md)",
        "bodies": bodies,
    }
    lines = ",\n".join(json.dumps(b, sort_keys=True) for b in bodies)
    head = json.dumps({k: v for k, v in out.items() if k != "bodies"}, indent=1)[:-2]
    target = Path(__file__).with_name("genai_prices_usages.json")
    target.write_text(f'{head},\n "bodies": [\n{lines}\n ]\n}}\n')
    assert json.loads(target.read_text()) == out


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
