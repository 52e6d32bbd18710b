"""``gamo``: generative adversarial minority oversampling, a three-player game in the classifier's feature space.

Mullick, Datta and Das, "Generative adversarial minority oversampling", ICCV 2019, arXiv:1903.09730;
official Keras code: github.com/SankhaSubhra/GAMO (we follow its end-to-end image version,
``fashion_mnist_gamo_main.py`` / ``fashion_mnist_net.py``, and its ``fashion_mnist_gamo2pix_*.py``).
Networks in ``gamo_nets.py``.

The players (the classifier is the method's classifier: ``predict_proba`` is M's softmax):
- Classifier M = feature extractor F + head. Both are the common CNN of ``classifier.py`` (F = its two
  conv/pool blocks, flattened; head = linear 128, ReLU, dropout 0.25, linear to the classes), so that the
  classifier compares with the other baselines; the official code has its own F (two 5x5 convs, a dense
  512 tanh) and head (dense 256, 128, softmax).
- Convex generator G: a class-conditional transient mapping unit shared by the classes and, for every
  minority class i (every class smaller than the largest one), an instance generation unit that maps it to
  softmax weights over the n_i training instances of class i; a generated sample is that convex
  combination of the instances' F-features. Samples of class i therefore lie in the convex hull of
  class i's feature vectors.
- Conditional discriminator D: real or generated, given the feature vector and the class.

Losses (all as in the official code: mean squared errors on softmax / sigmoid outputs, Keras' 'mse'):
- M: MSE(softmax(M), one-hot(label)), on real features and, in a separate update, on generated features
  labelled with the class they were generated for.
- D: MSE(sigmoid(D), target), real target 1 - u and generated target u, u ~ U(0, ``label_noise``) drawn per
  example (one-sided noisy labels as in the official code).
- G, against M: MSE(softmax(M(G(z|i))), 1 - one-hot(i)), minimised by G: it pushes M's output away from
  class i, i.e. it *raises* M's loss on generated samples of class i (the sign is tested). Against D:
  MSE(sigmoid(D(G(z|i), i)), 1). M and D are not updated by G's steps.

The budget (the contract of ``budget.py``; roles in the ledger: M is "classifier", G "generator", D
"discriminator", GAMO2pix "decoder"). The game makes G = gamo_epochs x ceil(N / batch) steps, N the whole
training set, ``gamo_epochs`` = round(``epoch_scale`` x the cell's epochs) (at least 1). The predicting
network M gets exactly U = E x ceil(C x n_max / batch) updates in all: one per game step (G of them) and
U - G in the F phases, spread evenly over the epochs (U >= G whenever epoch_scale <= 1; a larger game is
refused). Each minority class's convex generator is stepped by two optimisers (against M, against D), each
G times; D takes two updates a step (real, generated) on top.

One epoch (the official outer loop; ``gamo_epochs`` of them):
1. F phase: (U - G) / gamo_epochs updates of F only, on batches of consecutive seeded shuffles of the
   training set (the official code trains F through M with M's head frozen, one pass an outer iteration),
   loss MSE(softmax(M(x)), one-hot(y)).
2. The features of every minority class's instances are recomputed with the current F and kept fixed for
   the rest of the epoch (the official code recomputes the whole training set's features once per outer
   iteration, after the F phase, not at every step). F does not change during the game phase, so the
   real batches' features are computed batch by batch (the same values, without holding N feature vectors).
3. Game phase: ceil(N / batch) steps over the reshuffled training set. Each step: D on the real batch's
   features; a generated batch of the same size (classes drawn with probability proportional to
   n_max - n_i, noise z ~ N(0, I_100), G in inference mode) for one D update; one M update on the real and
   the generated features together; then, for every minority class, one G update against M and one
   against D, each on ceil(batch_size / n_classes) fresh samples of that class (separate Adam states per
   class and objective, as the official per-class Keras models have).

GAMO2pix (how ``sample`` makes images; official ``fashion_mnist_gamo2pix_main.py``): after the game, one
variational auto-encoder per minority class maps F's (frozen, final) features of that class's real images
back to the images: encoder dense 128 tanh -> 100-d Gaussian code, decoder dense + transposed convolutions
-> tanh image; loss = per-image summed squared error + KL(q(code) || N(0, I)), Adam(2e-4, 0.5). It is trained
for ``pix_epochs`` epochs (default: ``gamo_epochs``) of ceil(N / batch) steps for every minority class, each
step a batch of ``batch_size`` images of the class drawn with replacement: G updates per class decoder,
the generator's budget (the official code: 25,000 steps of 32 images per class, whatever the data size; at
MNIST 3:5, ratio 0.1 and 5 epochs the contract gives 530 steps of 64). ``sample(n, i)`` draws z, lets G
(inference mode) combine the final F-features of class i's instances, encodes that vector with the class's
VAE (code sampled) and decodes it: uint8 images (n, C, H, W).

Defaults and where they come from:
- Adam lr 2e-4, beta1 0.5 for F, M, D, G and GAMO2pix; noise of 100 dimensions; G's cTMU 256 -> 64 with
  batch norm; D 256 -> 128 with LeakyReLU(0.1); label noise U(0, 0.1); generator batches of
  ceil(batch_size / n_classes) per class (at least 2, for G's batch norm); GAMO2pix code of 100 dimensions, encoder 128, decoder width 32:
  official code.
- batch 64 (``COMMON_DEFAULTS``, the common classifier's batch): the official code uses 32.
- ``max_instances`` None: every instance of a class enters its convex combinations (paper and code).
Deviations from the paper / official code:
- F and M's head are the common CNN (see above), with its dropout; the official head has no dropout.
- Batch 64 instead of 32; the contract's budget above instead of the official 50,000 / 2 game steps;
  GAMO2pix trains ``pix_epochs`` x ceil(N / batch) steps per class on batches drawn with replacement
  instead of 25,000 steps of 32 in order.
- M takes ONE update per game step, on the real and the generated batch together (the mean of the two
  MSEs, the batches being the same size); the official code makes two (``train_on_batch`` on the real,
  then on the generated batch). With two, the game alone would give M 2G updates, more than the contract's
  U at moderate imbalance (ratio 0.5: 2G is 1.5 U). F's phase, one full pass an epoch officially, takes
  the rest of U instead. ``schedule = "paper"`` restores the official structure (two M updates a game step,
  one full F pass an epoch: 3 G updates of M in all), stored and reported as ``gamo[schedule=paper]``;
  the step counts stay the contract's G (the official 25,000 game and gamo2pix steps would take hours per
  cell on a CPU).
- The official sampling layer of GAMO2pix draws the code with standard deviation exp(s) while its KL term
  reads s as a log-variance; ours reads s as a log-variance in both. Its reconstruction term is
  H x W x the mean squared error; ours is the squared error summed over C x H x W (the same for one channel).
- Batch norm in G uses PyTorch's running statistics in inference mode like Keras' ``predict``; generated
  batches for M and D are made in inference mode, G's own updates in training mode (as in Keras).
- ``max_instances`` (default None) caps the instances an IGU combines, a fixed seeded subset per class,
  for classes of thousands of images on a CPU; unused by default.
- A training set with no minority class trains F and M on real data only (the official code exits).
- ``--compile`` compiles F, M's head and D; the convex generator stays eager (its class argument would
  recompile it for every minority class). ``--precision bf16`` covers every network, GAMO2pix included.
Artifacts: ``losses.json`` (per-epoch losses of every player, GAMO2pix's loss, and ``generated_counts``:
how many generated feature vectors of each class M was trained on) and ``samples.png`` (8 GAMO2pix images
per minority class, one row each).
- Fused groups (``--fuse``; README, "Fused cells"): the members' M, G and D train as one stacked network each
  (``GamoTrainer``), one Adam per part, class and objective over the stacked tensors; GAMO2pix's decoders train
  one member after another. Each member draws all its randomness from its own seed as its solo cell does (on a
  GPU its dropout masks are of the same law, not the same masks), and matches its solo cell to float rounding
  (``tests/test_fused_generators.py``); ``--compile`` compiles a group of one only.
"""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.datasets.base import ImageSet
from bench.methods.base import FitContext, FitsAsGroup, Method, check_finite, is_out_of_memory, one_hot
from bench.methods.budget import Budget, Ledger, check_schedule
from bench.methods.classifier import CLASSIFIER_SPEC, CommonCNN, predict_stacked, shuffled_batches, to_input
from bench.methods.gamo_nets import ConditionalDiscriminator, ConvexGenerator, FeatureVAE
from bench.methods.generative import COMMON_DEFAULTS, save_samples, to_uint8, top_up_counts
from bench.methods.generator_group import GeneratorGroup, Phase, lockstep_key, per_member, train_in_lots
from bench.methods.registry import register

GAME_LOSSES = ("f_loss", "m_loss", "d_real", "d_fake", "g_m", "g_d")


@dataclass(frozen=True)
class GamoPlan:
    """How a GAMO cell spends the contract: ``epochs`` of ``steps`` game steps (G = epochs x steps, one M
    update, two D updates and one G update per class and objective each), and F's steps per epoch."""

    epochs: int
    steps: int
    classifier: int  # U: F's updates plus the game's M updates
    f_steps: list

    @property
    def game_steps(self) -> int:
        return self.epochs * self.steps


def classifier_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """M's loss in the official code: mean squared error between softmax(M) and a target distribution."""
    return F.mse_loss(torch.softmax(logits, dim=1), targets)


def discriminator_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """D's (and G-against-D's) loss in the official code: mean squared error of sigmoid(D)."""
    return F.mse_loss(torch.sigmoid(logits).squeeze(1), targets)


@register
class GAMO(FitsAsGroup, Method):  # a solo cell is a group of one (``fit_group``)
    name = "gamo"
    family = "generative oversampling"
    summary = "three-player game: convex generator of minority features vs classifier and discriminator"
    citation = "Mullick, Datta and Das, Generative adversarial minority oversampling, ICCV 2019"
    version = 2  # 2: the budget contract (M's U updates: a joint game update, F's phase takes the rest)
    defaults = {
        "batch_size": COMMON_DEFAULTS["batch_size"],
        "epoch_scale": COMMON_DEFAULTS["epoch_scale"],  # gamo_epochs = round(scale x the cell's epochs)
        "gamo_epochs": None,  # None = from epoch_scale
        "pix_epochs": None,  # GAMO2pix training; None = gamo_epochs
        "lr": 2e-4,
        "beta1": 0.5,
        "z_dim": 100,
        "label_noise": 0.1,
        "pix_z_dim": 100,
        "max_instances": None,  # cap on the instances each IGU combines; None = all
        "schedule": "contract",  # or "paper": the official code's steps (stored as gamo[schedule=paper])
    }

    def __init__(self, **params):
        super().__init__(**params)
        check_schedule(self.name, self.params["schedule"])

    def key_params(self) -> dict:
        return {**self.params, "classifier_arch": CLASSIFIER_SPEC["arch"], "dropout": CLASSIFIER_SPEC["dropout"]}

    # -- building ---------------------------------------------------------------------------------------
    def build(self, train: ImageSet, device: torch.device, seed: int) -> None:
        """Networks, optimisers and the instances of every minority class (seeded by ``seed``)."""
        p = self.params
        self.device, self.n_classes, self.image_shape = device, train.n_classes, train.image_shape
        self.rng = torch.Generator(device=device).manual_seed(seed)
        counts = train.counts()
        self.minority = [c for c, n in enumerate(top_up_counts(counts, 1.0)) if n > 0]
        labels = torch.as_tensor(train.labels, device=device)
        self.members = {}
        for c in self.minority:
            members = torch.nonzero(labels == c).flatten()
            if p["max_instances"] is not None and len(members) > p["max_instances"]:
                keep = torch.randperm(len(members), device=device, generator=self.rng)[:p["max_instances"]]
                members = members[keep.sort().values]
            self.members[c] = members
        self.M = CommonCNN(train.image_shape, train.n_classes, CLASSIFIER_SPEC["dropout"]).to(device)
        self.feature_dim = self.M.head[0].in_features
        self.G = ConvexGenerator(train.n_classes, {c: len(m) for c, m in self.members.items()}, p["z_dim"]).to(device)
        self.D = ConditionalDiscriminator(self.feature_dim, train.n_classes).to(device)
        adam = self._adam
        self.opt_f, self.opt_m, self.opt_d = adam(self.M.features.parameters()), adam(self.M.head.parameters()), \
            adam(self.D.parameters())
        self.opt_gm = {c: adam(self.G.class_parameters(c)) for c in self.minority}
        self.opt_gd = {c: adam(self.G.class_parameters(c)) for c in self.minority}
        deficit = torch.tensor([counts.max() - counts[c] for c in self.minority], dtype=torch.float, device=device)
        self.label_probs = deficit / deficit.sum() if self.minority else deficit
        self.minority_t = torch.tensor(self.minority, dtype=torch.long, device=device)
        self.banks: dict[int, torch.Tensor] = {}
        self.pix: dict[int, FeatureVAE] = {}
        self.generated = torch.zeros(self.n_classes, dtype=torch.long, device=device)  # fed to M, per class
        self.autocast = contextlib.nullcontext  # fit sets the run's precision (ctx.autocast)
        self.ledger = Ledger()  # fit hands over the cell's (ctx.ledger)

    def _adam(self, params):
        return torch.optim.Adam(params, lr=self.params["lr"], betas=(self.params["beta1"], 0.999))

    # -- features and generation --------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """F's feature vectors of images ``x`` (float in [-1, 1] on the device)."""
        if not len(x):
            return x.new_zeros((0, self.feature_dim))
        with self.autocast():
            return torch.cat([self.M.features(x[s:s + chunk]).float() for s in range(0, len(x), chunk)])

    def refresh_banks(self, x: torch.Tensor) -> None:
        """Recompute the current F-features of every minority class's instances."""
        self.banks = {c: self.features(x[m]) for c, m in self.members.items()}

    def generate_features(self, n: int, label: int, generator=None, train_mode: bool = False) -> torch.Tensor:
        """``n`` convex combinations of class ``label``'s instance features (with gradients to G)."""
        self.G.train(train_mode)
        z = torch.randn(n, self.params["z_dim"], device=self.device, generator=generator)
        return self.G(z, label, self.banks[label])

    # -- the method -----------------------------------------------------------------------------------

    def end_epoch(self, epoch: int, losses: dict[str, float], ctx: FitContext) -> None:
        check_finite(epoch, losses)
        for name, value in losses.items():
            self.history[name].append(value)
        ctx.progress(epoch, self._total, losses)

    def _prepare(self, train: ImageSet, ctx: FitContext) -> Phase:
        """Everything before the networks: the seed, the set on the device, the plan."""
        torch.manual_seed(ctx.seed)
        p = self.params
        self.train_set, self.autocast = train, ctx.autocast
        x = to_input(train.images, ctx.device)
        y = torch.as_tensor(train.labels, device=ctx.device)
        self.schedule = self.plan(Budget.of(train.counts(), ctx.epochs))
        ctx.ledger.contract.update(classifier=self.schedule.classifier, generator=self.schedule.game_steps)
        self.pix_epochs = p["pix_epochs"] if p["pix_epochs"] is not None else self.schedule.epochs
        self._total = self.schedule.epochs + self.pix_epochs
        self.history: dict[str, list[float]] = {name: [] for name in (*GAME_LOSSES, "pix_loss")}
        return Phase(self, x, y, train.counts(), self.schedule.epochs, self.schedule.steps, ctx)

    def _networks(self, phase: Phase) -> list:
        """This member's M, G and D (under its seed: ``GeneratorGroup.networks``)."""
        self.build(self.train_set, phase.ctx.device, phase.ctx.seed)
        self.ledger, self.autocast = phase.ctx.ledger, phase.ctx.autocast
        if not self.minority:
            self.pix_epochs = 0
            self._total = self.schedule.epochs
        return [self.M, self.G, self.D]

    @classmethod
    def fit_group(cls, members: list) -> list[BaseException | None]:
        """Cells that differ only in their seed, trained as one (a group of one is the solo cell and raises
        its failure): per member None or the exception that failed it."""
        return train_in_lots(members, lambda phases: GamoTrainer(phases).run(),
                             key=lambda phase: (*lockstep_key(phase), tuple(phase.method.schedule.f_steps)))

    def plan(self, budget: Budget) -> GamoPlan:
        """The contract's split of M's U updates: the game makes G = gamo_epochs x ceil(N / batch) steps, each
        with one M update; F's phases share the other U - G, spread evenly over the epochs."""
        p = self.params
        epochs = p["gamo_epochs"] if p["gamo_epochs"] is not None else budget.generator_epochs(p["epoch_scale"])
        steps = budget.generator_steps(p["batch_size"])
        if p["schedule"] == "paper":  # one F pass an epoch and two M updates a game step, off the contract
            return GamoPlan(epochs, steps, 3 * epochs * steps, [steps] * epochs)
        rest = budget.classifier_rest(epochs * steps, p["batch_size"], "gamo", "gamo_epochs")
        f_steps = [rest // epochs + (e < rest % epochs) for e in range(epochs)]
        return GamoPlan(epochs, steps, epochs * steps + rest, f_steps)

    def _train_pix(self, x, y, epochs: int, steps: int, offset: int, total: int, history, ctx) -> None:
        # one member after another (each from its own seed), not fused
        """GAMO2pix: one VAE per minority class from F's frozen features of its real images to the images."""
        p = self.params
        batch = p["batch_size"]
        data, optimizers = {}, {}
        for c in self.minority:
            images = x[y == c]
            data[c] = (images, self.features(images))
            self.pix[c] = FeatureVAE(self.feature_dim, self.image_shape, p["pix_z_dim"]).to(ctx.device)
            optimizers[c] = self._adam(self.pix[c].parameters())
        for epoch in range(1, epochs + 1):
            running = torch.zeros((), device=ctx.device)
            for c in self.minority:
                images, feats = data[c]
                for _ in range(steps):
                    index = torch.randint(len(images), (batch,), device=ctx.device, generator=self.rng)
                    with ctx.autocast():
                        recon, mean, log_var = self.pix[c](feats[index], self.rng)
                        loss = FeatureVAE.loss(images[index], recon.float(), mean.float(), log_var.float())
                    ctx.ledger.update("decoder", optimizers[c], loss, batch)
                    running += loss.detach()
            value = (running / (steps * len(self.minority))).item()
            check_finite(offset + epoch, {"pix_loss": value})
            history["pix_loss"].append(value)
            ctx.progress(offset + epoch, total, {"pix_loss": value})

    # -- outputs ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, label: int, chunk: int = 1024) -> np.ndarray:
        """``n`` GAMO2pix images of minority class ``label``, uint8 (n, C, H, W)."""
        if label not in self.pix:
            raise ValueError(f"gamo generates only its minority classes {sorted(self.pix)}; got class {label}")
        vae = self.pix[label].eval()
        out = []
        for start in range(0, n, chunk):
            with self.autocast():
                feats = self.generate_features(min(chunk, n - start), label, self.rng)
                code, _, _ = vae.encode(feats, self.rng)
                images = vae.decode(code)
            out.append(to_uint8(images).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, *self.image_shape), np.uint8)

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        self.M.eval()
        with self.autocast():
            out = [torch.softmax(self.M(to_input(images[s:s + batch_size], self.device)).float(), dim=1)
                   for s in range(0, len(images), batch_size)]
        return torch.cat(out).double().cpu().numpy()

    @classmethod
    def predict_group(cls, methods: list, images: list[np.ndarray], batch_size: int = 1024) -> list[np.ndarray]:
        """The members' Ms stacked (``stacked.Stacked``), one pass per batch; one after another when their
        test sets differ in size."""
        if len(methods) == 1 or len({own.shape for own in images}) > 1:
            return super().predict_group(methods, images)
        first = methods[0]
        return predict_stacked([m.M for m in methods], images, lambda out: torch.softmax(out.float(), dim=1),
                               first.autocast, first.device, batch_size)

    def _save_artifacts(self, ctx: FitContext, history: dict) -> None:
        folder = ctx.artifact_dir
        folder.mkdir(parents=True, exist_ok=True)
        record = {**history, "generated_counts": self.generated_counts,
                  "instances_per_class": {str(c): len(m) for c, m in self.members.items()}}
        (folder / "losses.json").write_text(json.dumps(record))
        classes = self.minority[:10]
        if classes:
            rows = [torch.from_numpy(self.sample(8, c)) for c in classes]
            save_samples(rows, folder / "samples.png")


class GamoTrainer:
    """The training of a group of GAMO cells (``GAMO.fit_group``; a solo cell is a group of one): their M
    (F and its head), G and D stacked, the three-player game of the module docstring for every member at once
    (one Adam per network part, class and objective, over the stacked tensors), then each member's GAMO2pix
    decoders one member after another."""

    def __init__(self, phases: list[Phase]):
        self.phases, self.group = phases, GeneratorGroup(phases)
        self.methods = [phase.method for phase in phases]
        first = self.first = self.methods[0]
        self.params, self.device, self.schedule = first.params, phases[0].ctx.device, first.schedule
        M, G, D = self.group.build(lambda ph: ph.method._networks(ph))
        self.M, self.G, self.D = M, G, D
        self.minority, self.n_classes = first.minority, first.n_classes
        if self.group.size == 1:  # the solo cell's own optimisers, built with its networks
            self.opt_f, self.opt_m, self.opt_d = first.opt_f, first.opt_m, first.opt_d
            self.opt_gm, self.opt_gd = first.opt_gm, first.opt_gd
        else:
            adam = first._adam
            self.opt_f, self.opt_m = adam(M.subset(first.M.features.parameters())), adam(M.subset(first.M.head.parameters()))
            self.opt_d = adam(D.parameters())
            self.opt_gm = {c: adam(G.subset(first.G.class_parameters(c))) for c in self.minority}
            self.opt_gd = {c: adam(G.subset(first.G.class_parameters(c))) for c in self.minority}
        # --compile (a group of one) compiles F, M's head and D; the convex generator stays eager (its class
        # argument would recompile it once per minority class)
        for part in ("features", "head"):
            self.group.compiled(M, part)
        self.group.compiled(D)
        self.banks: dict[int, torch.Tensor] = {}
        self.members = {c: torch.stack([m.members[c] for m in self.methods]) for c in self.minority}

    def draw(self, fn) -> torch.Tensor:
        """``fn(method)`` -> a member's draw from its own generator; stacked on the member axis."""
        return self.group.draw(lambda i, phase: fn(phase.method))

    @torch.no_grad()
    def features(self, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Every member's F-features of its images ``x`` (S, n, C, H, W)."""
        with self.first.autocast():
            return torch.cat([self.M.call("features", x[:, s:s + chunk]).float()
                              for s in range(0, x.shape[1], chunk)], dim=1)

    def refresh_banks(self) -> None:
        """Recompute the current F-features of every minority class's instances, each member's own."""
        self.banks = {c: self.features(self.group.take("x", index)) for c, index in self.members.items()}

    def generate_features(self, n: int, label: int, train_mode: bool = False) -> torch.Tensor:
        """``n`` convex combinations of class ``label``'s instance features per member (gradients to G)."""
        self.G.train(train_mode)
        z = self.draw(lambda m: torch.randn(n, self.params["z_dim"], device=self.device, generator=m.rng))
        return self.G(z, label, self.banks[label])

    # -- the steps; nothing is read back; every loss (S,) -------------------------------------------------
    def m_step(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One update of M's head on ``feats`` (real and generated features together in the game)."""
        n_classes = self.n_classes
        with self.first.autocast():
            loss = per_member(lambda logits, y: classifier_loss(logits, one_hot(y, n_classes)),
                              self.M.call("head", feats).float(), labels)
        self.group.update("classifier", self.opt_m, loss, labels.shape[1])
        return loss.detach()

    def d_step(self, feats: torch.Tensor, labels: torch.Tensor, real: bool) -> torch.Tensor:
        n = labels.shape[1]
        noise = self.draw(lambda m: torch.rand(n, device=self.device, generator=m.rng)) * self.params["label_noise"]
        with self.first.autocast():
            loss = per_member(discriminator_loss, self.D(feats, labels).float(), 1.0 - noise if real else noise)
        self.group.update("discriminator", self.opt_d, loss, n)
        return loss.detach()

    def g_step_against_m(self, label: int, n: int) -> torch.Tensor:
        """One G update that pushes M's output on generated class-``label`` samples away from ``label``."""
        target = 1.0 - one_hot(torch.full((n,), label, device=self.device), self.n_classes)
        with self.first.autocast():
            fake = self.generate_features(n, label, train_mode=True)
            loss = per_member(lambda logits: classifier_loss(logits, target), self.M.call("head", fake).float())
        self.group.update("generator", self.opt_gm[label], loss, n)
        return loss.detach()

    def g_step_against_d(self, label: int, n: int) -> torch.Tensor:
        labels = torch.full((self.group.size, n), label, device=self.device)
        ones = torch.ones(n, device=self.device)
        with self.first.autocast():
            fake = self.generate_features(n, label, train_mode=True)
            loss = per_member(lambda logits: discriminator_loss(logits, ones), self.D(fake, labels).float())
        self.group.update("generator", self.opt_gd[label], loss, n)
        return loss.detach()

    def game_step(self, x_real: torch.Tensor, y_real: torch.Tensor) -> torch.Tensor:
        """D on a real batch, D on a generated batch, one M update on both, then G per minority class;
        returns the losses (m, d_real, d_fake, g_m, g_d) per member, (S, 5), on the device."""
        real = self.features(x_real)
        if not self.minority:
            zero = torch.zeros(self.group.size, device=self.device)
            return torch.stack([self.m_step(real, y_real), zero, zero, zero, zero], dim=1)
        d_real = self.d_step(real, y_real, real=True)
        batch = y_real.shape[1]
        first = self.first
        labels = self.draw(lambda m: m.minority_t[torch.multinomial(m.label_probs, batch, True, generator=m.rng)])
        for method, own in zip(self.methods, labels, strict=True):
            method.generated += torch.bincount(own, minlength=self.n_classes)
        with torch.no_grad(), first.autocast():
            z = self.draw(lambda m: torch.randn(batch, self.params["z_dim"], device=self.device, generator=m.rng))
            self.G.eval()
            fake = real.new_zeros(real.shape)
            for c in self.minority:  # every class's G on the whole batch, then each row's own class
                fake = torch.where((labels == c)[..., None], self.G(z, c, self.banks[c]).float(), fake)
        d_fake = self.d_step(fake, labels, real=False)
        if self.params["schedule"] == "paper":  # the official code: M on the real, then on the generated batch
            m = (self.m_step(real, y_real) + self.m_step(fake, labels)) / 2
        else:  # the budget contract: one M update on the real and the generated batch together
            m = self.m_step(torch.cat([real, fake], 1), torch.cat([y_real, labels], 1))
        # The configured batch, not this one: the epoch's last batch can hold a single image, and G's batch
        # normalisation needs at least two samples.
        per_class = max(2, math.ceil(self.params["batch_size"] / self.n_classes))
        g_m = torch.stack([self.g_step_against_m(c, per_class) for c in self.minority]).mean(0)
        g_d = torch.stack([self.g_step_against_d(c, per_class) for c in self.minority]).mean(0)
        return torch.stack([m, d_real, d_fake, g_m, g_d], dim=1)

    def run(self) -> list[BaseException | None]:
        group, plan, device, n_classes = self.group, self.schedule, self.device, self.n_classes
        batch, n = self.params["batch_size"], len(self.phases[0].x)
        self.M.train()
        f_batches = [shuffled_batches(n, batch, torch.Generator().manual_seed(phase.ctx.seed), device)
                     for phase in self.phases]
        with group.ledger.phase("classifier", "generator", "discriminator", mates=group.mates):
            for epoch in range(1, plan.epochs + 1):
                running = torch.zeros(group.size, len(GAME_LOSSES), device=device)
                f_steps = plan.f_steps[epoch - 1]
                for _ in range(f_steps):  # F phase: F learns through M's frozen head
                    group.step_begin()
                    index = [next(own) for own in f_batches]
                    with self.first.autocast():
                        logits = self.M.call("head", self.M.call("features", group.take("x", index))).float()
                        loss = per_member(lambda lg, y: classifier_loss(lg, one_hot(y, n_classes)),
                                          logits, group.take("y", index))
                    group.update("classifier", self.opt_f, loss, len(index[0]))
                    running[:, 0] += loss.detach()
                self.refresh_banks()
                orders = [torch.randperm(n, device=device, generator=m.rng) for m in self.methods]
                for step in range(plan.steps):
                    group.step_begin()
                    index = [order[step * batch:(step + 1) * batch] for order in orders]
                    running[:, 1:] += self.game_step(group.take("x", index), group.take("y", index))
                means = running / torch.tensor([max(1, f_steps)] + [plan.steps] * (len(GAME_LOSSES) - 1),
                                               device=device)
                logs = [dict(zip(GAME_LOSSES, row, strict=True)) for row in means.tolist()]  # one host sync
                if not group.end_epoch(epoch, logs):
                    return self._done()
        self.M.eval()
        self.refresh_banks()  # the final F's features: what G combines from now on (GAMO2pix's input)
        return self._done(finished=True)

    def _done(self, finished: bool = False) -> list[BaseException | None]:
        for stacked in (self.M, self.G, self.D):
            stacked.write_back()
        if not finished:
            return self.group.failed
        for i, (method, phase) in enumerate(zip(self.methods, self.phases, strict=True)):
            method.M.eval()
            method.banks = {c: bank[i] for c, bank in self.banks.items()}
            if self.group.failed[i] is not None:
                continue
            try:
                with self.group.as_member(i), phase.ctx.ledger.phase("decoder"):
                    method._train_pix(phase.x, phase.y, method.pix_epochs, self.schedule.steps, self.schedule.epochs,
                                      method._total, method.history, phase.ctx)
                method.generated_counts = method.generated.tolist()
                method._save_artifacts(phase.ctx, method.history)
            except Exception as exc:  # noqa: BLE001 (this member's failure alone)
                if self.group.size == 1 or is_out_of_memory(exc):
                    raise
                self.group.failed[i] = exc
        return self.group.failed
