"""Figures (PNG at 300 dpi and PDF) from the frames that `report` collects from run folders and the paper's numbers.

Each figure is drawn and saved inside one local style (`style()`): matplotlib's global settings, and so a notebook's
own, are never changed. Files carry no creation date or software version, so the same figure saves to the same
bytes. What is missing shows as an `absent:` note on the figure, never as a crash.
"""

from __future__ import annotations

import functools
import textwrap
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

from .io import atomic_path
from .names import FAMILY_NAMES, FAMILY_ORDER, row_label, source_order, visible_whitespace
from .paths import resolve

DPI = 300
# No creation date, producer or software version in the files: saving the same figure twice gives the same bytes.
METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}
PALETTE = "colorblind"
PAPER_MARKERS = {"paper: tuned LLM": "D", "paper: base LLM": "v", "paper: encoder baseline": "s"}
F = TypeVar("F", bound=Callable[..., Any])


def style_rc() -> dict[str, Any]:
    """The settings of every figure: seaborn's white grid, colour-blind-safe palette, readable fonts, bold titles.

    seaborn is imported here, when a figure is drawn, not with this module: it loads scipy, which takes seconds.
    """
    import seaborn as sns

    return {
        **sns.axes_style("whitegrid"),
        **sns.plotting_context("paper", font_scale=1.15),
        "axes.prop_cycle": matplotlib.cycler(color=sns.color_palette(PALETTE)),
        "axes.titleweight": "bold",
        "figure.dpi": 100,
        "pdf.fonttype": 42,
    }


@contextmanager
def style() -> Iterator[None]:
    """Draw in the report's style; matplotlib's global settings are restored on leaving."""
    with matplotlib.rc_context(style_rc()):
        yield


def styled(plot: F) -> F:
    """Run a plotting function inside `style()`."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return plot(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def save_figure(fig: Figure, out_dir: str | Path, name: str, close: bool = True) -> list[Path]:
    """Save `fig` as `<name>.png` (300 dpi) and `<name>.pdf`, each atomically and reproducibly; close it unless asked not to."""
    out_dir = resolve(out_dir)
    paths = []
    for suffix, metadata in METADATA.items():
        path = out_dir / f"{name}.{suffix}"
        with atomic_path(path) as tmp, style():
            fig.savefig(tmp, format=suffix, dpi=DPI, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    if close:
        plt.close(fig)
    return paths


def palette(n: int) -> list[tuple[float, float, float]]:
    """`n` colours of the colour-blind-safe palette."""
    import seaborn as sns

    return sns.color_palette(PALETTE, n)


# ---------------------------------------------------------------- data


@styled
def plot_composition(stats: pd.DataFrame) -> Figure:
    """Rows per source in train and validation, coloured by task family (log scale when sizes differ widely)."""
    n = stats.source.nunique() if not stats.empty else 4
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * max(4, n) + 1.2), sharey=True)
    if stats.empty:
        for ax in axes:
            absent(ax, "no data statistics")
        return fig
    order = source_order(stats.source)
    colours = dict(zip(FAMILY_ORDER, palette(len(FAMILY_ORDER))))
    largest = max(float(stats.rows.max()), 1.0)
    log_scale = largest / max(float(stats.rows[stats.rows > 0].min()), 1.0) > 20
    labels: dict[Axes, list[Text]] = {}
    for ax, split in zip(axes, ("train", "validation")):
        part = stats[stats.split == split].set_index("source").reindex(order)
        ax.barh(order, part.rows.fillna(0), color=[colours.get(t, "grey") for t in part.task.fillna("")])
        if log_scale:
            ax.set_xscale("log")
            ax.set_xlim(0.8, largest * 2)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        else:
            ax.set_xlim(0, largest * 1.1)
        ax.set_xlabel("rows" + (" (log scale)" if log_scale else ""))
        ax.set_title("training rows" if split == "train" else "validation rows (source split in brackets)")
        read = part.source_split if "source_split" in part and split != "train" else pd.Series("", index=part.index)
        labels[ax] = [
            ax.text(value, y, f" {int(value):,}" + (f" ({source_split})" if source_split else ""), va="center", fontsize=8)
            for y, (value, source_split) in enumerate(zip(part.rows.fillna(0), read.fillna("")))
            if value
        ]
    axes[0].invert_yaxis()
    present = [f for f in FAMILY_ORDER if f in set(stats.task)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[f]) for f in present]
    fig.legend(
        handles, [FAMILY_NAMES[f] for f in present], loc="lower center", ncol=5, frameon=False, bbox_to_anchor=(0.5, -0.06)
    )
    fig.suptitle("Instruction dataset composition")
    for _ in range(2):  # the layout changes the axes' width, which changes the room the labels need
        fig.tight_layout()
        for ax, texts in labels.items():
            fit_texts(ax, texts)
    return fig


def fit_texts(ax: Axes, texts: Iterable[Text], pad_px: float = 4.0) -> None:
    """Extend the x-axis to the right until every text, drawn rightwards from its data position, ends inside the axes."""
    scale = ax.xaxis.get_transform()
    left, right = (float(u) for u in scale.transform(np.reshape(ax.get_xlim(), (-1, 1))).ravel())
    width = ax.get_window_extent().width
    for text in texts:
        share = min((text.get_window_extent().width + pad_px) / width, 0.9)
        start = float(scale.transform(np.reshape(text.get_position()[0], (1, 1)))[0, 0])
        right = max(right, (start - share * left) / (1 - share))
    ax.set_xlim(right=float(scale.inverted().transform(np.reshape(right, (1, 1)))[0, 0]))


# ---------------------------------------------------------------- training


@styled
def plot_training_curves(logs: dict[str, pd.DataFrame]) -> Figure:
    """Training loss (solid) and, where logged, evaluation loss (dashed) and the learning rate against optimizer step."""
    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    if not logs:
        absent(loss_ax, "no training log")
        absent(lr_ax, "no training log")
        return fig
    for colour, (run, frame) in zip(palette(len(logs)), logs.items()):
        trained = frame[frame.loss.notna()] if "loss" in frame else frame.iloc[:0]
        loss_ax.plot(trained.step, trained.loss, marker="o", markersize=3, color=colour, label=f"{run}: training")
        if "eval_loss" in frame:
            evaluated = frame[frame.eval_loss.notna()]
            loss_ax.plot(
                evaluated.step,
                evaluated.eval_loss,
                linestyle="--",
                marker="s",
                markersize=3,
                color=colour,
                label=f"{run}: evaluation",
            )
        if "learning_rate" in trained:
            lr_ax.plot(trained.step, trained.learning_rate, color=colour, label=run)
    title = "Training and evaluation loss" if any("eval_loss" in f for f in logs.values()) else "Training loss"
    loss_ax.set(xlabel="optimizer step", ylabel="loss (nats/token, completion only)", title=title)
    lr_ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning-rate schedule")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- results


@styled
def plot_results(ours: pd.DataFrame, paper: pd.DataFrame) -> Figure:
    """Per-task scores: our runs (with 95% bootstrap intervals) against the paper's LLMs and encoder baselines."""
    table = comparable(ours, paper)
    labels = list(dict.fromkeys(table.label))
    fig, ax = plt.subplots(figsize=(9, 0.55 * max(4, len(labels)) + 1.5))
    if table.empty:
        absent(ax, "no scores and no paper numbers")
        return fig
    series = list(dict.fromkeys(table.series))
    offsets = np.linspace(-0.3, 0.3, len(series)) if len(series) > 1 else [0.0]
    for colour, offset, name in zip(palette(len(series)), offsets, series):
        part = table[table.series == name]
        y = [labels.index(label) + offset for label in part.label]
        if part.ci_low.notna().any():
            err = np.array([part.value - part.ci_low, part.ci_high - part.value])
            ax.errorbar(part.value, y, xerr=np.nan_to_num(err), fmt="o", color=colour, capsize=3, label=name, clip_on=False)
        else:
            marker = PAPER_MARKERS.get(part.kind.iloc[0], "o")
            ax.scatter(part.value, y, marker=marker, color=colour, s=40, label=name, zorder=3, clip_on=False)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlim(-2, 102)  # a margin, so that scores of 0 or 100 are drawn whole
    ax.set_xlabel("score (%): entity-level F1 for NER, accuracy / F1 / micro-F1 as labelled")
    mine = table[table.kind == "ours"]
    ours_note = f"ours on {splits_text(mine.source, mine.split)}; " if not mine.empty else ""
    ax.set_title(f"Per-task results\n{ours_note}paper: LLM NER on BioBERT devel, other splits unstated")
    ax.legend(
        fontsize=8,
        loc="lower left",
        bbox_to_anchor=(1.0, 0.0),
        frameon=False,
        title="error bars (ours): 95% bootstrap CI" if not mine.empty else None,
        title_fontsize=8,
    )
    fig.tight_layout()
    return fig


COMPARABLE_COLUMNS = ["label", "series", "kind", "value", "ci_low", "ci_high", "split", "source"]


def comparable(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Long frame of (label, series, value, interval) for the paper's metrics and our headline metrics."""
    frames = []
    known = paper.dropna(subset=["value"])
    if not known.empty:
        frames.append(
            pd.DataFrame(
                {
                    "label": [row_label(s, m) for s, m in zip(known.source, known.metric)],
                    "series": [f"{model} (paper)" for model in known.model],
                    "kind": [f"paper: {role}" for role in known.role],
                    "value": known.value,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "split": known.split,
                    "source": known.source,
                }
            )
        )
    if not ours.empty:
        wanted = set(zip(paper.source, paper.metric)) | set(
            zip(ours.loc[ours.headline, "source"], ours.loc[ours.headline, "metric"])
        )
        mine = ours[[pair in wanted for pair in zip(ours.source, ours.metric)]]
        frames.append(
            pd.DataFrame(
                {
                    "label": [row_label(s, m) for s, m in zip(mine.source, mine.metric)],
                    "series": [f"{r}/{m} (ours)" for r, m in zip(mine.run, mine.model)],
                    "kind": "ours",
                    "value": mine.value,
                    "ci_low": mine.ci_low,
                    "ci_high": mine.ci_high,
                    "split": mine.split,
                    "source": mine.source,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=COMPARABLE_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    order = {s: i for i, s in enumerate(source_order(table.source))}
    return table.sort_values(by="source", key=lambda col: col.map(order), kind="stable")


def splits_text(sources: Iterable[str], splits: Iterable[str]) -> str:
    """The split most sources were read from, then each source read from another: `devel, GAD on test`."""
    pairs = {(source, split) for source, split in zip(sources, splits) if split}
    if not pairs:
        return "unnamed splits"
    common = Counter(split for _, split in pairs).most_common(1)[0][0]
    order = source_order(source for source, _ in pairs)
    others = sorted((pair for pair in pairs if pair[1] != common), key=lambda pair: (order.index(pair[0]), pair[1]))
    return ", ".join([common, *(f"{source} on {split}" for source, split in others)])


@styled
def plot_gains(comparisons: pd.DataFrame) -> Figure:
    """Tuned minus base, per task, in percentage points of the headline metric, with paired 95% intervals."""
    labels = [row_label(s, m) for s, m in zip(comparisons.source, comparisons.metric)] if not comparisons.empty else []
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(4, len(labels)) + 1.2))
    if comparisons.empty:
        absent(ax, "no base-vs-tuned comparison (evaluate at least two models)")
        return fig
    rank = {source: i for i, source in enumerate(source_order(comparisons.source))}
    comparisons = comparisons.sort_values(by="source", key=lambda col: col.map(rank), kind="stable")
    runs = list(dict.fromkeys(comparisons.run))
    order = list(dict.fromkeys(row_label(s, m) for s, m in zip(comparisons.source, comparisons.metric)))
    offsets = np.linspace(-0.25, 0.25, len(runs)) if len(runs) > 1 else [0.0]
    for colour, offset, run in zip(palette(len(runs)), offsets, runs):
        part = comparisons[comparisons.run == run]
        y = [order.index(row_label(s, m)) + offset for s, m in zip(part.source, part.metric)]
        label = f"{run}: {part.model_b.iloc[0]} - {part.model_a.iloc[0]}"
        ax.barh(y, part.delta, height=0.5 / len(runs), color=colour, label=label)
        ax.errorbar(part.delta, y, xerr=[part.delta - part.low, part.high - part.delta], fmt="none", ecolor="black", capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    low, high = ax.get_xlim()
    ax.set_xlim(min(low, -1.0), max(high, 1.0))
    if (comparisons.delta.abs() < 0.05).all():
        note = "all gains are 0.0 points"
        ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=11, transform=ax.transAxes, bbox={"facecolor": "white"})
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("gain from instruction tuning (percentage points, paired bootstrap 95% CI)")
    ax.set_title(f"Base vs tuned on the same evaluation rows ({splits_text(comparisons.source, comparisons.split)})")
    ax.legend(fontsize=8, frameon=False, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- generations


@styled
def plot_generation_lengths(predictions: pd.DataFrame) -> Figure:
    """Distribution of generated answer lengths (words) per source and run/model."""
    import seaborn as sns

    n = predictions.source.nunique() if not predictions.empty else 4
    fig, ax = plt.subplots(figsize=(9, 0.5 * max(4, n) + 1.2))
    if predictions.empty:
        absent(ax, "no predictions")
        return fig
    frame = predictions.assign(series=predictions.run + "/" + predictions.model)
    sns.boxplot(
        data=frame, x="words", y="source", hue="series", order=source_order(frame.source), ax=ax, fliersize=2, linewidth=0.8
    )
    ax.set_xscale("symlog", linthresh=1, linscale=0.5)
    longest = max(float(frame.words.max()), 1.0)
    ticks = [0] + [m * 10**e for e in range(6) for m in (1, 2, 5) if m * 10**e <= 1.5 * longest]
    ax.set_xticks(ticks, [f"{t:,}" for t in ticks])
    ax.set_xlim(-0.3, 1.5 * longest)
    ax.xaxis.set_minor_locator(ticker.NullLocator())
    ax.set_xlabel("generated answer length (words; 0 = blank answer, log scale above 1)")
    ax.set_ylabel("")
    ax.set_title("Length of generated answers")
    ax.legend(fontsize=8, title=None, frameon=False, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    fig.tight_layout()
    return fig


@styled
def plot_sample_outputs(examples: pd.DataFrame, width: int = 48, max_lines: int = 30, fontsize: float = 7.5) -> Figure:
    """Base vs tuned answers on the same inputs (like the paper's Figures 4 and 5), drawn as text panels.

    Each panel is sized to its text, so a whole `token : TAG` answer fits and the figure stays narrow enough to
    be read at page width. Text is shown verbatim (no math rendering of the `$` in masked relation inputs) with
    its whitespace made visible: a blank answer reads `(blank: 3 newlines)`, never an empty box.
    """
    models = [c for c in examples.columns if c not in {"source", "input", "gold"}]
    columns = ["input", "gold", *models]
    texts = [[wrap(visible_whitespace(str(example[c])), width, max_lines) for c in columns] for _, example in examples.iterrows()]
    inch_per_char, inch_per_line = 0.6 * fontsize / 72, 1.25 * fontsize / 72
    widths = [
        max(1.4, 0.45 + inch_per_char * max((len(line) for row in texts for line in row[c].splitlines()), default=0))
        for c in range(len(columns))
    ]
    heights = [0.55 + inch_per_line * max(text.count("\n") + 1 for text in row) for row in texts] or [2.0]
    fig, axes = plt.subplots(
        len(heights),
        len(columns),
        figsize=(sum(widths), sum(heights) + 0.5),
        squeeze=False,
        gridspec_kw={"height_ratios": heights, "width_ratios": widths},
    )
    if examples.empty:
        absent(axes[0][0], "no predictions")
        return fig
    for r, (_, example) in enumerate(examples.iterrows()):
        for c, column in enumerate(columns):
            ax = axes[r][c]
            ax.set_axis_off()
            box = {"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#bbbbbb"}
            ax.text(
                0.0,
                1.0,
                texts[r][c],
                va="top",
                ha="left",
                family="monospace",
                fontsize=fontsize,
                parse_math=False,
                transform=ax.transAxes,
                bbox=box,
            )
            title = {"input": f"{example['source']}: input", "gold": "gold answer"}.get(column, f"{column} model")
            ax.set_title(title, fontsize=9, loc="left")
    fig.suptitle("Sample outputs: base vs tuned on the same prompts")
    fig.tight_layout()
    return fig


def wrap(text: str, width: int, max_lines: int) -> str:
    """`text` wrapped at `width` characters, cut to `max_lines` lines (then `...`)."""
    lines = [piece for line in text.splitlines() or [""] for piece in (textwrap.wrap(line, width) or [""])]
    return "\n".join(lines[:max_lines] + (["..."] if len(lines) > max_lines else []))


def absent(ax: Axes, message: str) -> None:
    """Replace an empty plot by a grey `absent: ...` note."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"absent: {message}", ha="center", va="center", fontsize=11, color="grey", transform=ax.transAxes)


# ---------------------------------------------------------------- composition study


@styled
def plot_composition_study(deltas: pd.DataFrame, reference: str, mixes: list[str]) -> Figure:
    """One panel per source: each mix's headline metric minus the reference mix's (points), paired 95% intervals."""
    others = [mix for mix in mixes if mix != reference]
    sources = source_order(deltas.source) if not deltas.empty else []
    columns = min(3, max(1, len(sources)))
    rows = max(1, -(-len(sources) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 0.35 * max(3, len(others)) * rows + 1.4), squeeze=False)
    flat = list(axes.flat)
    if not sources:
        absent(flat[0], "no scored mix (run the study first)")
        return fig
    for ax in flat[len(sources) :]:
        ax.set_axis_off()
    colours = dict(zip(others, palette(len(others))))
    for ax, source in zip(flat, sources):
        part = deltas[(deltas.source == source) & (deltas.mix != reference)].set_index("mix").reindex(others)
        y = np.arange(len(others))
        shown = part.delta.notna().to_numpy()
        ax.errorbar(
            part.delta[shown],
            y[shown],
            xerr=[(part.delta - part.low)[shown], (part.high - part.delta)[shown]],
            fmt="none",
            ecolor="black",
            capsize=2,
        )
        ax.scatter(part.delta[shown], y[shown], c=[colours[m] for m in np.array(others)[shown]], zorder=3)
        ax.axvline(0, color="black", linewidth=0.8)
        low, high = ax.get_xlim()
        ax.set_xlim(min(low, -1.0), max(high, 1.0))
        ax.set_yticks(y, others)
        ax.invert_yaxis()
        metric = deltas.loc[deltas.source == source, "metric"].iloc[0]
        value = deltas.loc[(deltas.source == source) & (deltas.mix == reference), "value"]
        title = f"{row_label(source, metric)}\n{reference}: {value.iloc[0]:.1f}" if len(value) else row_label(source, metric)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"points vs {reference}", fontsize=8)
    fig.suptitle(f"Difference from mix {reference!r} (headline metric, paired bootstrap 95% CI)", fontsize=10)
    fig.tight_layout()
    return fig
