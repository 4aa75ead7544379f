"""The scene-reasoning tools: select, relate, query, same, combine, exist, compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentkit.errors import ToolArgsError, ToolError
from agentkit.state import ToolCall
from agentkit.tools import relate
from agentkit.tools._objects import SceneObject
from agentkit.tools.base import ToolContext, ToolRegistry, call_tool, execute, step_refs

REASONING = ["select", "relate", "query", "same", "combine", "exist", "compare"]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenes"


def obj(shape: str, color: str, box: list[float], material="rubber", size="large") -> dict:
    return {"label": shape, "box": box, "score": 0.9, "shape": shape, "color": color,
            "material": material, "size": size}  # fmt: skip


# A row of objects left to right; the cube stands lowest in the image (closest to the camera).
RED_CUBE = obj("cube", "red", [10, 60, 40, 100])
BLUE_BALL = obj("sphere", "blue", [60, 20, 90, 50], material="metal")
RED_BALL = obj("sphere", "red", [110, 30, 130, 50], size="small")
GREEN_CYL = obj("cylinder", "green", [150, 40, 180, 80])
SCENE = [RED_CUBE, BLUE_BALL, RED_BALL, GREEN_CYL]


@pytest.fixture(scope="module")
def reg() -> ToolRegistry:
    return ToolRegistry.default()


def run(reg: ToolRegistry, name: str, **args):
    return call_tool(reg[name], args, ToolContext())


def colors(objects) -> list[str]:
    return [o.color for o in objects]


def test_registered_with_model_facing_docs(reg: ToolRegistry) -> None:
    for name in REASONING:
        tool = reg[name]
        props = tool.Args.model_json_schema()["properties"]
        assert props and all(p.get("description") for p in props.values()), name
        assert tool.summary is not None


def test_select_filters_and_normalises_words(reg: ToolRegistry) -> None:
    r = run(reg, "select", objects=SCENE, color="red")
    assert r.count == 2 and [o.shape for o in r.objects] == ["cube", "sphere"]
    r = run(reg, "select", objects=SCENE, shape="balls", material="shiny")  # synonyms
    assert [o.color for o in r.objects] == ["blue"]
    assert run(reg, "select", objects=SCENE).count == 4
    with pytest.raises(ToolError, match="color 'pink' is not one of gray, red"):
        run(reg, "select", objects=SCENE, color="pink")
    with pytest.raises(ToolArgsError):
        run(reg, "select", objects=SCENE, colour="red")  # unknown argument


def test_select_most_keeps_the_one_object_furthest_that_way(reg: ToolRegistry) -> None:
    def most(way: str, objects=SCENE, **filters):
        r = run(reg, "select", objects=objects, most=way, **filters)
        return [(o.color, o.shape) for o in r.objects], r.note

    assert most("left") == ([("red", "cube")], None)
    assert most("right") == ([("green", "cylinder")], None)
    assert most("front") == ([("red", "cube")], None)  # stands lowest in the image
    assert most("behind") == ([("blue", "sphere")], None)
    assert most("right", shape="sphere") == ([("red", "sphere")], None)  # filters first
    assert most("small") == ([("red", "sphere")], None)  # the one small object: no choice
    # the size word first: the small ball's box is smallest, yet "large" never picks it
    assert most("large", objects=[RED_BALL, BLUE_BALL])[0] == [("blue", "sphere")]
    # two large objects: the bigger box, and the result says how it was chosen
    kept, note = most("large", objects=[BLUE_BALL, GREEN_CYL])
    assert kept == [("green", "cylinder")]
    assert note == "2 large objects; the biggest box is the large green rubber cylinder's"
    assert most("left", color="yellow") == ([], None)  # nothing kept, nothing to rank
    with pytest.raises(ToolArgsError):
        run(reg, "select", objects=SCENE, most="highest")


def test_select_rank_keeps_the_object_ranked_that_far(reg: ToolRegistry) -> None:
    def nth(way: str, rank: int, objects=SCENE, **filters):
        r = run(reg, "select", objects=objects, most=way, rank=rank, **filters)
        return [(o.color, o.shape) for o in r.objects], r.note

    assert nth("left", 1) == ([("red", "cube")], None)  # rank 1 is the superlative
    assert nth("left", 2) == ([("blue", "sphere")], None)  # the second from the left
    assert nth("right", 3) == ([("blue", "sphere")], None)
    assert nth("left", 2, shape="sphere") == ([("red", "sphere")], None)  # of the spheres
    # footprints, front to back: cube 92, cylinder 72, small ball 46, blue ball 44
    assert nth("front", 2) == ([("green", "cylinder")], None)
    kept, note = nth("large", 2, objects=[BLUE_BALL, GREEN_CYL, RED_BALL])
    assert kept == [("blue", "sphere")]
    assert note == "2 large objects; the second biggest box is the large blue metal sphere's"
    assert nth("left", 3, color="red") == ([], "only 2 to rank, no third")
    with pytest.raises(ToolError, match="give most too"):
        run(reg, "select", objects=SCENE, rank=2)
    with pytest.raises(ToolArgsError):
        run(reg, "select", objects=SCENE, most="left", rank=0)


def test_relate_by_image_geometry(reg: ToolRegistry) -> None:
    ref = [BLUE_BALL]
    left = run(reg, "relate", objects=SCENE, reference=ref, relation="left")
    right = run(reg, "relate", objects=SCENE, reference=ref, relation="right")
    front = run(reg, "relate", objects=SCENE, reference=ref, relation="front")
    behind = run(reg, "relate", objects=SCENE, reference=ref, relation="behind")
    assert colors(left.objects) == ["red"]
    assert colors(right.objects) == ["red", "green"]
    # footprint centres (y2 - 0.2 h): cube 92, blue ball 44, small red ball 46, cylinder 72
    assert [o.shape for o in front.objects] == ["cube", "sphere", "cylinder"]
    assert behind.objects == []
    assert "blue" not in colors(left.objects + right.objects)  # never the reference itself
    assert right.reference == "large blue metal sphere"


def test_reference_of_several_takes_the_most_confident(reg: ToolRegistry) -> None:
    # a duplicate box or a false positive: "the red thing" means the detector's surest red one
    hi, lo = dict(RED_BALL, score=0.9), dict(RED_CUBE, score=0.6)
    r = run(reg, "same", objects=SCENE, reference=[lo, hi], attribute="shape")
    assert r.value == "sphere" and "most confident, the small red rubber sphere (0.90)" in r.note
    assert "large red rubber cube 0.60" in r.note
    r = run(reg, "relate", objects=SCENE, reference=[lo, hi], relation="left")
    assert r.reference == "small red rubber sphere" and r.note
    assert reg["relate"].summary(r).endswith(f"({r.note})")
    one = run(reg, "relate", objects=SCENE, reference=[hi], relation="left")
    assert one.note is None and one.objects == r.objects


def test_reference_must_be_one_object_without_a_basis_to_choose(reg: ToolRegistry) -> None:
    tie = [dict(RED_CUBE, score=0.8), dict(RED_BALL, score=0.8)]
    unscored = [dict(RED_CUBE, score=None), dict(RED_BALL, score=0.9)]
    for name, extra in (("relate", {"relation": "left"}), ("same", {"attribute": "size"})):
        for reds in (tie, unscored):
            with pytest.raises(ToolError, match="exactly one object in reference, but it has 2"):
                run(reg, name, objects=SCENE, reference=reds, **extra)
        with pytest.raises(ToolError, match="but it has no objects"):
            run(reg, name, objects=SCENE, reference=[], **extra)


def test_query_needs_exactly_one(reg: ToolRegistry) -> None:
    r = run(reg, "query", objects=[GREEN_CYL], attribute="material")
    assert r.answer == "rubber" and r.object == "large green rubber cylinder" and r.note is None
    with pytest.raises(ToolError, match="has 2 objects"):
        run(reg, "query", objects=[RED_CUBE, dict(RED_BALL, score=None)], attribute="color")
    r = run(reg, "query", objects=[dict(RED_CUBE, score=0.3), RED_BALL], attribute="shape")
    assert r.answer == "sphere" and r.note
    with pytest.raises(ToolArgsError):
        run(reg, "query", objects=[GREEN_CYL], attribute="weight")


def test_same_excludes_reference(reg: ToolRegistry) -> None:
    r = run(reg, "same", objects=SCENE, reference=[RED_CUBE], attribute="color")
    assert [o.shape for o in r.objects] == ["sphere"] and r.value == "red"
    r = run(reg, "same", objects=SCENE, reference=[RED_CUBE], attribute="size")
    assert colors(r.objects) == ["blue", "green"]


def test_combine_by_box_identity(reg: ToolRegistry) -> None:
    a = [RED_CUBE, BLUE_BALL]
    b = [dict(BLUE_BALL, box=[60.0, 20.0, 90.0, 50.0], score=0.5), GREEN_CYL]
    u = run(reg, "combine", a=a, b=b, op="union")
    i = run(reg, "combine", a=a, b=b, op="intersection")
    d = run(reg, "combine", a=a, b=b, op="difference")  # "the things that are not ..."
    assert colors(u.objects) == ["red", "blue", "green"]
    assert colors(i.objects) == ["blue"]
    assert colors(d.objects) == ["red"] and d.count == 1
    assert colors(run(reg, "combine", a=b, b=a, op="difference").objects) == ["green"]


def test_exist_and_compare(reg: ToolRegistry) -> None:
    assert run(reg, "exist", objects=[]).answer == "no"
    assert run(reg, "exist", objects=[RED_BALL]).answer == "yes"
    more = run(reg, "compare", a=SCENE, b=[RED_CUBE], relation="more")
    assert (more.answer, more.a, more.b) == ("yes", 4, 1)
    assert run(reg, "compare", a=[], b=[RED_CUBE], relation="fewer").answer == "yes"
    assert run(reg, "compare", a=2, b=[RED_CUBE, RED_BALL], relation="same").answer == "yes"
    assert run(reg, "compare", a=2, b=3, relation="more").answer == "no"
    with pytest.raises(ToolError, match="a is -1"):
        run(reg, "compare", a=-1, b=3, relation="more")


def test_results_pass_by_name_through_the_executor(reg: ToolRegistry) -> None:
    """The runtime's path: each result gets a name, later calls pass the name."""
    steps = []
    calls = [
        ToolCall(tool="select", args={"objects": SCENE, "color": "red"}),
        ToolCall(tool="select", args={"objects": "select_0", "shape": "cube"}),
        ToolCall(
            tool="relate", args={"objects": SCENE, "reference": "select_1", "relation": "right"}
        ),  # fmt: skip
        ToolCall(tool="compare", args={"a": "relate_0", "b": "select_0", "relation": "more"}),
    ]
    for call in calls:
        steps.append(execute(call, reg, ToolContext(), refs=step_refs(steps)))
    assert [s.ref for s in steps] == ["select_0", "select_1", "relate_0", "compare_0"]
    assert all(s.error is None for s in steps), [s.error for s in steps]
    assert steps[2].observation.startswith(
        "relate_0 = right of the large red rubber cube: 3 objects"
    )
    assert steps[3].observation == "compare_0 = yes (a has 3, b has 2; asked: a more than b)"


def test_relate_agrees_with_clevr_relations_on_example_scenes() -> None:
    """Image geometry vs the scene graphs' 3D rule, every ordered pair of the 12 examples."""
    total = wrong = 0
    for path in sorted(EXAMPLES.glob("scene_*.json")):
        scene = json.loads(path.read_text())
        objs = [SceneObject(label=o["shape"], box=o["bbox"], **{k: o[k] for k in
                ("shape", "color", "material", "size")}) for o in scene["objects"]]  # fmt: skip
        for rel in ("left", "right", "front", "behind"):
            for i, ref in enumerate(objs):
                truth = set(scene["relationships"][rel][i])
                for j, o in enumerate(objs):
                    if i != j:
                        total += 1
                        wrong += relate.related(o, ref, rel) != (j in truth)
    assert total > 1500
    assert wrong / total <= 0.005, f"{wrong}/{total} pairs disagree"
