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
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bench.datasets.base import ImageSet
from bench.errors import CellFailure
from bench.methods import fused
from bench.methods.base import FitContext, FitsAsGroup, check_finite, is_out_of_memory
from bench.methods.budget import Budget
from bench.methods.stacked import Stacked

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
        the mean loss of each epoch. The solo cell: ``fit_group`` with a group of one."""
        outcome = fit_group([Member(self, train, ctx, budget)])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

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


def stacked_inputs(images: list[np.ndarray], start: int, stop: int, device) -> torch.Tensor:
    """Rows ``start:stop`` of every member's test images, (S, B, C, H, W) in [-1, 1]."""
    return torch.stack([to_input(own[start:stop], device) for own in images])


def _member_output(outputs, index: int):
    """Member ``index``'s share of a stacked network's output (a tensor, or a named tuple of them)."""
    if isinstance(outputs, torch.Tensor):
        return outputs[index]
    return type(outputs)(*(part[index] for part in outputs))


@torch.no_grad()
def predict_stacked(nets: list[nn.Module], images: list[np.ndarray], probabilities, autocast, device,
                    batch_size: int) -> list[np.ndarray]:
    """Class probabilities of S fitted members' networks (any architecture: ``stacked.Stacked``, in evaluation
    mode) on their own test images of one size, one pass per batch; ``probabilities(output)`` maps one member's
    network output to its probabilities. The networks are put back in training mode."""
    network = Stacked(nets).eval()
    out = []
    for start in range(0, len(images[0]), batch_size):
        with autocast():
            outputs = network(stacked_inputs(images, start, start + batch_size, device))
        out.append(torch.stack([probabilities(_member_output(outputs, i)) for i in range(len(nets))]))
    for net in nets:
        net.train()
    return list(torch.cat(out, dim=1).double().cpu().numpy())


@torch.no_grad()
def predict_group(classifiers: list[Classifier], images: list[np.ndarray], batch_size: int = 1024) -> list[np.ndarray]:
    """Every member's class probabilities on its own test images, the members' networks stacked (``fused.py``)
    for one pass per batch; one member after another when they cannot stack (a group of one, another backbone,
    test sets of different sizes)."""
    first = classifiers[0]
    if len(classifiers) == 1 or not fusable(first.spec) or len({own.shape for own in images}) > 1:
        return [c.predict_proba(own) for c, own in zip(classifiers, images, strict=True)]
    if any(c.model is None for c in classifiers):
        raise RuntimeError("predict_group called before fit")
    network = fused.stack([c.model for c in classifiers]).eval()
    out = []
    for start in range(0, len(images[0]), batch_size):
        with first.autocast():
            _, logits = network(stacked_inputs(images, start, start + batch_size, first.device))
        out.append(torch.softmax(logits.float(), dim=2))
    return list(torch.cat(out, dim=1).double().cpu().numpy())


FUSED_ARCHS = {CLASSIFIER_SPEC["arch"], "resnet32"}  # backbones ``fused.py`` can stack


def fusable(spec: dict) -> bool:
    """Whether classifiers of ``spec`` can train as a fused group of more than one member."""
    return spec["arch"] in FUSED_ARCHS


@dataclass
class Member:
    """One cell's share of a classifier group: its classifier (whose ``loss`` is the member's own), its
    training set, its context (seed, device, ledger, artifacts) and the budget it trains to."""

    classifier: Classifier
    train: ImageSet
    ctx: FitContext
    budget: Budget | None = None


def _lockstep_key(member: Member) -> tuple:
    budget = member.budget or Budget.of(member.train.counts(), member.ctx.epochs)
    ctx = member.ctx
    return (json.dumps(member.classifier.spec, sort_keys=True), member.train.image_shape, len(member.train),
            member.train.n_classes, str(ctx.device), ctx.precision, ctx.compile, budget)


def lockstep(members: list[Member]) -> list[list[Member]]:
    """The members in lots that can train as one group (``fit_group``), in their order: the same recipe,
    image shape, set size (so every step's batches have one size), device, precision, compile mode and
    budget; a backbone ``fused.py`` cannot stack trains alone."""
    lots: dict[tuple, list[Member]] = {}
    for index, member in enumerate(members):
        key = _lockstep_key(member) if fusable(member.classifier.spec) else ("alone", index)
        lots.setdefault(key, []).append(member)
    return list(lots.values())


def _check_group(members: list[Member]) -> None:
    """Members of a group train in lockstep: the same recipe, image shape, set size (so every step's batches
    have one size) and number of updates."""
    first = members[0]
    if any(_lockstep_key(m) != _lockstep_key(first) for m in members[1:]):
        raise ValueError("the members of a classifier group must share recipe, image shape, set size, "
                         "device, precision, compile mode and budget")
    if len(members) > 1 and not fusable(first.classifier.spec):
        raise ValueError(f"the {first.classifier.spec['arch']} classifier trains in groups of one")


def fit_group(members: list[Member]) -> list:
    """Train the members' classifiers as one group (``fused.py``; a group of one is the solo cell) and
    return, per member, its epoch losses or the exception that failed it (a member whose loss went NaN or
    Inf fails alone; the others train on)."""
    _check_group(members)
    first, size = members[0], len(members)
    spec, ctx0 = first.classifier.spec, first.ctx
    device, batch = ctx0.device, spec["batch_size"]
    budget = first.budget or Budget.of(first.train.counts(), ctx0.epochs)
    steps, updates = budget.classifier_steps(batch), budget.classifier_updates(batch)
    data, noise_generators = zip(*[_member_data(m, spec, device, size, updates) for m in members], strict=True)
    solo = first.classifier.model if size == 1 else fused.stack([m.classifier.model for m in members])
    network = solo.to(device)
    optimizer, schedule = build_optimizer(spec, network, updates)
    network.train()
    # --compile: the solo cell compiles its forward and loss as one graph; a group its stacked forward
    step_fn = ctx0.compiled(first.classifier.batch_loss) if size == 1 else ctx0.compiled(network)
    ledger, mates = ctx0.ledger, [m.ctx.ledger for m in members[1:]]
    histories: list = [[] for _ in members]
    alive = [True] * size
    with ledger.phase("classifier", mates=tuple(mates)):
        for m in members:
            m.classifier.epochs, m.classifier.updates = budget.epochs, updates
        for epoch in range(1, budget.epochs + 1):
            totals, seen = torch.zeros(size, device=device), 0
            for m in members:
                m.classifier.epoch = epoch
            for step in range(steps):
                for m in members:  # before the step's loss: a schedule (DRW) reads it
                    m.classifier.update = (epoch - 1) * steps + step
                batches = [_draw(x, y, order, augment) for x, y, order, augment in data]
                losses = _step_losses(members, batches, network, step_fn, noise_generators)
                total = sum(loss for loss, live in zip(losses, alive, strict=True) if live)
                ledger.update_group(mates, "classifier", optimizer, total, [len(b[1]) for b in batches])
                if schedule is not None:
                    schedule.step()
                totals += torch.stack([loss.detach() for loss in losses]) * len(batches[0][1])
                seen += len(batches[0][1])
            _end_epoch(members, (totals / seen).tolist(), alive, histories, epoch, budget.epochs)
            if not any(alive):
                break
    _write_back(members, network, alive, histories)
    return histories


def _member_data(m: Member, spec: dict, device, size: int, updates: int) -> tuple:
    """One member's network (built under its seed, as its solo cell builds it), its ledger's contract, and
    ``(images, labels, batch order, augmentation generator)``, with its dropout generator in a group."""
    torch.manual_seed(m.ctx.seed)
    m.classifier.device, m.classifier.autocast = device, m.ctx.autocast  # prediction runs as training did
    m.classifier.model = build_network(spec, m.train.image_shape, m.train.n_classes).to(device)
    noise = fused.member_generator(device) if size > 1 else None
    m.ctx.ledger.contract["classifier"] = updates
    augment = torch.Generator(device="cpu").manual_seed(m.ctx.seed + 1) if spec.get("augment") else None
    order = torch.Generator(device="cpu").manual_seed(m.ctx.seed)
    return (to_input(m.train.images, device), torch.as_tensor(m.train.labels, device=device),
            shuffled_batches(len(m.train), spec["batch_size"], order, device), augment), noise


def _draw(x, y, order, augment) -> tuple:
    index = next(order)
    return x[index] if augment is None else crop_flip(x[index], augment), y[index]


def _step_losses(members: list[Member], batches: list, network, step_fn, noise_generators) -> list:
    """Each member's loss on its batch: the solo network, or the group's stacked forward with each member's
    own dropout noise."""
    ctx0 = members[0].ctx
    ctx0.step_begin()
    with ctx0.autocast():
        if len(members) == 1:
            return [step_fn(network, *batches[0]).float()]
        noise = fused.dropout_noise((len(batches[0][1]), network.hidden), network.dropout, noise_generators,
                                    ctx0.device)
        features, logits = step_fn(torch.stack([b[0] for b in batches]), noise)
        views = [fused.MemberView(b[0], features[i], logits[i]) for i, b in enumerate(batches)]
        return [m.classifier.batch_loss(view, *b).float() for m, view, b in zip(members, views, batches, strict=True)]


def _end_epoch(members: list[Member], means: list, alive: list, histories: list, epoch: int, epochs: int) -> None:
    """Log each live member's epoch loss; one whose loss is not finite fails alone (its history: the error)."""
    for i, m in enumerate(members):
        if not alive[i]:
            continue
        try:
            check_finite(epoch, {"training loss": means[i]})
        except CellFailure as exc:
            alive[i], histories[i] = False, exc
            continue
        histories[i].append(means[i])
        m.ctx.progress(epoch, epochs, {"loss": means[i]})


def _write_back(members: list[Member], network, alive: list, histories: list) -> None:
    """Each member's trained weights into its own network, and its loss log."""
    for i, m in enumerate(members):
        if len(members) > 1:
            m.classifier.model.load_state_dict(network.member_state(i))
        if alive[i]:
            m.ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
            (m.ctx.artifact_dir / "classifier_losses.json").write_text(json.dumps({"epoch_loss": histories[i]}))



class ClassifierCells(FitsAsGroup):
    """Mixed into a ``Method`` whose cells end on the common classifier (``ResamplingMethod``,
    ``GenerativeOversampling``): ``fit`` is a group of one, and ``fit_group`` runs each member's own phase
    (``_member``: resampling, a generator's training; one member after another), then the classifiers of every
    ``lockstep`` lot as one fused group. A subclass that overrides ``fit`` runs its cells alone (``fusable``
    False) unless it says otherwise: a group trains through ``fit_group``, past that ``fit``."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__ and "fusable" not in cls.__dict__:
            cls.fusable = False

    def _member(self, train: ImageSet, ctx: FitContext) -> Member:
        """This cell's own phase; the classifier's share of the group (its set, context and budget)."""
        raise NotImplementedError

    @classmethod
    def _own_phases(cls, members: list) -> list:
        """Each member's own phase (``_member``), one after another: its ``Member`` or the exception that
        failed it (a group of one raises it, as the solo cell's ``fit`` does)."""
        outcomes: list = []
        for method, train, ctx in members:
            try:
                outcomes.append(method._member(train, ctx))
            except Exception as exc:  # noqa: BLE001 (the member's row records it)
                if len(members) == 1 or is_out_of_memory(exc):
                    raise
                outcomes.append(exc)
        return outcomes

    @classmethod
    def predict_group(cls, methods: list, images: list[np.ndarray]) -> list[np.ndarray]:
        """The members' classifiers in one stacked pass (``classifier.predict_group``)."""
        return predict_group([method.classifier for method in methods], images)

    @classmethod
    def fit_group(cls, members: list) -> list[BaseException | None]:
        """Per member None or the exception that failed it; a group of one raises it, as the solo cell's
        ``fit`` does."""
        outcomes: list[BaseException | None] = [None] * len(members)
        ready: list[tuple[int, Member]] = []
        for index, own in enumerate(cls._own_phases(members)):
            if isinstance(own, BaseException):
                outcomes[index] = own
            else:
                ready.append((index, own))
        position = {id(member): index for index, member in ready}
        for lot in lockstep([member for _, member in ready]):
            for member, outcome in zip(lot, fit_group(lot), strict=True):
                if isinstance(outcome, BaseException):
                    if len(members) == 1:
                        raise outcome
                    outcomes[position[id(member)]] = outcome
        return outcomes
