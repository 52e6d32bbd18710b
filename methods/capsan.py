"""``capsan``: minority-class augmentation with a capsule adversarial network, and its twin ``capsan-conv``.

Shamsolmoali, Zareapoor, Shen, Sadka and Yang, "Imbalanced data learning by minority class augmentation
using capsule adversarial networks", Neurocomputing 459 (2021) 481-493, arXiv:2004.02182.

What is built (networks in ``capsan_nets.py``, capsule layers and losses in ``capsules.py``):
- Discriminator DC (section 4.3): 5x5 stride-2 spectral-normalised conv + LeakyReLU(0.2); primary capsules,
  32 types of 16 dimensions (the paper's 4x4 pose, flattened); a 5x5 stride-2 convolutional capsule layer;
  c + 1 output capsules of 16 dimensions (one per class, one "fake") by routing by agreement (3 iterations,
  logits reset for every example, squash). A capsule's length is the probability of its class.
- D loss (eq. 5-7): the margin loss over the c + 1 capsules, (alpha, s+, s-) = (0.5, 0.9, 0.1), target the
  true class for real images and "fake" for generated ones, plus ``pt_weight`` x the pull-away term over
  the output embeddings (the c + 1 capsule poses, flattened) of the generated batch.
- Generator G (sections 4.1, 4.3): latent -> fully connected -> five 3x3 stride-1 convolutions with
  nearest-neighbour upsampling between them, each followed by conditional batch normalisation on the class,
  per-pixel feature normalisation and LeakyReLU(0.2); tanh output at the data's size and channels. Weights
  from N(0, 1), scaled at run time by each layer's He constant (equalised learning rate).
- Class-conditional latent (section 4.1, eq. 2): a Gaussian T_c = N(mu_c, diag sigma_c^2) for every class,
  mu_c drawn from N(0, I) and log sigma_c = 0 at the start, both trained with G by reparameterisation;
  the CBN class embeddings are randomly initialised and trained too. Minority latents come from
  pi * T_minority + (1 - pi) * p_data, p_data = the frequency-weighted mixture of all classes' Gaussians.
- G loss (eq. 4 and eq. 8): feature matching on DC's convolutional-capsule layer (the poses, flattened),
  per class, plus the class term of eq. 8: DC's margin loss on the generated batch with the classes it was
  generated for as targets (G is trained so that DC assigns each generated image its intended class),
  weighted by ``g_class_weight`` = 1 (the paper adds the terms without a weight). Version 1 of this
  method dropped the class term.
- Training (Algorithm 1): alternate one D and one G update per step on class-balanced real batches
  (every class drawn equally often, so each batch holds minority and majority images) and generated
  batches with the same labels; Adam, lr 2e-4, betas (0.5, 0.999). Then n+ = int(dist+ x (n_majority -
  n_minority) x phi) images are generated for every minority class (dist+ = 1: each minority class is
  topped up towards the largest class; phi = 1 balances fully), and DC is trained further on real +
  generated images with the margin loss on the true classes. ``predict_proba`` is DC's class-capsule
  lengths, the fake capsule excluded, normalised to sum to 1.
- Budget (the suite's contract, ``budget.py``; README "Training budget"). DC is the predicting network
  (role "classifier" in the ledger) and gets exactly U = E x ceil(C x n_max / batch) updates over the two
  phases, as Algorithm 1 trains it in both: the adversarial phase is ``gan_epochs`` (default
  round(``epoch_scale`` x E), at least 1) epochs of ceil(N / batch) steps, N the imbalanced training set,
  so G gets the contract's G updates and DC as many; the fine-tuning phase takes DC's remaining U - G
  updates, on consecutive seeded shuffles of the balanced set (logged in epochs of its length, the last
  one partial). ``gan_epochs = 0`` (Table 1) gives all U to the fine-tuning; a ``finetune_epochs`` set
  by hand trains that many epochs of the balanced set instead, off the contract (the ledger shows it).
  Version 1 of this method trained both phases ``epoch_scale`` x E full epochs (about 1.5 U at the
  paper-table3 budget; ``quick`` halved epoch_scale to compensate).
- ``capsan-conv``: the same GAN with a convolutional discriminator of comparable depth and a c + 1
  softmax head (cross-entropy in place of the margin loss): the paper's Conv-GAN.
- Figure 6 ablation knobs: ``g_conv_layers`` (C), ``d_pool_layers`` (P), ``g_cbn_layers`` (BN).

Deviations and readings (the paper leaves these open, or says less than the code does):
- Output capsules: c + 1 of 16 dimensions (c classes and "fake"), our reading of the paper's "1 x 16 output
  capsule" (one 16-dimensional capsule per output), since DC both tells real from fake and assigns classes.
- The class latents T_c: the paper computes mu_c and Sigma_c; ours are learned, with a DIAGONAL covariance
  (log sigma_c per dimension) trained with G by reparameterisation, mu_c starting from N(0, I).
- pi = 0.5: the paper gives the mixture (eq. 2) but no value; equal shares of the class's own Gaussian
  and of p_data are ours.
- ``calibrate_capsules`` (``capsules.py``): before training, every capsule layer of DC is rescaled on one
  class-balanced real batch so that its capsules' mean length before the squash is 1 (squash has a
  vanishing gradient at 0, and with default initialisations the capsules start and stay dead). The paper
  says nothing of initialisation. ``capsan-conv`` needs no rescaling (LeakyReLU has no such dead zone and
  PyTorch's default initialisation keeps the activations' scale); its ``calibrate`` runs the equivalent
  check on the same batch and refuses a network whose layers start dead.
- The budget contract above (the paper gives no epochs or iterations for Table 3).
- Kernel and stride of the primary capsules (3x3, stride 2) and the width of the first conv (64) are
  ours; the convolutional capsule layer has 8 capsule types, and its routing runs over the input capsule
  types at each position after a per-type 5x5 transformation (SegCaps-style locally constrained routing)
  rather than over every capsule of the 5x5 window, which keeps it tractable on a CPU.
- Gradients flow through the last routing iteration only; earlier iterations see the predictions detached.
- Feature matching is per class (real and generated means of the same class), summed over classes; the
  real features are those of DC's forward pass in the same step's D update, detached.
- The pull-away term is applied in the D loss to the generated batch's output embeddings, as eq. 7 places
  it in the discriminator's objective; the paper gives no weight, ours is ``pt_weight`` = 0.1.
- G ends in a 1x1 convolution to the image channels (the five 3x3 blocks keep their CBN, pixel norm and
  LeakyReLU); channels start at 128 and halve at every upsampling down to 32.
- Real images are sampled class-balanced with replacement; an "epoch" is ceil(N / batch) steps.
- ``--precision bf16`` (or ``precision = "bf16"``) runs G, DC and the losses under bf16 autocast, on a CPU
  too; ``--compile`` compiles G and DC's objectives (forward passes and losses) for the training steps (the
  class latent and sampling stay eager).
- Fused groups (``--fuse``; README, "Fused cells"): the members' G and DC train as one stacked network each
  (``CapsanTrainer``; spectral norm's power iteration per member), the class latents each member's own under G's
  optimiser. Each member draws all its randomness from its own seed as its solo cell does (on a GPU its dropout
  masks are of the same law, not the same masks), and matches its solo cell to float rounding
  (``tests/test_fused_generators.py``); ``--compile`` compiles a group of one only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from bench.datasets.base import ImageSet
from bench.errors import BenchError
from bench.methods.base import FitContext, FitsAsGroup, Method, check_finite
from bench.methods.budget import Budget, Ledger
from bench.methods.capsan_nets import CapsuleDiscriminator, ClassLatent, ConvDiscriminator, Generator
from bench.methods.capsules import feature_matching, pull_away
from bench.methods.classifier import predict_stacked, shuffled_batches, to_input
from bench.methods.generative import save_samples
from bench.methods.generator_group import GeneratorGroup, Phase, lockstep_key, per_member, train_in_lots
from bench.methods.registry import register

CITATION = ("Shamsolmoali et al., Imbalanced data learning by minority class augmentation using capsule "
            "adversarial networks, Neurocomputing 2021")


@dataclass(frozen=True)
class CapsanPlan:
    """How a cell spends the budget: ``gan_epochs`` of ``steps`` adversarial steps (one DC and one G update
    each), then DC's fine-tuning steps, listed per logged epoch; ``classifier`` = DC's updates in all."""

    gan_epochs: int
    steps: int
    classifier: int
    finetune: list


@register
class CapsAN(FitsAsGroup, Method):  # a solo cell is a group of one (``fit_group``)
    name = "capsan"
    family = "the paper's"
    battle_twin = "capsan-conv"  # the paper's battle: CapsAN against its Conv-GAN
    summary = "capsule adversarial network: capsule discriminator, CBN generator, minority augmentation"
    citation = CITATION
    discriminator = CapsuleDiscriminator
    version = 2  # 2: the budget contract (DC's U updates over both phases) and eq. 8's class term for G
    defaults = {
        "batch_size": 64,
        "lr": 2e-4,
        "beta1": 0.5,
        "z_dim": 128,
        "pi": 0.5,  # eq. 2: share of a minority class's latents drawn from its own Gaussian
        "phi": 1.0,  # balance level: 1.0 tops every minority class up to the largest class
        "pt_weight": 0.1,  # weight of the pull-away term in the D loss
        "g_class_weight": 1.0,  # eq. 8: weight of DC's class loss on generated images in G's loss
        "epoch_scale": 1.0,  # adversarial phase = round(scale x the cell's epochs) epochs (at least 1)
        "gan_epochs": None,  # adversarial training; None = from epoch_scale; 0 = no GAN (Table 1)
        "finetune_epochs": None,  # DC's training on the balanced set; None = the rest of DC's budget U
        "g_conv_layers": 5,  # Figure 6 "C"
        "g_cbn_layers": 5,  # Figure 6 "BN"
        "d_pool_layers": 0,  # Figure 6 "P"
        "g_channels": 128,
        "d_width": 64,
        "primary_types": 32,
        "caps_dim": 16,
        "conv_caps_types": 8,
        "routing_iterations": 3,
        "precision": "fp32",  # or "bf16" (autocast); the run's --precision sets it too
    }

    SHOWN = {"d_loss": "d", "g_loss": "g", "classifier_loss": "clf"}  # the progress bar's short names

    # -- building ---------------------------------------------------------------------------------------
    def build(self, image_shape, class_counts: torch.Tensor, device: torch.device) -> None:
        p = self.params
        n_classes = len(class_counts)
        self.n_classes, self.device = n_classes, device
        self.G = Generator(image_shape, n_classes, p["z_dim"], p["g_conv_layers"], p["g_cbn_layers"],
                           p["g_channels"]).to(device)
        self.latent = ClassLatent(n_classes, p["z_dim"], class_counts, p["pi"]).to(device)
        self.D = self.discriminator(image_shape, n_classes, p["d_width"], p["primary_types"], p["caps_dim"],
                                    p["conv_caps_types"], p["routing_iterations"], p["d_pool_layers"]).to(device)
        self.opt_d = self._adam(self.D.parameters())
        self.opt_g = self._adam([*self.G.parameters(), *self.latent.parameters()])
        self.precision = p["precision"]
        self.ledger = Ledger()  # fit hands over the cell's (ctx.ledger)

    def _adam(self, params) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.params["lr"], betas=(self.params["beta1"], 0.999))

    def _autocast(self):
        """bf16 autocast when the ``precision`` parameter (or the run's --precision) says bf16."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    # -- the objectives, over a group's members: D is the members' stacked DC (``stacked.Stacked``), every
    # tensor has the member axis first, and each returns one loss per member (S,) ---------------------------
    def d_objective(self, D, x_real: torch.Tensor, y_real: torch.Tensor, x_fake: torch.Tensor):
        """DC's loss (eq. 5-7) on a real batch and a generated one (detached), and the real batch's features
        (detached) for G's feature matching."""
        real, fake = D(x_real), D(x_fake)
        fake_label = torch.full_like(y_real, self.n_classes)
        loss, weight = self.D.loss, self.params["pt_weight"]

        def one(real_scores, labels, fake_scores, fake_labels, embedding):
            return loss(real_scores, labels) + loss(fake_scores, fake_labels) + weight * pull_away(embedding)

        d_loss = per_member(one, real.scores.float(), y_real, fake.scores.float(), fake_label,
                            fake.embedding.float())
        return d_loss, real.features.detach()

    def g_objective(self, D, x_fake: torch.Tensor, real_features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G's loss (eq. 4 and eq. 8): per-class feature matching between real and generated batches in DC's
        features, plus ``g_class_weight`` x DC's classification loss on the generated batch with the classes
        it was generated for (G is trained to make DC assign its intended class)."""
        fake = D(x_fake)
        loss, weight, n_classes = self.D.loss, self.params["g_class_weight"], self.n_classes

        def one(real_f, fake_f, labels, scores):
            return feature_matching(real_f, fake_f, labels, labels, n_classes) + weight * loss(scores, labels)

        return per_member(one, real_features.float(), fake.features.float(), y, fake.scores.float())

    def classifier_objective(self, D, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DC as a classifier on (real + generated) images: the margin loss on the true classes."""
        return per_member(self.D.loss, D(x).scores.float(), y)

    # -- the method -----------------------------------------------------------------------------------
    def end_epoch(self, epoch: int, losses: dict[str, float], ctx: FitContext) -> None:
        check_finite(epoch, losses)
        for name, value in losses.items():
            self.history[name].append(value)
        ctx.progress(epoch, self._total, {self.SHOWN[name]: value for name, value in losses.items()})

    def _prepare(self, train: ImageSet, ctx: FitContext) -> Phase:
        """Everything before the networks: the seed, the set on the device, the class index, the plan."""
        torch.manual_seed(ctx.seed)
        device = ctx.device
        self.device, self.n_classes = device, train.n_classes
        self.x, self.y = to_input(train.images, device), torch.as_tensor(train.labels, device=device)
        self.rng = torch.Generator(device=device).manual_seed(ctx.seed)
        self.by_class = [torch.nonzero(self.y == c).flatten() for c in range(self.n_classes)]
        self.present = torch.tensor([c for c, index in enumerate(self.by_class) if len(index)], device=device)
        self.counts = torch.as_tensor(train.counts(), device=device)
        self.schedule = self.plan(Budget.of(train.counts(), ctx.epochs))
        ctx.ledger.contract.update(classifier=self.schedule.classifier,
                                   generator=self.schedule.gan_epochs * self.schedule.steps)
        self._total = self.schedule.gan_epochs + len(self.schedule.finetune)
        self.history = {"d_loss": [], "g_loss": [], "classifier_loss": []}
        return Phase(self, self.x, self.y, train.counts(), self.schedule.gan_epochs, self.schedule.steps, ctx)

    def _networks(self, phase: Phase) -> list:
        """This member's G and DC (under its seed: ``GeneratorGroup.networks``), DC calibrated on one
        class-balanced real batch."""
        self.build(phase.x.shape[1:], self.counts, self.device)
        self.ledger = phase.ctx.ledger
        if phase.ctx.precision == "bf16":
            self.precision = "bf16"
        first = self.present[torch.randint(len(self.present), (self.params["batch_size"],), device=self.device,
                                           generator=self.rng)]
        self.D.calibrate(self.x[self._balanced_index(self.by_class, first, self.rng)])
        return [self.G, self.D]

    @classmethod
    def fit_group(cls, members: list) -> list[BaseException | None]:
        """Cells that differ only in their seed, trained as one (a group of one is the solo cell and raises
        its failure): per member None or the exception that failed it."""
        return train_in_lots(members, lambda phases: CapsanTrainer(phases).run(),
                             key=lambda phase: (*lockstep_key(phase), tuple(phase.method.schedule.finetune)))

    def plan(self, budget: Budget) -> CapsanPlan:
        """The contract's split of DC's U updates between the phases (module docstring, "Budget")."""
        p = self.params
        batch = p["batch_size"]
        gan_epochs = budget.generator_epochs(p["epoch_scale"]) if p["gan_epochs"] is None else int(p["gan_epochs"])
        steps = budget.generator_steps(batch)
        per_epoch = budget.classifier_steps(batch)
        if p["finetune_epochs"] is not None:  # an explicit length: epochs over the balanced set, off-contract
            return CapsanPlan(gan_epochs, steps, gan_epochs * steps + int(p["finetune_epochs"]) * per_epoch,
                              [per_epoch] * int(p["finetune_epochs"]))
        rest = budget.classifier_rest(gan_epochs * steps, batch, self.name, "gan_epochs")
        # Logged in epochs of the balanced set's length, the last one partial.
        finetune = [per_epoch] * (rest // per_epoch) + ([rest % per_epoch] if rest % per_epoch else [])
        return CapsanPlan(gan_epochs, steps, gan_epochs * steps + rest, finetune)

    @staticmethod
    def _balanced_index(by_class, labels, rng) -> torch.Tensor:
        """For every requested label, a random training image of that class (with replacement)."""
        index = torch.empty_like(labels)
        for c, members in enumerate(by_class):
            if len(members):
                pick = members[torch.randint(len(members), labels.shape, device=labels.device, generator=rng)]
                index = torch.where(labels == c, pick, index)
        return index

    def _balanced_set(self, x, y, counts, rng):
        """Real images plus n+ = int(dist+ (n_max - n_c) phi) generated images for every minority class."""
        # Classes absent from the training set get nothing: the generator never saw them.
        wanted = ((counts.max() - counts).float() * self.params["phi"]).long().mul(counts > 0).tolist()
        self.generated_counts = wanted
        xs, ys = [x], [y]
        for c, n in enumerate(wanted):
            if n > 0:
                xs.append(self._generate(n, c).float().div(127.5).sub(1.0))
                ys.append(torch.full((n,), c, device=y.device, dtype=y.dtype))
        return torch.cat(xs), torch.cat(ys)

    @torch.no_grad()
    def _generate(self, n: int, label: int, chunk: int = 1024) -> torch.Tensor:
        """``n`` uint8 images of class ``label`` on the device."""
        self.G.eval()
        out = []
        for start in range(0, n, chunk):
            labels = torch.full((min(chunk, n - start),), label, device=self.device, dtype=torch.long)
            with self._autocast():
                images = self.G(self.latent(labels), labels).float()
            out.append(((images + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8))
        self.G.train()
        return torch.cat(out)

    def sample(self, n: int, label: int) -> np.ndarray:
        """``n`` generated images of class ``label``, uint8 (n, C, H, W)."""
        return self._generate(n, label).cpu().numpy()

    @torch.no_grad()
    def discriminate(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """The battle's "is real" decision (``bench/quality/battle.py``): real when the last ("fake") of D's c + 1
        scores is not the argmax (torch's argmax takes the first of tied maxima, so a tie with "fake" is
        real); D as ``fit`` left it, evaluated in eval mode and put back in its previous mode."""
        if getattr(self, "D", None) is None:
            raise BenchError(f"{self.name} has no fitted discriminator: fit it before battling")
        was_training = self.D.training
        self.D.eval()
        out = []
        try:
            for start in range(0, len(images), batch_size):
                with self._autocast():
                    scores = self.D(to_input(images[start:start + batch_size], self.device)).scores.float()
                out.append((scores.argmax(dim=1) != self.n_classes).cpu())
        finally:
            self.D.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=bool)

    @torch.no_grad()
    def predict_proba(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        self.D.eval()
        out = []
        for start in range(0, len(images), batch_size):
            with self._autocast():
                scores = self.D(to_input(images[start:start + batch_size], self.device)).scores.float()
            out.append(self.D.class_proba(scores))
        self.D.train()
        return torch.cat(out).double().cpu().numpy()

    @classmethod
    def predict_group(cls, methods: list, images: list[np.ndarray], batch_size: int = 512) -> list[np.ndarray]:
        """The members' DCs stacked (``stacked.Stacked``), one pass per batch; one after another when their
        test sets differ in size."""
        if len(methods) == 1 or len({own.shape for own in images}) > 1:
            return super().predict_group(methods, images)
        first = methods[0]
        return predict_stacked([m.D for m in methods], images, lambda out: first.D.class_proba(out.scores.float()),
                               first._autocast, first.device, batch_size)

    def _save_artifacts(self, ctx: FitContext, history: dict) -> None:
        folder = ctx.artifact_dir
        folder.mkdir(parents=True, exist_ok=True)
        history["generated_counts"] = self.generated_counts
        (folder / "losses.json").write_text(json.dumps(history))
        if not history["d_loss"]:  # no adversarial training: the generator's samples would be noise
            return
        # One row of 8 samples per class (at most 10 classes), minority and majority alike.
        rows = [self._generate(8, c) for c in range(min(self.n_classes, 10))]
        save_samples(rows, folder / "samples.png")


class CapsanTrainer:
    """The training of a group of CapsAN cells (``CapsAN.fit_group``; a solo cell is a group of one): their G
    and DC stacked, one Adam over each (the class latents, which draw their noise from each member's own
    generator, stay per member under G's optimiser), Algorithm 1's adversarial epochs, the top-up, then DC's
    fine-tuning, every step one update of every member."""

    def __init__(self, phases: list[Phase]):
        self.phases, self.group = phases, GeneratorGroup(phases)
        self.methods = [phase.method for phase in phases]
        first = self.methods[0]
        self.first, self.batch, self.schedule = first, first.params["batch_size"], first.schedule
        self.G, self.D = (self.group.stack(nets) for nets in self.group.networks(lambda ph: ph.method._networks(ph)))
        if self.group.size == 1:  # the solo cell's own optimisers, built with its networks
            self.opt_d, self.opt_g = first.opt_d, first.opt_g
        else:
            self.opt_d = first._adam(self.D.parameters())
            self.opt_g = first._adam([*self.G.parameters(), *(q for m in self.methods for q in m.latent.parameters())])
        # --compile (a group of one): G, and DC's objectives (its forward passes and losses as one graph each)
        self._G = self.group.compiled(self.G)
        compiled = phases[0].ctx.compiled if self.group.size == 1 else (lambda fn: fn)
        self.d_objective, self.g_objective, self.classifier_objective = (
            compiled(fn) for fn in (first.d_objective, first.g_objective, first.classifier_objective))

    def step_begin(self) -> None:
        self.group.step_begin()

    def latents(self, labels: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.latent(own, m.rng) for m, own in zip(self.methods, labels, strict=True)])

    def train_step(self, x_real: torch.Tensor, y_real: torch.Tensor) -> torch.Tensor:
        """One DC update and one G update of every member; their (d_loss, g_loss), (S, 2), on the device."""
        self.step_begin()
        with self.first._autocast():
            x_fake = self._G(self.latents(y_real), y_real)
            d_loss, real_features = self.d_objective(self.D, x_real, y_real, x_fake.detach())
        self.group.update("classifier", self.opt_d, d_loss, 2 * y_real.shape[1])
        with self.first._autocast():
            g_loss = self.g_objective(self.D, x_fake, real_features, y_real)
        self.group.update("generator", self.opt_g, g_loss, y_real.shape[1])
        return torch.stack([d_loss.detach(), g_loss.detach()], dim=1)

    def adversarial_epoch(self, steps: int) -> torch.Tensor:
        """``steps`` DC + G updates on class-balanced batches; the summed (d_loss, g_loss) per member, (S, 2),
        on the device (read back once per epoch)."""
        running = torch.zeros(self.group.size, 2, device=self.first.device)
        batch = self.batch
        for _ in range(steps):
            labels = self.group.draw(lambda i, ph: ph.method.present[torch.randint(
                len(ph.method.present), (batch,), device=ph.method.device, generator=ph.method.rng)])
            index = self.group.draw(lambda i, ph, own=labels: CapsAN._balanced_index(
                ph.method.by_class, own[i], ph.method.rng))
            running += self.train_step(self.group.take("x", index), labels)
        return running

    def run(self) -> list[BaseException | None]:
        group, schedule, device = self.group, self.schedule, self.first.device
        with group.ledger.phase("classifier", "generator", mates=group.mates):
            for epoch in range(1, schedule.gan_epochs + 1):
                means = (self.adversarial_epoch(schedule.steps) / schedule.steps).tolist()
                if not group.end_epoch(epoch, [{"d_loss": d, "g_loss": g} for d, g in means]):
                    return self._done()
        self.G.write_back()  # each member samples its top-up with its own G
        balanced = []
        for i, method in enumerate(self.methods):
            with group.as_member(i):
                if schedule.gan_epochs:
                    balanced.append(method._balanced_set(method.x, method.y, method.counts, method.rng))
                else:  # gan_epochs = 0 trains DC as a plain classifier on the real images (the paper's Table 1)
                    method.generated_counts = [0] * method.n_classes
                    balanced.append((method.x, method.y))
        batches = [shuffled_batches(len(y), self.batch, m.rng, device)
                   for m, (_, y) in zip(self.methods, balanced, strict=True)]
        with group.ledger.phase("classifier", mates=group.mates):
            for epoch, steps in enumerate(schedule.finetune, start=schedule.gan_epochs + 1):
                running, seen = torch.zeros(group.size, device=device), 0
                for _ in range(steps):
                    index = [next(own) for own in batches]
                    x = torch.stack([x[i] for (x, _), i in zip(balanced, index, strict=True)])
                    y = torch.stack([y[i] for (_, y), i in zip(balanced, index, strict=True)])
                    self.step_begin()
                    with self.first._autocast():
                        loss = self.classifier_objective(self.D, x, y)
                    group.update("classifier", self.opt_d, loss, len(index[0]))
                    running += loss.detach() * len(index[0])
                    seen += len(index[0])
                if not group.end_epoch(epoch, [{"classifier_loss": v} for v in (running / seen).tolist()]):
                    return self._done()
        return self._done(artifacts=True)

    def _done(self, artifacts: bool = False) -> list[BaseException | None]:
        self.G.write_back()
        self.D.write_back()
        for i, (method, phase) in enumerate(zip(self.methods, self.phases, strict=True)):
            if artifacts and self.group.failed[i] is None:
                with self.group.as_member(i):
                    method._save_artifacts(phase.ctx, method.history)
        return self.group.failed


@register
class CapsANConv(CapsAN):
    name = "capsan-conv"
    family = "the paper's"
    battle_twin = "capsan"
    summary = "CapsAN with a convolutional discriminator and c+1 softmax head (the paper's Conv-GAN)"
    citation = CITATION + " (Conv-GAN comparison)"
    discriminator = ConvDiscriminator
