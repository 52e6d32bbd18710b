"""The self-contained HTML report: tables, embedded figures that decode, provenance and failures."""

import base64
import re
from html.parser import HTMLParser

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
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    results = tmp / "results"
    run = run_bench("run", "--preset", "smoke", "--results", results, "--quiet", cwd=tmp)
    assert run.returncode == 0, run.stderr
    with Store(results) as store:  # one failed cell, so the page must list it
        store.add({"key": "broken", "method": "smote", "params": {}, "dataset": "digits", "protocol": "binary",
                   "pair": [3, 5], "ratio": 0.1, "seed": 7, "epochs": 1, "status": "failed",
                   "error": "SMOTE refused: <too few> neighbours", "started_at": "2026-01-01T00:00:00+00:00",
                   "finished_at": "2026-01-01T00:00:01+00:00", "duration_s": 1.0, "device": "cpu", "versions": {}})
    rep = run_bench("report", "--results", results, "--out", tmp / "report", "--format", "html", cwd=tmp)
    assert rep.returncode == 0, rep.stderr
    return (tmp / "report" / "report.html").read_text(encoding="utf-8")


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
    assert {"Provenance", "table3", "Figures"} <= set(parser.headings)
    assert "Failed cells (1)" in page and "SMOTE refused: &lt;too few&gt; neighbours" in page  # escaped
    assert re.search(r"<th>seeds</th><td>0, 7</td>", page)
    assert "<b>" in page  # the best values are marked
