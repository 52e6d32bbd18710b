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
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from bench.datasets.base import ImageSet
from bench.errors import BenchError
from bench.methods.base import FitContext, Method, check_finite
from bench.methods.budget import Budget, Ledger
from bench.methods.capsan_nets import CapsuleDiscriminator, ClassLatent, ConvDiscriminator, Generator
from bench.methods.capsules import feature_matching, pull_away
from bench.methods.classifier import shuffled_batches, to_input
from bench.methods.generative import save_samples
from bench.methods.registry import register

CITATION = ("Shamsolmoali et al., Imbalanced data learning by minority class augmentation using capsule "
            "adversarial networks, Neurocomputing 2021")


def _no_step_begin() -> None:
    return None


@dataclass(frozen=True)
class CapsanPlan:
    """How a cell spends the budget: ``gan_epochs`` of ``steps`` adversarial steps (one DC and one G update
    each), then DC's fine-tuning steps, listed per logged epoch; ``classifier`` = DC's updates in all."""

    gan_epochs: int
    steps: int
    classifier: int
    finetune: list


@register
class CapsAN(Method):
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
        betas = (p["beta1"], 0.999)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=p["lr"], betas=betas)
        self.opt_g = torch.optim.Adam([*self.G.parameters(), *self.latent.parameters()], lr=p["lr"], betas=betas)
        # What the training steps call: ``fit`` swaps in compiled versions under --compile (they share
        # these modules' weights), and the step-begin hook of CUDA-graph replay.
        self._G, self._step_begin = self.G, _no_step_begin
        self._d_objective, self._g_objective = self.d_objective, self.g_objective
        self._classifier_objective = self.classifier_objective
        self.precision = p["precision"]
        self.ledger = Ledger()  # fit hands over the cell's (ctx.ledger)

    def _autocast(self):
        """bf16 autocast when the ``precision`` parameter (or the run's --precision) says bf16."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def compile(self, ctx: FitContext) -> None:
        """Under ``--compile``, the training steps call compiled versions of G and of the three objectives below
        (each network's forward passes and its loss as one graph, so the many small loss kernels fuse too);
        sampling stays eager, and so does the class latent (its seeded generator cannot be traced)."""
        self._G = ctx.compiled(self.G)
        self._d_objective = ctx.compiled(self.d_objective)
        self._g_objective = ctx.compiled(self.g_objective)
        self._classifier_objective = ctx.compiled(self.classifier_objective)
        self._step_begin = ctx.step_begin

    # -- the objectives ---------------------------------------------------------------------------------
    def d_objective(self, x_real: torch.Tensor, y_real: torch.Tensor, x_fake: torch.Tensor):
        """DC's loss (eq. 5-7) on a real batch and a generated one (detached), and the real batch's features
        (detached) for G's feature matching."""
        real, fake = self.D(x_real), self.D(x_fake)
        fake_label = torch.full_like(y_real, self.n_classes)
        d_loss = (self.D.loss(real.scores.float(), y_real) + self.D.loss(fake.scores.float(), fake_label)
                  + self.params["pt_weight"] * pull_away(fake.embedding.float()))
        return d_loss, real.features.detach()

    def g_objective(self, x_fake: torch.Tensor, real_features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G's loss (eq. 4 and eq. 8): per-class feature matching between real and generated batches in DC's
        features, plus ``g_class_weight`` x DC's classification loss on the generated batch with the classes
        it was generated for (G is trained to make DC assign its intended class)."""
        fake = self.D(x_fake)
        matching = feature_matching(real_features.float(), fake.features.float(), y, y, self.n_classes)
        return matching + self.params["g_class_weight"] * self.D.loss(fake.scores.float(), y)

    def classifier_objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DC as a classifier on (real + generated) images: the margin loss on the true classes."""
        return self.D.loss(self.D(x).scores.float(), y)

    # -- one adversarial step: everything stays on the device, nothing is read back ----------------------
    def train_step(self, x_real: torch.Tensor, y_real: torch.Tensor, generator=None) -> torch.Tensor:
        """One D update and one G update; returns (d_loss, g_loss) as a device tensor."""
        self._step_begin()
        with self._autocast():
            x_fake = self._G(self.latent(y_real, generator), y_real)
            d_loss, real_features = self._d_objective(x_real, y_real, x_fake.detach())
        self.ledger.update("classifier", self.opt_d, d_loss, 2 * len(y_real))
        with self._autocast():
            g_loss = self._g_objective(x_fake, real_features, y_real)
        self.ledger.update("generator", self.opt_g, g_loss, len(y_real))
        return torch.stack([d_loss.detach(), g_loss.detach()])

    def classifier_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self._step_begin()
        with self._autocast():
            loss = self._classifier_objective(x, y)
        self.ledger.update("classifier", self.opt_d, loss, len(y))
        return loss.detach()

    # -- the method -----------------------------------------------------------------------------------
    def fit(self, train: ImageSet, ctx: FitContext) -> None:
        torch.manual_seed(ctx.seed)
        device, p = ctx.device, self.params
        counts = torch.as_tensor(train.counts(), device=device)
        self.build(train.image_shape, counts, device)
        self.ledger = ctx.ledger
        if ctx.precision == "bf16":
            self.precision = "bf16"
        self.compile(ctx)
        x = to_input(train.images, device)
        y = torch.as_tensor(train.labels, device=device)
        rng = torch.Generator(device=device).manual_seed(ctx.seed)
        by_class = [torch.nonzero(y == c).flatten() for c in range(self.n_classes)]
        present = torch.tensor([c for c, index in enumerate(by_class) if len(index)], device=device)
        batch = p["batch_size"]
        first = present[torch.randint(len(present), (batch,), device=device, generator=rng)]
        self.D.calibrate(x[self._balanced_index(by_class, first, rng)])
        plan = self.plan(Budget.of(train.counts(), ctx.epochs))
        ctx.ledger.contract.update(classifier=plan.classifier, generator=plan.gan_epochs * plan.steps)
        total = plan.gan_epochs + len(plan.finetune)
        history = {"d_loss": [], "g_loss": [], "classifier_loss": []}

        with ctx.ledger.phase("classifier", "generator"):
            for epoch in range(1, plan.gan_epochs + 1):
                d_loss, g_loss = (self.adversarial_epoch(x, by_class, present, plan.steps, rng) / plan.steps).tolist()
                check_finite(epoch, {"d_loss": d_loss, "g_loss": g_loss})
                history["d_loss"].append(d_loss)
                history["g_loss"].append(g_loss)
                ctx.progress(epoch, total, {"d": d_loss, "g": g_loss})

        if plan.gan_epochs:
            x_bal, y_bal = self._balanced_set(x, y, counts, rng)
        else:  # gan_epochs = 0 trains DC as a plain classifier on the real images (the paper's Table 1)
            x_bal, y_bal, self.generated_counts = x, y, [0] * self.n_classes
        batches = shuffled_batches(len(y_bal), batch, rng, device)
        with ctx.ledger.phase("classifier"):
            for epoch, steps in enumerate(plan.finetune, start=plan.gan_epochs + 1):
                running, seen = torch.zeros((), device=device), 0
                for _ in range(steps):
                    index = next(batches)
                    running += self.classifier_step(x_bal[index], y_bal[index]) * len(index)
                    seen += len(index)
                loss = (running / seen).item()
                check_finite(epoch, {"classifier loss": loss})
                history["classifier_loss"].append(loss)
                ctx.progress(epoch, total, {"clf": loss})
        self._save_artifacts(ctx, history)

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

    def adversarial_epoch(self, x, by_class, present, steps: int, rng) -> torch.Tensor:
        """``steps`` D + G updates on class-balanced batches; returns the summed (d_loss, g_loss) on the
        device (the caller reads it back once per epoch)."""
        batch = self.params["batch_size"]
        running = torch.zeros(2, device=x.device)
        for _ in range(steps):
            labels = present[torch.randint(len(present), (batch,), device=x.device, generator=rng)]
            running += self.train_step(x[self._balanced_index(by_class, labels, rng)], labels, rng)
        return running

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
        """The battle's "is real" decision (``bench/battle.py``): real when the last ("fake") of D's c + 1
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


@register
class CapsANConv(CapsAN):
    name = "capsan-conv"
    family = "the paper's"
    battle_twin = "capsan"
    summary = "CapsAN with a convolutional discriminator and c+1 softmax head (the paper's Conv-GAN)"
    citation = CITATION + " (Conv-GAN comparison)"
    discriminator = ConvDiscriminator
