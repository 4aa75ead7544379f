"""The built-in tools (crop, image_info, calculate, count) and the executor's failure paths."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import BaseModel

from agentkit.errors import ToolError, ToolTimeout
from agentkit.media import MediaStore
from agentkit.state import ToolCall
from agentkit.tools import calculate, count, crop
from agentkit.tools.base import Tool, ToolContext, ToolRegistry, call_tool, execute

BUILTIN = ["calculate", "count", "crop", "image_info"]


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry.default()


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    """A run's context holding image_0: 64x48, left half black, right half a gradient in red."""
    im = Image.new("RGB", (64, 48), (0, 0, 0))
    for x in range(32, 64):
        for y in range(48):
            im.putpixel((x, y), (4 * (x - 32), y, 255))
    store = MediaStore(tmp_path / "media")
    store.add_image(im)
    return ToolContext(media=store)


def run(registry: ToolRegistry, ctx: ToolContext, tool: str, **args):
    return execute(ToolCall(tool=tool, args=args), registry, ctx)


def test_default_registry_has_the_builtins_described_for_a_model(registry: ToolRegistry) -> None:
    assert set(BUILTIN) <= set(registry.names())
    for name in BUILTIN:
        tool = registry[name]
        assert len(tool.description) > 80
        props = tool.Args.model_json_schema()["properties"]
        assert props and all(p.get("description") for p in props.values()), name
        assert tool.prompt_line().startswith(f"{name}: ")
        assert tool.schema()["function"]["parameters"]["additionalProperties"] is False


# ---------------------------------------------------------------------------------------------
# image_info


def test_image_info_of_a_media_id(registry: ToolRegistry, ctx: ToolContext) -> None:
    step = run(registry, ctx, "image_info", image="image_0")
    assert step.ok, step.error
    r = step.result
    assert (r["image"], r["width"], r["height"], r["mode"], r["channels"]) == (
        "image_0",
        64,
        48,
        "RGB",
        3,
    )
    expected = Image.open(ctx.media.path("image_0")).convert("L")
    mean = sum(expected.getdata()) / (64 * 48)
    assert r["mean_brightness"] == pytest.approx(mean, abs=0.01)
    assert "64x48" in step.observation


@pytest.mark.parametrize(
    ("mode", "color", "channels", "brightness"),
    [("L", 200, 1, 200.0), ("RGBA", (0, 0, 0, 0), 4, 0.0), ("RGB", (255, 255, 255), 3, 255.0)],
)
def test_image_info_of_a_file_reports_its_stored_mode(
    tmp_path: Path, mode: str, color, channels: int, brightness: float
) -> None:
    path = tmp_path / f"x_{mode}.png"
    Image.new(mode, (10, 20), color).save(path)
    r = call_tool(ToolRegistry.default()["image_info"], {"image": str(path)}, ToolContext())
    assert (r.width, r.height, r.mode, r.channels) == (10, 20, mode, channels)
    assert r.mean_brightness == pytest.approx(brightness)


def test_image_info_unknown_image_is_an_error_step(
    registry: ToolRegistry, ctx: ToolContext
) -> None:
    step = run(registry, ctx, "image_info", image="image_7")
    assert not step.ok and "image_7" in step.error and "image_0" in step.error
    assert step.observation.startswith("Error:")


# ---------------------------------------------------------------------------------------------
# crop


def test_crop_stores_the_region(registry: ToolRegistry, ctx: ToolContext) -> None:
    step = run(registry, ctx, "crop", image="image_0", box=[30, 10, 40, 20])
    assert step.ok, step.error
    assert step.result == {
        "image": "crop_0",
        "source": "image_0",
        "width": 10,
        "height": 10,
        "box": [30, 10, 40, 20],
    }
    assert step.media == ["crop_0"]
    src, out = ctx.media.image("image_0"), ctx.media.image("crop_0")
    assert out.size == (10, 10)
    assert [out.getpixel((x, 5)) for x in range(10)] == [
        src.getpixel((30 + x, 15)) for x in range(10)
    ]
    # a crop is an image like any other: crop it again
    again = run(registry, ctx, "crop", image="crop_0", box=[0, 0, 2, 2])
    assert again.result["image"] == "crop_1" and ctx.media.image("crop_1").getpixel(
        (1, 1)
    ) == out.getpixel((1, 1))


@pytest.mark.parametrize(
    ("box", "padding", "used"),
    [
        ([10.2, 5.7, 20.5, 9.1], 0.0, [10, 5, 21, 10]),  # floats widen to whole pixels
        ([-10, -5, 20, 30], 0.0, [0, 0, 20, 30]),  # clipped at the top-left
        ([50, 40, 1000, 1000], 0.0, [50, 40, 64, 48]),  # clipped at the bottom-right
        ([10, 10, 20, 30], 0.5, [5, 0, 25, 40]),  # padding: half the box size on each side
        ([0, 0, 64, 48], 1.0, [0, 0, 64, 48]),
    ],
)
def test_crop_box_used(registry: ToolRegistry, ctx: ToolContext, box, padding: float, used) -> None:
    step = run(registry, ctx, "crop", image="image_0", box=box, padding=padding)
    assert step.ok, step.error
    assert step.result["box"] == used
    assert ctx.media.image(step.result["image"]).size == (used[2] - used[0], used[3] - used[1])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"box": [20, 10, 10, 30]}, ["empty or inverted", "x0 < x1"]),
        ({"box": [10, 10, 10, 30]}, ["empty or inverted"]),
        ({"box": [100, 100, 200, 200]}, ["outside", "64x48"]),
        ({"box": [1, 2, 3]}, ["box", "at least 4"]),
        ({"box": [1, 2, "a", 4]}, ["box.2"]),
        ({"box": [0, 0, 5, 5], "padding": -1}, ["padding"]),
        ({"box": [0, 0, 5, 5], "zoom": 2}, ["zoom"]),
        ({}, ["box", "required"]),
    ],
)
def test_crop_errors_name_the_problem(
    registry: ToolRegistry, ctx: ToolContext, args: dict, words: list[str]
) -> None:
    step = run(registry, ctx, "crop", image="image_0", **args)
    assert not step.ok
    for w in words:
        assert w.lower() in step.error.lower(), (w, step.error)
    assert step.media == []


def test_crop_without_a_media_store(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    step = execute(
        ToolCall(tool="crop", args={"image": str(path), "box": [0, 0, 4, 4]}),
        ToolRegistry.default(),
        ToolContext(),
    )
    assert not step.ok and "media store" in step.error


def test_crop_box_helper_directly() -> None:
    assert crop.crop_box([0.5, 0.5, 1.5, 1.5], (3, 3)) == [0, 0, 2, 2]
    with pytest.raises(ToolError, match="outside"):
        crop.crop_box([-5, -5, -1, -1], (3, 3))


# ---------------------------------------------------------------------------------------------
# calculate


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(12 + 7) * 3 / 2", 28.5),
        ("7 // 2", 3),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("-2 ** 2", -4),
        ("2 ** -1", 0.5),
        ("sqrt(16) + abs(-3)", 7.0),
        ("round(2.567, 2)", 2.57),
        ("round(7 / 2)", 4),
        ("min(3, 1, 2) + max(4, 9)", 10),
        ("pi * 2", 6.283185307179586),
        ("3 × 4 ÷ 2", 6.0),
        ("  1_000 + 1  ", 1001),
        ("2 ** 3999 // 2 ** 3998", 2),
    ],
)
def test_calculate_values(expr: str, value) -> None:
    r = call_tool(ToolRegistry.default()["calculate"], {"expression": expr}, ToolContext())
    assert r.value == value and type(r.value) is type(value)


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("1 / 0", ["division by zero"]),
        ("5 % 0", ["division by zero"]),
        ("9 ** 9 ** 9", ["387420489", "bits"]),
        ("2 ** 4000", ["bits"]),
        ("1e308 * 10", ["too large"]),
        ("(-8) ** 0.5", ["not a real number"]),
        ("sqrt(-1)", ["sqrt(-1)", "undefined"]),
        ("2 ^ 3", ["'^'", "**"]),
        ("x + 1", ["unknown name 'x'"]),
        ("__import__('os').system('true')", ["unknown function"]),
        ("open('/etc/passwd')", ["unknown function 'open'"]),
        ("(1).__class__", ["Attribute", "not allowed"]),
        ("'a' * 3", ["not a number"]),
        ("1 < 2", ["comparisons"]),
        ("lambda: 1", ["Lambda"]),
        ("round(5, 10 ** 9)", ["round"]),
        ("max()", ["max()", "arguments"]),
        ("2 +", ["cannot read"]),
        ("", ["empty"]),
        ("1" * 201, ["expression", "200"]),
    ],
)
def test_calculate_refuses_with_a_reason(
    registry: ToolRegistry, ctx: ToolContext, expr: str, words: list[str]
) -> None:
    t0 = time.perf_counter()
    step = run(registry, ctx, "calculate", expression=expr)
    assert time.perf_counter() - t0 < 1.0
    assert not step.ok
    for w in words:
        assert w in step.error, (w, step.error)


def test_calculate_never_compiles_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    def forbidden(*a, **k):
        raise AssertionError("eval/exec/compile must not be called on expression text")

    for name in ("eval", "exec"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert calculate.evaluate("(2 + 3) * 4") == 20


def _arith():
    """(text, exact value) pairs of integer arithmetic, built together so no eval is needed."""
    leaf = st.integers(-50, 50).map(lambda n: (f"({n})", n))

    def combine(children):
        def op(pair, sym):
            (ta, a), (tb, b) = pair
            return {
                "+": (f"({ta} + {tb})", a + b),
                "-": (f"({ta} - {tb})", a - b),
                "*": (f"({ta} * {tb})", a * b),
            }[sym]

        return st.builds(op, st.tuples(children, children), st.sampled_from("+-*"))

    return st.recursive(leaf, combine, max_leaves=12).filter(
        lambda p: len(p[0]) <= calculate.MAX_CHARS
    )


@settings(max_examples=100, deadline=None)
@given(_arith())
def test_calculate_matches_integer_arithmetic(pair) -> None:
    text, value = pair
    assert calculate.evaluate(text) == value


# ---------------------------------------------------------------------------------------------
# count

DETECTIONS = [
    {"label": "cube", "score": 0.95, "color": "red", "material": "metal", "box": [0, 0, 5, 5]},
    {"label": "Sphere", "score": 0.40, "color": "red"},
    {"label": "cube", "score": 0.30, "color": "Blue", "size": "large"},
    {"label": "cube", "color": "red"},  # no score (e.g. ground truth)
    {"label": "cylinder", "score": 0.80, "color": "red", "material": "rubber"},
]


@pytest.mark.parametrize(
    ("filters", "indices"),
    [
        ({}, [0, 1, 2, 3, 4]),
        ({"label": "cube"}, [0, 2, 3]),
        ({"label": "CUBE "}, [0, 2, 3]),
        ({"label": "sphere"}, [1]),
        ({"where": {"color": "red"}}, [0, 1, 3, 4]),
        ({"label": "cube", "where": {"color": "blue"}}, [2]),
        ({"where": {"color": "red", "material": "metal"}}, [0]),
        ({"where": {"size": "large"}}, [2]),  # items without the attribute never match
        ({"min_score": 0.5}, [0, 4]),  # items without a score are left out
        ({"label": "cube", "min_score": 0.3}, [0, 2]),
        ({"label": "pyramid"}, []),
        ({"where": {"material": "matte"}}, [4]),  # the scene's synonyms: matte is rubber
        ({"where": {"color": "grey", "size": "big"}}, []),
        ({"where": {"color": "orange"}}, []),  # a word the scene lacks: a filter like any
    ],
)
def test_count_filters(
    registry: ToolRegistry, ctx: ToolContext, filters: dict, indices: list[int]
) -> None:
    step = run(registry, ctx, "count", objects=DETECTIONS, **filters)
    assert step.ok, step.error
    assert step.result == {"count": len(indices), "total": 5, "indices": indices}
    assert step.observation.split(" = ", 1)[-1].startswith(f"{len(indices)} of 5")


def test_count_takes_an_earlier_result_by_name(registry: ToolRegistry, ctx: ToolContext) -> None:
    step = execute(
        ToolCall(tool="count", args={"objects": "detect_0", "label": "cube"}),
        registry,
        ctx,
        refs={"detect_0": DETECTIONS},
    )
    assert step.ok, step.error
    assert step.result["count"] == 3


def test_count_bad_detections_name_the_item(registry: ToolRegistry, ctx: ToolContext) -> None:
    step = run(registry, ctx, "count", objects=[{"label": "cube"}, {"color": "red"}])
    assert not step.ok and "objects.1.label" in step.error
    step = run(registry, ctx, "count", objects="detect_9")  # an unknown name is just a string
    assert not step.ok and "objects" in step.error


def test_count_a_value_of_another_attribute_is_an_error(
    registry: ToolRegistry, ctx: ToolContext
) -> None:
    """size="rubber" (a small controller's slip for material) would count nothing and answer 0;
    the error names the attribute the word belongs to, so the program is read again."""
    step = run(registry, ctx, "count", objects=DETECTIONS, where={"size": "rubber"})
    assert not step.ok and "'rubber' is a material, not a size" in step.error
    step = run(registry, ctx, "count", objects=DETECTIONS, where={"shape": "Metallic"})
    assert not step.ok and "is a material, not a shape" in step.error


def test_count_matches_helper() -> None:
    d = count.Detection(label="cube", score=None, shiny=True)
    assert count.matches(d, None, {"shiny": True}, None)
    assert not count.matches(d, None, {"shiny": 1}, None)  # a bool is not a number


# ---------------------------------------------------------------------------------------------
# The executor: failures are recorded steps, never crashes


class _NoArgs(BaseModel):
    pass


class _Out(BaseModel):
    ok: bool = True


def _sleepy(seconds: float) -> Tool:
    def sleep_run(args: _NoArgs, ctx: ToolContext) -> _Out:
        time.sleep(seconds)
        return _Out()

    return Tool("sleepy", "Sleeps, for testing timeouts.", _NoArgs, _Out, sleep_run, timeout=0.2)


def test_timeout_is_a_recorded_step() -> None:
    reg = ToolRegistry([_sleepy(2.0)])
    t0 = time.perf_counter()
    step = execute(ToolCall(tool="sleepy"), reg, ToolContext())
    assert time.perf_counter() - t0 < 1.0
    assert not step.ok and "sleepy took longer than 0.2 s" in step.error
    with pytest.raises(ToolTimeout):
        call_tool(reg["sleepy"], {}, ToolContext())


def test_abandoned_calls_do_not_block_later_ones() -> None:
    reg = ToolRegistry([_sleepy(3.0), Tool.from_module(calculate)])
    for _ in range(6):  # more than any fixed worker pool would hold
        assert (
            "took longer"
            in execute(ToolCall(tool="sleepy"), reg, ToolContext(), timeout=0.05).error
        )
    t0 = time.perf_counter()
    step = execute(
        ToolCall(tool="calculate", args={"expression": "1+1"}), reg, ToolContext(), timeout=1.0
    )
    assert step.ok and step.result["value"] == 2 and time.perf_counter() - t0 < 0.5


def test_a_tool_without_a_time_limit_runs_on_the_callers_thread() -> None:
    """No limit (the reasoning tools over results in memory): no worker handoff, and a bug is
    still a failed step; a limit the caller sets puts it back on an abandonable worker."""
    import threading

    ran_on: list[threading.Thread] = []

    def run(args: _NoArgs, ctx: ToolContext) -> _Out:
        ran_on.append(threading.current_thread())
        if len(ran_on) == 2:
            raise KeyError("bug")
        if len(ran_on) == 3:
            time.sleep(2.0)
        return _Out()

    reg = ToolRegistry([Tool("here", "Runs where it is called.", _NoArgs, _Out, run, timeout=None)])
    assert execute(ToolCall(tool="here"), reg, ToolContext()).ok
    assert ran_on == [threading.current_thread()]
    step = execute(ToolCall(tool="here"), reg, ToolContext())
    assert "here failed: KeyError" in step.error
    t0 = time.perf_counter()
    assert "took longer than 0.1 s" in execute(ToolCall(tool="here"), reg, ToolContext(), 0.1).error
    assert time.perf_counter() - t0 < 1.0 and ran_on[2] is not threading.current_thread()
    assert Tool.from_module(calculate).timeout is None


def test_finished_workers_are_reused_and_busy_ones_are_not() -> None:
    import threading

    from agentkit.tools.base import _IDLE, _start

    idle = max(_IDLE.qsize(), 1)  # idle workers once the first call's is back
    first = _start(threading.current_thread).result(timeout=5)
    deadline = time.monotonic() + 5
    while _IDLE.qsize() < idle and time.monotonic() < deadline:
        time.sleep(0.005)  # it goes back to the idle stack just after handing over its result
    assert _start(threading.current_thread).result(timeout=5) is first
    gate = threading.Event()
    busy = _start(lambda: (gate.wait(5), threading.current_thread())[1])
    other = _start(threading.current_thread).result(timeout=5)
    gate.set()
    assert busy.result(timeout=5) is not other  # a busy (e.g. abandoned) worker takes no new call


def test_a_buggy_tool_is_a_failed_step_not_a_crash() -> None:
    def boom(args: _NoArgs, ctx: ToolContext) -> _Out:
        return 1 / 0  # type: ignore[return-value]

    def wrong_type(args: _NoArgs, ctx: ToolContext) -> _Out:
        return "not a result"  # type: ignore[return-value]

    reg = ToolRegistry(
        [
            Tool("boom", "Fails.", _NoArgs, _Out, boom),
            Tool("wrong", "Returns junk.", _NoArgs, _Out, wrong_type),
        ]
    )
    step = execute(ToolCall(tool="boom"), reg, ToolContext())
    assert not step.ok and "ZeroDivisionError" in step.error
    step = execute(ToolCall(tool="wrong"), reg, ToolContext())
    assert not step.ok and "expected _Out" in step.error


def test_unknown_tool_is_an_error_step(registry: ToolRegistry, ctx: ToolContext) -> None:
    step = run(registry, ctx, "zoom", image="image_0")
    assert not step.ok and "unknown tool 'zoom'" in step.error
    assert all(n in step.error for n in BUILTIN)


def test_bad_args_name_the_field(registry: ToolRegistry, ctx: ToolContext) -> None:
    step = run(registry, ctx, "calculate", expr="1+1")
    assert not step.ok and "bad arguments for calculate" in step.error
    assert "expression" in step.error and "expr" in step.error


# ---------------------------------------------------------------------------------------------
# Third-party tools through the `agentkit.tools` entry-point group (the real importlib.metadata)

_PLUGIN = """
from pydantic import BaseModel, Field

from agentkit.tools.base import Tool

NAME = "shout"
DESCRIPTION = "Upper-cases a text; a third-party tool used by the tests."


class Args(BaseModel):
    text: str = Field(description="The text to shout.")


class Result(BaseModel):
    text: str


def run(args, ctx):
    return Result(text=args.text.upper())


WHISPER = Tool("whisper_text", "Lower-cases a text; a Tool object from an entry point.", Args, Result,
               lambda a, c: Result(text=a.text.lower()))
"""


def test_entry_point_tools_are_picked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ctx: ToolContext
) -> None:
    (tmp_path / "agentkit_plugin_probe.py").write_text(_PLUGIN)
    dist = tmp_path / "agentkit_plugin_probe-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: agentkit-plugin-probe\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[agentkit.tools]\nshout = agentkit_plugin_probe\nwhisper_text = agentkit_plugin_probe:WHISPER\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "agentkit_plugin_probe", raising=False)
    try:
        reg = ToolRegistry.default()
        assert {"shout", "whisper_text"} <= set(reg.names()) and set(BUILTIN) <= set(reg.names())
        assert execute(ToolCall(tool="shout", args={"text": "hi"}), reg, ctx).result == {
            "text": "HI"
        }
        assert execute(ToolCall(tool="whisper_text", args={"text": "HI"}), reg, ctx).result == {
            "text": "hi"
        }
    finally:
        sys.modules.pop("agentkit_plugin_probe", None)
    monkeypatch.undo()
    assert "shout" not in ToolRegistry.default().names()  # gone with its distribution
