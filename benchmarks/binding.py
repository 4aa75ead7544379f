"""Can a core's language model learn to read the image tokens? POPE probes on perfect features.

POPE with the model alone stays at chance for every core trained here (docs/mllm.md, stage 5),
even over a vision tower that sees. This separates the two halves of that failure: it replaces
the tower by *oracle* features read off the scenes' instance masks, so whatever is left is the
language model's. Per image, 64 tokens (an 8 x 8 grid, as the core's projector receives):

* ``oracle``: each patch's one-hot colour, shape, material and size (19 dims, background
  included) of the object covering most of it: what a perfect tower's dense heads would say;
* ``presence``: every token the multi-hot of the 24 colour-shape pairs in the image (the answer
  to every probe, broadcast: the LM need not search the patches, only look one pair up);
* ``tower``: no oracle, the tokens a grafted LLaVA folder's own vision tower gives the projector
  for each rendered image (``--tower``, e.g. ``runs/train/mllm-vision/model``): how far the LM
  gets with what a trained tower really sees.

A projector (LLaVA's Linear-GELU-Linear; ``--init words`` starts it mapping each oracle class to
the LM's embedding of its word, "red", "cube", ...) and the LM (in full) are trained on POPE's
question ("Is there a red cube in the image?", present pairs and as many absent ones, 60 % of
them sharing a colour or shape with a present one; mirrored scenes doubled) with the loss on
"Yes" vs "No" alone, and scored every ``--eval-every`` steps on the held-out scenes' POPE probes
(``agentkit eval pope``'s three settings). ``--control`` zeroes the features of every "no"
probe: learned in a few dozen steps, it shows the path from the image tokens to the answer works.

    .venv/bin/python benchmarks/binding.py [--features oracle|presence|tower] [--tower FOLDER]
        [--init random|words]
        [--order image|text] [--fresh] [--single 1.0] [--steps 1500] [--lr 3e-4] [--control]

Prints one line per evaluation: step, training loss (mean since the last line), and accuracy /
F1 / yes-ratio per setting.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F

from agentkit.mllm.eval import pope
from agentkit.mllm.train import vision

GRID, SIDE = 8, 192


def features(scenes: list[dict[str, Any]], kind: str, flip: bool = False) -> torch.Tensor:
    """(scenes, 64, dims) features from the scenes' masks (``flip``: of the mirrored image)."""
    out = []
    for scene in scenes:
        ids = torch.from_numpy(vision.id_map(scene, SIDE))[None]
        table = torch.from_numpy(vision.attribute_table(scene, 1 + len(scene["objects"])))[None]
        cells, present = vision.targets(ids.flip(-1) if flip else ids, table, GRID, 0.1)
        if kind == "presence":
            out.append(present[0][None].expand(GRID * GRID, -1))
        else:
            sizes = [1 + len(v) for v in vision.ATTRIBUTES.values()]
            hot = [F.one_hot(cells[0, a].flatten(), n) for a, n in enumerate(sizes)]
            out.append(torch.cat(hot, -1).float())
    return torch.stack(out)


def tower_features(folder: str, images: list[Path], flip: bool = False) -> torch.Tensor:
    """(images, tokens, dims): what the LLaVA folder's projector receives for each image (the
    tower's ``vision_feature_layer``, a CLS token dropped as its strategy says), of the mirrored
    image with ``flip``."""
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    ip = AutoProcessor.from_pretrained(folder).image_processor
    layer, cfg = model.config.vision_feature_layer, model.config
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 32):
            ims = [Image.open(p).convert("RGB") for p in images[i : i + 32]]
            pv = ip(images=ims, return_tensors="pt")["pixel_values"]
            hidden = model.model.vision_tower(
                pv.flip(-1) if flip else pv, output_hidden_states=True
            )
            tokens = hidden.hidden_states[layer]
            out.append(tokens[:, 1:] if cfg.vision_feature_select_strategy == "default" else tokens)
    return torch.cat(out)


def training_probes(
    scenes: list[dict[str, Any]], rng: random.Random, single: float
) -> list[tuple[int, str, int]]:
    """(scene index, question, 1 for yes) per probe: each present pair, as many absent ones, and
    ``single`` x as many one-attribute probes ("Is there a red thing / a cube ...")."""
    everything = [(c, s) for c in pope.COLORS for s in pope.SHAPES]
    out = []
    for i, scene in enumerate(scenes):
        objects = scene["objects"]
        present = sorted({(o["color"], o["shape"]) for o in objects})
        absent = [p for p in everything if p not in present]
        near = [p for p in absent if any(p[0] == q[0] or p[1] == q[1] for q in present)]
        for p in present:
            out.append((i, f"Is there a {p[0]} {p[1]} in the image?", 1))
            q = rng.choice(near if near and rng.random() < 0.6 else absent)
            out.append((i, f"Is there a {q[0]} {q[1]} in the image?", 0))
        for _ in range(round(len(present) * single)):
            if rng.random() < 0.5:
                c = rng.choice(pope.COLORS)
                label = any(o["color"] == c for o in objects)
                out.append((i, f"Is there a {c} thing in the image?", int(label)))
            else:
                s = rng.choice(pope.SHAPES)
                label = any(o["shape"] == s for o in objects)
                out.append((i, f"Is there a {s} in the image?", int(label)))
    return out


class Reader(torch.nn.Module):
    """A LLaVA core's LM reading projected features in place of its image tokens; returns the
    logits of "No" and "Yes" at the answer's position."""

    def __init__(self, folder: str, dims: int, order: str, fresh: bool) -> None:
        super().__init__()
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
        self.processor = AutoProcessor.from_pretrained(folder)
        self.lm, self.head = model.model.language_model, model.lm_head
        if fresh:
            self.lm.apply(model._init_weights)
        width = self.lm.get_input_embeddings().weight.shape[1]
        self.proj = torch.nn.Sequential(
            torch.nn.Linear(dims, width), torch.nn.GELU(), torch.nn.Linear(width, width)
        )
        self.image_token = int(model.config.image_token_index)
        tok = self.processor.tokenizer
        self.answers = [tok(w, add_special_tokens=False)["input_ids"][0] for w in ("No", "Yes")]
        self.order = order
        self._ids: dict[str, list[int]] = {}

    def words_init(self) -> None:
        """Oracle class k -> the mean embedding of its word's tokens (background classes -> 0)."""
        tok, emb = self.processor.tokenizer, self.lm.get_input_embeddings().weight
        words = [w for values in vision.ATTRIBUTES.values() for w in ("", *values)]
        with torch.no_grad():
            rows = [
                emb[tok(w, add_special_tokens=False)["input_ids"]].mean(0)
                if w else torch.zeros(emb.shape[1])
                for w in words
            ]  # fmt: skip
            for p in self.proj.parameters():
                p.zero_()
            first, second = (cast(torch.nn.Linear, self.proj[k]).weight for k in (0, 2))
            first[: len(words), : len(words)] = torch.eye(len(words)) * 3  # GELU(3) ~ 3: "on"
            second[:, : len(words)] = torch.stack(rows).T / 3

    def prompt(self, question: str) -> list[int]:
        if question not in self._ids:
            parts: list[dict[str, Any]] = [{"type": "image"}, {"type": "text", "text": question}]
            conv = [{"role": "user", "content": parts[::-1] if self.order == "text" else parts}]
            text = self.processor.apply_chat_template(
                conv, tokenize=False, add_generation_prompt=True
            )
            text = text.replace("<image>", "<image>" * GRID * GRID)
            tok = self.processor.tokenizer
            self._ids[question] = tok(text, add_special_tokens=False)["input_ids"]
        return self._ids[question]

    def forward(self, feats: torch.Tensor, questions: list[str]) -> torch.Tensor:
        seqs = [self.prompt(q) for q in questions]
        n = max(map(len, seqs))
        ids = torch.zeros(len(seqs), n, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for k, s in enumerate(seqs):  # left-padded: the last position is every answer's
            ids[k, n - len(s) :], mask[k, n - len(s) :] = torch.tensor(s), 1
        x = self.lm.get_input_embeddings()(ids).clone()
        x[ids == self.image_token] = self.proj(feats).flatten(0, 1)
        h = self.lm(inputs_embeds=x, attention_mask=mask).last_hidden_state[:, -1]
        return self.head(h)[:, self.answers]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="agentkit/weights/agentkit-mllm", help="LLaVA folder")
    ap.add_argument("--train", default="data/scenes-train", help="scene folders, comma-separated")
    ap.add_argument("--heldout", default="data/scenes-heldout")
    ap.add_argument("--features", choices=("oracle", "presence", "tower"), default="oracle")
    ap.add_argument("--tower", default="runs/train/mllm-vision/model",
                    help="--features tower: the grafted LLaVA folder whose tower reads the images")  # fmt: skip
    ap.add_argument("--init", choices=("random", "words"), default="random")
    ap.add_argument("--order", choices=("image", "text"), default="image",
                    help="image before the question (LLaVA's, the core's) or after it")  # fmt: skip
    ap.add_argument("--fresh", action="store_true", help="re-initialise the LM")
    ap.add_argument("--single", type=float, default=0.0, help="one-attribute probes per pair")
    ap.add_argument("--control", action="store_true", help='zero the features of "no" probes')
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.init == "words" and a.features != "oracle":
        ap.error("--init words maps oracle classes to words; use it with --features oracle")
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    rng = random.Random(a.seed)

    train_scenes = [x for d in a.train.split(",") for x in pope.load_scenes(Path(d))]
    train = [scene for scene, _ in train_scenes]
    held_scenes = pope.load_scenes(Path(a.heldout))
    held = [scene for scene, _ in held_scenes]
    # mirrored copies: the probes are the same, the patches move
    if a.features == "tower":
        images = [image for _, image in train_scenes]
        feats = torch.cat([tower_features(a.tower, images), tower_features(a.tower, images, True)])
        held_feats = tower_features(a.tower, [image for _, image in held_scenes])
    else:
        feats = torch.cat([features(train, a.features), features(train, a.features, flip=True)])
        held_feats = features(held, a.features)
    data = training_probes(train + train, rng, a.single)
    probes = pope.probes(held_scenes, per_scene=3, seed=a.seed)
    index = {str(image): i for i, (_, image) in enumerate(held_scenes)}
    reader = Reader(a.model, feats.shape[-1], a.order, a.fresh)
    if a.init == "words":
        reader.words_init()
    print(json.dumps({"train_scenes": len(train), "probes": len(data), "heldout_probes":
                      len(probes), **vars(a)}), flush=True)  # fmt: skip

    def evaluate() -> dict[str, Any]:
        reader.eval()
        records = []
        with torch.no_grad():
            for i in range(0, len(probes), 64):
                chunk = probes[i : i + 64]
                f = held_feats[[index[p["image"]] for p in chunk]]
                for p, lg in zip(chunk, reader(f, [p["question"] for p in chunk]), strict=True):
                    records.append({**p, "predicted": "yes" if lg[1] > lg[0] else "no"})
        reader.train()
        return {
            s: [m["accuracy"], m["f1"], m["yes_ratio"]]
            for s in pope.SETTINGS
            for m in [pope.metrics([r for r in records if r["setting"] == s])]
        }

    opt = torch.optim.AdamW(reader.parameters(), lr=a.lr, weight_decay=0.0)
    t0, losses = time.perf_counter(), []
    print(json.dumps({"step": 0, "heldout": evaluate()}), flush=True)
    for step in range(1, a.steps + 1):
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, step / 50)
        batch = rng.sample(data, a.batch)
        y = torch.tensor([label for _, _, label in batch])
        f = feats[[i for i, _, _ in batch]]
        if a.control:
            f = f * y[:, None, None].float()
        loss = F.cross_entropy(reader(f, [q for _, q, _ in batch]), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reader.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % a.eval_every == 0 or step == a.steps:
            print(json.dumps({"step": step, "loss": round(sum(losses) / len(losses), 3),
                              "seconds": round(time.perf_counter() - t0), "heldout": evaluate()}),
                  flush=True)  # fmt: skip
            losses = []


if __name__ == "__main__":
    main()
