"""`agentkit eval vqa`: answer normalisation, metrics on a crafted set, and the harness (caching,
resume after a kill, planners compared, spoken vs typed) driven by a scripted *oracle* test double
that replays the question record's answer (one script per question via ``scripted:{id}``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentkit.cli import app
from agentkit.errors import ConfigError
from agentkit.mllm.eval.vqa import (
    evaluate,
    failure_cause,
    is_correct,
    metrics,
    normalize_answer,
    percentile,
    read_results,
)
from agentkit.mllm.worlds.questions import generate_questions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"
runner = CliRunner()


def test_answers_normalise_yes_no_numbers_and_synonyms():
    assert normalize_answer("Yes.") == "yes" and normalize_answer("True") == "yes"
    assert normalize_answer("Three") == "3" and normalize_answer("3.0") == "3"
    assert normalize_answer("Grey") == "gray" and normalize_answer("a shiny Ball") == "metal sphere"
    assert is_correct("yes, there is one", "yes") and not is_correct("no", "yes")
    assert is_correct("There are 2 red cubes.", 2) and is_correct("two", "2")
    assert not is_correct("2 or 3", "2") and not is_correct(None, "2")
    assert is_correct("It is a metallic cube.", "metal") and is_correct("balls", "sphere")
    assert not is_correct("red or blue", "red") and not is_correct("large", "small")


def rec(family, length, correct, seconds, answer="x", stop="answered", error=None, tools=1):
    return {"family": family, "length": length, "correct": correct, "seconds": seconds,
            "answer": answer, "stop_reason": stop, "error": error, "steps": tools + 1,
            "tool_calls": tools}  # fmt: skip


def test_spoken_items_split_by_whether_the_question_was_heard_as_said():
    from agentkit.mllm.eval.vqa import heard_split

    q = "Is there a red cube?"
    rows = [
        {"question": q, "heard": "is there a red cube", "correct": True},  # heard as said
        {"question": q, "heard": "Is there a RED cube?", "correct": False},
        {"question": q, "heard": "Is there a bed cube?", "correct": False},  # misheard
        # misheard, its run failed, and the next reading was answered
        {"question": q, "heard": "Is there a red tube?", "reheard": q, "correct": True},
        {"question": q, "correct": True},  # cached before transcripts were kept
    ]
    split = heard_split(rows)
    assert split["exact"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert split["misheard"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert split["unknown"] == 1
    assert split["reheard"] == {"n": 1, "correct": 1, "accuracy": 1.0}


def test_a_spoken_item_records_the_transcript_and_the_reading_it_was_answered_on(monkeypatch):
    """``heard`` is the first transcription; ``reheard`` the other reading a failed run went on
    to (None when the transcript was answered)."""
    from agentkit.mllm.eval import vqa
    from agentkit.state import RunResult, Step

    q = {"id": "q1", "question": "Is there a red cube?", "answer": "yes"}
    heard = Step(role="executor", tool="transcribe", result={"text": "Is there a red tube?"})

    def agent(answered_on: str):
        class Fake:
            def ask(self, *a, **k):
                return RunResult(answer="yes", steps=[heard], question=answered_on)

        return lambda *a, **k: Fake()

    for answered_on, reheard in (("Is there a red cube?", "Is there a red cube?"),
                                 ("Is there a red tube?", None)):  # fmt: skip
        monkeypatch.setattr(vqa, "_agent", agent(answered_on))
        r = vqa.run_item(q, image="x.png", planner="program", model="m", runs_dir="/nonexistent",
                         modality="spoken", audio="q.wav")  # fmt: skip
        assert (r["heard"], r["reheard"], r["correct"]) == ("Is there a red tube?", reheard, True)


def test_metrics_on_a_crafted_set():
    rs = [
        rec("count", 1, True, 1.0),
        rec("count", 1, False, 2.0),
        rec("exist", 1, True, 3.0, tools=3),
        rec("relate_count", 2, False, 4.0, answer=None, stop="budget"),
        rec("relate_count", 3, False, 10.0, answer=None, stop="error", error="BackendError"),
    ]
    m = metrics(rs)
    assert m["n"] == 5 and m["correct"] == 2 and m["accuracy"] == 0.4
    assert m["per_family"]["count"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert m["per_family"]["relate_count"]["accuracy"] == 0.0
    assert m["per_length"]["1"] == {"n": 3, "correct": 2, "accuracy": 0.6667}
    assert m["mean_tool_calls"] == 1.4 and m["mean_steps"] == 2.4
    assert m["latency_s"]["median"] == 3.0 and m["latency_s"]["p90"] == pytest.approx(7.6)
    assert m["failures"] == {"wrong_answer": 1, "no_answer:budget": 1, "error:BackendError": 1}
    assert percentile([5.0], 90) == 5.0 and percentile([], 50) is None
    assert failure_cause(rec("x", 1, False, 1, stop="parse_errors")) == "stopped:parse_errors"


# -- the harness -------------------------------------------------------------------------------


@pytest.fixture
def qset(tmp_path: Path) -> tuple[Path, list[dict]]:
    scenes = [json.loads((EXAMPLES / f"scene_00000{i}.json").read_text()) for i in range(3)]
    qs = generate_questions(scenes, per_scene=2, seed=1)
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in qs))
    return path, qs


def oracle(scripts: Path, qs: list[dict], wrong: set[str] = frozenset(), sleep: dict | None = None):
    """Test double: each question's script answers with the record's own answer (or a wrong one
    for ids in ``wrong``); ``sleep`` delays an id's reply (to kill the run there)."""
    scripts.mkdir(exist_ok=True)
    for q in qs:
        answer = "no idea" if q["id"] in wrong else q["answer"]
        reply = {"text": f"Thought: oracle (test double)\nFinal Answer: {answer}"}
        if sleep and q["id"] in sleep:
            reply["sleep"] = sleep[q["id"]]
        (scripts / f"{q['id']}.json").write_text(json.dumps({"replies": [reply] * 4}))
    return f"scripted:{scripts}/{{id}}.json"


def test_oracle_scores_and_cache_skips_finished_items(tmp_path, qset):
    path, qs = qset
    wrong = {qs[0]["id"]}
    spec = oracle(tmp_path / "s", qs, wrong)
    out = tmp_path / "out"
    rep = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, progress=False)
    m = rep["planners"]["react"]
    assert rep["ran"] == len(qs) and rep["cached"] == 0
    assert m["correct"] == len(qs) - 1 and m["failures"] == {"wrong_answer": 1}
    assert m["mean_tool_calls"] == 0 and m["latency_s"]["median"] > 0
    assert sum(v["n"] for v in m["per_family"].values()) == len(qs)
    again = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, progress=False)
    assert again["ran"] == 0 and again["cached"] == len(qs)
    assert again["planners"] == rep["planners"]
    compact = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, limit=2,
                       prompt_style="compact", progress=False)  # fmt: skip
    assert compact["ran"] == 2  # another prompt style is another item, not a cache hit
    assert len((out / "results.jsonl").read_text().splitlines()) == len(qs) + 2
    assert json.loads((out / "report.json").read_text())["prompt_style"] == "compact"
    program = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, limit=2,
                       code_context="program", progress=False)  # fmt: skip
    assert program["ran"] == 2 and program["code_context"] == "program"  # nor another context
    with pytest.raises(ConfigError, match="--code-context 'summary' is invalid"):
        evaluate(path, EXAMPLES, model=spec, out=out, code_context="summary", progress=False)
    tree = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, limit=2,
                    branches="program", progress=False)  # fmt: skip
    assert tree["ran"] == 2 and tree["branches"] == "program"  # nor another kind of branch
    for bad in ({"branches": "plan"}, {"prompt_style": "tiny"}):
        with pytest.raises(ConfigError, match="is invalid: expected auto, "):
            evaluate(path, EXAMPLES, model=spec, out=out, progress=False, **bad)
    # other tool weights are other items too (a second detector or speech model is measured,
    # not read back from the first one's cache), and the same weights again are cached
    other = {"detect": str(tmp_path / "other-yolo.pt")}
    swap = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, limit=2,
                    tool_weights=other, progress=False)  # fmt: skip
    assert swap["ran"] == 2 and swap["cached"] == 0
    same = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, limit=2,
                    tool_weights=other, progress=False)  # fmt: skip
    assert same["ran"] == 0 and same["planners"] == swap["planners"]
    budget = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, limit=2, max_steps=3,
                      progress=False)  # fmt: skip
    assert budget["ran"] == 2  # nor another step budget
    import torch

    before = torch.get_num_threads()
    try:
        one = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, limit=2, threads=1,
                       progress=False)  # fmt: skip
        # torch's threads change no answer but the latencies: other items, run with them
        assert one["ran"] == 2 and one["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="--threads 0 is invalid"):
        evaluate(path, EXAMPLES, model=spec, out=out, threads=0, progress=False)


def test_cli_all_planners_json_and_table(tmp_path, qset):
    path, qs = qset
    spec = oracle(tmp_path / "s", qs[:2])
    base = ["eval", "vqa", "--questions", str(path), "--scenes", str(EXAMPLES), "--limit", "2",
            "--model", spec, "--out", str(tmp_path / "out"), "--no-verify"]  # fmt: skip
    r = runner.invoke(app, [*base, "--planner", "all", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert list(rep["planners"]) == ["react", "plan", "program", "tree"]
    # the oracle's Final Answer is the answer for react; the others read it differently, but
    # every planner ran every item and was scored
    assert all(m["n"] == 2 for m in rep["planners"].values())
    assert rep["planners"]["react"]["accuracy"] == 1.0
    r = runner.invoke(app, [*base, "--planner", "all"])
    assert r.exit_code == 0 and "react" in r.output and "cached" in r.output
    r = runner.invoke(app, [*base, "--planner", "nope", "--json"])
    assert r.exit_code == 2 and "unknown planner" in json.loads(r.stdout)["error"]


@pytest.mark.slow
def test_killed_evaluation_resumes_without_redoing_items(tmp_path, qset):
    path, qs = qset
    stuck = qs[2]["id"]
    spec = oracle(tmp_path / "s", qs, sleep={stuck: 60})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "agentkit.cli", "eval", "vqa", "--questions", str(path),
           "--scenes", str(EXAMPLES), "--model", spec, "--out", str(out), "--no-verify", "--json"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # inside the stuck item's sleep now
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = read_results(out)
    assert len(first) == 2 and stuck not in {r["id"] for r in first.values()}
    oracle(tmp_path / "s", qs)  # the model no longer hangs
    rep = evaluate(path, EXAMPLES, model=spec, out=out, verify=False, progress=False)
    assert rep["cached"] == 2 and rep["ran"] == len(qs) - 2
    assert rep["planners"]["react"]["accuracy"] == 1.0
    after = read_results(out)
    assert all(after[k] == v for k, v in first.items())  # finished items were not redone
    assert after[next(k for k in after if stuck in k)]["resumed"]  # its run continued


def tiny_whisper(path: Path) -> Path:
    """A random-weights whisper small enough for a test (it babbles: the transcript is noise)."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    dims = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=128, n_audio_head=2, n_audio_layer=2,
                n_vocab=51865, n_text_ctx=448, n_text_state=128, n_text_head=2, n_text_layer=2)  # fmt: skip
    torch.manual_seed(0)
    opts = {"sample_len": 6, "without_timestamps": True}
    state = Whisper(ModelDimensions(**dims)).state_dict()
    torch.save({"dims": dims, "model_state_dict": state, "transcribe_options": opts}, path)
    return path


def wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    import wave

    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2").tobytes())
    return path


@pytest.mark.slow
def test_spoken_vs_typed_and_ray_workers(tmp_path, qset):
    path, qs = qset
    audio = tmp_path / "speech"
    audio.mkdir()
    for q in qs[:2]:
        wav(audio / f"{q['id']}.wav")
    (audio / "manifest.jsonl").write_text(
        "".join(json.dumps({"id": q["id"], "audio": f"{q['id']}.wav"}) + "\n" for q in qs[:2])
    )
    # The oracle answers from the record whatever whisper heard: the harness pairs spoken and
    # typed items of the same questions and reports both.
    spec = oracle(tmp_path / "s", qs[:2])
    weights = {"transcribe": str(tiny_whisper(tmp_path / "w.pt"))}
    rep = evaluate(path, EXAMPLES, model=spec, out=tmp_path / "o", limit=2, audio_dir=audio,
                   verify=False, tool_weights=weights, progress=False)  # fmt: skip
    assert rep["ran"] == 4  # two questions, typed and spoken
    sv = rep["planners"]["react"]["spoken_vs_typed"]
    assert sv["n"] == 2 and sv["typed"] == 1.0 and sv["spoken"] == 1.0 and sv["gap_points"] == 0
    spoken = [r for r in read_results(tmp_path / "o").values() if r["modality"] == "spoken"]
    assert all(r["tool_calls"] == 1 and r["tool_errors"] == 0 for r in spoken)  # transcribe ran
    # the babbling model's transcripts are kept, and none is what was said
    assert all(isinstance(r["heard"], str) for r in spoken)
    heard = sv["heard"]
    assert heard["exact"]["n"] == 0 and heard["misheard"] == {"n": 2, "correct": 2, "accuracy": 1.0}
    r = runner.invoke(app, ["eval", "vqa", "--questions", str(path), "--scenes", str(EXAMPLES),
                            "--limit", "2", "--model", spec, "--out", str(tmp_path / "o"),
                            "--no-verify", "--audio-dir", str(audio), "--tool-weights",
                            f"transcribe={weights['transcribe']}"])  # fmt: skip
    line = " ".join(r.output.split())  # the same items, cached: the table says what was heard
    assert (
        r.exit_code == 0
        and "react, spoken: heard as said 0 (right 0), misheard 2 (right 2)" in line
    )
    rep = evaluate(path, EXAMPLES, model=spec, out=tmp_path / "r", limit=2, workers=2,
                   verify=False, progress=False)  # fmt: skip
    assert rep["ran"] == 2 and rep["planners"]["react"]["accuracy"] == 1.0


def test_clevr_question_file_runs_through_the_harness(tmp_path, qset):
    """CLEVR's own question file (``{"questions": [...]}``, no ``id``/``family``) is evaluated as
    the project's records are, scored per family read off each program."""
    _, qs = qset
    raw = [{"image_index": i, "split": "val", "image_filename": q["image_filename"],
            "question_index": 100 + i, "question": q["question"], "answer": q["answer"],
            "program": q["program"]} for i, q in enumerate(qs[:3])]  # fmt: skip
    path = tmp_path / "CLEVR_val_questions.json"
    path.write_text(json.dumps({"info": {"split": "val"}, "questions": raw}))
    ids = [f"clevr-val-{100 + i}" for i in range(3)]
    spec = oracle(tmp_path / "s", [{**q, "id": i} for q, i in zip(qs[:3], ids, strict=True)])
    rep = evaluate(path, EXAMPLES, model=spec, out=tmp_path / "out", verify=False, progress=False)
    m = rep["planners"]["react"]
    assert m["n"] == 3 and m["correct"] == 3
    assert m["per_family"] == {
        f: {"n": n, "correct": n, "accuracy": 1.0}
        for f, n in Counter(q["family"] for q in qs[:3]).items()
    }
    done = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in done) == ids
