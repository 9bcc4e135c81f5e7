"""The HTML report: parses, holds every figure inline, references nothing outside itself."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import pytest

from nasp.viz.report import write_report
from nasp.viz.synthetic import write_search_run

HAS_DOT = shutil.which("dot") is not None


class Page(HTMLParser):
    """Collects start tags, their attributes, text and inline styles of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)


def parse(path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def one_cell_run(path, **kw):
    """A search run whose arch.jsonl keeps one cell and one matrix: one arch figure, fast."""
    folder = write_search_run(path, **kw)
    records = [json.loads(line) for line in (folder / "arch.jsonl").read_text().splitlines()]
    for rec in records:
        normal = rec["cells"]["normal"]
        name = next(iter(normal["weights"]))
        rec["cells"] = {"normal": {**normal, "weights": {name: normal["weights"][name]}}}
    (folder / "arch.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return folder


def assert_self_contained(page: Page) -> None:
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    for name, value in page.attrs:
        if name in ("src", "href", "xlink:href", "action", "poster"):
            assert value.startswith(("#", "data:")), (name, value)
        assert "url(http" not in value.replace(" ", "")
    css = "".join(page.styles)
    assert "@import" not in css and "url(" not in css and "@font-face" not in css


def test_report_holds_every_figure_and_opens_offline(tmp_path):
    runs = [one_cell_run(tmp_path / "nasp-a", strategy="nasp", seed=0, lambda_params=0.0),
            one_cell_run(tmp_path / "nasp-b", strategy="nasp", seed=1, lambda_params=0.5)]
    out = write_report(runs, tmp_path / "out" / "report.html", title="My <sweep>")
    page = parse(out)
    assert_self_contained(page)
    # 2 runs x (1 arch figure + 1 cell diagram) + time plot + λ plot (the runs differ in λ)
    assert page.tags.count("svg") == (6 if HAS_DOT else 4)
    assert page.tags.count("figure") == page.tags.count("svg")
    text = " ".join(page.text)
    assert "My <sweep>" in text  # escaped in the source, intact once parsed
    assert "nasp-a" in text and "nasp-b" in text
    assert page.tags.count("table") == 1 and page.tags.count("tr") == 2
    html = out.read_text()
    assert "http" not in html  # not even an SVG namespace declaration
    assert "validation accuracy vs. search time" in html and "model size vs. λ" in html
    ids = [v for k, v in page.attrs if k == "id"]
    assert len(ids) == len(set(ids)), "inlined SVGs must not repeat ids"


def test_report_without_lambda_sweep_has_no_lambda_plot(tmp_path):
    runs = [one_cell_run(tmp_path / "darts", strategy="darts"),
            one_cell_run(tmp_path / "nasp", strategy="nasp")]
    html = write_report(runs, tmp_path / "r.html").read_text()
    assert "model size vs. λ" not in html
    assert parse(tmp_path / "r.html").tags.count("svg") == (5 if HAS_DOT else 3)


def test_report_escapes_run_text_and_survives_partial_runs(tmp_path):
    evil = one_cell_run(tmp_path / "evil", strategy="<script>alert(1)</script>")
    train = tmp_path / "train"
    train.mkdir()
    (train / "config.json").write_text(json.dumps({"command": "train", "strategy": "nasp"}))
    out = write_report([evil, train], tmp_path / "r.html")
    page = parse(out)
    assert "script" not in page.tags
    assert "<script>alert(1)</script>" in " ".join(page.text)
    assert "arch.jsonl is missing" in " ".join(page.text)
    assert "genotype.json is missing" in " ".join(page.text)
    assert_self_contained(page)


def test_report_lists_genotype_as_text_without_dot(tmp_path, monkeypatch):
    run = one_cell_run(tmp_path / "r")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    page = parse(write_report([run], tmp_path / "r.html"))
    text = " ".join(page.text)
    assert "apt-get install graphviz" in text
    assert "pre" in page.tags and "normal cell (output = [2, 3, 4, 5])" in text
    assert page.tags.count("svg") == 2  # arch figure + time plot; no diagram


def test_report_of_a_non_run_folder_is_a_user_error(tmp_path):
    from nasp.errors import NaspError

    (tmp_path / "empty").mkdir()
    with pytest.raises(NaspError, match="not a run folder"):
        write_report([tmp_path / "empty"], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
