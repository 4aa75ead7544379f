"""CLEVR's own question and scene files read as the project's worlds (mllm/worlds/clevr.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.errors import ConfigError
from agentkit.mllm.eval.vqa import read_questions
from agentkit.mllm.worlds.clevr import family, program_length, read_scenes
from agentkit.mllm.worlds.questions import EXTRA_FAMILIES, FAMILIES, generate_questions
from agentkit.mllm.worlds.synthetic import synthetic_scene

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"


def test_family_and_length_read_off_the_program_as_the_generator_assigns_them():
    scenes = [synthetic_scene(s) for s in range(60)]
    qs = generate_questions(scenes, per_scene=12, seed=3, families=(*FAMILIES, *EXTRA_FAMILIES))
    assert {q["family"] for q in qs} == {*FAMILIES, *EXTRA_FAMILIES}  # every family checked
    for q in qs:
        assert family(q["program"]) == q["family"], q["question"]
        assert program_length(q["program"]) == q["length"], q["question"]


def test_a_same_attribute_hop_over_some_other_objects_is_a_family_of_its_own():
    # "What color is the other cube that is the same size as the red sphere?"
    program = [
        {"function": "scene", "inputs": [], "value_inputs": []},
        {"function": "filter_color", "inputs": [0], "value_inputs": ["red"]},
        {"function": "unique", "inputs": [1], "value_inputs": []},
        {"function": "same_size", "inputs": [2], "value_inputs": []},
        {"function": "filter_shape", "inputs": [3], "value_inputs": ["cube"]},
        {"function": "unique", "inputs": [4], "value_inputs": []},
        {"function": "query_color", "inputs": [5], "value_inputs": []},
    ]
    assert family(program) == "same_other_query" and program_length(program) == 2
    # the same hop's objects counted as they are: "How many other things ...?"
    unfiltered = [*program[:4], {"function": "count", "inputs": [3], "value_inputs": []}]
    assert family(unfiltered) == "same_count"
    filtered = [*program[:5], {"function": "count", "inputs": [4], "value_inputs": []}]
    assert family(filtered) == "same_other_count"


def _clevr_file(tmp_path: Path, questions: list[dict]) -> Path:
    p = tmp_path / "CLEVR_val_questions.json"
    p.write_text(json.dumps({"info": {"split": "val"}, "questions": questions}))
    return p


def test_clevr_question_file_becomes_question_records(tmp_path):
    (q,) = generate_questions([synthetic_scene(7)], per_scene=1, seed=0, families=["relate_count"])
    raw = {"image_index": 7, "split": "val", "image_filename": "CLEVR_val_000007.png",
           "question_index": 70, "question_family_index": 20, "question": q["question"],
           "answer": q["answer"], "program": q["program"]}  # fmt: skip
    (rec,) = read_questions(_clevr_file(tmp_path, [raw]))
    assert rec["id"] == "clevr-val-70" and rec["image_filename"] == "CLEVR_val_000007.png"
    assert (rec["family"], rec["length"]) == ("relate_count", q["length"])
    assert rec["question"] == q["question"] and rec["answer"] == q["answer"]
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text(json.dumps(q) + "\n")
    assert read_questions(jsonl) == [q]  # the project's own records pass unchanged


def test_unanswered_or_foreign_question_files_are_refused(tmp_path):
    test_split = {"image_index": 0, "split": "test", "image_filename": "CLEVR_test_000000.png",
                  "question_index": 0, "question": "Is there a cube?"}  # fmt: skip
    with pytest.raises(ConfigError, match="no answer"):
        read_questions(_clevr_file(tmp_path, [test_split]))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"items": []}))
    with pytest.raises(ConfigError, match="not CLEVR's question file"):
        read_questions(other)
    with pytest.raises(ConfigError, match="not a file"):
        read_questions(tmp_path / "missing.jsonl")


def test_scenes_read_from_clevr_file_single_scene_or_folder(tmp_path):
    folder = read_scenes(EXAMPLES)
    assert folder and all("pixel_coords" in o for s in folder for o in s["objects"])
    clevr = tmp_path / "CLEVR_val_scenes.json"
    clevr.write_text(json.dumps({"info": {}, "scenes": folder}))
    assert read_scenes(clevr) == folder
    one = tmp_path / "one.json"
    one.write_text(json.dumps(folder[0]))
    assert read_scenes(one) == folder[:1]
    broken = json.loads(json.dumps(folder[0]))
    del broken["objects"][0]["pixel_coords"]
    one.write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match="pixel_coords"):
        read_scenes(one)
