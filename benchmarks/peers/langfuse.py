"""Langfuse: `@observe()` with dummy keys and its exporter on the dead loopback port."""

from __future__ import annotations

import os

from harness import Kit, dist_version, quiet

NAME = "langfuse"
LABEL = "Langfuse"
PACKAGE = "langfuse"
DIST = "langfuse"
DISABLED_LABEL = "Langfuse, tracing disabled"


def kit(enabled: bool = True) -> Kit:
    if not enabled:
        os.environ["LANGFUSE_TRACING_ENABLED"] = "false"
    quiet("langfuse", "opentelemetry", "urllib3", "requests")
    from langfuse import get_client, observe

    client = get_client()
    return Kit(
        version=dist_version(DIST),
        config=(
            "@observe(); dummy keys, LANGFUSE_HOST=http://127.0.0.1:9 (nothing listens): spans are made and "
            "batched, export fails and is retried in the background, full queues drop spans"
            if enabled
            else "LANGFUSE_TRACING_ENABLED=false"
        ),
        sync=observe(),
        async_=observe(),
        gen=observe(),
        flush=client.flush if enabled else None,
    )
