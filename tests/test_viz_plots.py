"""The three figure kinds: right panels, lines and numbers, written as valid PNG and SVG."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from statistics import mean

import numpy as np
import pytest

from nasp.errors import NaspError
from nasp.viz import plots
from nasp.viz.runs import load_run
from synthetic import write_search_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")


def svg_texts(path) -> list[str]:
    """All text in an SVG file (it must parse as XML)."""
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")]


def assert_png_svg(paths, stem: str) -> None:
    assert sorted(p.name for p in paths) == [f"{stem}.png", f"{stem}.svg"]
    png = next(p for p in paths if p.suffix == ".png")
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    svg_texts(next(p for p in paths if p.suffix == ".svg"))


@pytest.fixture
def nasp_run(tmp_path):
    return load_run(write_search_run(tmp_path / "nasp-0", strategy="nasp", epochs=2, ops=OPS))


def test_arch_figure_has_a_panel_per_edge_and_a_line_per_op(nasp_run):
    fig = plots.arch_weights_figure(nasp_run, "normal", "A")
    assert len(fig.axes) == 14
    titles = {ax.get_title() for ax in fig.axes}
    assert "node 0 ← c_{k-2}" in titles and "node 3 ← node 2" in titles and len(titles) == 14
    for ax in fig.axes:
        assert len(ax.get_lines()) == len(OPS)
        assert list(ax.get_lines()[0].get_xdata()) == [-1, 0, 1]
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == list(OPS)


def test_arch_lines_carry_the_recorded_weights(nasp_run):
    fig = plots.arch_weights_figure(nasp_run, "reduce", "A_bar")
    edges = nasp_run.arch[0]["cells"]["reduce"]["edges"]
    e = 5
    ax = next(a for a in fig.axes
              if a.get_title() == plots.edge_title("reduce", *edges[e], inputs=2))
    for k, line in enumerate(ax.get_lines()):
        expected = [rec["cells"]["reduce"]["weights"]["A_bar"][e][k] for rec in nasp_run.arch]
        assert list(line.get_ydata()) == pytest.approx(expected)


def test_plot_arch_writes_every_matrix_and_cell(nasp_run, tmp_path):
    assert plots.arch_matrices(nasp_run) == [("normal", "A"), ("normal", "A_bar"),
                                             ("reduce", "A"), ("reduce", "A_bar")]
    # Drawing 14 panels is the slow part; one cell keeps this test fast.
    lines = [json.loads(line) for line in (nasp_run.path / "arch.jsonl").read_text().splitlines()]
    for record in lines:
        del record["cells"]["reduce"]
    (nasp_run.path / "arch.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    paths = plots.plot_arch_weights(load_run(nasp_run.path), tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["arch-normal-A.png", "arch-normal-A.svg", "arch-normal-A_bar.png",
                     "arch-normal-A_bar.svg"]
    assert_png_svg([p for p in paths if p.stem == "arch-normal-A"], "arch-normal-A")
    texts = svg_texts(tmp_path / "out" / "arch-normal-A.svg")
    assert "node 1 ← c_{k-1}" in texts
    assert set(OPS) <= set(texts)


@pytest.mark.parametrize("strategy, names", [("pa-lazy", ["A", "A_bar"]),
                                             ("darts2", ["alpha", "softmax"]),
                                             ("random", ["A_bar"]), ("fixed", ["A_bar"])])
def test_every_strategy_records_what_its_snapshot_holds(tmp_path, strategy, names):
    """Random search and fixed runs keep one matrix per cell; the plots must not expect two."""
    run = load_run(write_search_run(tmp_path / strategy, strategy=strategy, epochs=1, ops=OPS))
    assert plots.arch_matrices(run) == [(c, n) for c in ("normal", "reduce") for n in names]
    if "A_bar" in names:  # the discrete architecture: one-hot rows and pruned (zero) rows
        rows = run.arch[-1]["cells"]["normal"]["weights"]["A_bar"]
        assert all(sorted(set(r)) in ([0.0], [0.0, 1.0]) and sum(r) <= 1 for r in rows)


def test_recurrent_arch_figure_has_36_panels(tmp_path):
    run = load_run(write_search_run(tmp_path / "lm", task="lm", strategy="darts", epochs=2))
    assert plots.arch_matrices(run) == [("recurrent", "alpha"), ("recurrent", "softmax")]
    fig = plots.arch_weights_figure(run, "recurrent", "softmax")
    assert len(fig.axes) == 36
    assert {"node 1 ← node 0", "node 8 ← node 7"} <= {ax.get_title() for ax in fig.axes}
    assert all(len(ax.get_lines()) == 4 for ax in fig.axes)


def test_arch_plot_of_a_train_run_names_the_missing_file(tmp_path, nasp_run):
    (nasp_run.path / "arch.jsonl").unlink()
    with pytest.raises(NaspError, match="arch.jsonl"):
        plots.plot_arch_weights(load_run(nasp_run.path), tmp_path)


def test_time_figure_has_one_line_per_run_with_the_metrics(tmp_path):
    runs = [load_run(write_search_run(tmp_path / f"{s}-{seed}", strategy=s, seed=seed,
                                      epoch_time=t))
            for s, seed, t in [("nasp", 0, 5.0), ("nasp", 1, 6.0), ("darts", 0, 20.0)]]
    fig = plots.accuracy_vs_time_figure(runs)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["nasp, seed 0", "nasp, seed 1", "darts"]
    for line, run in zip(lines, runs, strict=True):
        assert list(line.get_xdata()) == pytest.approx([m["wall_time"] for m in run.metrics])
        assert list(line.get_ydata()) == pytest.approx([100 * m["valid_acc"]
                                                        for m in run.metrics])
    assert ax.get_ylabel() == "search-time valid accuracy (%)"
    # a colour per strategy, a line style per seed: 7 strategies x 3 seeds stay readable
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    paths = plots.plot_accuracy_vs_time(runs, tmp_path / "out")
    assert_png_svg(paths, "valid-vs-time")
    assert "darts" in svg_texts(tmp_path / "out" / "valid-vs-time.svg")


def test_time_figure_uses_perplexity_for_language_models(tmp_path):
    cnn = load_run(write_search_run(tmp_path / "cnn"))
    lm = load_run(write_search_run(tmp_path / "lm", task="lm", epochs=3))
    fig = plots.accuracy_vs_time_figure([cnn, lm])
    assert [ax.get_ylabel() for ax in fig.axes] == ["search-time valid accuracy (%)",
                                                    "search-time valid perplexity"]
    (line,) = fig.axes[1].get_lines()
    assert list(line.get_ydata()) == pytest.approx([m["valid_ppl"] for m in lm.metrics])


def test_lambda_figure_plots_means_over_seeds_and_every_run(tmp_path):
    table = {  # (λ, seed) -> (params M, valid acc)
        (0.0, 0): (3.0, 0.90), (0.0, 1): (3.4, 0.92),
        (0.1, 0): (2.0, 0.88), (0.1, 1): (2.2, 0.86), (0.1, 2): (2.4, 0.87),
        (1.0, 0): (1.0, 0.80),
    }
    runs = [load_run(write_search_run(tmp_path / f"l{lam}-s{seed}", seed=seed, lambda_params=lam,
                                      result={"eval_params_m": p, "final_test_acc": a}))
            for (lam, seed), (p, a) in table.items()]
    fig = plots.lambda_figure(runs)
    ax_params, ax_acc = fig.axes
    lams = [0.0, 0.1, 1.0]
    for ax, k, scale in ((ax_params, 0, 1.0), (ax_acc, 1, 100.0)):
        (mean_line,) = ax.get_lines()
        assert list(mean_line.get_xdata()) == lams
        expected = [mean(v[k] for (lam, _), v in table.items() if lam == x) * scale for x in lams]
        assert list(mean_line.get_ydata()) == pytest.approx(expected)
        (dots,) = ax.collections
        assert len(dots.get_offsets()) == len(table)
    assert ax_acc.get_xscale() == "symlog"  # λ=0 with λ spanning a decade
    paths = plots.plot_lambda(runs, tmp_path / "out")
    assert_png_svg(paths, "lambda")
    assert "model size vs. λ" in svg_texts(tmp_path / "out" / "lambda.svg")


def test_lambda_figure_without_lambda_is_a_user_error(tmp_path):
    run = load_run(write_search_run(tmp_path / "darts", strategy="darts"))
    with pytest.raises(NaspError, match="lambda_cost"):
        plots.lambda_figure([run])


def test_lambda_figure_refuses_mixed_tasks(tmp_path):
    cnn = load_run(write_search_run(tmp_path / "cnn", lambda_params=0.1))
    lm = load_run(write_search_run(tmp_path / "lm", task="lm", lambda_params=0.2))
    with pytest.raises(NaspError, match="one task"):
        plots.lambda_figure([cnn, lm])


def test_lambdas_differ(tmp_path):
    a = load_run(write_search_run(tmp_path / "a", lambda_params=0.1))
    b = load_run(write_search_run(tmp_path / "b", lambda_params=0.1, seed=1))
    c = load_run(write_search_run(tmp_path / "c", lambda_params=0.2))
    assert not plots.lambdas_differ([a, b]) and plots.lambdas_differ([a, c])


# --- one architecture figure per strategy -------------------------------------------------------

@pytest.mark.parametrize("strategy, shown", [("nasp", "A"), ("darts", "softmax"),
                                             ("asap", "weights"), ("random", "A_bar")])
def test_summary_shows_the_mean_final_matrix_over_the_seeds(tmp_path, strategy, shown):
    runs = [load_run(write_search_run(tmp_path / f"{strategy}-{s}", strategy=strategy, seed=s,
                                      epochs=2, ops=OPS)) for s in range(3)]
    fig = plots.arch_summary_figure(runs)
    assert len(fig.axes) == 4  # normal, reduce and their colour bars
    for ax, cell in zip(fig.axes, ("normal", "reduce")):
        assert ax.get_title() == f"{cell} cell: final {shown}, mean of 3 runs"
        expected = [[mean(r.arch[-1]["cells"][cell]["weights"][shown][e][k] for r in runs)
                     for k in range(len(OPS))] for e in range(14)]
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), expected)
        assert [t.get_text() for t in ax.get_xticklabels()] == list(OPS)


def test_summary_counts_the_runs_that_kept_each_op(tmp_path):
    runs = [load_run(write_search_run(tmp_path / f"r{s}", seed=s, epochs=1, ops=OPS))
            for s in range(3)]
    ax = plots.arch_summary_figure(runs).axes[0]
    edges = [tuple(e) for e in runs[0].arch[0]["cells"]["normal"]["edges"]]
    counts: dict[tuple[int, int], int] = {}
    for run in runs:
        pairs = run.genotype["normal"]
        for i, (op, j) in enumerate(pairs):
            key = (edges.index((i // 2, j)), OPS.index(op))
            counts[key] = counts.get(key, 0) + 1
    shown = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text())
             for t in ax.texts}
    assert shown == counts and sum(shown.values()) == 3 * 8


def test_summary_leaves_out_runs_of_another_space(tmp_path):
    runs = [load_run(write_search_run(tmp_path / "a", epochs=1, ops=OPS)),
            load_run(write_search_run(tmp_path / "b", seed=1, epochs=1, ops=OPS[:2]))]
    ax = plots.arch_summary_figure(runs).axes[0]
    assert ax.get_title().endswith("mean of 1 run")
