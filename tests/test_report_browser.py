"""The report in a real headless Chromium (Debian's `chromium`), the network blocked: every chart draws.

Playwright drives the system's browser (`executable_path`, no `playwright install` download). When
the browser is missing the test fails, saying how to install it (`.ci/run` does).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest

from test_report import run_cli, write_store

pytestmark = pytest.mark.slow  # a browser start, a few seconds

CHARTS = ["summary", "frontier", "running", "latency", "models"]


def chromium() -> str:
    path = os.environ.get("TRACKED_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("no chromium on PATH: apt-get install -y chromium (or set TRACKED_CHROMIUM to its binary)")
    return path


def open_report(page_file: Path, screenshot: Path) -> dict:
    """Open the file in headless Chromium with every non-file request aborted; what it saw."""
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))

            def route(r):
                if r.request.url.startswith("file:"):
                    r.continue_()
                else:
                    requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(page_file.resolve().as_uri())
            page.wait_for_selector("body[data-charts-drawn]", timeout=20_000)  # every Plotly.newPlot resolved
            drawn_count = page.evaluate("document.body.dataset.chartsDrawn")
            marks = page.evaluate(
                """names => Object.fromEntries(names.map(name => {
                    const div = document.getElementById("chart-" + name);
                    const marks = div.querySelectorAll(".cartesianlayer .trace path, .cartesianlayer .trace text");
                    const drawn = Array.from(marks).filter(el =>
                        el.tagName === "text" ? el.textContent.trim() : (el.getAttribute("d") || "").length > 4);
                    return [name, {traces: div.querySelectorAll(".cartesianlayer .trace").length, marks: drawn.length,
                                   height: div.getBoundingClientRect().height}];
                }))""",
                CHARTS,
            )

            def order_after_clicks(heading: str, clicks: int) -> list[str]:
                column = page.locator("#tasks th", has_text=heading)
                for _ in range(clicks):
                    column.click()
                return page.locator("#tasks tbody tr td:first-child").all_inner_texts()

            before = page.locator("#tasks tbody tr td:first-child").all_inner_texts()
            by_accuracy = order_after_clicks("single (mean of 2 runs): accuracy", 1)  # t0 1.0, t1 and t2 0.5
            by_task = order_after_clicks("task", 2)  # descending
            page.screenshot(path=str(screenshot), full_page=True)
            # The control: a request the page itself would make is seen (and aborted) by the route.
            seen_before, errors_before = list(requests), list(errors)
            page.evaluate("() => fetch('https://cdn.plot.ly/plotly-latest.min.js').catch(() => null)")
            control = [u for u in requests if u not in seen_before]
        finally:
            browser.close()
    return {
        "control": control,
        "requests": seen_before,
        "errors": errors_before,
        "drawn": drawn_count,
        "marks": marks,
        "before": before,
        "by_accuracy": by_accuracy,
        "by_task": by_task,
    }


def test_every_chart_draws_offline_in_chromium(tmp_path, capsys):
    """In headless Chromium with the network blocked: no request leaves the file, no console error, each chart
    has traces and drawn marks, the table sorts on a click, and the screenshot is not blank."""
    from PIL import Image, ImageStat

    store = tmp_path / "store"
    write_store(store)
    code, _, err = run_cli(capsys, "report", str(store))
    assert code == 0, err
    shot = tmp_path / "report.png"
    seen = open_report(store / "report.html", shot)
    assert seen["control"] == ["https://cdn.plot.ly/plotly-latest.min.js"]  # the route does see requests
    assert seen["requests"] == []
    assert seen["errors"] == []
    assert seen["drawn"] == str(len(CHARTS))
    for name in CHARTS:
        drawn = seen["marks"][name]
        assert drawn["traces"] > 0 and drawn["marks"] > 0 and drawn["height"] > 100, (name, drawn)
    assert seen["before"] == ["t0", "t1", "t2"]
    assert seen["by_accuracy"] == ["t1", "t2", "t0"]  # ascending, ties kept in order
    assert seen["by_task"] == ["t2", "t1", "t0"]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("L")
    assert image.size[0] >= 1280 and image.size[1] > 2000
    assert ImageStat.Stat(image).stddev[0] > 10  # not one colour
    non_white = sum(n for value, n in enumerate(image.histogram()) if value < 240)
    assert non_white / (image.size[0] * image.size[1]) > 0.02
