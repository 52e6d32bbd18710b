"""The common classifier: one small CNN, trained the same way, used unchanged by every resampling method.

(``classifier = "resnet32"`` and ``classifier_schedule = "longtail-sgd"``, parameters of every method on the
common classifier, swap in He et al.'s CIFAR ResNet-32 and LDAM-DRW's SGD recipe: ``BACKBONES``,
``SCHEDULES``. What follows is the default, ``cnn`` with ``adam``.)

Architecture (a plain two-layer CNN; any input size from 8x8 up, 1 or 3 channels):
  conv3x3(32) - ReLU - maxpool2 -> conv3x3(64) - ReLU - maxpool2 -> flatten -> linear(128) - ReLU
  -> dropout(0.25) -> linear(n_classes).
Training: inputs scaled to [-1, 1]; cross-entropy; Adam (lr 1e-3, betas 0.9/0.999); batch 64; exactly the
budget contract's U = E x ceil(C x n_max / 64) updates (``budget.py``: E epochs over the fully balanced
set, whatever set the method hands over), drawn as consecutive seeded shuffles of that set (a smaller set
is passed over more often); no class weighting, no early stopping, no validation split (the resampling
method alone decides what the classifier sees).
Why no batch normalisation: with it (and global average pooling) the same budget gave a far noisier
classifier on MNIST pairs (G-mean 0.73-0.98 over seeds where this one gave 0.95-0.99 after SMOTE).
The whole training set lives on the device as one tensor and batches are indexed there; the loss is
read back once per epoch (a host synchronisation per step would stall a GPU). ``--precision bf16`` runs
the forward pass and loss under bf16 autocast (training and prediction); ``--compile`` compiles
``batch_loss`` (the network and its loss, one graph, so subclasses' extra terms are compiled too).
A method that trains with its own loss (``crl``; a loss-based long-tail method) hands it over as
``Classifier(loss=...)``: ``loss(model, x, y) -> scalar``, called in place of cross-entropy
(``ResamplingMethod.batch_loss`` is the public hook); ``Classifier.update`` / ``updates`` (the 0-based index of
the update whose loss is being computed, of U) tell a loss with a schedule (LDAM-DRW's deferred re-weighting)
where training is. ``spec["head"] = "cosine"`` replaces the last linear layer with a normalised one
(``CosineLinear``: LDAM's margins act on cosines).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import torch
from torch import nn

from bench.datasets.base import ImageSet
from bench.methods.base import FitContext, check_finite
from bench.methods.budget import Budget

# Part of every classifier-based method's parameters, so it is stored with each cell and in its key.
CLASSIFIER_SPEC = {
    "arch": "cnn-conv32-conv64-fc128",
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 64,
    "dropout": 0.25,
}
# The last layer: "linear" (the default, absent from CLASSIFIER_SPEC so existing keys stay) or "cosine"
# (``CosineLinear``; a method that needs it sets ``classifier_head = "cosine"``, stored in its key).
HEADS = ("linear", "cosine")

# The two choices every method on the common classifier takes as parameters (``CLASSIFIER_DEFAULTS``): the
# backbone and the training recipe. Their defaults give exactly CLASSIFIER_SPEC (the keys of every stored cell).
BACKBONES = {
    "cnn": {"arch": CLASSIFIER_SPEC["arch"], "dropout": CLASSIFIER_SPEC["dropout"]},
    "resnet32": {"arch": "resnet32"},  # methods/resnet.py: He et al.'s CIFAR ResNet-32, batch-normalised
}
SCHEDULES = {
    "adam": {"optimizer": "adam", "lr": 1e-3, "batch_size": 64},  # the suite's recipe (above)
    # LDAM-DRW's CIFAR recipe (its cifar_train.py, Cao et al. 2019), which the suite gives every long-tail method
    # (logit adjustment's and balanced softmax's official recipes differ: each module's Deviations give theirs):
    # SGD, momentum 0.9, weight decay 2e-4, batch 128, lr 0.1, times 0.01 from epoch 161 and 0.0001 from epoch
    # 181 of 200, random 4-pixel-padded crops and horizontal flips. The code warms up per epoch (lr x e / 5 in
    # epochs 1-5); ours rises linearly per update over the same 2.5 % of training. The fractions apply to the
    # cell's U updates, whatever E is.
    "longtail-sgd": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4, "batch_size": 128,
                     "warmup": 0.025, "decay_at": [0.8, 0.9], "decay": [0.01, 0.0001], "augment": "crop4-flip"},
}
CLASSIFIER_DEFAULTS = {"classifier": "cnn", "classifier_schedule": "adam"}


def classifier_spec(backbone: str = "cnn", schedule: str = "adam", head: str = "linear") -> dict:
    """The full, keyed description of the common classifier for a backbone, a schedule and a last layer."""
    if backbone not in BACKBONES:
        raise ValueError(f"classifier must be one of {', '.join(BACKBONES)}; got {backbone!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"classifier_schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    check_head(head)
    return {**BACKBONES[backbone], **SCHEDULES[schedule], **({"head": head} if head != "linear" else {})}


def keyed_params(params: dict, spec: dict) -> dict:
    """A method's key parameters: its own, with the two classifier choices replaced by the spec they give."""
    return {**{k: v for k, v in params.items() if k not in CLASSIFIER_DEFAULTS}, "classifier": spec}


class CosineLinear(nn.Module):
    """A bias-free linear layer on L2-normalised inputs and weights: logits are cosines in [-1, 1] (the
    normalised last layer that margin losses such as LDAM train; a method scales them in its loss)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)  # nn.Linear's initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(nn.functional.normalize(x, dim=1), nn.functional.normalize(self.weight, dim=1))


def check_head(head: str) -> None:
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}; got {head!r}")


def last_layer(head: str, in_features: int, n_classes: int) -> nn.Module:
    """The classifier's last layer: ``nn.Linear`` or ``CosineLinear``."""
    check_head(head)
    return nn.Linear(in_features, n_classes) if head == "linear" else CosineLinear(in_features, n_classes)


class CommonCNN(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], n_classes: int,
                 dropout: float = CLASSIFIER_SPEC["dropout"], head: str = "linear"):
        super().__init__()
        channels, height, width = image_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = 64 * (height // 4) * (width // 4)
        self.head = nn.Sequential(
            nn.Linear(flat, 128), nn.ReLU(inplace=True), nn.Dropout(dropout),
            last_layer(head, 128, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d penultimate features (after the ReLU, before dropout); ``classify(embed(x))`` computes
        exactly what ``forward(x)`` does."""
        return self.head[:2](self.features(x))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head[2:](features)


def shuffled_batches(n: int, batch: int, generator: torch.Generator, device):
    """Index batches of ``batch`` over seeded shuffles of ``range(n)``, one shuffle after another, without
    end; the last batch of each pass may be smaller. Over a set of exactly the balanced size a pass is an
    epoch; over a smaller set (the imbalanced one) an epoch's updates run into the next pass."""
    while True:
        order = torch.randperm(n, generator=generator, device=generator.device).to(device)
        for start in range(0, n, batch):
            yield order[start:start + batch]


def to_input(images: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float in [-1, 1] on ``device``."""
    tensor = torch.as_tensor(images, device=device)
    return tensor.float().div_(127.5).sub_(1.0)


def build_network(spec: dict, image_shape, n_classes: int) -> nn.Module:
    head = spec.get("head", "linear")
    if spec["arch"] == "resnet32":
        from bench.methods.resnet import ResNet32

        return ResNet32(image_shape, n_classes, last_layer(head, 64, n_classes))
    return CommonCNN(image_shape, n_classes, spec["dropout"], head)


def build_optimizer(spec: dict, model: nn.Module, updates: int):
    """The spec's optimiser and its per-update learning-rate factor (None: constant)."""
    if spec["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=spec["lr"]), None
    optimizer = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=spec["momentum"],
                                weight_decay=spec["weight_decay"])
    warm = max(1, round(spec["warmup"] * updates))
    steps = [round(f * updates) for f in spec["decay_at"]]

    def factor(update: int) -> float:  # update: 0-based index of the next optimiser step
        if update < warm:
            return (update + 1) / warm
        passed = [d for at, d in zip(steps, spec["decay"], strict=True) if update >= at]
        return passed[-1] if passed else 1.0

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel-padded crops (the padding black: -1) and horizontal flips, one draw per image from
    ``generator`` (CPU, seeded), computed on ``x``'s device."""
    n, channels, height, width = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    flips = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    padded = nn.functional.pad(x, (pad, pad, pad, pad), value=-1.0)
    rows = (offsets[0][:, None] + torch.arange(height, device=x.device))[:, None, :, None]
    cols = (offsets[1][:, None] + torch.arange(width, device=x.device))[:, None, None, :]
    crops = padded[torch.arange(n, device=x.device)[:, None, None, None],
                   torch.arange(channels, device=x.device)[None, :, None, None], rows, cols]
    return torch.where(flips[:, None, None, None], crops.flip(-1), crops)


class Classifier:
    """Train the common classifier (``spec``: ``CommonCNN`` or ResNet-32, its recipe) on an image set, then
    predict class probabilities."""

    def __init__(self, spec: dict = CLASSIFIER_SPEC, loss=None):
        self.spec = dict(spec)
        self.loss = loss  # (model, x, y) -> the batch's loss; None: cross-entropy
        self.model: CommonCNN | None = None
        self.epoch, self.epochs = 0, 0  # the epoch being trained (1-based) of how many (informational)
        self.update, self.updates = 0, 0  # the update being computed (0-based) of U: what a loss's schedule reads
        self.device = torch.device("cpu")
        self.autocast = contextlib.nullcontext

    def fit(self, train: ImageSet, ctx: FitContext, budget: Budget | None = None) -> list[float]:
        """Train for the contract's U = E x ceil(C x n_max / batch) updates (``budget``: of the method's
        imbalanced training set; None: of ``train`` itself), logged as E epochs of U / E updates; return
        the mean loss of each epoch."""
        torch.manual_seed(ctx.seed)
        self.device = ctx.device
        self.autocast = ctx.autocast  # prediction runs in the precision of training
        self.model = build_network(self.spec, train.image_shape, train.n_classes).to(ctx.device)
        x = to_input(train.images, ctx.device)
        y = torch.as_tensor(train.labels, device=ctx.device)
        generator = torch.Generator(device="cpu").manual_seed(ctx.seed)
        batch = self.spec["batch_size"]
        budget = budget or Budget.of(train.counts(), ctx.epochs)
        steps = budget.classifier_steps(batch)
        ctx.ledger.contract["classifier"] = budget.classifier_updates(batch)
        optimizer, schedule = build_optimizer(self.spec, self.model, budget.classifier_updates(batch))
        augment = torch.Generator(device="cpu").manual_seed(ctx.seed + 1) if self.spec.get("augment") else None
        batches = shuffled_batches(len(train), batch, generator, ctx.device)
        history = []
        self.model.train()
        batch_loss = ctx.compiled(self.batch_loss)  # --compile: forward and loss as one compiled graph
        with ctx.ledger.phase("classifier"):
            self.epochs, self.updates = budget.epochs, budget.classifier_updates(batch)
            for epoch in range(1, budget.epochs + 1):
                self.epoch = epoch
                total = torch.zeros((), device=ctx.device)
                seen = 0
                for step in range(steps):
                    self.update = (epoch - 1) * steps + step  # before the step's loss: a schedule (DRW) reads it
                    index = next(batches)
                    ctx.step_begin()
                    inputs = x[index] if augment is None else crop_flip(x[index], augment)
                    with ctx.autocast():
                        loss = batch_loss(self.model, inputs, y[index]).float()
                    ctx.ledger.update("classifier", optimizer, loss, len(index))
                    if schedule is not None:
                        schedule.step()
                    total += loss.detach() * len(index)
                    seen += len(index)
                mean_loss = (total / seen).item()  # one host sync per epoch
                check_finite(epoch, {"training loss": mean_loss})
                history.append(mean_loss)
                ctx.progress(epoch, budget.epochs, {"loss": mean_loss})
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        (ctx.artifact_dir / "classifier_losses.json").write_text(json.dumps({"epoch_loss": history}))
        return history

    def batch_loss(self, model: CommonCNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch: the method's ``loss`` when it gave one, else cross-entropy."""
        if self.loss is not None:
            return self.loss(model, x, y)
        return nn.functional.cross_entropy(model(x), y)

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("predict_proba called before fit")
        self.model.eval()
        out = []
        for start in range(0, len(images), batch_size):
            with self.autocast():
                logits = self.model(to_input(images[start:start + batch_size], self.device))
            out.append(torch.softmax(logits.float(), dim=1))
        return torch.cat(out).double().cpu().numpy()
