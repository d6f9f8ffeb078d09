"""Cost in USD: genai-prices data and its fast linear path, overrides, local providers, unpriced models."""

from __future__ import annotations

import math
import warnings
from unittest import mock

import genai_prices
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tracked
from helpers import genai_cost
from tracked import pricing
from workloads import finished_call

# --- genai-prices --------------------------------------------------------------------------------


def test_gpt_4o_price_and_source():
    """1000 input and 500 output tokens of gpt-4o cost $0.0075, sourced from genai-prices with its version."""
    p = pricing.price(None, "gpt-4o", 1000, 500)
    assert p.cost_usd == pytest.approx(0.0075)
    assert p.source == f"genai-prices {genai_prices.__version__}"
    assert p.local is False


def test_gpt_4o_call_cost():
    """A tracked call reporting 1000/500 gpt-4o tokens costs $0.0075 with a genai-prices source."""
    call = finished_call({"tokens_in": 1000, "tokens_out": 500, "model": "gpt-4o"})
    assert call.cost_usd == pytest.approx(0.0075)
    assert call.cost_source.startswith("genai-prices ")
    assert call.local is False
    assert call.unpriced_calls == 0


def test_price_is_cached_and_fast_path_skips_genai_prices():
    """After the first lookup, pricing the same model again does not call genai-prices."""
    first = pricing.price(None, "gpt-4o", 1000, 500)
    with (
        mock.patch.object(pricing, "_slow", side_effect=AssertionError("slow path used")),
        mock.patch.object(pricing, "_lookup", side_effect=AssertionError("looked up again")),
    ):
        second = pricing.price(None, "gpt-4o", 1000, 500)
        third = pricing.price(None, "gpt-4o", 2000, 1000)
    assert first == second
    assert third.cost_usd == pytest.approx(2 * first.cost_usd)


def test_tier_above_threshold_uses_tier_price():
    """Usage past a model's tier threshold is priced at the tier rate, exactly as genai-prices does."""
    below = pricing.price("anthropic", "claude-sonnet-4-5", 200_000, 1000)
    above = pricing.price("anthropic", "claude-sonnet-4-5", 200_001, 1000)
    assert below.cost_usd == pytest.approx(genai_cost("anthropic", "claude-sonnet-4-5", 200_000, 1000), rel=1e-9)
    assert above.cost_usd == pytest.approx(genai_cost("anthropic", "claude-sonnet-4-5", 200_001, 1000), rel=1e-9)
    assert above.cost_usd > below.cost_usd * 1.5  # the long-context rate applies to every token


def test_one_hour_cache_writes_are_priced_at_their_own_rate():
    """claude-sonnet-4-5, 50 input + 100,000 1-hour cache-write + 200 output tokens: $0.603150, as genai-prices
    prices it (at the 5-minute rate it would be $0.37815)."""
    got = pricing.price("anthropic", "claude-sonnet-4-5", 100_050, 200, 0, 100_000, 100_000)
    assert got.cost_usd == pytest.approx(
        genai_cost("anthropic", "claude-sonnet-4-5", 100_050, 200, 0, 100_000, 100_000)
    )
    assert got.cost_usd == pytest.approx(0.603150, abs=1e-9)
    five_minutes = pricing.price("anthropic", "claude-sonnet-4-5", 100_050, 200, 0, 100_000)
    assert five_minutes.cost_usd == pytest.approx(0.37815, abs=1e-9)


def test_web_searches_are_priced_per_request_past_a_tier_too():
    """claude-sonnet-4-5, 401,468 in / 792 out / 10 web searches (past the 200k tier): $2.526628, as genai-prices."""
    got = pricing.price("anthropic", "claude-sonnet-4-5", 401_468, 792, web_searches=10)
    assert got.cost_usd == pytest.approx(genai_cost("anthropic", "claude-sonnet-4-5", 401_468, 792, web_searches=10))
    assert got.cost_usd == pytest.approx(2.526628, abs=1e-9)
    below = pricing.price("anthropic", "claude-haiku-4-5", 1000, 100, web_searches=3)  # the linear path
    assert below.cost_usd == pytest.approx(genai_cost("anthropic", "claude-haiku-4-5", 1000, 100, web_searches=3))
    assert below.cost_usd == pytest.approx(pricing.price("anthropic", "claude-haiku-4-5", 1000, 100).cost_usd + 0.03)


def test_more_one_hour_writes_than_writes_count_as_writes():
    """1-hour writes are part of the writes: reported above them (a hand-made usage), the writes are taken to be
    at least that many, never a negative 5-minute count."""
    got = pricing.price("anthropic", "claude-haiku-4-5", 2000, 10, 0, 100, 1000)
    assert got.cost_usd == pytest.approx(genai_cost("anthropic", "claude-haiku-4-5", 2000, 10, 0, 1000, 1000))


def test_unknown_provider_falls_back_to_model_price():
    """A provider genai-prices does not know (a gateway) is priced by the model alone."""
    p = pricing.price("my-gateway", "gpt-4o", 1000, 500)
    assert p.cost_usd == pytest.approx(0.0075)
    assert p.source.startswith("genai-prices ")


def test_cached_rates_are_reread_after_expiry():
    """Cached rates are looked up again once they expire, and not before."""
    with mock.patch.object(pricing, "_lookup", wraps=pricing._lookup) as lookup:
        pricing.price(None, "gpt-4o", 1000, 500)
        pricing.price(None, "gpt-4o", 1000, 500)
        assert lookup.call_count == 1
        pricing._cache[(None, "gpt-4o")].expires = 0.0
        assert pricing.price(None, "gpt-4o", 1000, 500).cost_usd == pytest.approx(0.0075)
        assert lookup.call_count == 2


# --- overrides -----------------------------------------------------------------------------------


def test_override_price_source():
    """A price set with `configure(prices=...)` is used with source "override"."""
    tracked.configure(prices={"my-model": (1.0, 2.0)})
    p = pricing.price(None, "my-model", 1_000_000, 500_000)
    assert p.cost_usd == pytest.approx(1.0 + 1.0)
    assert p.source == "override"
    call = finished_call({"tokens_in": 2000, "tokens_out": 1000, "model": "my-model"})
    assert call.cost_usd == pytest.approx((2000 * 1.0 + 1000 * 2.0) / 1e6)
    assert call.cost_source == "override"


def test_override_wins_over_genai_prices_and_can_be_removed():
    """An override for a known model wins over genai-prices, and clearing overrides restores it."""
    assert pricing.price(None, "gpt-4o", 1000, 500).source.startswith("genai-prices ")
    tracked.configure(prices={"GPT-4o": (100.0, 100.0)})
    p = pricing.price(None, "gpt-4o", 1000, 500)
    assert (p.cost_usd, p.source) == (pytest.approx(0.15), "override")
    tracked.configure(prices={})
    assert pricing.price(None, "gpt-4o", 1000, 500).cost_usd == pytest.approx(0.0075)


@pytest.mark.parametrize(
    "change", [{"prices": {"gpt-4o": (100.0, 100.0)}}, {"local_providers": ["openai"]}], ids=["override", "local"]
)
def test_settings_changed_while_a_price_is_being_looked_up_apply_to_the_next_call(monkeypatch, change):
    """configure() during the first look-up of a model (genai-prices takes a quarter of a second to
    load, the first time) is not hidden by the rates that look-up caches."""
    real_lookup = pricing._lookup

    def lookup_while_configured(provider, model):
        tracked.configure(**change)  # as another thread would, during the look-up
        return real_lookup(provider, model)

    monkeypatch.setattr(pricing, "_lookup", lookup_while_configured)
    pricing.price("openai", "gpt-4o", 1000, 500)
    monkeypatch.setattr(pricing, "_lookup", real_lookup)
    p = pricing.price("openai", "gpt-4o", 1000, 500)
    if "prices" in change:
        assert (p.cost_usd, p.source) == (pytest.approx(0.15), "override")
    else:
        assert (p.cost_usd, p.source, p.local) == (0.0, "local", True)


def test_counts_that_are_not_usable_are_unpriced_on_the_cached_path():
    """With the model's rates cached, a count that is not a number is unpriced rather than raising."""
    assert pricing.price(None, "gpt-4o", 1000, 500).cost_usd == pytest.approx(0.0075)
    assert pricing.price(None, "gpt-4o", None, 5) == pricing.Price(None, None)  # type: ignore[arg-type]
    assert pricing.price(None, "gpt-4o", 1000, "5") == pricing.Price(None, None)  # type: ignore[arg-type]


def test_override_by_provider_and_model():
    """A "provider/model" override applies to that provider only; a bare model key applies to all."""
    tracked.configure(prices={"acme/shared": (1.0, 0.0), "shared": (2.0, 0.0)})
    assert pricing.price("acme", "shared", 1_000_000, 0).cost_usd == pytest.approx(1.0)
    assert pricing.price("other", "shared", 1_000_000, 0).cost_usd == pytest.approx(2.0)
    assert pricing.price(None, "shared", 1_000_000, 0).cost_usd == pytest.approx(2.0)


def test_zero_override_is_used():
    """An override of (0, 0) prices a model at zero rather than falling back to genai-prices."""
    tracked.configure(prices={"gpt-4o": (0.0, 0.0)})
    assert pricing.price(None, "gpt-4o", 1000, 500) == pricing.Price(0.0, "override")


@pytest.mark.parametrize(
    ("prices", "error"),
    [
        ([("m", (1.0, 2.0))], TypeError),
        ("m=1,2", TypeError),
        ({"": (1.0, 2.0)}, TypeError),
        ({3: (1.0, 2.0)}, TypeError),
        ({"m": 1.0}, TypeError),
        ({"m": (1.0,)}, TypeError),
        ({"m": (1.0, 2.0, 3.0)}, TypeError),
        ({"m": ("a", "b")}, TypeError),
        ({"m": (None, 1.0)}, TypeError),
        ({"m": (-1.0, 2.0)}, ValueError),
        ({"m": (1.0, float("nan"))}, ValueError),
        ({"m": (float("inf"), 1.0)}, ValueError),
    ],
)
def test_invalid_price_overrides_raise(prices, error):
    """Invalid `configure(prices=...)` raises TypeError or ValueError and keeps the previous overrides."""
    tracked.configure(prices={"kept": (1.0, 1.0)})
    with pytest.raises(error):
        tracked.configure(prices=prices)
    assert pricing.price(None, "kept", 1_000_000, 0) == pricing.Price(1.0, "override")


# --- local providers -----------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["ollama", "mlx", "llama.cpp", "vllm", "Ollama", "lmstudio"])
def test_local_providers_cost_nothing(provider):
    """Calls to local providers cost 0, are marked local, and have source "local"."""
    assert pricing.price(provider, "gpt-4o", 10_000, 10_000) == pricing.Price(0.0, "local", True)
    call = finished_call({"tokens_in": 10, "tokens_out": 5, "model": "some-local-model"}, provider=provider)
    assert (call.cost_usd, call.cost_source, call.local) == (0.0, "local", True)
    assert call.unpriced_calls == 0


def test_custom_local_providers():
    """`configure(local_providers=...)` replaces the set of providers that cost nothing."""
    tracked.configure(local_providers=["my-gpu-box"])
    assert pricing.price("my-gpu-box", "x", 1, 1).local is True
    assert pricing.price("ollama", "gpt-4o", 1000, 500).cost_usd == pytest.approx(0.0075)
    with pytest.raises(TypeError):
        tracked.configure(local_providers="ollama")


# --- unknown models, reported cost ---------------------------------------------------------------


def test_unknown_model_warns_once_and_is_unpriced():
    """An unknown model gives cost None and exactly one warning for two calls, never an exception."""
    with pytest.warns(tracked.TrackedWarning, match="no-such-model-123") as record:
        first = finished_call({"tokens_in": 10, "tokens_out": 5, "model": "no-such-model-123"})
        second = finished_call({"tokens_in": 20, "tokens_out": 5, "model": "no-such-model-123"})
    assert len([w for w in record if issubclass(w.category, tracked.TrackedWarning)]) == 1
    for call in (first, second):
        assert call.cost_usd is None
        assert call.cost_source is None
        assert call.llm_calls == 1
        assert call.unpriced_calls == 1
        assert call.tokens_in > 0


def test_two_unknown_models_warn_once_each():
    """Each unknown model gets its own single warning."""
    with pytest.warns(tracked.TrackedWarning) as record:
        for model in ("unknown-a-1", "unknown-b-1", "unknown-a-1", "unknown-b-1"):
            assert pricing.price(None, model, 1, 1).cost_usd is None
    messages = [str(w.message) for w in record if issubclass(w.category, tracked.TrackedWarning)]
    assert len(messages) == 2
    assert any("unknown-a-1" in m for m in messages) and any("unknown-b-1" in m for m in messages)


def test_unknown_model_does_not_raise_when_warnings_are_errors_in_production():
    """With internal errors not raised, an unknown model never raises even if warnings are errors."""
    from tracked import _config

    _config.config.raise_internal_errors = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pricing.price(None, "no-such-model-456", 10, 10).cost_usd is None


def test_tokens_without_model_warn_once():
    """A call with tokens but no model is unpriced with one warning."""
    with pytest.warns(tracked.TrackedWarning, match="no model") as record:
        a = finished_call({"tokens_in": 10, "tokens_out": 5})
        b = finished_call({"tokens_in": 10, "tokens_out": 5})
    assert len([w for w in record if issubclass(w.category, tracked.TrackedWarning)]) == 1
    assert a.cost_usd is None and b.cost_usd is None


def test_reported_cost_is_taken_as_is():
    """A reported cost is used unchanged, even for a model genai-prices knows and with an override set."""
    tracked.configure(prices={"gpt-4o": (100.0, 100.0)})
    call = finished_call({"tokens_in": 1000, "tokens_out": 500, "model": "gpt-4o", "cost_usd": 0.000123})
    assert call.cost_usd == 0.000123
    assert call.cost_source == "reported"


def test_reported_zero_cost_is_kept():
    """A reported cost of 0 is kept as 0, not replaced by a computed price."""
    call = finished_call({"tokens_in": 1000, "tokens_out": 500, "model": "gpt-4o", "cost_usd": 0})
    assert call.cost_usd == 0.0
    assert call.cost_source == "reported"


def test_price_never_raises_on_huge_counts():
    """`pricing.price` never raises, even for token counts too large for a float."""
    tracked.configure(prices={"my-model": (1.0, 2.0)})
    for provider, model in ((None, "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), (None, "my-model")):
        p = pricing.price(provider, model, 10**400, 10**400)
        assert isinstance(p, pricing.Price)
        assert p.cost_usd is None or p.cost_usd >= 0


def test_price_of_huge_counts_is_finite_or_none():
    """A cost that cannot be represented is None, never an infinite float, whatever the model."""
    for provider, model in ((None, "gpt-4o"), ("anthropic", "claude-sonnet-4-5")):
        p = pricing.price(provider, model, 10**400, 10**400)
        assert p.cost_usd is None or math.isfinite(p.cost_usd), (model, p)


def test_call_with_huge_counts_still_ends():
    """A call reporting absurd token counts still ends, with no cost rather than an error."""
    call = finished_call({"tokens_in": 10**400, "tokens_out": 1, "model": "gpt-4o"})
    assert call.tokens_in == 10**400
    assert call.cost_usd is None or (math.isfinite(call.cost_usd) and call.cost_usd >= 0)


# --- properties: fast path matches genai-prices, additive, monotone --------------------------------

# (provider, model, linear region upper bound for tokens_in)
MODELS = [
    (None, "gpt-4o", 10_000_000),
    (None, "gpt-4o-mini", 10_000_000),
    ("openai", "gpt-4.1", 10_000_000),
    ("anthropic", "claude-sonnet-4-5", 200_000),
    (None, "claude-3-5-haiku", 10_000_000),
    ("anthropic", "claude-haiku-4-5", 10_000_000),
]


@st.composite
def usages(draw, limit: int = 10_000_000):
    """(tokens_in, tokens_out, cache_read, cache_write, cache_write_1h, web_searches), consistent:
    the cache counts are part of tokens_in, the 1-hour writes part of the writes."""
    tokens_in = draw(st.integers(0, limit))
    cache_read = draw(st.integers(0, tokens_in))
    cache_write = draw(st.integers(0, tokens_in - cache_read))
    cache_write_1h = draw(st.integers(0, cache_write))
    tokens_out = draw(st.integers(0, 1_000_000))
    web_searches = draw(st.integers(0, 50))
    return tokens_in, tokens_out, cache_read, cache_write, cache_write_1h, web_searches


@settings(max_examples=100, deadline=None)
@given(data=st.data(), model=st.sampled_from(MODELS))
def test_fast_path_matches_genai_prices(data, model):
    """The fast linear price equals `genai_prices.calc_price` within 1e-9 relative, without calling it,
    5-minute and 1-hour cache writes and web searches included."""
    provider, name, limit = model
    counts = data.draw(usages(limit))
    pricing.price(provider, name, 1, 1)  # probe the rates once
    with mock.patch.object(pricing, "_slow", side_effect=AssertionError("slow path used")):
        fast = pricing.price(provider, name, *counts)
    exact = genai_cost(provider, name, *counts)
    assert fast.source.startswith("genai-prices ")
    assert fast.cost_usd == pytest.approx(exact, rel=1e-9, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), model=st.sampled_from(MODELS))
def test_price_matches_genai_prices_past_tiers(data, model):
    """Prices past the linear region still equal `genai_prices.calc_price`, cache writes and web searches included."""
    provider, name, limit = model
    counts = data.draw(usages(3 * min(limit, 1_000_000)))
    got = pricing.price(provider, name, *counts)
    assert got.cost_usd == pytest.approx(genai_cost(provider, name, *counts), rel=1e-9, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), model=st.sampled_from(MODELS))
def test_cost_is_additive_in_linear_region(data, model):
    """In the linear region, the price of a+b tokens is the price of a plus the price of b."""
    provider, name, limit = model
    a = data.draw(usages(limit // 2))
    b = data.draw(usages(limit // 2))
    total = tuple(x + y for x, y in zip(a, b, strict=True))
    pa = pricing.price(provider, name, *a).cost_usd
    pb = pricing.price(provider, name, *b).cost_usd
    pt = pricing.price(provider, name, *total).cost_usd
    assert pt == pytest.approx(pa + pb, rel=1e-9, abs=1e-15)


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    model=st.sampled_from(MODELS),
    field=st.sampled_from(["tokens_in", "tokens_out"]),
    extra=st.integers(1, 100_000),
)
def test_cost_is_monotone_in_tokens(data, model, field, extra):
    """Adding input or output tokens never lowers the cost."""
    provider, name, limit = model
    tokens_in, tokens_out, *rest = data.draw(usages(limit))
    base = pricing.price(provider, name, tokens_in, tokens_out, *rest).cost_usd
    if field == "tokens_in":
        tokens_in += extra
    else:
        tokens_out += extra
    more = pricing.price(provider, name, tokens_in, tokens_out, *rest).cost_usd
    assert more >= base
    if field == "tokens_out":
        assert more > base


@settings(max_examples=60, deadline=None)
@given(
    provider=st.one_of(st.none(), st.text(max_size=10)),
    model=st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    counts=st.tuples(*[st.integers(0, 10**9)] * 6),
)
def test_price_never_raises_on_arbitrary_names(provider, model, counts):
    """`pricing.price` returns a Price for any provider and model name, with a cost that is None or non-negative."""
    from tracked import _config

    _config._warned.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = pricing.price(provider, model, *counts)
    assert isinstance(p, pricing.Price)
    assert p.cost_usd is None or (math.isfinite(p.cost_usd) and p.cost_usd >= 0)
