"""The hf and openai backends and the OpenAI-compatible server, on a real tiny model and real HTTP.

The openai backend is tested against real servers on 127.0.0.1: ``build_app`` serving the tiny
model through the hf backend, and small FastAPI apps that answer with fixed native tool calls or
with errors. Nothing is mocked below the HTTP layer.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from agentkit.errors import BackendError, WeightsNotFound
from agentkit.mllm.backends.base import Backend, Generation, Message, load_backend
from agentkit.mllm.backends.hf import HFBackend, StopFilter, cut_at_stop
from agentkit.mllm.backends.openai import OpenAIBackend
from agentkit.mllm.model import build_tiny_llava
from agentkit.mllm.serve import build_app, to_messages
from agentkit.state import ToolCall

CORPUS = [
    "Thought: I need to find the red cubes. Action: detect",
    'Action Input: {"image": "image_0", "classes": ["cube", "sphere"]}',
    "Observation: 3 cubes, 2 spheres. Final Answer: there are 3 cubes.",
] * 20


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    # init_std=0.2: a random model with the default 0.02 repeats one token, which would make
    # stop-string and streaming checks trivial.
    return build_tiny_llava(
        tmp_path_factory.mktemp("tiny") / "tiny-llava", texts=CORPUS, init_std=0.2
    )


@pytest.fixture(scope="module")
def backend(tiny) -> HFBackend:
    return HFBackend(tiny, device="cpu")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    from PIL import Image

    p = tmp_path_factory.mktemp("img") / "scene.png"
    im = Image.new("RGB", (96, 72), (40, 40, 40))
    im.paste((220, 30, 30), (10, 10, 40, 40))
    im.save(p)
    return p


def ask(image: Path) -> list[Message]:
    return [
        Message(role="system", content="Answer about the image."),
        Message(role="user", content="How many cubes are there?", images=[image]),
    ]


@contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port in a thread; yields the API root URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def served(backend) -> Iterator[str]:
    with running(build_app(backend, "tiny-llava")) as url:
        yield url


# -- hf backend -------------------------------------------------------------------------------


def test_hf_generates_from_image_and_text_like_raw_generate(backend, image):
    import torch

    g = backend.generate(ask(image), max_new_tokens=12)
    assert isinstance(backend, Backend)
    assert g.model == "tiny-llava"
    assert (
        g.tokens_out == 12
    )  # eos is rare enough from this seed; a change here means a real change
    assert g.text and g.seconds > 0

    # The same prompt through the processor and model.generate by hand: same tokens, same text.
    inputs = backend.prepare(ask(image))
    image_id = backend.model.config.image_token_index
    assert int((inputs["input_ids"] == image_id).sum()) == 64
    assert g.tokens_in == inputs["input_ids"].shape[1]
    with torch.inference_mode():
        out = backend.model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert (
        backend.processor.tokenizer.decode(out[0, g.tokens_in :], skip_special_tokens=True)
        == g.text
    )


def test_hf_beam_candidates_are_ranked_replies(backend, image):
    """``candidates(n)``: n distinct replies by beam search, deterministic (ranked by the beam
    score: length-normalised log-probability)."""
    gens = backend.candidates(ask(image), 3, max_new_tokens=6)
    assert len(gens) == 3 and all(0 < g.tokens_out <= 6 and g.tokens_in > 0 for g in gens)
    texts = [g.text for g in gens]
    assert len(set(texts)) == 3  # distinct beams
    assert [g.text for g in backend.candidates(ask(image), 3, max_new_tokens=6)] == texts


class Only:
    """A constraint that allows the prefixes of one text only."""

    def __init__(self, text: str) -> None:
        self.text = text

    def start(self) -> str:
        return ""

    def feed(self, state: str, text: str) -> str | None:
        return state + text if self.text.startswith(state + text) else None

    def done(self, state: str) -> bool:
        return state == self.text


def test_hf_decodes_under_a_constraint(backend, image, monkeypatch):
    """The constraint masks every token that would leave it: with all tokens checked, a random
    model writes exactly what the constraint allows, and then stops (only the end token is
    left); beams too. The model's own reply is something else."""
    target = "Thought: I need to find the red cubes."
    free = backend.generate(ask(image), max_new_tokens=24)
    assert free.text != target
    monkeypatch.setattr(backend, "constraint_top_k", backend.model.config.text_config.vocab_size)
    got = backend.generate(ask(image), max_new_tokens=24, constraint=Only(target))
    assert got.text == target and got.tokens_out < 24
    beams = backend.candidates(ask(image), 2, max_new_tokens=24, constraint=Only(target))
    assert [b.text for b in beams] == [target, target]


class Anything:
    """A constraint every text satisfies."""

    def start(self) -> str:
        return ""

    def feed(self, state: str, text: str) -> str:
        return state + text

    def done(self, state: str) -> bool:
        return True


def test_hf_a_constraint_that_allows_everything_changes_no_choice(backend, image):
    """The processor stops at the first viable token of a greedy step and at 2 x beams of a beam
    step (all a search can pick), masking the rest: with nothing refused, greedy and beam
    replies are exactly the unconstrained ones."""
    free = backend.generate(ask(image), max_new_tokens=12)
    assert backend.generate(ask(image), max_new_tokens=12, constraint=Anything()).text == free.text
    beams = [g.text for g in backend.candidates(ask(image), 3, max_new_tokens=8)]
    held = backend.candidates(ask(image), 3, max_new_tokens=8, constraint=Anything())
    assert [g.text for g in held] == beams


def test_hf_looks_further_down_when_no_likely_token_fits(backend, image, monkeypatch):
    """None of the top-k tokens fits: the step looks at the ``constraint_wide_k`` likeliest."""
    target = "Thought: I need to find the red cubes."
    monkeypatch.setattr(backend, "constraint_top_k", 1)
    monkeypatch.setattr(backend, "constraint_wide_k", backend.model.config.text_config.vocab_size)
    got = backend.generate(ask(image), max_new_tokens=24, constraint=Only(target))
    assert got.text == target


def test_hf_leaves_a_step_unconstrained_when_no_likely_token_fits(backend, image, monkeypatch):
    """None of the wide_k tokens fits: the step is the model's own (the parser judges after)."""
    monkeypatch.setattr(backend, "constraint_top_k", 1)
    monkeypatch.setattr(backend, "constraint_wide_k", 1)
    free = backend.generate(ask(image), max_new_tokens=8)
    got = backend.generate(ask(image), max_new_tokens=8, constraint=Only("\u2603" * 8))
    assert got.text == free.text


def test_hf_continues_a_reply_begun_in_a_last_assistant_turn(backend, image):
    """A last assistant message is the start of the reply: the input is the conversation's
    generation prompt followed by that text, and generation picks up after it."""
    start = "Thought: count\nProgram:\n```\n"
    asked = backend.prepare(ask(image))["input_ids"][0].tolist()
    begun = backend.prepare([*ask(image), Message(role="assistant", content=start)])
    ids = begun["input_ids"][0].tolist()
    tok = backend.processor.tokenizer
    assert ids[: len(asked)] == asked and tok.decode(ids[len(asked) :]) == start
    assert backend.continues_replies
    g = backend.generate([*ask(image), Message(role="assistant", content=start)], max_new_tokens=4)
    assert g.tokens_in == len(ids)


def test_hf_scores_candidates_by_their_log_probability(backend, image):
    """The greedy first token is the most likely one, so it outscores every other one-token
    candidate; scores are log-probabilities (negative) and deterministic."""
    import torch

    tok = backend.processor.tokenizer
    inputs = backend.prepare(ask(image))
    with torch.inference_mode():
        logits = backend.model(**inputs).logits[0, -1]
    order = torch.argsort(logits, descending=True).tolist()

    def one_token(i: int) -> str | None:
        text = tok.decode([i])
        return text if tok(text, add_special_tokens=False)["input_ids"] == [i] else None

    cands = [t for t in (one_token(i) for i in order[:40]) if t][:5]
    assert len(cands) >= 3
    scores = backend.score(ask(image), cands)
    assert all(s < 0 for s in scores) and scores == backend.score(ask(image), cands)
    assert scores == sorted(scores, reverse=True)  # the model's own ranking
    two = backend.score(ask(image), [cands[0] + cands[1]])[0]
    assert two < scores[0]  # a longer reply adds (negative) log-probabilities
    with pytest.raises(BackendError, match="no tokens"):
        backend.score(ask(image), [""])


def test_hf_image_changes_the_prompt(backend, image, tmp_path):
    from PIL import Image

    other = tmp_path / "blue.png"
    Image.new("RGB", (64, 64), (0, 0, 255)).save(other)
    a = backend.prepare(ask(image))["pixel_values"]
    b = backend.prepare(ask(other))["pixel_values"]
    assert a.shape == b.shape == (1, 3, 64, 64) and not bool((a == b).all())
    two = backend.prepare([Message(role="user", content="Compare.", images=[image, other])])
    assert two["pixel_values"].shape[0] == 2


def test_hf_stop_strings_cut_the_text(backend, image):
    full = backend.generate(ask(image), max_new_tokens=24).text
    # A stop string that first appears mid-text and may end inside a token.
    i = next(
        i
        for i in range(4, len(full) - 3)
        if full.find(full[i : i + 3]) == i and full[i : i + 3].strip()
    )
    stop = full[i : i + 3]
    g = backend.generate(ask(image), max_new_tokens=24, stop=["never-appears", stop])
    assert g.text == full[:i]
    assert stop not in g.text
    assert g.tokens_out < 24  # generation stopped early, not just the text cut


def test_hf_streaming_yields_the_same_text(backend, image):
    plain = backend.generate(ask(image), max_new_tokens=20)
    pieces: list[str] = []
    streamed = backend.generate(ask(image), max_new_tokens=20, on_token=pieces.append)
    assert len(pieces) >= 1 and "".join(pieces) == streamed.text == plain.text
    # With a stop string, nothing from the stop string on is ever streamed.
    stop = plain.text[8:11]
    pieces.clear()
    cut = backend.generate(ask(image), max_new_tokens=20, stop=[stop], on_token=pieces.append)
    assert "".join(pieces) == cut.text == cut_at_stop(plain.text, [stop])


def test_stop_filter_holds_back_possible_stop_prefixes():
    out: list[str] = []
    f = StopFilter(out.append, ["Observation:"])
    for piece in ["Action: x\nObs", "erv", "ation: 3 cubes"]:
        f.feed(piece)
    assert "".join(out) == "Action: x\n"
    out.clear()
    f = StopFilter(out.append, ["Observation:"])
    for piece in ["Obs", "cure"]:
        f.feed(piece)
    f.feed("", final=True)
    assert "".join(out) == "Obscure"


def test_hf_is_cached_and_loads_through_specs(backend, tiny):
    again = load_backend(f"hf:{tiny}")
    assert isinstance(again, HFBackend)
    assert again.model is backend.model  # loaded once per process


def test_hf_rejects_folders_that_are_not_vlms(tmp_path):
    with pytest.raises(WeightsNotFound, match="config.json"):
        HFBackend(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(BackendError, match=r"'bert' model, not a vision-language"):
        HFBackend(tmp_path)
    with pytest.raises(WeightsNotFound, match="no-such-model"):
        HFBackend("no-such-model")


# -- openai backend against the served tiny model -----------------------------------------------


def test_openai_backend_through_served_hf_model(served, backend, image):
    remote = OpenAIBackend(served)  # model=None: taken from GET /models
    assert remote.name == served  # no network call just to name it
    g = remote.generate(ask(image), max_new_tokens=10)
    assert remote.name == g.model == "tiny-llava"
    local = backend.generate(ask(image), max_new_tokens=10)
    assert g.text == local.text
    assert (g.tokens_in, g.tokens_out) == (local.tokens_in, local.tokens_out)

    pieces: list[str] = []
    s = remote.generate(ask(image), max_new_tokens=10, on_token=pieces.append)
    assert "".join(pieces) == s.text == local.text
    assert s.tokens_out == local.tokens_out  # from the stream's usage chunk

    stop = local.text[5:8]
    cut = remote.generate(ask(image), max_new_tokens=10, stop=[stop])
    assert cut.text == cut_at_stop(local.text, [stop])


def test_openai_backend_via_spec_and_tools_on_a_react_server(served, image):
    remote = load_backend(f"openai:{served}#tiny-llava")
    assert isinstance(remote, OpenAIBackend) and remote.name == "tiny-llava"
    tools = [{"type": "function", "function": {"name": "detect", "parameters": {"type": "object"}}}]
    g = remote.generate(ask(image), tools=tools, max_new_tokens=4)
    assert g.tool_calls == [] and g.text  # random text is not a tool call
    assert remote.tools_supported is True


def test_served_api_shapes(served, image):
    import httpx

    models = httpx.get(f"{served}/models").json()
    assert models["data"][0]["id"] == "tiny-llava"
    data_url = "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode()
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Describe."},
                    {"type": "image_url", "image_url": {"url": data_url}},
                ],
            },
        ],
        "max_tokens": 3,
    }
    r = httpx.post(f"{served}/chat/completions", json=body, timeout=30).json()
    assert r["object"] == "chat.completion" and r["choices"][0]["finish_reason"] == "length"
    assert r["usage"]["completion_tokens"] == 3 and r["usage"]["prompt_tokens"] > 64
    # Remote images are refused, never fetched; bad requests are 400s in OpenAI's error shape.
    body["messages"][0]["content"][1]["image_url"]["url"] = "http://example.com/a.png"
    bad = httpx.post(f"{served}/chat/completions", json=body, timeout=30)
    assert bad.status_code == 400 and "data: URL" in bad.json()["error"]["message"]
    assert (
        httpx.post(f"{served}/chat/completions", json={"messages": []}, timeout=30).status_code
        == 400
    )


# -- error paths and native tool calls against small real servers -------------------------------


def test_openai_errors_name_url_and_status(image):
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def broken():
        return JSONResponse({"error": {"message": "GPU on fire"}}, status_code=500)

    @app.get("/v1/models")
    def models():
        return PlainTextResponse("not json")

    with running(app) as url:
        with pytest.raises(BackendError, match=r"chat/completions answered HTTP 500.*GPU on fire"):
            OpenAIBackend(url, "m").generate(ask(image))
        with pytest.raises(BackendError, match="malformed JSON"):
            OpenAIBackend(url).generate(ask(image))

    # The same port, now closed.
    with pytest.raises(BackendError, match=rf"cannot reach {url}/chat/completions"):
        OpenAIBackend(url, "m", timeout=2).generate(ask(image))
    with pytest.raises(BackendError, match="http://"):
        OpenAIBackend("localhost:8000/v1")


def test_openai_native_tool_calls_become_toolcalls(image):
    seen: list[dict] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        seen.append(body)
        call = {
            "id": "call_7",
            "type": "function",
            "function": {
                "name": "detect",
                "arguments": '{"image": "image_0", "classes": ["cube"]}',
            },
        }
        return {
            "model": "fixed",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5},
        }

    tools = [{"type": "function", "function": {"name": "detect", "parameters": {"type": "object"}}}]
    with running(app) as url:
        g = OpenAIBackend(url, "fixed").generate(ask(image), tools=tools, stop=["Observation:"])
    assert g.tool_calls == [
        ToolCall(tool="detect", args={"image": "image_0", "classes": ["cube"]}, id="call_7")
    ]
    assert (g.text, g.tokens_in, g.tokens_out, g.model) == ("", 11, 5, "fixed")
    body = seen[0]
    assert body["tools"] == tools and body["stop"] == ["Observation:"]
    parts = body["messages"][1]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert parts[1] == {"type": "text", "text": "How many cubes are there?"}


def test_openai_retries_without_tools_when_the_server_rejects_them(image):
    calls: list[bool] = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        calls.append("tools" in body)
        if "tools" in body:
            return JSONResponse({"error": {"message": "tools not supported"}}, status_code=400)
        return {"choices": [{"message": {"content": "Action: detect"}}]}

    tools = [{"type": "function", "function": {"name": "detect", "parameters": {"type": "object"}}}]
    with running(app) as url:
        remote = OpenAIBackend(url, "m")
        assert remote.generate(ask(image), tools=tools).text == "Action: detect"
        assert remote.generate(ask(image), tools=tools).text == "Action: detect"
    assert calls == [True, False, False]  # asked once with tools, then remembered
    assert remote.tools_supported is False


class _ReactBackend:
    """A backend that always answers with one ReAct tool call (to test the server's conversion)."""

    name = "react"

    def generate(
        self, messages, *, tools=None, max_new_tokens=256, stop=None, on_token=None
    ) -> Generation:
        text = 'Thought: find cubes\nAction: detect\nAction Input: {"classes": ["cube"]}'
        return Generation(text=text, model=self.name, tokens_in=3, tokens_out=9)


def test_server_returns_react_calls_as_tool_calls_when_asked_with_tools(image):
    tools = [{"type": "function", "function": {"name": "detect", "parameters": {"type": "object"}}}]
    with running(build_app(_ReactBackend(), "react")) as url:
        remote = OpenAIBackend(url)
        with_tools = remote.generate(ask(image), tools=tools)
        without = remote.generate(ask(image))
    assert with_tools.tool_calls and with_tools.tool_calls[0].tool == "detect"
    assert with_tools.tool_calls[0].args == {"classes": ["cube"]}
    assert without.tool_calls == [] and without.text.startswith("Thought: find cubes")


def test_openai_streams_native_tool_call_deltas(image):
    import json

    app = FastAPI()
    pieces = [
        {"choices": [{"delta": {"role": "assistant", "content": "Thinking"}}]},
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "c1",
                                "function": {"name": "crop", "arguments": '{"box": '},
                            }
                        ]
                    }
                }
            ]
        },
        {
            "choices": [
                {
                    "delta": {
                        "tool_calls": [{"index": 0, "function": {"arguments": "[1, 2, 3, 4]}"}}]
                    }
                }
            ]
        },
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
    ]

    @app.post("/v1/chat/completions")
    def complete():
        events = [f"data: {json.dumps(p)}\n\n" for p in pieces] + [
            ": keep-alive\n\n",
            "data: [DONE]\n\n",
        ]
        return StreamingResponse(iter(events), media_type="text/event-stream")

    out: list[str] = []
    with running(app) as url:
        g = OpenAIBackend(url, "m").generate(ask(image), on_token=out.append)
    assert out == ["Thinking"] and g.text == "Thinking"
    assert g.tool_calls == [ToolCall(tool="crop", args={"box": [1, 2, 3, 4]}, id="c1")]
    assert g.tokens_out == 1  # no usage chunk: the content pieces are counted


def test_openai_keeps_calls_with_malformed_arguments(image):
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete():
        call = {"id": "x", "function": {"name": "count", "arguments": "three cubes"}}
        return {"choices": [{"message": {"content": "", "tool_calls": [call]}}]}

    with running(app) as url:
        g = OpenAIBackend(url, "m").generate(ask(image))
    # Kept, so the executor's argument validation tells the model what was wrong.
    assert g.tool_calls == [ToolCall(tool="count", args={"input": "three cubes"}, id="x")]


def test_server_maps_tool_turns_to_react_text(tmp_path):
    raw = [
        {"role": "developer", "content": "Use tools."},
        {"role": "user", "content": "How many cubes?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c",
                    "type": "function",
                    "function": {"name": "detect", "arguments": '{"classes": ["cube"]}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c", "content": "3 cubes\n2 spheres"},
    ]
    msgs = to_messages(raw, tmp_path)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2].content == 'Action: detect\nAction Input: {"classes": ["cube"]}'
    assert msgs[3].content == "Observation: 3 cubes 2 spheres"


def test_openai_applies_stop_strings_the_server_ignored(image):
    import json

    bodies: list[dict] = []
    app = FastAPI()
    text = "Action: detect\nObservation: made up"

    @app.post("/v1/chat/completions")
    async def complete(request: Request):
        body = await request.json()
        bodies.append(body)
        if not body.get("stream"):
            return {"choices": [{"message": {"content": text}}]}
        words = [w + " " for w in text.split(" ")]
        events = [
            f"data: {json.dumps({'choices': [{'delta': {'content': w}}]})}\n\n" for w in words
        ]
        return StreamingResponse(
            iter([*events, "data: [DONE]\n\n"]), media_type="text/event-stream"
        )

    stops = ["<a>", "<b>", "<c>", "<d>", "Observation:"]  # five: OpenAI takes at most four
    out: list[str] = []
    with running(app) as url:
        remote = OpenAIBackend(url, "m")
        assert remote.generate(ask(image), stop=stops).text == "Action: detect\n"
        assert (
            remote.generate(ask(image), stop=stops, on_token=out.append).text == "Action: detect\n"
        )
    assert "".join(out) == "Action: detect\n"
    assert bodies[0]["stop"] == stops[:4]


def test_hf_resolves_shipped_names(tiny, monkeypatch, tmp_path):
    (tmp_path / "agentkit-mllm").symlink_to(tiny, target_is_directory=True)
    monkeypatch.setenv("AGENTKIT_WEIGHTS", str(tmp_path))
    b = HFBackend("agentkit-mllm", device="cpu")
    assert b.name == "agentkit-mllm" and b.path == tiny.resolve()
