"""Opik: `@opik.track`, its backend on the dead loopback port (Opik has no local store)."""

from __future__ import annotations

import os

from harness import Kit, dist_version, quiet

NAME = "opik"
LABEL = "Opik"
PACKAGE = "opik"
DIST = "opik"
DISABLED_LABEL = "Opik, tracking disabled"


def kit(enabled: bool = True) -> Kit:
    if not enabled:
        os.environ["OPIK_TRACK_DISABLE"] = "true"
    quiet("opik", "urllib3", "httpx")
    import opik

    return Kit(
        version=dist_version(DIST),
        config=(
            "@opik.track; OPIK_URL_OVERRIDE=http://127.0.0.1:9/api (Opik has no local store: its local mode "
            "is a local server); messages are queued and sent by background workers, which fail"
            if enabled
            else "OPIK_TRACK_DISABLE=true"
        ),
        sync=opik.track,
        async_=opik.track,
        gen=opik.track,
        flush=opik.flush_tracker if enabled else None,
    )
