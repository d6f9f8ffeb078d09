"""logfire: `@logfire.instrument()` and `logfire.instrument_openai(client)`, nothing sent, every
finished span counted by a local exporter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import Kit, dist_version, quiet

NAME = "logfire"
LABEL = "logfire"
PACKAGE = "logfire"
DIST = "logfire"
DISABLED_LABEL = None  # logfire has no switch that turns its instrumentation off
CONFIG = (
    "logfire.configure(send_to_logfire=False, console=False) + an OTel BatchSpanProcessor whose exporter "
    "counts the spans"
)


def _configure() -> Callable[[], int]:
    """logfire configured locally; what its counting exporter has seen so far (after a flush)."""
    import logfire
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class LocalExporter(SpanExporter):
        """Takes every finished span and keeps only a count: the cheapest local output."""

        count = 0

        def export(self, spans: Any) -> SpanExportResult:
            LocalExporter.count += len(spans)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    quiet("opentelemetry")
    logfire.configure(
        send_to_logfire=False,
        console=False,
        service_name="bench",
        additional_span_processors=[BatchSpanProcessor(LocalExporter())],
    )
    return lambda: LocalExporter.count


def kit() -> Kit:
    import logfire

    counted = _configure()
    return Kit(
        version=dist_version(DIST),
        config=CONFIG + "; @logfire.instrument() (allow_generator=True for the generator)",
        sync=lambda fn: logfire.instrument()(fn),
        async_=lambda fn: logfire.instrument()(fn),
        gen=lambda fn: logfire.instrument(allow_generator=True)(fn),
        flush=lambda: logfire.force_flush(timeout_millis=30_000),
        recorded=counted,
    )


def instrument_openai(client: Any) -> tuple[str, Callable[[], int], Callable[[], Any]]:
    """`logfire.instrument_openai(client)`, logfire configured as in `kit()`: its configuration,
    the number of spans exported so far (after a flush), and the flush."""
    import logfire

    counted = _configure()
    logfire.instrument_openai(client)

    def flush() -> Any:
        return logfire.force_flush(timeout_millis=30_000)

    def recorded() -> int:
        flush()
        return counted()

    return CONFIG + "; logfire.instrument_openai(client)", recorded, flush
