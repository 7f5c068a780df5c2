"""The HTML report opened in a real browser: Debian's chromium driven by Playwright (the system browser, nothing
downloaded). The report is built by `findap report` from result files that the eval stage wrote for two random
tiny Llamas on demo tasks; the page must show every table and decode every plot, with no console errors and no
failed requests."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium binary on PATH: install Debian's chromium (`apt-get install chromium`, which "
                "scripts/setup.sh does when run as root) to check the HTML report in a browser",
                allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402  (a dev dependency; imported only with a browser)

TASKS = ["demo_sentiment", "demo_stance", "demo_concepts"]
MODELS = {"base": 0, "tuned": 1}  # label -> seed of the random tiny Llama


@pytest.fixture(scope="module")
def report_dir(tiny_model_dir, tmp_path_factory, one_torch_thread) -> Path:
    """Eval stage over both models, then `findap report` on the run directory, as a user would."""
    from typer.testing import CliRunner

    from findap.cli import app
    from findap.eval import stage
    from findap.eval.config import EvalConfig
    from findap.models import save_tiny_llama
    from findap.recipe import Recipe
    from findap.runs import StageContext

    tmp = tmp_path_factory.mktemp("browser-report")
    tuned_dir = save_tiny_llama(tmp / "tuned-model", seed=MODELS["tuned"])
    recipe = Recipe(name="browser", model=tiny_model_dir, runs_dir=str(tmp / "runs"), device="cpu",
                    precision="fp32",
                    eval=EvalConfig(tasks=TASKS, limit=4, engine={"batch_size": 8}, include=["base"],
                                    models={"tuned": tuned_dir}))
    ctx = StageContext(run_dir=recipe.run_dir, name="eval", inputs={"models": {"base": tiny_model_dir}})
    stage.run(recipe, ctx)

    out = tmp / "report"
    result = CliRunner().invoke(app, ["report", str(recipe.run_dir), "--out", str(out), "--base", "base"])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def open_in_chromium(browser, html: Path, check) -> None:
    """Load `html` in a fresh page and call `check(page, problems)`; problems lists console errors, uncaught page
    errors and failed requests seen while loading."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and problems.append(f"console: {msg.text}"))
        page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        page.on("requestfailed", lambda req: problems.append(f"request failed: {req.url[:80]} {req.failure}"))
        page.goto(html.as_uri(), wait_until="load")
        check(page, problems)
    finally:
        context.close()


def check_report_page(page, problems: list[str], source: str, plot_sizes: list[tuple[int, int]]) -> None:
    # every table in the file is in the DOM, visible, with a header and at least one body row
    tables = page.locator("table")
    assert tables.count() == source.count("<table") > 0
    for i in range(tables.count()):
        table = tables.nth(i)
        assert table.is_visible(), f"table {i} is hidden"
        assert table.locator("th").count() > 0 and table.locator("tr").count() > 1, f"table {i} is empty"

    # every plot is an <img> the browser decoded, at the pixel size of the PNG the report wrote next to it
    page.wait_for_function("Array.from(document.images).every(img => img.complete)")
    images = page.evaluate(
        "Array.from(document.images).map(img => ({w: img.naturalWidth, h: img.naturalHeight, "
        "shown: img.getBoundingClientRect().width}))")
    assert all(img["w"] > 0 and img["shown"] > 0 for img in images), f"a plot did not decode: {images}"
    assert sorted((img["w"], img["h"]) for img in images) == plot_sizes

    text = page.inner_text("body")
    missing = [name for name in [*TASKS, *MODELS] if name not in text]
    assert not missing, f"not shown on the page: {missing}"
    assert not problems, problems


def written_plot_sizes(report_dir: Path) -> list[tuple[int, int]]:
    return sorted(Image.open(p).size for p in (report_dir / "plots").glob("*.png"))


def test_report_renders_in_chromium(report_dir, browser):
    html = report_dir / "report.html"
    plot_sizes = written_plot_sizes(report_dir)
    assert len(plot_sizes) >= 2, "expected a capability plot per capability (task, concept)"
    source = html.read_text()
    open_in_chromium(browser, html, lambda page, problems: check_report_page(page, problems, source, plot_sizes))


# Each fault is one edit of the real page; the checks above must catch it.
FAULTS = {
    "a plot cut short": (r"data:image/png;base64,[^'\"]+", "data:image/png;base64,iVBORw0KGgo",
                         "a plot did not decode"),
    "a script error": (r"</body>", "<script>console.error('boom')</script></body>", "console: boom"),
    "a missing file": (r"</body>", "<link rel='stylesheet' href='missing.css'></body>", "request failed"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_browser_checks_catch_a_broken_page(report_dir, browser, tmp_path, fault):
    pattern, replacement, message = FAULTS[fault]
    source = (report_dir / "report.html").read_text()
    broken_source = re.sub(pattern, replacement, source, count=1)
    assert broken_source != source
    broken = tmp_path / "report.html"
    broken.write_text(broken_source)
    plot_sizes = written_plot_sizes(report_dir)
    with pytest.raises(AssertionError, match=message):
        open_in_chromium(browser, broken,
                         lambda page, problems: check_report_page(page, problems, source, plot_sizes))
