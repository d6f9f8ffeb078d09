"""Cost in USD from the maintained `genai-prices` data, overrides, and local providers.

`genai_prices.calc_price` is too slow for every call (benchmarks/README.md has the figures). Prices are linear below a
model's first tier, so for each (provider, model) the rates are read once by pricing unit usages
with `genai-prices` itself, and a call's cost is then a few multiplications: uncached input,
output, cache reads, 5-minute and 1-hour cache writes, and web search requests, each at its own
rate (one that `genai-prices` does not list for the model is the rate it falls back to, e.g. the
input rate for cache writes). Usage past a tier threshold, or a model whose price could not be
probed, goes through `calc_price`. Cached rates are re-read after an hour, because `genai-prices`
data can change prices at a given date.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, NamedTuple

from ._config import config, warn_once
from ._forksafe import loading

__all__ = ["Price", "price", "genai_prices_version"]

_PROBE = 1000  # tokens; far below any tier threshold
_TTL_S = 3600.0


class Price(NamedTuple):
    """The cost of one call and where it came from."""

    cost_usd: float | None
    source: str | None  # "genai-prices X.Y.Z", "override", "local", "reported", or None if unpriced
    local: bool = False


_new = tuple.__new__  # a NamedTuple without its Python-level __new__, on the hot path
_INF = math.inf
_LOCAL = Price(0.0, "local", True)
_UNPRICED = Price(None, None)


class _Rates:
    __slots__ = (
        "base",
        "expires",
        "found",
        "generation",
        "linear_to",
        "per_cache_read",
        "per_cache_write",
        "per_cache_write_1h",
        "per_in",
        "per_out",
        "per_web_search",
        "source",
    )

    def __init__(self) -> None:
        self.found: Any = None  # (genai provider, genai model) for the slow path
        self.base = self.per_in = self.per_out = self.per_cache_read = self.per_cache_write = 0.0
        self.per_cache_write_1h = self.per_web_search = 0.0
        self.linear_to: float = _INF  # tokens_in up to which the price is linear (the first tier)
        self.expires = 0.0
        self.generation = -1
        self.source = ""


#: Whether the price data is loaded (`load_data`): until then an experiment's first calls wait for
#: it before their clocks start.
ready = False
_loaded = threading.Event()


def load_data() -> None:
    """Load genai-prices' data now (0.3 to 1 s, once per process; no fork meanwhile)."""
    global ready
    try:
        with loading():
            from genai_prices import data_snapshot

            data_snapshot.get_snapshot()
    finally:
        ready = True
        _loaded.set()


def wait_for_data(timeout: float) -> None:
    """Wait (at most `timeout` seconds) for `load_data` to end on another thread."""
    _loaded.wait(timeout)


_cache: dict[tuple[str | None, str | None], _Rates | None] = {}
_version: str | None = None


def genai_prices_version() -> str:
    """The installed `genai-prices` version (imports it on first use)."""
    global _version
    if _version is None:
        with loading():
            import genai_prices

        _version = genai_prices.__version__
    return _version


def _lookup(provider: str | None, model: str) -> Any:
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    try:
        return snapshot.find_provider_model(model, None, provider, None)
    except LookupError:
        if provider is None:
            raise
    # A provider genai-prices does not know (a gateway, a custom name): match on the model alone.
    return snapshot.find_provider_model(model, None, None, None)


def _slow(
    found: Any,
    tokens_in: int,
    tokens_out: int,
    cache_read: int,
    cache_write: int,
    cache_write_1h: int = 0,
    web_searches: int = 0,
) -> float:
    from genai_prices import Usage as GUsage

    provider, model = found
    usage = GUsage(
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cache_read_tokens=cache_read or None,
        cache_write_tokens=cache_write or None,
        cache_write_1h_tokens=cache_write_1h or None,
        web_searches=web_searches or None,
    )
    return float(model.calc_price(usage, provider).total_price)


def _probe(provider: str | None, model: str, generation: int) -> _Rates | None:
    try:
        found = _lookup(provider, model)
    except LookupError:
        return None
    rates = _Rates()
    rates.found = found
    rates.source = f"genai-prices {genai_prices_version()}"
    rates.expires = perf_counter() + _TTL_S
    rates.generation = generation  # the configuration that was checked for local providers and overrides
    n = _PROBE
    try:
        base = _slow(found, 0, 0, 0, 0)
        rates.base = base
        rates.per_in = (_slow(found, n, 0, 0, 0) - base) / n
        rates.per_out = (_slow(found, 0, n, 0, 0) - base) / n
        rates.per_cache_read = (_slow(found, n, 0, n, 0) - base) / n
        rates.per_cache_write = (_slow(found, n, 0, 0, n) - base) / n
        rates.per_cache_write_1h = (_slow(found, n, 0, 0, n, n) - base) / n
        rates.per_web_search = (_slow(found, 0, 0, 0, 0, 0, n) - base) / n
        starts: list[int] = []
        model_price = found[1].get_prices(datetime.now(tz=UTC))
        for value in vars(model_price).values():
            tiers = getattr(value, "tiers", None)
            if tiers:
                starts.extend(int(t.start) for t in tiers)
        rates.linear_to = min(starts) if starts else _INF
    except Exception:
        # Prices this scheme cannot read linearly: every call takes the slow path.
        rates.linear_to = -1
    return rates


def price(
    provider: str | None,
    model: str | None,
    tokens_in: int,
    tokens_out: int,
    cache_read: int = 0,
    cache_write: int = 0,
    cache_write_1h: int = 0,
    web_searches: int = 0,
) -> Price:
    """The cost of one call's usage. Never raises; unknown models warn once and are unpriced.

    `tokens_in` counts every input token, of which `cache_read` were read from a prompt cache and
    `cache_write` written to one; `cache_write_1h` of the writes were to a 1-hour cache (the rest
    are 5-minute writes). `web_searches` counts server-side web search requests. Each is priced at
    the rate `genai-prices` gives the model for it.
    """
    found = cost_of(
        provider, model, tokens_in, tokens_out, cache_read, cache_write, perf_counter(), cache_write_1h, web_searches
    )
    return _new(Price, found)


def cost_of(
    provider: str | None,
    model: str | None,
    tokens_in: int,
    tokens_out: int,
    cache_read: int,
    cache_write: int,
    now: float,
    cache_write_1h: int = 0,
    web_searches: int = 0,
) -> tuple[float | None, str | None, bool]:
    """`price()` for every call: a plain tuple, and `now` is the caller's `perf_counter()`.

    The hot path is rates already read for this (provider, model), still current, and usage
    below the first tier. Local providers and overrides take the slow path, because they depend
    on the configuration: rates are cached (for the current configuration) only when neither
    applies.
    """
    rates = _cache.get((provider, model))
    if rates is not None and rates.generation == config.generation and rates.expires >= now:
        try:
            if 0 <= tokens_in <= rates.linear_to:
                if cache_read or cache_write or web_searches or cache_write_1h:
                    if cache_write_1h > cache_write:  # the 1-hour writes are part of the writes
                        cache_write = cache_write_1h
                    uncached = tokens_in - cache_read - cache_write
                    cost = (
                        rates.base
                        + (uncached if uncached > 0 else 0) * rates.per_in
                        + tokens_out * rates.per_out
                        + cache_read * rates.per_cache_read
                        + (cache_write - cache_write_1h) * rates.per_cache_write
                        + cache_write_1h * rates.per_cache_write_1h
                        + web_searches * rates.per_web_search
                    )
                else:
                    cost = rates.base + tokens_in * rates.per_in + tokens_out * rates.per_out
            else:
                if cache_write_1h > cache_write:
                    cache_write = cache_write_1h
                cost = _slow(rates.found, tokens_in, tokens_out, cache_read, cache_write, cache_write_1h, web_searches)
        except (ArithmeticError, ValueError, TypeError):  # counts too large for a float, odd tiers, not numbers
            return _UNPRICED
        return (cost, rates.source, False) if 0.0 <= cost < _INF else _UNPRICED
    return _price(provider, model, tokens_in, tokens_out, cache_read, cache_write, now, cache_write_1h, web_searches)


def _price(
    provider: str | None,
    model: str | None,
    tokens_in: int,
    tokens_out: int,
    cache_read: int,
    cache_write: int,
    now: float,
    cache_write_1h: int,
    web_searches: int,
) -> tuple[float | None, str | None, bool]:
    """Local providers, overrides, and the first look-up (or the refresh) of a model's rates."""
    # Read first: rates are cached for the configuration checked here, so a configure() while
    # genai-prices loads (a quarter of a second, the first time) makes them stale, not wrong.
    generation = config.generation
    if provider is not None and provider.lower() in config.local_providers:
        return _LOCAL
    if model is None:
        warn_once(
            ("no-model", provider),
            "tracked: a call reported tokens but no model, so it has no cost; "
            "pass model= to @tracked or to the call, or report cost_usd",
        )
        return _UNPRICED
    if config.prices:
        key = model.lower()
        rate = config.prices.get(f"{provider.lower()}/{key}" if provider else key) or config.prices.get(key)
        if rate is not None:
            try:
                return ((tokens_in * rate[0] + tokens_out * rate[1]) / 1e6, "override", False)
            except ArithmeticError:
                return _UNPRICED
    cache_key = (provider, model)
    rates = _cache.get(cache_key)
    if rates is None and cache_key in _cache:
        return _UNPRICED  # known miss
    try:
        with loading():  # the first look-up imports and loads genai-prices' data: no fork meanwhile
            rates = _probe(provider, model, generation)
    except Exception as exc:  # genai-prices missing or broken: calls go on unpriced
        warn_once(("prices-broken", type(exc)), f"tracked: cannot read genai-prices ({exc!r}); costs are unpriced")
        rates = None
    _cache[cache_key] = rates
    if rates is None:
        where = f" from provider {provider!r}" if provider else ""
        warn_once(
            ("unpriced", provider, model),
            f"tracked: no price for model {model!r}{where} in genai-prices; its calls have cost_usd=None. "
            f"Set one with tracked.configure(prices={{{model!r}: (usd_per_1m_in, usd_per_1m_out)}})",
        )
        return _UNPRICED
    # now the hot path
    return cost_of(provider, model, tokens_in, tokens_out, cache_read, cache_write, now, cache_write_1h, web_searches)


def _clear_cache() -> None:
    """For tests: forget every cached rate."""
    _cache.clear()
