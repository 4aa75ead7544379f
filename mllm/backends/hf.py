"""A local transformers vision-language model as a :class:`~agentkit.mllm.backends.base.Backend`.

Any folder that ``AutoModelForImageTextToText`` and ``AutoProcessor`` load works: the shipped
tiny core (``hf:agentkit-mllm``), a folder built by :func:`agentkit.mllm.model.build_tiny_llava`,
or a real LLaVA / Qwen2-VL / Idefics3 checkpoint on disk. Nothing is downloaded.

The model and processor load once per process (cached by folder, device and dtype in
:data:`agentkit.tools.base.MODELS`), and one call of :meth:`HFBackend.generate` is: chat template →
processor (images opened with :func:`agentkit.media.open_image`) → ``model.generate`` with the KV
cache, greedy → decode. Stop strings are checked on the decoded tail of the generated tokens, so
they work whatever the tokenization; the returned text ends before the first stop string, as
OpenAI's ``stop`` does. Streaming calls ``on_token`` from inside ``generate`` (no extra thread),
holding back text that might be the start of a stop string, so the streamed pieces always join to
exactly the returned text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentkit.errors import BackendError, WeightsNotFound
from agentkit.mllm.backends.base import Constraint, Generation, Message

IMAGE_PLACEHOLDER = "<image>"


@dataclass
class _Loaded:
    model: Any
    processor: Any
    lock: (
        threading.Lock
    )  # one generate at a time per loaded model (the server runs calls in threads)
    pieces: dict[int, str] = field(default_factory=dict)  # token id -> its text (constraints)


def resolve_path(path_or_name: str | Path) -> Path:
    """An existing folder as it is; otherwise a shipped name through :func:`agentkit.weights.resolve`."""
    p = Path(path_or_name).expanduser()
    if p.is_dir():
        return p
    try:
        from agentkit.weights import resolve
    except ImportError:
        raise WeightsNotFound(
            f"no model folder at {str(path_or_name)!r}; expected a folder with config.json, the weights "
            "and the processor files (AutoModelForImageTextToText / AutoProcessor)"
        ) from None
    return Path(resolve(path_or_name))


def _check_vlm_folder(path: Path) -> None:
    """Fail early, naming the folder, when it cannot be an image-text-to-text model."""
    if not path.is_dir():
        raise WeightsNotFound(
            f"{path} is a file; the hf backend expects a transformers model folder (config.json, "
            "weights, processor files) such as one saved by save_pretrained"
        )
    if not (path / "config.json").is_file():
        raise WeightsNotFound(
            f"{path} has no config.json; expected a transformers image-text-to-text model folder "
            "(for example one built by agentkit.mllm.model.build_tiny_llava or a LLaVA / Qwen2-VL checkpoint)"
        )
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as e:
        raise BackendError(f"cannot read the model config in {path}: {e}") from e
    if config.model_type not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        raise BackendError(
            f"{path} holds a {config.model_type!r} model, not a vision-language one; the hf backend "
            "expects a folder that AutoModelForImageTextToText loads (llava, qwen2_vl, idefics3, ...)"
        )


def _load(path: Path, device: str, dtype: Any) -> _Loaded:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import logging as hf_logging

    _check_vlm_folder(path)
    # A local folder loads in well under a second: its progress bar would only litter the
    # output of `agentkit ask --json` and the evaluation commands.
    hf_logging.disable_progress_bar()
    try:
        processor = AutoProcessor.from_pretrained(path)
        model: Any = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise BackendError(f"cannot load the model in {path}: {type(e).__name__}: {e}") from e
    if not hasattr(processor, "tokenizer") or getattr(processor, "chat_template", None) is None:
        raise BackendError(
            f"{path} has no processor with a tokenizer and a chat template; the hf backend needs "
            "processor_config.json / tokenizer files with a chat_template"
        )
    model.to(torch.device(device)).eval()
    return _Loaded(model=model, processor=processor, lock=threading.Lock())


def _default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _torch_dtype(dtype: Any, device: str) -> Any:
    """float32 on CPU (fp16 matmuls are slow there), the checkpoint's own dtype elsewhere."""
    import torch

    if dtype is None:
        return torch.float32 if device == "cpu" else "auto"
    if isinstance(dtype, str) and dtype != "auto":
        try:
            return getattr(torch, dtype)
        except AttributeError:
            raise BackendError(
                f"unknown dtype {dtype!r}; expected float32, float16, bfloat16 or auto"
            ) from None
    return dtype


class _StopOnText:
    """A StoppingCriteria: stop once the decoded generated text contains a stop string.

    Decodes only the last few tokens each step (enough to hold the longest stop string), so the
    cost per step stays constant.
    """

    def __init__(self, tokenizer: Any, stops: list[str], prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.stops = stops
        self.prompt_len = prompt_len
        self.window = max(len(s) for s in stops) + 4  # tokens; each token decodes to >= 1 byte

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        tail = input_ids[0, max(self.prompt_len, input_ids.shape[1] - self.window) :]
        text = self.tokenizer.decode(tail, skip_special_tokens=True)
        done = any(s in text for s in self.stops)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _Constrained:
    """A LogitsProcessor for constrained decoding: of each row's ``top_k`` likeliest next tokens,
    keep those after which the reply is still viable under ``constraint``
    (:class:`~agentkit.mllm.backends.base.Constraint`), and the end token where the reply may
    end; mask every other token. A row none of whose ``top_k`` tokens is viable, or that is
    already off the grammar, is left as the model has it: the parser stays the judge.

    The grammar state of each partial reply is kept by its text, so a step feeds each candidate
    token's few characters only. Candidates are tried likeliest first and the search stops at
    the ``need``-th viable one: a greedy step takes one token, beam search at most twice its
    beams per row, so masking the rest changes nothing they would choose (the grammar was most
    of a constrained token's cost when all ``top_k`` were fed)."""

    def __init__(
        self, backend: HFBackend, constraint: Any, prompt_len: int, top_k: int, need: int
    ) -> None:
        self.backend = backend
        self.constraint = constraint
        self.prompt_len = prompt_len
        self.top_k = top_k
        self.need = need
        self.states: dict[str, Any] = {"": constraint.start()}
        eos = backend.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        tokenizer = self.backend.processor.tokenizer
        k = min(self.top_k, scores.shape[1])
        for row in range(input_ids.shape[0]):
            text = tokenizer.decode(input_ids[row, self.prompt_len :], skip_special_tokens=True)
            state = self.states.get(text)
            if state is None:  # a reply reached otherwise (beams reordered, a byte split)
                state = self.constraint.feed(self.constraint.start(), text)
                if state is None:
                    continue
            keep = self._viable(scores[row], k, state, text)
            if not keep and k < scores.shape[1]:
                # none of the likeliest is viable (the model insists on a name no line set):
                # look further down the distribution rather than leave the row unconstrained
                wide = min(self.backend.constraint_wide_k, scores.shape[1])
                keep = self._viable(scores[row], wide, state, text, skip=k)
            if keep:
                kept = scores[row, keep].clone()
                scores[row] = float("-inf")
                scores[row, keep] = kept
        return scores

    def _viable(self, row: Any, k: int, state: Any, text: str, skip: int = 0) -> list[int]:
        """The likeliest of the ``k`` best tokens that keep the reply viable, at most ``need``;
        the ``skip`` likeliest were tried already and are passed over."""
        keep: list[int] = []
        for t in row.topk(k).indices.tolist()[skip:]:
            if t in self.eos:
                if self.constraint.done(state):
                    keep.append(t)
                    if len(keep) >= self.need:
                        break
                continue
            piece = self.backend.token_text(t)
            nxt = self.constraint.feed(state, piece)
            if nxt is not None:
                keep.append(t)
                self.states[text + piece] = nxt
            if len(keep) >= self.need:
                break
        return keep


def cut_at_stop(text: str, stops: list[str] | None) -> str:
    """``text`` up to (not including) the earliest stop string."""
    if not stops:
        return text
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


class StopFilter:
    """Passes streamed text on, minus anything from the first stop string on.

    Text that could still become a stop string (a suffix that is a prefix of one) is held back
    until the next piece decides it, so the pieces passed on join to ``cut_at_stop(full, stops)``.
    """

    def __init__(self, on_token: Callable[[str], None], stops: list[str] | None) -> None:
        self.on_token = on_token
        self.stops = [s for s in (stops or []) if s]
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, piece: str, final: bool = False) -> None:
        if self.stopped:
            return
        self.text += piece
        safe = cut_at_stop(self.text, self.stops)
        if len(safe) < len(self.text):
            self.stopped = True
        elif not final:
            hold = max(
                (k for s in self.stops for k in range(1, len(s)) if self.text.endswith(s[:k])),
                default=0,
            )
            safe = self.text[: len(self.text) - hold]
        if len(safe) > self.sent:
            self.on_token(safe[self.sent :])
            self.sent = len(safe)


def _streamer(tokenizer: Any, sink: StopFilter) -> Any:
    from transformers import TextStreamer

    class _Streamer(TextStreamer):
        # TextStreamer decodes incrementally and flushes whole words; we only redirect its output.
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            sink.feed(text, final=stream_end)

    return _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


def read_runtime_hints(folder: Path) -> dict[str, str]:
    """``agentkit_runtime.json`` of a model folder (planner, prompt style); ``{}`` without one."""
    import json

    from agentkit.errors import WeightsNotFound
    from agentkit.mllm.backends.base import RUNTIME_HINTS_FILE

    p = folder / RUNTIME_HINTS_FILE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsNotFound(f"{p} is not readable JSON ({e}); fix or delete it") from e
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


class HFBackend:
    """A local image-text-to-text model.

    ``path_or_name`` is a model folder or a shipped name (``agentkit-mllm``). ``device`` defaults
    to CUDA, then MPS, then CPU; ``dtype`` to float32 on CPU and the checkpoint's dtype elsewhere
    (``"float16"``, ``"bfloat16"``, a ``torch.dtype`` or ``"auto"`` override it).
    """

    def __init__(
        self, path_or_name: str | Path, *, device: str | None = None, dtype: Any = None
    ) -> None:
        from agentkit.tools.base import MODELS

        self.path = resolve_path(path_or_name).resolve()
        spec = str(path_or_name)
        # A shipped name stays the model's name in traces; a folder is named by its last part.
        self.name = spec if not Path(spec).expanduser().exists() else self.path.name
        self.device = device or _default_device()
        self.dtype = _torch_dtype(dtype, self.device)
        self.runtime_hints = read_runtime_hints(self.path)
        self._loaded: _Loaded = MODELS.get(
            f"mllm:{self.dtype}",
            str(self.path),
            self.device,
            lambda: _load(self.path, self.device, self.dtype),
        )

    #: ``generate`` and ``candidates`` take a ``constraint`` (constrained decoding).
    supports_constraints = True
    #: A last ``assistant`` message is the start of the reply: generation continues it.
    continues_replies = True
    #: Constrained decoding checks this many of the likeliest next tokens per step.
    constraint_top_k = 48
    #: When none of those fits, this many (a model insisting on a name no line set).
    constraint_wide_k = 4096

    @property
    def model(self) -> Any:
        return self._loaded.model

    def token_text(self, token_id: int) -> str:
        """The text one token adds (cached per loaded model)."""
        pieces = self._loaded.pieces
        text = pieces.get(token_id)
        if text is None:
            text = pieces[token_id] = self.processor.tokenizer.decode([token_id])
        return text

    def _constrain(self, kwargs: dict[str, Any], constraint: Any, prompt_len: int) -> None:
        if constraint is not None:
            from transformers import LogitsProcessorList

            # Greedy search takes one token per step; beam search at most (2, or 1 + the end
            # tokens) x beams per row (transformers' beams_to_keep).
            beams = int(kwargs.get("num_beams", 1))
            eos = self.model.generation_config.eos_token_id
            n_eos = len(eos) if isinstance(eos, list) else 1
            need = 1 if beams == 1 else max(2, 1 + n_eos) * beams
            kwargs["logits_processor"] = LogitsProcessorList(
                [_Constrained(self, constraint, prompt_len, self.constraint_top_k, need)]
            )

    @property
    def processor(self) -> Any:
        return self._loaded.processor

    def prepare(self, messages: list[Message]) -> Any:
        """Chat template + processor: the model's inputs (``input_ids``, ``pixel_values``, ...) on
        the backend's device. Images are inserted before the text of the message that has them.
        A last ``assistant`` message is the start of the reply, written after the generation
        prompt (``continues_replies``)."""
        from agentkit.media import open_image

        conversation: list[dict[str, Any]] = []
        images = []
        # a last assistant message is the start of the reply (``continues_replies``)
        start = ""
        if messages and messages[-1].role == "assistant":
            start, messages = messages[-1].content, messages[:-1]
        for m in messages:
            parts: list[dict[str, Any]] = []
            for p in m.images:
                images.append(open_image(p))
                parts.append({"type": "image"})
            # A literal "<image>" in text would make the processor expect one more image.
            parts.append({"type": "text", "text": m.content.replace(IMAGE_PLACEHOLDER, "<img>")})
            conversation.append({"role": m.role, "content": parts})
        try:
            text = self.processor.apply_chat_template(
                conversation, tokenize=False, add_generation_prompt=True
            ) + start.replace(IMAGE_PLACEHOLDER, "<img>")
            inputs = self.processor(text=text, images=images or None, return_tensors="pt")
        except (ValueError, TypeError, KeyError) as e:
            raise BackendError(
                f"{self.name}: cannot build the model input from {len(messages)} messages: {e}"
            ) from e
        # Pixel values in the model's dtype (a half-precision model on GPU); ids stay integers.
        return inputs.to(self.model.device, dtype=self.model.dtype)

    def _pad_id(self) -> int | None:
        """The pad token generation uses: the model's, else the tokenizer's pad or end token."""
        pad = getattr(self.model.generation_config, "pad_token_id", None)
        if pad is None:
            tokenizer = self.processor.tokenizer
            pad = tokenizer.pad_token_id or tokenizer.eos_token_id
        return pad

    def _generate(self, inputs: Any, kwargs: dict[str, Any]) -> Any:
        """``model.generate`` under the model's lock with :meth:`_pad_id`, errors as BackendError."""
        import torch

        with self._loaded.lock, torch.inference_mode():
            try:
                return self.model.generate(**inputs, pad_token_id=self._pad_id(), **kwargs)
            except (RuntimeError, ValueError, IndexError) as e:
                raise BackendError(
                    f"{self.name}: generation failed: {type(e).__name__}: {e}"
                ) from e

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        constraint: Constraint | None = None,
    ) -> Generation:
        """Greedy generation with the KV cache. ``tools`` are ignored: the prompt lists the tools
        and the model answers in ReAct text. Returns the text up to the first ``stop`` string.
        ``constraint``: decode under a prefix grammar (:class:`_Constrained`)."""

        start = time.perf_counter()
        inputs = self.prepare(messages)
        n_in = int(inputs["input_ids"].shape[1])
        tokenizer = self.processor.tokenizer
        stops = [s for s in (stop or []) if s]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "use_cache": True,
        }
        if stops:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [_StopOnText(tokenizer, stops, n_in)]
            )
        self._constrain(kwargs, constraint, n_in)
        sink = StopFilter(on_token, stops) if on_token is not None else None
        if sink is not None:
            kwargs["streamer"] = _streamer(tokenizer, sink)
        out = self._generate(inputs, kwargs)
        new = out[0, n_in:]
        text = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), stops)
        if sink is not None and sink.sent < len(text):
            sink.on_token(text[sink.sent :])  # whatever the streamer's last flush held back
        return Generation(
            text=text,
            model=self.name,
            tokens_in=n_in,
            tokens_out=int(new.shape[0]),
            seconds=time.perf_counter() - start,
        )

    def candidates(
        self,
        messages: list[Message],
        n: int,
        *,
        max_new_tokens: int = 256,
        constraint: Constraint | None = None,
    ) -> list[Generation]:
        """The ``n`` best replies by beam search (``num_beams=n``), most likely first: what a
        caller with a checker (a parser, a grammar) picks from when the greedy reply fails it.
        ``constraint``: every beam decodes under the prefix grammar."""

        start = time.perf_counter()
        inputs = self.prepare(messages)
        n_in = int(inputs["input_ids"].shape[1])
        tokenizer = self.processor.tokenizer
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "num_beams": n,
            "num_return_sequences": n,
            "use_cache": True,
        }
        self._constrain(kwargs, constraint, n_in)
        out = self._generate(inputs, kwargs)
        seconds = time.perf_counter() - start
        pad = self._pad_id()
        gens = []
        for row in out[:, n_in:]:  # shorter beams are padded at the end
            n_out = int((row != pad).sum()) if pad is not None else int(row.shape[0])
            text = tokenizer.decode(row[:n_out], skip_special_tokens=True)
            gens.append(Generation(text=text, model=self.name, tokens_in=n_in,
                                   tokens_out=n_out, seconds=seconds))  # fmt: skip
        return gens

    def score(self, messages: list[Message], candidates: list[str]) -> list[float]:
        """Log-probability of each candidate reply to the conversation (summed over its tokens):
        multiple-choice answers read from the model's distribution rather than from a greedy
        reply, as likelihood-scored benchmarks (POPE's yes/no, for one) do."""
        import torch

        inputs = self.prepare(messages)
        n_in = int(inputs["input_ids"].shape[1])
        tokenizer = self.processor.tokenizer
        out = []
        with self._loaded.lock, torch.inference_mode():
            for text in candidates:
                ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
                if ids.shape[1] == 0:
                    raise BackendError(f"{self.name}: candidate {text!r} has no tokens to score")
                ids = ids.to(self.model.device)
                batch = dict(inputs)
                batch["input_ids"] = torch.cat([inputs["input_ids"], ids], dim=1)
                batch["attention_mask"] = torch.ones_like(batch["input_ids"])
                logits = self.model(**batch).logits[0, n_in - 1 : -1].float()
                logp = torch.log_softmax(logits, dim=-1).gather(1, ids[0][:, None])
                out.append(float(logp.sum()))
        return out

    def __repr__(self) -> str:
        return f"HFBackend({str(self.path)!r}, device={self.device!r})"
