"""The scene detector's attribute head: colour, material and size of a detected object.

The shipped ``scenes-yolo`` detector only finds shapes (3 classes converge far faster than 96
size-colour-material-shape classes on a CPU budget); this small CNN names the other attributes
from a crop of each box. Its inputs, per object:

- the box crop (padded by ``PAD`` of its size on each side, resized to ``crop x crop``), twice:
  as RGB in 0-1, and divided by the image's median colour (the grey ground dominates every scene,
  so this ratio cancels exposure and white balance: colour by ratio held up on real renders where
  colour by absolute RGB did not, FACTS.md);
- a geometry vector: the box's size and corners in units of the image width, centred (size
  depends on depth, which the box's height in the image tells), its aspect, and the image's
  median colour.

Checkpoint layout (``scenes-attr.pt``): ``{"config": {...}, "model": state_dict (fp16),
"vocab": {attribute: [values]}}``. Boxes are XYXY in original-image pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

PAD = 0.15  # context around the box: the object's edge and a little ground for reference
GEOM = 10  # log w, log h, y1, y2, x1, x2 (see crop_inputs), log aspect, median R, G, B
VOCAB: dict[str, list[str]] = {
    "color": ["gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"],
    "material": ["rubber", "metal"],
    "size": ["large", "small"],
    "shape": ["cube", "sphere", "cylinder"],
}


def image_median(img: np.ndarray) -> np.ndarray:
    """Per-channel median of an HxWx3 uint8 image (subsampled), in 0-1: the ground's colour."""
    step = max(1, min(img.shape[0], img.shape[1]) // 64)
    return np.median(img[::step, ::step].reshape(-1, 3), axis=0).astype(np.float32) / 255.0


def crop_inputs(
    img: np.ndarray, boxes: np.ndarray, crop: int, median: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs for N boxes: crops (N, 6, crop, crop) float32 and geometry (N, GEOM).

    ``img`` is HxWx3 uint8 RGB; ``boxes`` (N, 4) XYXY pixels; ``median`` the image's median colour
    in 0-1 (computed when None).
    """
    from PIL import Image

    h, w = img.shape[:2]
    med = image_median(img) if median is None else np.asarray(median, np.float32)
    pil = Image.fromarray(img)
    crops = np.zeros((len(boxes), 6, crop, crop), np.float32)
    geom = np.zeros((len(boxes), GEOM), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64)):
        bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        px, py = PAD * bw, PAD * bh
        c = pil.resize(
            (crop, crop),
            Image.Resampling.BILINEAR,
            box=(max(x1 - px, 0), max(y1 - py, 0), min(x2 + px, w), min(y2 + py, h)),
        )
        rgb = np.asarray(c, np.float32).transpose(2, 0, 1) / 255.0
        crops[i, :3] = rgb
        crops[i, 3:] = np.clip(rgb / np.maximum(med, 0.02)[:, None, None], 0, 6) / 3.0
        # in units of the width (the focal length is proportional to it), centred on the image:
        # apparent size against the box's height in the image (its depth) separates large from
        # small linearly; the x3 brings the offsets to about unit spread
        geom[i] = [np.log(bw / w), np.log(bh / w), 3 * (y1 - h / 2) / w, 3 * (y2 - h / 2) / w,
                   3 * (x1 - w / 2) / w, 3 * (x2 - w / 2) / w, np.log(bw / bh), *med]  # fmt: skip
    return crops, geom


def build(width: int = 16, crop: int = 32) -> torch.nn.Module:
    """The attribute CNN: 3 conv stages on the 6-channel crop, an MLP with the geometry, 4 heads."""
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    class AttrNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(block(6, width), block(width, 2 * width),
                                          block(2 * width, 4 * width))  # fmt: skip
            self.mlp = nn.Sequential(nn.Linear(8 * width + GEOM, 128), nn.ReLU(inplace=True),
                                     nn.Dropout(0.1))  # fmt: skip
            # the heads also see the geometry directly: size is a linear function of it
            self.heads = nn.ModuleDict({k: nn.Linear(128 + GEOM, len(v)) for k, v in VOCAB.items()})

        def forward(self, x: torch.Tensor, geom: torch.Tensor) -> dict[str, torch.Tensor]:
            f = self.features(x)
            f = torch.cat([f.mean((2, 3)), f.amax((2, 3)), geom], dim=1)
            z = torch.cat([self.mlp(f), geom], dim=1)
            return {k: head(z) for k, head in self.heads.items()}

    return AttrNet()


class AttributeHead:
    """A loaded attribute head: ``predict(img, boxes)`` -> per box {attribute: (value, prob)}."""

    def __init__(self, ckpt: dict[str, Any], device: str = "cpu"):
        self.config = dict(ckpt["config"])
        self.crop = int(self.config["crop"])
        self.vocab: dict[str, list[str]] = ckpt.get("vocab", VOCAB)
        self.model = build(int(self.config["width"]), self.crop)
        self.model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})
        self.model.eval().to(device)
        self.device = device

    @classmethod
    def load(cls, path: str, device: str = "cpu") -> AttributeHead:
        import torch

        return cls(torch.load(path, map_location="cpu", weights_only=True), device)

    def predict(self, img: np.ndarray, boxes: np.ndarray) -> list[dict[str, tuple[str, float]]]:
        """Attributes of each XYXY box in the HxWx3 uint8 image, with their probabilities."""
        import torch

        if len(boxes) == 0:
            return []
        crops, geom = crop_inputs(img, np.asarray(boxes), self.crop)
        with torch.no_grad():
            out = self.model(torch.from_numpy(crops).to(self.device),
                             torch.from_numpy(geom).to(self.device))  # fmt: skip
        res: list[dict[str, tuple[str, float]]] = [{} for _ in range(len(boxes))]
        for k, logits in out.items():
            prob = logits.float().softmax(1).cpu().numpy()
            for i, p in enumerate(prob):
                j = int(p.argmax())
                res[i][k] = (self.vocab[k][j], float(p[j]))
        return res
