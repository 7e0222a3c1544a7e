"""Encoder baselines: profiles, sub-word alignment both ways, notebook 06 on a tiny run, and the tiny BERT on real data."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medtune_utils import baselines
from medtune_utils.baselines import (
    MULTI,
    PAIR,
    SINGLE,
    TOKEN,
    build_wordpiece_tokenizer,
    decode,
    encode,
    encoder_kind,
    load_encoder_profile,
    split_pair,
)
from medtune_utils.config import ConfigError
from medtune_utils.paths import repo_root
from medtune_utils.run import PREDICTION_COLUMNS, Run
from medtune_utils.tasks import get_task

HUB_PROFILES = ("biobert", "biomedbert", "bioclinicalbert")


def _row(source: str, input_text: str, output: str, index: int = 0) -> dict[str, Any]:
    return {"id": f"{source}/devel/{index}", "source": source, "input": input_text, "output": output}


def _ner_row(words: list[str], tags: list[str], index: int = 0) -> dict[str, Any]:
    task = get_task("NCBI-disease")
    return _row("NCBI-disease", " ".join(words), task.format_tags(tuple(words), tuple(tags)), index)


# ---------------------------------------------------------------- profiles


def test_every_encoder_profile_loads_and_hub_checkpoints_are_pinned_to_a_commit() -> None:
    names = baselines.available_encoder_profiles()
    assert {"tiny-bert", *HUB_PROFILES} <= set(names)
    for name in names:
        profile = load_encoder_profile(name)
        assert profile.name == name and profile.model_name == f"encoder-{name}"
    for name in HUB_PROFILES:
        profile = load_encoder_profile(name)
        assert re.fullmatch(r"[0-9a-f]{40}", profile.revision or ""), (name, profile.revision)
    assert load_encoder_profile("biobert").lowercase is False


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train.learnin_rate": 1.0}, "did you mean 'train.learning_rate'"),
        ({"train.max_length": "long"}, "'train.max_length' expects int"),
        ({"checkpoint": "someone/some-bert"}, "pin it with `revision`"),
        ({"sources": ["ChatDoctor"]}, "have no encoder task"),
        ({"train.max_length": 4}, "train.max_length (8 to 512) is out of range"),
        ({"threshold": 1.5}, "threshold is out of range"),
    ],
)
def test_bad_encoder_profile_values_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_encoder_profile("tiny-bert", overrides)
    assert message in str(exc.value)


def test_unknown_encoder_profile_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="known encoder profiles: .*tiny-bert"):
        load_encoder_profile("no-such-encoder")


def test_each_task_family_has_its_encoder_task() -> None:
    kinds = {
        name: encoder_kind(get_task(name))
        for name in ("NCBI-disease", "GAD", "i2b2-2010", "MedNLI", "PubMedQA", "HoC", "ChatDoctor")
    }
    assert kinds == {
        "NCBI-disease": TOKEN,
        "GAD": SINGLE,
        "i2b2-2010": SINGLE,
        "MedNLI": PAIR,
        "PubMedQA": PAIR,
        "HoC": MULTI,
        "ChatDoctor": None,
    }


# ---------------------------------------------------------------- sub-words, both ways


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    texts = ["the BRCA1 gene and breast cancer", "@GENE$ is linked to @DISEASE$ here", "ataxia telangiectasia patients"] * 5
    return build_wordpiece_tokenizer(texts, vocab_size=120, lowercase=True, special=("@GENE$", "@DISEASE$"))


def test_ner_labels_sit_on_the_first_sub_word_and_read_back_to_every_input_token(tokenizer: Any) -> None:
    words = ["Hereditary", "ataxia-telangiectasia", "(", "A-T", ")", "is", "rare", "ataxia-telangiectasia"]
    tags = ["B", "I", "O", "B", "O", "O", "O", "B"]
    row = _ner_row(words, tags)
    task = get_task("NCBI-disease")
    encoded = encode(tokenizer, task, [row], max_length=128)
    word_ids, targets = encoded.word_ids[0], encoded.features[0]["labels"]
    assert len(word_ids) > len(words) + 2, "the words should split into several sub-words"
    firsts = [i for i, w in enumerate(word_ids) if w is not None and w not in word_ids[:i]]
    assert [targets[i] for i in firsts] == [task.label_names.index(t) for t in tags]
    assert all(targets[i] == -100 for i in range(len(targets)) if i not in firsts)
    # logits that put the gold label on first sub-words and nonsense elsewhere decode back to the gold tags
    labels = list(task.label_names)
    logits = np.zeros((1, len(word_ids), len(labels)))
    for i, word in enumerate(word_ids):
        logits[0, i, labels.index(tags[word]) if i in firsts else labels.index("I")] = 5.0
    assert decode(task, logits, encoded, [row], 0.5) == [tuple(tags)]
    assert encoded.truncated == [False]


def test_truncated_ner_inputs_are_flagged_and_their_cut_tokens_predicted_o(tokenizer: Any) -> None:
    words = ["breast", "cancer"] * 20
    row = _ner_row(words, ["B", "I"] * 20)
    task = get_task("NCBI-disease")
    encoded = encode(tokenizer, task, [row], max_length=12)
    assert encoded.truncated == [True] and len(encoded.features[0]["input_ids"]) == 12
    logits = np.zeros((1, 12, 3))
    logits[0, :, 0] = 1.0  # "B" everywhere the model sees
    predicted = decode(task, logits, encoded, [row], 0.5)[0]
    seen = max(w for w in encoded.word_ids[0] if w is not None) + 1
    assert predicted == ("B",) * seen + ("O",) * (len(words) - seen)


def test_entity_masks_stay_whole_tokens_and_pairs_split(tokenizer: Any) -> None:
    ids = tokenizer("@GENE$ is linked to @DISEASE$")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[1] == "@GENE$" and "@DISEASE$" in tokenizer.convert_ids_to_tokens(ids)
    mednli = get_task("MedNLI")
    assert split_pair(mednli, _row("MedNLI", "Premise: He is febrile.\nHypothesis: He has a fever.", "Entailment")) == (
        "He is febrile.",
        "He has a fever.",
    )
    with pytest.raises(ValueError, match=r"MedNLI/devel/0 \(MedNLI\): input does not read as Premise:"):
        split_pair(mednli, _row("MedNLI", "He is febrile.", "Entailment"))


def test_multi_label_targets_and_threshold(tokenizer: Any) -> None:
    task = get_task("HoC")
    labels = list(task.label_names)
    row = _row("HoC", "the BRCA1 gene", task.render((labels[0], labels[3]), ""))
    encoded = encode(tokenizer, task, [row], max_length=32)
    assert encoded.features[0]["labels"] == [1.0 if i in (0, 3) else 0.0 for i in range(len(labels))]
    logits = np.full((1, len(labels)), -3.0)
    logits[0, 3] = 0.1  # probability 0.525
    assert decode(task, logits, encoded, [row], 0.5) == [(labels[3],)]
    assert decode(task, logits, encoded, [row], 0.6) == [()]


def test_merge_scores_keeps_the_other_models(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.merge_scores({"encoder-x": {"GAD": {"value": 0.5}}}, {"run": "r", "source_splits": {"GAD": "test"}})
    run.write_scores({**run.scores(), "comparisons": [{"source": "GAD"}]})
    run.merge_scores({"tuned": {"GAD": {"value": 0.7}}}, {"source_splits": {"NCBI-disease": "devel"}})
    run.merge_scores({"encoder-x": {"GAD": {"value": 0.6}}}, {})
    scores = run.scores()
    assert scores["models"] == {"encoder-x": {"GAD": {"value": 0.6}}, "tuned": {"GAD": {"value": 0.7}}}
    assert scores["source_splits"] == {"GAD": "test", "NCBI-disease": "devel"}
    assert scores["comparisons"] == [{"source": "GAD"}] and scores["run"] == "r"


def test_evaluation_keeps_the_encoder_scores_and_only_those(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.write_scores({"models": {"tuned": {"GAD": {"value": 0.7}}, "encoder-x": {"GAD": {"value": 0.6}}}})
    assert run.encoder_scores() == {}, "no encoder folder: not an encoder baseline"
    run.write_encoder_log("encoder-x", [{"step": 1, "loss": 0.5}])
    assert run.encoder_scores() == {"encoder-x": {"GAD": {"value": 0.6}}}


# ---------------------------------------------------------------- notebook 06 on the tiny run


@pytest.mark.slow
def test_notebook_06_adds_the_encoder_beside_the_llms(tiny_run: Path, tmp_path: Path) -> None:
    import papermill
    from matplotlib.container import ErrorbarContainer

    from medtune_utils.report import load_paper_results

    run_dir = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run_dir)  # the session's tiny run stays as the other tests expect it
    before = Run(run_dir).scores()["models"]
    papermill.execute_notebook(
        str(repo_root() / "notebooks" / "06_encoder_baselines.ipynb"),
        str(tmp_path / "06.ipynb"),
        parameters={"profile": "tiny-bert", "run_dir": str(run_dir)},
        progress_bar=False,
    )
    run = Run(run_dir)
    scores = run.scores()["models"]
    assert {name: scores[name] for name in before} == before, "the LLMs' scores must be left as they were"
    encoder = scores["encoder-tiny-bert"]
    llm_sources = set(before["tuned"])
    expected = {s for s in llm_sources if encoder_kind(get_task(s)) is not None}
    assert set(encoder) == expected and {"NCBI-disease", "GAD", "i2b2-2010", "MedNLI", "HoC"} <= expected
    for source, entry in encoder.items():
        assert entry["n"] == before["tuned"][source]["n"] and entry["malformed_rate"] == 0.0
    predictions = run.predictions(["encoder-tiny-bert"])
    assert list(predictions.columns) == list(PREDICTION_COLUMNS) and predictions.well_formed.all()
    tuned = run.predictions(["tuned"])
    assert sorted(predictions.id) == sorted(tuned[tuned.source.isin(expected)].id), "scored on the LLMs' rows"
    assert run.encoder_log("encoder-tiny-bert") and (run.figures_dir / "encoder_baselines.png").is_file()
    assert "encoder-tiny-bert" in (run.figures_dir / "encoder_baselines.md").read_text(encoding="utf-8")
    fig = baselines.plot_baselines(run)
    (ax,) = fig.axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"{run.name}/encoder-tiny-bert (ours)" in legend and "BioBERT (paper)" in legend
    series = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    drawn = sorted(np.round(np.asarray(series[f"{run.name}/encoder-tiny-bert (ours)"].lines[0].get_xdata(), float), 6))
    paper = load_paper_results()
    paper = paper[paper.role == "encoder baseline"]
    shown = {(s, e["headline"]) for s, e in encoder.items()} | {
        (s, m) for s, m in zip(paper.source, paper.metric) if s in encoder
    }
    assert drawn == sorted(np.round([100 * encoder[s]["metrics"][m] for s, m in shown], 6))


# ---------------------------------------------------------------- the tiny BERT on real data


@pytest.mark.slow
def test_tiny_bert_learns_ncbi_disease_and_beats_the_majority_class_on_gad(shared_data: Path, tmp_path: Path) -> None:
    from medtune_utils.assemble import assemble
    from medtune_utils.config import load_profile

    overrides = {"data.dir": str(shared_data), "data.sources": ["NCBI-disease", "GAD"], "data.train_rows": {}}
    profile = load_profile("tiny", {**overrides, "eval.rows_per_source": None, "eval.bootstrap_samples": 200})
    run = Run(tmp_path / "real")
    assemble(profile.data, profile.seed).save_to(run)
    run.record_step("assemble", profile)
    # two epochs instead of the profile's four keep this test near a minute and a half of CPU (README, "Encoder baselines")
    result = baselines.run_baselines("tiny-bert", run.dir, {"train.num_train_epochs": 2}, progress=False)
    ncbi, gad = result.scores["NCBI-disease"], result.scores["GAD"]
    train_labels = [row["output"] for row in run.dataset()["train"] if row["source"] == "GAD"]
    majority = max(set(train_labels), key=train_labels.count)
    gold = run.predictions([result.model], ["GAD"]).gold
    majority_accuracy = float(np.mean(gold == majority))
    assert ncbi["n"] == 923 and gad["n"] == 534
    assert ncbi["metrics"]["f1_strict"] > 0.3 and ncbi["ci_low"] > 0.2, ncbi["metrics"]
    assert gad["metrics"]["accuracy"] > majority_accuracy + 0.03, (gad["metrics"], majority_accuracy)
