"""W&B Weave: `@weave.op`, every call written to Weave's local write-ahead log and never sent."""

from __future__ import annotations

import os
from pathlib import Path

from harness import Kit, dist_version, quiet

NAME = "weave"
LABEL = "W&B Weave"
PACKAGE = "weave"
DIST = "weave"
DISABLED_LABEL = "W&B Weave, disabled"


def kit(enabled: bool = True) -> Kit:
    if not enabled:
        os.environ["WEAVE_DISABLED"] = "true"
    quiet("weave")
    import weave
    from weave.trace import weave_client, weave_init
    from weave.trace.context import weave_client_context

    if enabled:
        # weave.init() needs a W&B login and the trace server's version: neither exists offline. The
        # client is made as weave.init() makes it, with the server on the dead port and the
        # write-ahead log on (every call written to a JSONL file under HOME, the sender off).
        client = weave_client.WeaveClient(
            "bench", "bench", weave_init.init_weave_get_server(None), ensure_project_exists=False
        )
    else:
        client = weave_init.init_weave_disabled()
    weave_client_context.set_weave_client_global(client)

    def recorded() -> int | None:
        wal = Path.home() / ".weave" / "wal"
        n = 0
        for path in wal.rglob("*.jsonl"):
            with open(path, "rb") as fh:
                n += sum(1 for line in fh if b'"call_end"' in line)
        return n

    return Kit(
        version=dist_version(DIST),
        config=(
            "@weave.op; WeaveClient made without weave.init() (which needs a W&B login and a live server): "
            "trace server on http://127.0.0.1:9, WEAVE_ENABLE_WAL=true + WEAVE_DISABLE_WAL_SENDER=true, so "
            "every call is written to Weave's local write-ahead log and never sent"
            if enabled
            else "WEAVE_DISABLED=true (weave.init's disabled client)"
        ),
        sync=weave.op,
        async_=weave.op,
        gen=weave.op,
        flush=client.flush if enabled else None,
        recorded=recorded if enabled else None,
    )
