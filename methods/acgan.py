"""``acgan``: oversampling with an auxiliary-classifier GAN trained on every class.

Odena, Olah and Shlens, "Conditional image synthesis with auxiliary classifier GANs", ICML 2017
(arXiv:1610.09585), on the DCGAN networks of ``dcgan_nets.py`` (Radford, Metz and Chintala, ICLR 2016).
The authors released no code; where the paper is silent we follow the PyTorch implementation the paper is
usually paired with (gitlimlab/ACGAN-PyTorch, which reproduces the paper's appendix networks) and say so.

What is built:
- One class-conditional generator G(c, z) for all classes. The class enters as a one-hot code of
  ``n_classes`` values concatenated to z (100 values from N(0, I)); the joint vector feeds DCGAN's first
  linear layer. This is the paper's input: its appendix networks take 110 values for its 10-class models,
  and gitlimlab/ACGAN-PyTorch writes the one-hot code into the first 10 of 110 Gaussian values, i.e. 100
  noise values plus the code. (The Keras example multiplies z by a learned class embedding instead.)
- One discriminator D with a single linear output layer of 1 + n_classes logits on the DCGAN trunk, as the
  paper's "Linear, 11 outputs" for 10 classes: logit 0 is the source (real/fake), logits 1.. the class.
- The paper's objective (section 3):
  L_S = E[log P(S=real | X_real)] + E[log P(S=fake | X_fake)],
  L_C = E[log P(C=c | X_real)] + E[log P(C=c | X_fake)];
  D maximises L_S + L_C, G maximises L_C - L_S. Both are written as losses to minimise: D's loss is
  -L_S - L_C (binary cross-entropy on the source logit, plus cross-entropy on the class logits of the
  real batch with its true labels and of the generated batch with the labels it was generated from).
  G's loss is the non-saturating form of -(L_C - L_S): -log P(S=real | G(c, z)) in place of
  log P(S=fake | G(c, z)) (Goodfellow et al. 2014, section 3; gitlimlab/ACGAN-PyTorch and the Keras
  example do the same), plus -log P(C=c | G(c, z)). The class logits go to ``F.cross_entropy`` as they are
  (one log-softmax): ports that apply a softmax in D and then ``NLLLoss`` or a second softmax
  (gitlimlab/ACGAN-PyTorch does the former) train on a different, wrong loss.
- Training on ALL classes: every epoch is one seeded pass over a shuffle of the whole training set in
  batches of ``batch_size`` (ceil(N / batch) steps, the paper's plain pass over the data, so real images
  come at their natural frequencies); each step one D update, then one G update on the same generated batch
  (as gitlimlab/ACGAN-PyTorch). The generated labels are drawn c ~ p_c with p_c the training set's class
  frequencies (``label_prior="data"``): we read the paper's p_c as the data's class distribution (on its
  balanced data sets this and a uniform draw agree); with it the generated (image, label) pairs can have the
  same law as the real ones, so D cannot tell real from fake by the class alone (with uniform labels at
  ratio 0.05, D would learn that minority-looking images are mostly fake, and G would be pushed away from
  the minority). ``label_prior="uniform"`` draws the generated labels uniformly over the classes present.
- Then every class smaller than the largest is topped up by G with its label (``generative.py``), and the
  common classifier trains on real + generated images.

Defaults and where they come from:
- From the paper's appendix (CIFAR-10 table), as gitlimlab/ACGAN-PyTorch reproduces it: z of 100
  dimensions (a 110-value input with the 10-class code), from N(0, I) (gitlimlab); Adam lr 2e-4, betas
  (0.5, 0.999); weights N(0, 0.02), zero biases (also DCGAN); LeakyReLU 0.2 in D; batch normalisation in
  G and in every D layer but the first; dropout 0.5 after every D layer.
- ``label_prior`` "data" (see above).

Deviations from the paper and its reference code:
- The networks are the DCGAN ones of ``dcgan_nets.py`` (4x4 stride-2 convolutions, width 64, as ``gan``)
  rather than the paper's 3x3 D with stride-1 layers in between and its 5x5 transposed convolutions, so
  that the generative baselines differ in conditioning and losses, not in capacity; any square size from
  8x8 to 64x64 and 1 or 3 channels.
- Batch 64 (the paper: 100), the shared default of the generative baselines.
- The budget is ``gan_epochs`` passes (default ``epoch_scale`` x the cell's epochs, ``generative.py``),
  not the paper's 50,000 iterations. ``schedule = "paper"`` (``paper_schedule``, stored as
  ``acgan[schedule=paper]``) trains the paper's schedule instead, off the contract: batch 100 and
  ``gan_iterations = 50000`` (the appendix's hyper-parameter tables), rounded to whole passes over the data
  (on a binary MNIST task, N = 6,744: 735 passes of 68 steps, 49,980 updates each of D and G).
- The paper's ImageNet models are an ensemble of 100 AC-GANs of 10 classes each; we train one AC-GAN on
  all the task's classes.
- Fused groups (``--fuse``; README, "Fused cells"): the members' G and D train as one stacked network each
  (``stacked.py``). Each member draws all its randomness from its own seed as its solo cell does (on a GPU its
  dropout masks are of the same law, not the same masks), and matches its solo cell to float rounding
  (``tests/test_fused_generators.py``); ``--compile`` compiles a group of one only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import one_hot
from bench.methods.dcgan_nets import DCGANDiscriminator, DCGANGenerator
from bench.methods.generative import COMMON_DEFAULTS, GenerativeOversampling
from bench.methods.generator_group import GeneratorGroup, Phase, per_member
from bench.methods.registry import register

LABEL_PRIORS = ("data", "uniform")


class ConditionalGenerator(nn.Module):
    """G(c, z): a one-hot class code concatenated to z, then the DCGAN generator."""

    def __init__(self, image_shape, n_classes: int, z_dim: int = 100, width: int = 64):
        super().__init__()
        self.n_classes, self.z_dim = n_classes, z_dim
        self.net = DCGANGenerator(image_shape, z_dim + n_classes, width)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        code = one_hot(labels, self.n_classes, z.dtype)
        return self.net(torch.cat([z, code], dim=1))


def split_outputs(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D's (N, 1 + n_classes) logits -> the source logit (N,) and the class logits (N, n_classes)."""
    return out[:, 0], out[:, 1:]


def class_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-E[log P(C=c | X)] from the class logits: one log-softmax, inside ``F.cross_entropy``."""
    return F.cross_entropy(class_logits, labels)


def d_loss_fn(out_real, y_real, out_fake, y_fake) -> tuple[torch.Tensor, torch.Tensor]:
    """D's two losses, (-L_S, -L_C), from its logits on a real and a generated batch."""
    s_real, c_real = split_outputs(out_real)
    s_fake, c_fake = split_outputs(out_fake)
    source = (F.binary_cross_entropy_with_logits(s_real, torch.ones_like(s_real))
              + F.binary_cross_entropy_with_logits(s_fake, torch.zeros_like(s_fake)))
    return source, class_loss(c_real, y_real) + class_loss(c_fake, y_fake)


def g_loss_fn(out_fake, y_fake) -> tuple[torch.Tensor, torch.Tensor]:
    """G's two losses: the non-saturating source loss -log P(S=real | G(c, z)) and -log P(C=c | G(c, z))."""
    s_fake, c_fake = split_outputs(out_fake)
    return F.binary_cross_entropy_with_logits(s_fake, torch.ones_like(s_fake)), class_loss(c_fake, y_fake)


@register
class ACGAN(GenerativeOversampling):
    name = "acgan"
    family = "generative oversampling"
    summary = "one class-conditional GAN with an auxiliary classifier in D, trained on all classes"
    citation = "Odena, Olah and Shlens, Conditional image synthesis with auxiliary classifier GANs, ICML 2017"
    defaults = {**COMMON_DEFAULTS, "z_dim": 100, "lr": 2e-4, "beta1": 0.5, "width": 64, "dropout": 0.5,
                "label_prior": "data"}
    paper_schedule = {"batch_size": 100, "gan_iterations": 50_000}  # the paper's appendix (see the docstring)

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["label_prior"] not in LABEL_PRIORS:
            raise ValueError(f"label_prior must be one of {', '.join(LABEL_PRIORS)}; "
                             f"got {self.params['label_prior']!r}")

    def label_probabilities(self, counts: np.ndarray) -> np.ndarray:
        """p_c for the generated labels: the class frequencies, or uniform over the classes present."""
        counts = np.asarray(counts, dtype=np.float64)
        weights = counts if self.params["label_prior"] == "data" else (counts > 0).astype(np.float64)
        return weights / weights.sum()

    fused_generators = True

    @classmethod
    def train_generators(cls, phases: list[Phase]) -> list[BaseException | None]:
        group = GeneratorGroup(phases)
        p, device, first = group.params, group.device, phases[0]
        n_classes, shape = len(first.counts), first.x.shape[1:]
        G, D = group.build(lambda phase: [
            ConditionalGenerator(shape, n_classes, p["z_dim"], p["width"]).to(device),
            DCGANDiscriminator(shape, 1 + n_classes, p["width"], dropout=p["dropout"]).to(device)])
        for phase, g, d in zip(phases, G.nets, D.nets, strict=True):
            phase.method.G, phase.method.D = g, d
        betas = (p["beta1"], 0.999)
        opt_g = torch.optim.Adam(G.parameters(), p["lr"], betas=betas)
        opt_d = torch.optim.Adam(D.parameters(), p["lr"], betas=betas)
        priors = [torch.as_tensor(phase.method.label_probabilities(phase.counts), dtype=torch.float32,
                                  device=device) for phase in phases]
        batch, n = p["batch_size"], len(first.x)
        G, D = group.compiled(G), group.compiled(D)  # --compile (a group of one)
        with group.phase("generator", "discriminator"):
            for epoch in range(1, first.epochs + 1):
                running = torch.zeros(group.size, 4, device=device)
                orders = [torch.randperm(n, device=device, generator=phase.method.rng) for phase in phases]
                for step in range(first.steps):
                    group.step_begin()
                    idx = [order[step * batch:(step + 1) * batch] for order in orders]
                    size = len(idx[0])
                    real = torch.stack([phase.x[j] for phase, j in zip(phases, idx, strict=True)])
                    y_real = torch.stack([phase.y[j] for phase, j in zip(phases, idx, strict=True)])
                    y_fake = group.draw(lambda i, phase, k=size: torch.multinomial(
                        priors[i], k, replacement=True, generator=phase.method.rng))
                    z = group.draw(lambda i, phase, k=size: torch.randn(k, p["z_dim"], device=device,
                                                                        generator=phase.method.rng))
                    with first.ctx.autocast():
                        fake = G(z, y_fake)
                        d_source, d_class = per_member(d_loss_fn, D(real), y_real, D(fake.detach()), y_fake)
                        d_loss = (d_source + d_class).float()
                    group.update("discriminator", opt_d, d_loss, 2 * size)
                    with first.ctx.autocast():
                        g_source, g_class = per_member(g_loss_fn, D(fake), y_fake)
                        g_loss = (g_source + g_class).float()
                    group.update("generator", opt_g, g_loss, size)
                    running += torch.stack([d_loss, g_loss, d_class, g_class], dim=1).detach()
                means = (running / max(1, first.steps)).tolist()  # one host sync per epoch
                logs = [{"d_loss": d, "g_loss": g, "d_class_loss": dc, "g_class_loss": gc} for d, g, dc, gc in means]
                if not group.end_epoch(epoch, logs):
                    break
        return group.done(G, D)

    @torch.no_grad()
    def generate(self, n: int, label: int, generator=None) -> torch.Tensor:
        if not 0 <= label < self.G.n_classes:
            raise ValueError(f"acgan was trained on classes 0..{self.G.n_classes - 1}; got class {label}")
        self.G.eval()
        z = torch.randn(n, self.params["z_dim"], device=self.device, generator=generator)
        images = self.G(z, torch.full((n,), label, dtype=torch.long, device=self.device))
        self.G.train()
        return images
