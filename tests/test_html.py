"""The self-contained HTML report: tables, embedded figures that decode, provenance and failures; and the page
rendered in headless Chromium (every figure loads, no console errors, a screenshot kept as an artifact)."""

import base64
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import run_bench

from bench.store import Store


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.headings, self.stack = [], 0, [], []

    def handle_starttag(self, tag, attrs):
        if tag not in ("img", "meta", "br"):  # void elements have no end tag
            self.stack.append(tag)
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag == "table":
            self.tables += 1

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] in ("h1", "h2", "h3"):
            self.headings.append(data.strip())


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    results = tmp / "results"
    run = run_bench("run", "--preset", "smoke", "--results", results, "--quiet", cwd=tmp)
    assert run.returncode == 0, run.stderr
    with Store(results) as store:  # one failed cell, so the page must list it
        store.add({"key": "broken", "method": "smote", "params": {}, "dataset": "digits", "protocol": "binary",
                   "pair": [3, 5], "ratio": 0.05, "seed": 7, "epochs": 1, "status": "failed",
                   "error": "SMOTE refused: <too few> neighbours", "started_at": "2026-01-01T00:00:00+00:00",
                   "finished_at": "2026-01-01T00:00:01+00:00", "duration_s": 1.0, "device": "cpu", "versions": {}})
        # an MNIST table as wide as they come: three seeds (95 % intervals) and the paper's columns beside ours
        for n, (method, seed) in enumerate((m, s) for m in ("imbalanced", "smote", "adasyn", "crl", "capsan")
                                           for s in range(3)):
            p = 0.9 + 0.01 * seed
            store.add({"key": f"mnist-{n}", "method": method, "params": {}, "dataset": "mnist", "protocol": "binary",
                       "pair": [3, 5], "ratio": 0.1, "seed": seed, "epochs": 1, "status": "done",
                       "metrics": {"precision": p, "recall": p - 0.1, "f_measure": p - 0.05, "accuracy": p,
                                   "g_mean": p - 0.02, "balanced_accuracy": p, "roc_auc": p},
                       "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:01+00:00",
                       "duration_s": 1.0, "device": "cpu", "versions": {}})
    rep = run_bench("report", "--results", results, "--out", tmp / "report", "--format", "html", cwd=tmp)
    assert rep.returncode == 0, rep.stderr
    return tmp / "report"


@pytest.fixture(scope="module")
def page(report_dir):
    return (report_dir / "report.html").read_text(encoding="utf-8")


def test_the_page_is_one_well_formed_file_with_every_figure_embedded(page):
    parser = Page()
    parser.feed(page)
    assert parser.stack == []  # every element closed, in order
    assert parser.images and all(src.startswith("data:image/png;base64,") for src in parser.images)
    for src in parser.images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"  # every figure loads
    assert not re.search(r"""(src|href)=['"]https?:""", page)  # nothing fetched from outside


def test_the_page_has_the_tables_provenance_and_failed_cells(page):
    parser = Page()
    parser.feed(page)
    assert parser.tables >= 2  # provenance and Table 3
    assert {"Provenance", "Table 3", "Training budget", "Figures"} <= set(parser.headings)
    assert "table3" not in parser.headings  # once a file name above the table's own "Table 3"
    assert all(a != b for a, b in zip(parser.headings, parser.headings[1:], strict=False))  # no heading repeated
    assert "Failed cells (1)" in page and "SMOTE refused: &lt;too few&gt; neighbours" in page  # escaped
    assert re.search(r"<th>seeds</th><td>0, 1, 2, 7</td>", page)
    assert "<b>" in page  # the best values are marked
    assert "<p>- " not in page and "<li>smote at ratio 0.05, 1 cell (seed 7" in page  # a list, not literal "- "


def test_every_figure_has_a_caption_that_says_what_it_shows(page):
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions and all(re.match(r"(Figure \d|Critical-difference)", c) for c in captions), captions
    figure3 = next(c for c in captions if c.startswith("Figure 3"))
    assert "shaded band: the 95 % Student-t interval of the mean over seeds" in figure3
    assert "<br><small>[" in page  # a 95 % interval on its own line under the mean ± std


# --------------------------------------------------------------------------- the page in a real browser

# Debian's chromium, installed by .ci/run; BENCH_CHROMIUM names another binary. Chromium's background
# services would try the network, which CI machines do not have: they are switched off.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"]
SCREENSHOT = "report-screenshot.png"


def _chromium() -> str:
    binary = os.environ.get("BENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if binary:
        return binary
    if os.environ.get("BENCH_REQUIRE_BROWSER"):  # CI installs it: a missing browser there is a failure
        pytest.fail("no Chromium binary, and BENCH_REQUIRE_BROWSER is set: install Debian's chromium")
    pytest.skip("no Chromium binary (install Debian's chromium, or set BENCH_CHROMIUM)")


def _artifact_dir(root: Path) -> Path:
    """Where the screenshot is kept: $BENCH_TEST_ARTIFACTS, else test-artifacts/ in the checkout."""
    folder = Path(os.environ.get("BENCH_TEST_ARTIFACTS") or root / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_page_renders_in_chromium_with_every_figure_and_no_console_error(report_dir, request):
    binary = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    figures = sorted(p.name for p in report_dir.glob("*.png"))
    assert figures, "the report wrote no PNG figure to embed"
    console, errors, fetched = [], [], []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.on("request", lambda req: fetched.append(req.url))
            tab.goto((report_dir / "report.html").as_uri(), wait_until="load")
            images = tab.evaluate(
                "Array.from(document.images, i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0,"
                " width: i.naturalWidth}))")
            # at 1,280 px nothing scrolls sideways: not the page, not a table inside its own scroll box
            widths = tab.evaluate(
                "({page: document.documentElement.scrollWidth, view: window.innerWidth, tables: Array.from("
                "document.querySelectorAll('table'), t => ({text: t.innerText.slice(0, 40), over: t.scrollWidth"
                " - t.clientWidth, right: t.getBoundingClientRect().right}))})")
            title = tab.title()
            shot = _artifact_dir(request.config.rootpath) / SCREENSHOT
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert title == "capsan-bench report"
    assert widths["page"] <= widths["view"], widths["page"]
    assert [t for t in widths["tables"] if t["over"] > 0 or t["right"] > widths["view"]] == [], widths["tables"]
    assert sorted(f"{i['alt']}.png" for i in images) == figures  # every PNG figure is on the page ...
    assert all(i["ok"] for i in images), [i["alt"] for i in images if not i["ok"]]  # ... and decodes
    assert [c for c in console if c.split(":")[0] in ("error", "warning")] == []
    assert errors == []
    assert [u for u in fetched if not u.startswith(("data:", "file:"))] == []  # nothing from the network
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_words_are_left_aligned_and_numbers_right_aligned(page):
    assert "<td class='t'>imbalanced</td>" in page  # a method name
    assert re.search(r"<td>(<b>)?\d\.\d{3}", page)  # a number keeps the right alignment
    assert "<td class='t'>-" not in page  # a dash (no result) is a number's place
