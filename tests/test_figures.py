"""Figures checked by what they draw (labels, artists, plotted values), saved reproducibly, in a local style only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from PIL import Image

from medtune_utils import figures
from medtune_utils.names import source_order
from medtune_utils.report import (
    collect_comparisons,
    collect_predictions,
    collect_scores,
    collect_train_logs,
    first_stats,
    load_paper_results,
    sample_examples,
)
from medtune_utils.run import Run

FIXTURE = Path(__file__).parent / "fixtures" / "run_small"


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _legend_labels(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _yticks(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def _errorbar_x_ranges(container: ErrorbarContainer) -> list[float]:
    """The left and right ends of each horizontal error bar, flattened."""
    (segments,) = [c.get_segments() for c in container.lines[2]]
    return [float(s[i][0]) for s in segments for i in (0, 1)]


# ---------------------------------------------------------------- import, style and saving


def test_importing_figures_loads_no_training_stack() -> None:
    """Figures are drawn from files: importing them loads neither TRL, torch nor the training code."""
    code = "import sys, medtune_utils.figures; print(sorted(set(sys.modules) & {'trl', 'torch', 'medtune_utils.train'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def _plots() -> dict[str, Callable[[], Figure]]:
    return {
        "composition": lambda: figures.plot_composition(first_stats([FIXTURE])),
        "training_curves": lambda: figures.plot_training_curves(collect_train_logs([FIXTURE])),
        "results": lambda: figures.plot_results(collect_scores([FIXTURE]), load_paper_results()),
        "gains": lambda: figures.plot_gains(collect_comparisons([FIXTURE])),
        "generation_lengths": lambda: figures.plot_generation_lengths(collect_predictions([FIXTURE])),
        "sample_outputs": lambda: figures.plot_sample_outputs(sample_examples(FIXTURE)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_plots()))
def test_plotting_and_saving_leave_global_settings_alone(name: str, tmp_path: Path) -> None:
    """A notebook keeps its own matplotlib style: no figure function or save changes `rcParams`."""
    before = dict(plt.rcParams)
    fig = _plots()[name]()
    assert dict(plt.rcParams) == before
    figures.save_figure(fig, tmp_path, name)
    assert dict(plt.rcParams) == before


def test_figures_are_drawn_in_the_report_style() -> None:
    """Inside the figure the style applies (white grid, bold titles) even though the global settings differ."""
    fig = figures.plot_training_curves(collect_train_logs([FIXTURE]))
    loss_ax = fig.axes[0]
    assert loss_ax.title.get_fontweight() == "bold"
    assert all(line.get_visible() for line in loss_ax.get_ygridlines())


def test_saving_the_same_figure_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    """PNG (300 dpi) and PDF carry no creation date or software version; writes leave no temporary file."""
    fig = figures.plot_gains(collect_comparisons([FIXTURE]))
    first = figures.save_figure(fig, tmp_path / "a", "gains", close=False)
    second = figures.save_figure(fig, tmp_path / "b", "gains")
    assert [p.name for p in first] == ["gains.png", "gains.pdf"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["gains.pdf", "gains.png"]
    pdf = first[1].read_bytes()
    assert pdf.startswith(b"%PDF") and b"CreationDate" not in pdf and b"Matplotlib" not in pdf
    with Image.open(first[0]) as image:
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert "Software" not in image.info


# ---------------------------------------------------------------- each figure's content


def test_composition_bars_are_the_row_counts_and_labels_fit() -> None:
    """One bar per source and split, as long as its row count; every value label ends inside its panel."""
    stats = first_stats([FIXTURE])
    fig = figures.plot_composition(stats)
    order = source_order(stats.source)
    train_ax, valid_ax = fig.axes
    for ax, split in ((train_ax, "train"), (valid_ax, "validation")):
        rows = stats[stats.split == split].set_index("source").rows.reindex(order)
        assert [p.get_width() for p in ax.patches] == list(rows)
        assert ax.get_xlabel() == "rows (log scale)"
    assert _yticks(train_ax) == order
    assert (train_ax.get_title(), valid_ax.get_title()) == ("training rows", "validation rows (source split in brackets)")
    assert " 200 (devel)" in [t.get_text() for t in valid_ax.texts] and " 50 (heldout)" in [t.get_text() for t in valid_ax.texts]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "NER",
        "Relation extraction",
        "NLI",
        "Classification",
        "QA / instructions",
    ]
    _assert_texts_inside(fig)


def test_composition_labels_fit_on_a_linear_scale() -> None:
    """Sizes within a factor of 20 use a linear axis; the longest bar's `(devel)` label still fits."""
    stats = pd.DataFrame(
        {
            "source": ["GAD", "GAD", "HoC", "HoC"],
            "task": ["re", "re", "cls", "cls"],
            "split": ["train", "validation", "train", "validation"],
            "source_split": ["train", "test", "train", "devel"],
            "rows": [900, 800, 1000, 950],
        }
    )
    fig = figures.plot_composition(stats)
    assert fig.axes[0].get_xscale() == "linear"
    assert [p.get_width() for p in fig.axes[1].patches] == [800, 950]
    _assert_texts_inside(fig)


def _assert_texts_inside(fig: Figure) -> None:
    for ax in fig.axes:
        right = ax.get_window_extent().x1
        for text in ax.texts:
            assert text.get_window_extent().x1 <= right + 0.5, text.get_text()


def test_training_curves_plot_the_logged_values() -> None:
    """Loss and learning-rate lines carry exactly the logged steps and values, one line per run."""
    logs = collect_train_logs([FIXTURE])
    other = logs["run_small"].assign(loss=lambda f: f.loss + 0.5)
    fig = figures.plot_training_curves({"run_small": logs["run_small"], "other": other})
    loss_ax, lr_ax = fig.axes
    log = Run(FIXTURE).train_log()
    assert [list(line.get_ydata()) for line in loss_ax.lines] == [[r["loss"] for r in log], list(other.loss)]
    assert list(loss_ax.lines[0].get_xdata()) == [r["step"] for r in log]
    assert list(lr_ax.lines[0].get_ydata()) == [r["learning_rate"] for r in log]
    assert (loss_ax.get_title(), lr_ax.get_title()) == ("Training loss", "Learning-rate schedule")
    assert loss_ax.get_xlabel() == lr_ax.get_xlabel() == "optimizer step"
    assert _legend_labels(loss_ax) == ["run_small: training", "other: training"]


def test_training_curves_draw_the_evaluation_loss_dashed_beside_the_training_loss() -> None:
    """Evaluation records (step, eval_loss) give a dashed line of their own; they leave the training line unbroken."""
    log = collect_train_logs([FIXTURE])["run_small"]
    steps = list(log.step[::2])
    evaluated = pd.DataFrame({"step": steps, "eval_loss": [2.0 + 0.1 * i for i in range(len(steps))]})
    fig = figures.plot_training_curves({"run_small": pd.concat([log, evaluated], ignore_index=True)})
    loss_ax = fig.axes[0]
    training, evaluation = loss_ax.lines
    assert list(training.get_ydata()) == list(log.loss) and training.get_linestyle() == "-"
    assert list(evaluation.get_xdata()) == steps and list(evaluation.get_ydata()) == list(evaluated.eval_loss)
    assert evaluation.get_linestyle() == "--" and evaluation.get_color() == training.get_color()
    assert loss_ax.get_title() == "Training and evaluation loss"
    assert _legend_labels(loss_ax) == ["run_small: training", "run_small: evaluation"]


def test_results_show_ours_with_intervals_beside_the_paper() -> None:
    """Our series are error bars at the headline values; the paper's are markers; a margin keeps 0 and 100 whole."""
    ours, paper = collect_scores([FIXTURE]), load_paper_results()
    fig = figures.plot_results(ours, paper)
    (ax,) = fig.axes
    paper_models = list(dict.fromkeys(paper.dropna(subset=["value"]).model))
    assert _legend_labels(ax) == [f"{m} (paper)" for m in paper_models] + ["run_small/base (ours)", "run_small/tuned (ours)"]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and len(ax.collections) - 2 == len(paper_models)  # each error bar adds one line collection
    wanted = set(zip(paper.source, paper.metric)) | set(zip(ours[ours.headline].source, ours[ours.headline].metric))
    tuned = ours[(ours.model == "tuned") & np.array([pair in wanted for pair in zip(ours.source, ours.metric)])]
    assert sorted(bars[1].lines[0].get_xdata()) == pytest.approx(sorted(tuned.value))
    assert ax.get_xlim() == (-2, 102)
    assert not any(artist.get_clip_on() for artist in [*(bar.lines[0] for bar in bars), *ax.collections[: len(paper_models)]])
    assert "NCBI-disease: F1 (lenient)" in _yticks(ax) and "HoC: Micro-F1" in _yticks(ax)
    assert ax.get_title().startswith("Per-task results\nours on devel, GAD on test")


def test_gains_bars_are_the_deltas_with_their_intervals() -> None:
    """One bar per compared source, as long as the paired difference (points), with its interval; no zero note."""
    comparisons = collect_comparisons([FIXTURE])
    fig = figures.plot_gains(comparisons)
    (ax,) = fig.axes
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    (errors,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    ordered = comparisons.set_index("source").loc[["NCBI-disease", "GAD", "MedNLI", "HoC"]]
    assert [p.get_width() for p in bars] == pytest.approx(list(ordered.delta))
    assert _errorbar_x_ranges(errors) == pytest.approx([x for pair in zip(ordered.low, ordered.high) for x in pair])
    assert _yticks(ax) == ["NCBI-disease: F1 (strict)", "GAD: F1", "MedNLI: Accuracy", "HoC: Micro-F1"]
    assert _legend_labels(ax) == ["run_small: tuned - base"]
    assert ax.get_xlabel().startswith("gain from instruction tuning (percentage points")
    assert "all gains are 0.0 points" not in _texts(fig)


def test_gains_that_are_all_zero_say_so() -> None:
    """Bars of length 0 would look like an empty plot: a note says every gain is 0.0 points."""
    comparisons = collect_comparisons([FIXTURE]).assign(delta=0.0, low=0.0, high=0.0)
    fig = figures.plot_gains(comparisons)
    (ax,) = fig.axes
    assert "all gains are 0.0 points" in _texts(fig)
    assert all(p.get_width() == 0 for p in ax.patches)
    low, high = ax.get_xlim()
    assert low <= -1 and high >= 1


def test_generation_lengths_box_per_source_and_model() -> None:
    """One box per source and run/model at its median length, sources in registry order, the axis past the longest answer."""
    predictions = collect_predictions([FIXTURE])
    fig = figures.plot_generation_lengths(predictions)
    (ax,) = fig.axes
    assert _yticks(ax) == ["NCBI-disease", "GAD", "MedNLI", "HoC"]
    assert _legend_labels(ax) == ["run_small/base", "run_small/tuned"]
    assert sum(isinstance(p, PathPatch) for p in ax.patches) == 4 * 2
    vertical = {float(line.get_xdata()[0]) for line in ax.lines if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2}
    assert set(predictions.groupby(["source", "model"]).words.median()) <= vertical
    assert ax.get_xlim()[1] == pytest.approx(1.5 * predictions.words.max())
    assert predictions.words.max() == max(len(g.split()) for g in predictions.generation)


def test_sample_outputs_show_input_gold_and_each_model() -> None:
    """Panels: the input, the gold answer rendered by the task, then each model's answer, titled."""
    examples = sample_examples(FIXTURE)
    fig = figures.plot_sample_outputs(examples)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [
        "NCBI-disease: input",
        "gold answer",
        "base model",
        "tuned model",
        "GAD: input",
        "gold answer",
        "base model",
        "tuned model",
    ]
    texts = _texts(fig)
    assert texts[0] == "A novel splice - site mutation was identified in\na child with Tay - Sachs disease ."
    assert texts[1].splitlines()[12:14] == ["Tay : B", "- : I"] and texts[5] == "Association"


def test_sample_outputs_show_whitespace_and_never_an_empty_box() -> None:
    """A blank answer reads `(blank: N newlines)`; runs of blank lines shrink to one visible `⏎` line."""
    examples = pd.DataFrame(
        [
            {
                "source": "GAD",
                "input": "x @GENE$ y @DISEASE$",
                "gold": "Association",
                "base": "\n\n\n",
                "tuned": "Association\n\n\n\n\nNo",
            },
            {"source": "MedNLI", "input": "a\nb", "gold": "Neutral", "base": "", "tuned": "Neutral  "},
        ]
    )
    texts = _texts(figures.plot_sample_outputs(examples))
    assert texts[2] == "(blank: 3 newlines)" and texts[6] == "(blank: empty)"
    assert texts[3] == "Association\n⏎ × 4 blank lines\nNo" and texts[7] == "Neutral··"
    for text in texts:
        assert text.strip() and all(line.strip() for line in text.splitlines()), repr(text)


def test_figures_of_absent_inputs_say_absent(tmp_path: Path) -> None:
    """With nothing to draw, each figure carries an `absent:` note instead of failing."""
    missing = tmp_path / "never_ran"
    notes = {
        "composition": figures.plot_composition(first_stats([missing])),
        "training_curves": figures.plot_training_curves(collect_train_logs([missing])),
        "results": figures.plot_results(collect_scores([missing]), load_paper_results().iloc[0:0]),
        "gains": figures.plot_gains(collect_comparisons([missing])),
        "generation_lengths": figures.plot_generation_lengths(collect_predictions([missing])),
        "sample_outputs": figures.plot_sample_outputs(sample_examples(missing)),
    }
    assert {name: [t for t in _texts(fig) if t.startswith("absent:")] for name, fig in notes.items()} == {
        "composition": ["absent: no data statistics"] * 2,
        "training_curves": ["absent: no training log"] * 2,
        "results": ["absent: no scores and no paper numbers"],
        "gains": ["absent: no base-vs-tuned comparison (evaluate at least two models)"],
        "generation_lengths": ["absent: no predictions"],
        "sample_outputs": ["absent: no predictions"],
    }


def test_wrap_cuts_long_answers() -> None:
    text = figures.wrap("word " * 100, width=20, max_lines=3)
    assert text.splitlines()[-1] == "..." and len(text.splitlines()) == 4
    assert np.all([len(line) <= 20 for line in text.splitlines()])
