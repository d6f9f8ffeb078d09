"""MLflow tracing: `@mlflow.trace`, traces written to a sqlite store by its background queue."""

from __future__ import annotations

import os

from harness import Kit, dist_version, quiet

NAME = "mlflow"
LABEL = "MLflow tracing"
PACKAGE = "mlflow"
DIST = "mlflow-skinny"
DISABLED_LABEL = "MLflow, tracing disabled"


def kit(enabled: bool = True) -> Kit:
    quiet("mlflow", "alembic", "sqlalchemy")
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(uri)
    if enabled:
        mlflow.config.enable_async_logging(True)
        mlflow.set_experiment("bench")
    else:
        mlflow.tracing.disable()

    def recorded() -> int | None:
        import sqlite3

        with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
            return int(db.execute("select count(*) from trace_info").fetchone()[0])

    return Kit(
        version=dist_version(DIST),
        config=(
            "@mlflow.trace; tracking URI sqlite:///<tmp>/mlflow.db, MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=true "
            "(traces written to sqlite by a background queue, which drops traces when full)"
            if enabled
            else "mlflow.tracing.disable()"
        ),
        sync=mlflow.trace,
        async_=mlflow.trace,
        gen=mlflow.trace,
        flush=mlflow.flush_trace_async_logging if enabled else None,
        recorded=recorded if enabled else None,
    )
