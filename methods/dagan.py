"""``dagan``: oversampling with a data augmentation GAN, which maps a real image to another of its class.

Antoniou, Storkey and Edwards, "Data augmentation generative adversarial networks", arXiv:1711.04340,
2017; the official code is AntreasAntoniou/DAGAN on GitHub (TensorFlow; ``dagan_networks_wgan.py`` for the
losses, ``experiment_builder.py`` and ``utils/parser_util.py`` for the training loop and defaults,
``data.py`` for the pairs). Networks in ``dagan_nets.py``.

What is built: one generator G(x, z) -- an encoder-decoder with skip connections (UResNet) that takes a real
image x and Gaussian noise z (injected at the bottleneck and the next two decoder stages) and returns an
image of the same shape -- and one critic D that scores PAIRS of images, concatenated along the channels
with the source image x first (the official code puts the candidate first; the order only permutes the
critic's first-layer input channels): (x, x') with x' another real image of x's class (drawn independently,
so possibly x itself, as in the official sampler) is "real", (x, G(x, z)) is "fake". Both are trained on every class's images; a pair never mixes classes. Once trained, each class c
that the balancing rule tops up (``generative.py``) gets its new images FROM its own training images:
``generate(n, c)`` draws n source images of class c (without replacement, a fresh seeded permutation
for every pass over the class when n exceeds its size) and maps each through G (in evaluation mode: dropout
off, batch normalisation from its running statistics, as the official generation) with fresh noise.

Defaults and where they come from:
- WGAN-GP loss (official ``dagan_networks_wgan.py``): critic loss mean D(x, G(x, z)) - mean D(x, x') +
  10 x gradient penalty; generator loss -mean D(x, G(x, z)). The penalty (weight 10, official and
  Gulrajani et al. 2017) is taken, as in the official code, on interpolates of the pair's SECOND element
  only: u = x' + alpha (G(x, z) - x'), alpha ~ U(0, 1) per pair, the source x held fixed, and the gradient
  of D(x, u) with respect to u alone.
- Adam, lr 1e-4, betas (0, 0.9), for both networks (official ``init_train`` defaults).
- 5 critic updates per generator update (official ``disc_iter = 5``, ``gen_iter = 1``), each critic update
  and each generator update on a freshly drawn batch of pairs.
- Pairs (official ``data.py``): for each pair a class is drawn uniformly among the classes present in the
  training set, then x and x' are drawn independently (with replacement) among that class's images; so at
  high imbalance half the pairs of a binary task are minority pairs.
- z ~ N(0, I) of 100 dimensions (official ``--z_dim`` default); dropout 0.5 in both networks while training
  (official ``--dropout_rate_value``); LeakyReLU 0.2, batch normalisation in G, layer normalisation in D,
  Glorot-uniform initialisation (``dagan_nets.py``). The critic keeps its dropout on in every training
  pass (real, fake, penalty and the generator's update), as the official graph does.
- The budget (the contract of ``budget.py``): the generator gets G = gan_epochs x ceil(N / batch)
  updates, N the whole training set, like every generator of the suite, and the critic its 5 updates per
  generator update on top (5 G), as the official trainer does (an iteration there is 5 critic updates then
  one generator update, data size / batch iterations an epoch). A DAGAN epoch thus costs about 5 critic
  updates with their double back-propagation per ``gan`` step. Version 1 of this method counted the budget
  in critic updates instead (a fifth of ``gan``'s generator updates). The per-epoch ``g_loss`` logged is
  -mean D(x, G(x, z)) on the critic updates' batches.
- ``schedule = "paper"`` (``paper_schedule``, stored as ``dagan[schedule=paper]``): the official trainer's
  schedule, off the contract: batch 32 (``--batch_size`` default) and 200 epochs (``experiment_builder.py``
  sets ``total_epochs = 200``; an older version of that file ran 250), each epoch ceil(N / 32) generator
  updates (official: int(data size / batch)) with 5 critic updates each. On a binary MNIST task
  (N = 6,744) that is 42,200 generator and 211,000 critic updates: hours even on a GPU.
Deviations:
- Scaled-down networks: widths (24, 24, 48, 48) per level (official (64, 64, 128, 128)), one inner
  convolution per MultiLayer in both networks (the official parser's default; its README uses 3 in G and
  5 in D), fewer levels for images under 32 pixels, no cross-level "two layers back" skips, plain batch
  normalisation (momentum 0.1) instead of batch renormalisation in G (details in ``dagan_nets.py``).
- Batch 64 (official 32), the batch every generative baseline here shares.
- The penalty's gradient norm is the Euclidean norm over the whole of the second image (C, H, W). The
  official code reshapes the interpolates back to images and then sums the squared gradient over axis 1
  only (the image height), so its "slopes" are per (pair, column, channel) norms; that is a departure from
  WGAN-GP that we do not reproduce.
- The official training randomly rotates both images of a pair by the same multiple of 90 degrees (with
  probability 1/2); off by default here (``rotate=True`` turns it on): a rotated digit or natural image is
  not an image of its class, and G is never asked to map rotated images.
- The official trainer also evaluates losses on a validation split and keeps the best checkpoint; here,
  as for every method of the suite, the networks after the last epoch are used.
- ``--compile`` compiles G only: the critic's gradient penalty differentiates through its gradients (double
  backward), which torch.compile does not support. ``--precision bf16`` covers G, the critic and the penalty.
- Fused groups (``--fuse``; README, "Fused cells"): the members' G and critic train as one stacked network each,
  the penalty per member (``stacked.py``). Each member draws all its randomness from its own seed as its solo
  cell does (on a GPU its dropout masks are of the same law, not the same masks), and matches its solo cell to
  float rounding (``tests/test_fused_generators.py``); ``--compile`` compiles a group of one only.
"""

from __future__ import annotations

import math

import torch

from bench.methods.dagan_nets import DAGANCritic, DAGANGenerator
from bench.methods.generative import COMMON_DEFAULTS, GenerativeOversampling
from bench.methods.generator_group import GeneratorGroup, Phase, per_member
from bench.methods.registry import register


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """u = real + alpha (fake - real), one alpha per pair (``alpha`` has the pairs' leading axes: (B,), or
    (S, B) in a fused group), detached and requiring its gradient."""
    a = alpha.view(*alpha.shape, *([1] * (real.dim() - alpha.dim())))
    return (real + a * (fake - real)).detach().requires_grad_(True)


def penalty_of(grad: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """weight x mean_i (||grad_i|| - 1)^2 over one member's batch of gradients (B, C, H, W)."""
    norm = torch.sqrt(grad.flatten(1).pow(2).sum(1) + 1e-12)
    return weight * (norm - 1.0).pow(2).mean()


def gradient_penalty(critic, x: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor,
                     weight: float = 10.0) -> torch.Tensor:
    """weight x mean_i (||grad_u critic(x_i, u)|| at u_i - 1)^2 with u_i = real_i + alpha_i (fake_i - real_i):
    the WGAN-GP penalty on the pair's second element, the source image x_i held fixed."""
    u = interpolate(real, fake, alpha)
    (grad,) = torch.autograd.grad(critic(x, u).sum(), u, create_graph=True)
    return penalty_of(grad, weight)


def critic_loss_fn(d_real: torch.Tensor, d_fake: torch.Tensor, penalty: torch.Tensor) -> torch.Tensor:
    """WGAN critic loss: mean D(x, G(x, z)) - mean D(x, x') + the gradient penalty."""
    return d_fake.mean() - d_real.mean() + penalty


def generator_loss_fn(d_fake: torch.Tensor) -> torch.Tensor:
    """WGAN generator loss: -mean D(x, G(x, z))."""
    return -d_fake.mean()


class PairSampler:
    """Draws within-class pairs (x, x'): a class uniformly among the present ones, then two of its images
    independently with replacement (official ``data.py``). All draws use the given torch.Generator."""

    def __init__(self, y: torch.Tensor, n_classes: int, generator: torch.Generator):
        counts = torch.bincount(y, minlength=n_classes)
        self.order = torch.argsort(y, stable=True)  # image indices grouped by class
        self.starts = torch.cumsum(counts, 0) - counts
        self.counts = counts
        self.present = torch.nonzero(counts > 0).flatten()
        self.generator = generator

    def __call__(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Indices of x, indices of x' and the pairs' classes."""
        g, device = self.generator, self.order.device
        classes = self.present[torch.randint(len(self.present), (batch,), device=device, generator=g)]
        n, start = self.counts[classes], self.starts[classes]
        pick = (torch.rand(2, batch, device=device, generator=g) * n).long().clamp_max(n - 1)
        return self.order[start + pick[0]], self.order[start + pick[1]], classes


def rotate_pairs(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """With probability 1/2 per pair, rotate both images by the same k x 90 degrees, k uniform in 0..3."""
    device = a.device
    k = torch.randint(4, (len(a),), device=device, generator=generator)
    k = torch.where(torch.rand(len(a), device=device, generator=generator) < 0.5, k, torch.zeros_like(k))
    # Every rotation of every pair, then a per-pair choice: no boolean indexing, so no host synchronisation.
    select = k.view(-1, 1, 1, 1)
    out = []
    for images in (a, b):
        rotated = images
        for turns in (1, 2, 3):
            rotated = torch.where(select == turns, torch.rot90(images, turns, dims=(2, 3)), rotated)
        out.append(rotated)
    return out[0], out[1]


@register
class DAGAN(GenerativeOversampling):
    name = "dagan"
    family = "generative oversampling"
    summary = ("one image-conditioned WGAN-GP generator (UResNet) trained on within-class pairs of every "
               "class; minority images are mapped through it to balance")
    citation = ("Antoniou, Storkey and Edwards, Data augmentation generative adversarial networks, "
                "arXiv:1711.04340, 2017")
    version = 2  # 2: the budget contract (G generator updates, 5 G critic updates)
    defaults = {**COMMON_DEFAULTS, "z_dim": 100, "lr": 1e-4, "beta1": 0.0, "beta2": 0.9, "n_critic": 5,
                "gp_weight": 10.0, "g_width": 24, "d_width": 24, "g_inner": 1, "d_inner": 1, "dropout": 0.5,
                "rotate": False}
    paper_schedule = {"batch_size": 32, "gan_epochs": 200}  # the official trainer's (see the docstring)

    fused_generators = True

    @classmethod
    def train_generators(cls, phases: list[Phase]) -> list[BaseException | None]:
        group = GeneratorGroup(phases)
        p, device, first = group.params, group.device, phases[0]
        shape = tuple(first.x.shape[1:])
        for phase in phases:  # the real images of every class, the sources that generate() maps through G
            phase.method.class_images = {c: phase.x[phase.y == c] for c in range(len(phase.counts))
                                         if phase.counts[c] > 0}
        G, D = group.build(lambda phase: [
            DAGANGenerator(shape, p["z_dim"], p["g_width"], p["g_inner"], p["dropout"]).to(device),
            DAGANCritic(shape, p["d_width"], p["d_inner"], p["dropout"]).to(device)])
        for phase, g, d in zip(phases, G.nets, D.nets, strict=True):
            phase.method.G, phase.method.D = g, d
        betas = (p["beta1"], p["beta2"])
        opt_g = torch.optim.Adam(G.parameters(), p["lr"], betas=betas)
        opt_d = torch.optim.Adam(D.parameters(), p["lr"], betas=betas)
        pairs = [PairSampler(phase.y, len(phase.counts), phase.method.rng) for phase in phases]
        batch = p["batch_size"]

        def draw():
            def one(i, phase):
                left, right, _ = pairs[i](batch)
                a, b = phase.x[left], phase.x[right]
                return torch.stack(rotate_pairs(a, b, phase.method.rng) if p["rotate"] else (a, b))
            drawn = group.draw(one)  # (S, 2, B, C, H, W)
            return drawn[:, 0], drawn[:, 1]

        def noise():
            return group.draw(lambda i, phase: torch.randn(batch, p["z_dim"], device=device,
                                                           generator=phase.method.rng))

        def penalty(grad):
            return penalty_of(grad, p["gp_weight"])

        def wasserstein(d_real, d_fake):
            return d_real.mean() - d_fake.mean()

        # --compile compiles G only: the critic's gradient penalty differentiates through its gradients
        # (double backward), which torch.compile does not support.
        G_run = group.compiled(G)
        with group.phase("generator", "critic"):
            for epoch in range(1, first.epochs + 1):
                running = torch.zeros(group.size, 4, device=device)
                for _ in range(first.steps):  # one generator update per step, after n_critic critic updates
                    for _ in range(p["n_critic"]):
                        group.step_begin()
                        a, b = draw()
                        with first.ctx.autocast():
                            with torch.no_grad():
                                fake = G_run(a, noise())
                            d_real, d_fake = D(torch.cat([a, a], 1), torch.cat([b, fake], 1)).float().chunk(2, 1)
                            alpha = group.draw(lambda i, phase: torch.rand(batch, device=device,
                                                                           generator=phase.method.rng))
                            u = interpolate(b, fake, alpha)
                            (grad,) = torch.autograd.grad(D(a, u).sum(), u, create_graph=True)
                            gp = per_member(penalty, grad).float()
                            d_loss = per_member(critic_loss_fn, d_real, d_fake, gp)
                        group.update("critic", opt_d, d_loss, 2 * batch)
                        running += torch.stack([d_loss, gp, per_member(wasserstein, d_real, d_fake),
                                                per_member(generator_loss_fn, d_fake)], dim=1).detach()
                    D.requires_grad_(False)  # the generator update needs no critic gradients
                    a, _ = draw()
                    with first.ctx.autocast():
                        g_loss = per_member(generator_loss_fn, D(a, G_run(a, noise())).float())
                    group.update("generator", opt_g, g_loss, batch)
                    D.requires_grad_(True)
                # one host sync per epoch
                means = (running / max(1, first.steps * p["n_critic"])).tolist()
                logs = [{"d_loss": d, "gp": gp, "wasserstein": w, "g_loss": g} for d, gp, w, g in means]
                if not group.end_epoch(epoch, logs):
                    break
        return group.done(G, D)

    @torch.no_grad()
    def generate(self, n: int, label: int, generator=None) -> torch.Tensor:
        if label not in self.class_images:
            raise ValueError(f"dagan has no training image of class {label} to generate from; "
                             f"it has {sorted(self.class_images)}")
        source = self.class_images[label]
        k = len(source)
        if n <= 0:
            return source[:0]
        index = torch.cat([torch.randperm(k, device=source.device, generator=generator)
                           for _ in range(math.ceil(n / k))])[:n]
        z = torch.randn(n, self.params["z_dim"], device=source.device, generator=generator)
        self.G.eval()
        images = self.G(source[index], z)
        self.G.train()
        return images
