"""The HTML report: parses, holds every figure inline, references nothing outside itself, stays
small over a 21-run comparison, and renders in a real browser (headless Chromium) where one is
installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from nasp.viz.report import write_report
from synthetic import write_search_run

STRATEGIES = ("nasp", "darts", "darts2", "pa", "pa-lazy", "asap", "random")
OPS7 = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
        "dil_conv_3x3", "dil_conv_5x5")


class Page(HTMLParser):
    """Collects start tags, their attributes, text and inline styles of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.text: list[str] = []
        self.styles: list[str] = []
        self.ids: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.ids += [v for k, v in attrs if k == "id"]
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


def assert_links_resolve(page: Page) -> None:
    ids = set(page.ids)
    assert len(ids) == len(page.ids), "inlined SVGs must not repeat ids"
    for name, value in page.attrs:
        if name in ("href", "xlink:href") and value.startswith("#"):
            assert value[1:] in ids, value


def test_report_holds_every_figure_and_opens_offline(tmp_path):
    runs = [one_cell_run(tmp_path / "nasp-a", strategy="nasp", seed=0, lambda_params=0.0),
            one_cell_run(tmp_path / "nasp-b", strategy="nasp", seed=1, lambda_params=0.5)]
    out = write_report(runs, tmp_path / "out" / "report.html", title="My <sweep>")
    page = parse(out)
    assert_self_contained(page)
    assert_links_resolve(page)
    # time plot + λ plot (the runs differ in λ) + 1 strategy figure + 2 cell diagrams
    assert page.tags.count("svg") == 5
    assert page.tags.count("figure") == page.tags.count("svg")
    text = " ".join(page.text)
    assert "My <sweep>" in text  # escaped in the source, intact once parsed
    assert "nasp-a" in text and "nasp-b" in text
    assert page.tags.count("table") == 1 and page.tags.count("tr") == 2
    html = out.read_text()
    assert "http" not in html  # not even an SVG namespace declaration
    assert "validation accuracy vs. time" in html and "model size vs. λ" in html
    assert "mean of 2 runs" in html  # the strategy figure averages the seeds


def test_full_report_adds_every_runs_weights_per_epoch(tmp_path):
    runs = [one_cell_run(tmp_path / "a", strategy="nasp", seed=0),
            one_cell_run(tmp_path / "b", strategy="nasp", seed=1)]
    compact = write_report(runs, tmp_path / "compact.html")
    full = write_report(runs, tmp_path / "full.html", full=True)
    page = parse(full)
    assert_self_contained(page)
    assert_links_resolve(page)
    # time plot + strategy figure + 2 x (cell diagram + one arch figure)
    assert page.tags.count("svg") == 6 and parse(compact).tags.count("svg") == 4
    assert "by epoch" in full.read_text() and "by epoch" not in compact.read_text()


def test_report_without_lambda_sweep_has_no_lambda_plot(tmp_path):
    runs = [one_cell_run(tmp_path / "darts", strategy="darts"),
            one_cell_run(tmp_path / "nasp", strategy="nasp")]
    html = write_report(runs, tmp_path / "r.html").read_text()
    assert "model size vs. λ" not in html
    assert parse(tmp_path / "r.html").tags.count("svg") == 5  # time, 2 strategies, 2 cells


def test_report_escapes_run_text_and_survives_partial_runs(tmp_path):
    evil = one_cell_run(tmp_path / "evil", strategy="<script>alert(1)</script>")
    train = tmp_path / "train"
    train.mkdir()
    (train / "config.json").write_text(json.dumps({"command": "train", "strategy": "nasp"}))
    out = write_report([evil, train], tmp_path / "r.html", full=True)
    page = parse(out)
    assert "script" not in page.tags
    text = " ".join(page.text)
    assert "<script>alert(1)</script>" in text
    assert "arch.jsonl is missing" in text and "genotype.json is missing" in text
    assert "no architecture history (no arch.jsonl) in these runs" in text
    assert_self_contained(page)


def test_report_draws_cells_without_graphviz(tmp_path, monkeypatch):
    run = one_cell_run(tmp_path / "r")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    html = write_report([run], tmp_path / "r.html").read_text()
    assert "normal cell" in html and "reduce cell" in html and "graphviz" not in html.lower()
    ops = {op for cell in ("normal", "reduce") for op, _ in json.loads(
        (run / "genotype.json").read_text())[cell]}
    assert all(f">{op}<" in html for op in ops)


def test_report_of_a_non_run_folder_is_a_user_error(tmp_path):
    from nasp.errors import NaspError

    (tmp_path / "empty").mkdir()
    with pytest.raises(NaspError, match="not a run folder"):
        write_report([tmp_path / "empty"], tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.fixture(scope="module")
def comparison_page(tmp_path_factory):
    """The README comparison's shape: 7 strategies x 3 seeds, 10 epochs, nasp-7's op list."""
    root = tmp_path_factory.mktemp("cmp")
    for strategy in STRATEGIES:
        for seed in range(3):
            write_search_run(root / f"{strategy}-{seed}", strategy=strategy, seed=seed,
                             epochs=10, ops=OPS7)
    return write_report([root], root / "report.html")


def test_21_run_comparison_page_stays_under_3_mb(comparison_page):
    size = comparison_page.stat().st_size
    assert size <= 3 * 1024 * 1024, size
    page = parse(comparison_page)
    assert_self_contained(page)
    assert_links_resolve(page)
    # one figure per strategy, one cell diagram per run, the time plot
    assert page.tags.count("svg") == len(STRATEGIES) + 21 + 1
    ids = set(page.ids)
    assert {f"strategy-{k}" for k in range(7)} <= ids and {f"run-{i}" for i in range(21)} <= ids


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _headless(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", *args], capture_output=True, timeout=180,
                          check=False)


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_comparison_page_renders_in_headless_chromium(comparison_page, tmp_path):
    url = comparison_page.resolve().as_uri()
    dom = _headless("--dump-dom", url)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    rendered = dom.stdout.decode("utf-8")
    # the browser parsed every inline figure and the whole table
    assert len(re.findall(r"<svg\b", rendered)) == len(STRATEGIES) + 21 + 1
    assert rendered.count("<tr>") == 1 + len(STRATEGIES)
    shot = tmp_path / "shot.png"
    done = _headless(f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert done.returncode == 0 and shot.is_file(), done.stderr.decode(errors="replace")[-2000:]
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    lo, hi = image.getextrema()
    assert lo < 60 and hi > 240  # text and figures drawn on a white page, not a blank one
