"""``bagan-gp``: BAGAN with a supervised autoencoder and a gradient penalty.

Paper: G. Huang and A. H. Jafari, "Enhanced balancing GAN: minority-class image generation", Neural Computing
and Applications 35, 2023 (online 2021; doi:10.1007/s00521-021-06163-8); official Keras code
github.com/GH920/improved-bagan-gp (``codes/improved_bagan_gp.py``, read for the details below, not copied).
It reuses ``bagan``'s machinery (the autoencoder-then-GAN epoch split, the encoder, the DCGAN blocks).

1. **Supervised autoencoder** on the whole imbalanced training set: encoder (the trunk, a linear layer to the
   latent code, LeakyReLU 0.2, as the code's), then the *labelled latent* z * e_y (elementwise product with a
   learned class embedding e_y of the same size), then the decoder; mean absolute reconstruction error (the
   code's "mae"), Adam. The embedding is what disperses the classes in the latent space (the paper's point
   against BAGAN's class Gaussians).
2. **Generator = embedding + decoder**, both starting from the trained autoencoder; its input is z ~ N(0, I)
   times the class's embedding (the code's ``generator_label``).
3. **Conditional discriminator** (the code's ``discriminator_cwgan``, the one its training uses): the trunk's
   features times a projection of a class embedding (Embedding(c, 512) -> linear -> LeakyReLU), a linear
   layer of 512, one logit. It starts fresh: the code builds, but does not use, an encoder-initialised one.
4. **Adversarial training**, per real batch: ``n_critic`` = 5 discriminator steps, each on sigmoid
   cross-entropy terms real-with-its-label -> 1, generated-with-its-label -> 0, real-with-a-random-label -> 0
   (labels uniform over the classes present; a random label may equal the true one, as in the code), plus
   ``gp_weight`` = 10 times the gradient penalty (||grad_x D(x_hat, y)|| - 1)^2 at x_hat = x + alpha (x_gen -
   x) with the real labels; then one generator step, sigmoid cross-entropy of its images, uniform labels, -> 1.
   Adam lr 2e-4, betas (0.5, 0.9) for all three networks (the code's).

Readings and deviations:
- alpha ~ U(0, 1) per image, as WGAN-GP (Gulrajani et al. 2017) defines the penalty the paper adopts; the code
  draws alpha from N(0, 1), which we read as a slip.
- Networks: the suite's DCGAN blocks (``dcgan_nets.py``, width 64, any square size; the trunk has no
  normalisation, as the code's) instead of the code's fixed 64x64 networks (it resizes every image to 64x64; we
  keep the task's size). Compared with the code (``codes/improved_bagan_gp.py`` at commit 57a2e3ac):
  - channels: ours double at each 2x step from 64: 64-128-256 in the encoder and discriminator at 32x32
    (decoder 256-128-64), 64-128 at 28x28, 64-128-256-512 at 64x64; the code's are 64-128-128-256 (decoder
    256-128-128-64) at its 64x64.
  - the decoder: ours is a bias-free linear layer, batch normalisation, ReLU, then bias-free 4x4 transposed
    convolutions each followed by batch normalisation and ReLU (a bias on the output layer only), tanh; the
    code's first dense layer has a bias and is followed by LeakyReLU 0.2 without batch normalisation, and all
    its transposed convolutions have biases (Keras' default) and LeakyReLU 0.2 after their batch normalisation.
  - initialisation: our class embeddings (the generator's e_y and the discriminator's label embedding) keep
    PyTorch's N(0, 1); the code's keep Keras' default U(-0.05, 0.05) (standard deviation 0.029), so z * e_y
    starts about 35 times larger here. Our linear layers are N(0, 0.02) (DCGAN's), the code's dense layers
    Keras' default Glorot-uniform; convolutions are N(0, 0.02) in both.
- Data: we train the autoencoder and the GAN on the whole imbalanced training set; the code first splits it
  70 / 30 (``train_test_split(test_size=0.3, random_state=42)``), trains both on the 70 % and uses the 30 % only
  as the autoencoder's validation data and for its figures.
- Budget (the contract of ``budget.py``): G updates for the generator, ``n_critic`` x G for the discriminator
  (role "critic"), and the autoencoder ``ae_epochs`` epochs of the same length (None: as many as the
  adversarial epochs, as ``bagan``). ``schedule = "paper"``: the code's batch 128, 30 autoencoder epochs and
  100 adversarial epochs (50 learning steps of 2 epochs).
- Generation samples in evaluation mode (batch statistics from training), as ``bagan``.
- ``--compile`` compiles the generator and the encoder only (the penalty's double backward, as ``dagan``).
- Fused groups (``--fuse``; README, "Fused cells"): the members' autoencoders, then their G and critic (the
  penalty per member), train as one stacked network each (``stacked.py``). Each member draws all its randomness
  from its own seed as its solo cell does (on a GPU its dropout masks are of the same law, not the same masks),
  and matches its solo cell to float rounding (``tests/test_fused_generators.py``); ``--compile`` compiles a
  group of one only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.bagan import AutoencoderFirst, Encoder
from bench.methods.dcgan_nets import DCGANGenerator, DCGANTrunk, dcgan_init
from bench.methods.generative import COMMON_DEFAULTS, GenerativeOversampling
from bench.methods.generator_group import GeneratorGroup, Phase, per_member
from bench.methods.registry import register


class LabeledGenerator(nn.Module):
    """z * e_y -> the decoder: the autoencoder's second half and the generator."""

    def __init__(self, image_shape, n_classes: int, latent_dim: int, width: int):
        super().__init__()
        self.embedding = nn.Embedding(n_classes, latent_dim)
        self.decoder = DCGANGenerator(image_shape, latent_dim, width)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.decoder(z * self.embedding(labels))


class ConditionalDiscriminator(nn.Module):
    def __init__(self, image_shape, n_classes: int, width: int, label_dim: int = 512, hidden: int = 512):
        super().__init__()
        self.trunk = DCGANTrunk(image_shape, width, norm="none")
        self.label = nn.Sequential(nn.Embedding(n_classes, label_dim), nn.Linear(label_dim, self.trunk.out_features),
                                   nn.LeakyReLU(0.2))
        self.head = nn.Sequential(nn.Linear(self.trunk.out_features, hidden), nn.Linear(hidden, 1))
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x) * self.label(labels)).squeeze(1)


def interpolate(real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """x_hat = real + alpha (fake - real), requiring its gradient (``alpha`` broadcasts: (B, 1, 1, 1), or
    (S, B, 1, 1, 1) in a fused group)."""
    return (real + alpha * (fake - real)).requires_grad_(True)


def penalty_of(grad: torch.Tensor) -> torch.Tensor:
    """Mean of (||grad_i||_2 - 1)^2 over one member's batch of gradients (B, C, H, W)."""
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()


def gradient_penalty(D, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """Mean of (||grad D(x_hat, y)||_2 - 1)^2 at x_hat = real + alpha (fake - real), alpha ~ U(0, 1) per image."""
    alpha = torch.rand(len(real), 1, 1, 1, device=real.device, generator=generator)
    x_hat = interpolate(real, fake, alpha)
    (grad,) = torch.autograd.grad(D(x_hat, labels).sum(), x_hat, create_graph=True)
    return penalty_of(grad)


def critic_cost(real_logits: torch.Tensor, fake_logits: torch.Tensor, wrong_logits: torch.Tensor) -> torch.Tensor:
    """The conditional critic's cross-entropies: real images with their labels as real, generated ones and real
    ones with wrong labels as fake."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, 0 * fake_logits)
            + F.binary_cross_entropy_with_logits(wrong_logits, 0 * wrong_logits))


def generator_cost(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


@register
class BAGANGP(AutoencoderFirst, GenerativeOversampling):
    name = "bagan-gp"
    family = "generative oversampling"
    summary = ("BAGAN-GP: supervised autoencoder (labelled latents), conditional discriminator with a "
               "gradient penalty, 5 D steps per G step")
    citation = "Huang and Jafari, Enhanced balancing GAN: minority-class image generation, Neural Comput. Appl. 2021"
    defaults = {**COMMON_DEFAULTS, "ae_epochs": None, "latent_dim": 128, "lr": 2e-4, "beta1": 0.5, "beta2": 0.9,
                "width": 64, "n_critic": 5, "gp_weight": 10.0}
    paper_schedule = {"batch_size": 128, "ae_epochs": 30, "gan_epochs": 100}  # improved_bagan_gp.py

    def _adam(self, params):
        return torch.optim.Adam(params, self.params["lr"], betas=(self.params["beta1"], self.params["beta2"]))

    def _uniform_labels(self, n: int) -> torch.Tensor:
        return self._present[torch.randint(len(self._present), (n,), device=self._present.device, generator=self.rng)]

    fused_generators = True

    @classmethod
    def train_generators(cls, phases: list[Phase]) -> list[BaseException | None]:
        group = GeneratorGroup(phases)
        p, device, first = group.params, group.device, phases[0]
        n_classes, shape = len(first.counts), first.x.shape[1:]
        for phase in phases:
            phase.method._present = torch.as_tensor(np.flatnonzero(phase.counts), device=device)

        # D is built after the autoencoder phase in the solo cell's order of draws: that phase draws nothing
        # from the global generator (no dropout), so building it here gives each member the same weights.
        def networks(phase):
            method = phase.method
            method.encoder = nn.Sequential(Encoder(shape, p["latent_dim"], p["width"], 0.0), nn.LeakyReLU(0.2)).to(device)
            method.G = LabeledGenerator(shape, n_classes, p["latent_dim"], p["width"]).to(device)
            method.D = ConditionalDiscriminator(shape, n_classes, p["width"]).to(device)
            return [method.encoder, method.G, method.D]

        encoder, G, D = group.build(networks)
        ae_epochs = first.method.autoencoder_epochs(first.ctx.epochs, first.steps)
        run_encoder, run_G = group.compiled(encoder), group.compiled(G)  # --compile (a group of one)

        def reconstruction(indices):
            batch = group.take("x", indices)
            return per_member(F.l1_loss, run_G(run_encoder(batch), group.take("y", indices)).float(), batch)

        # the generator is the trained decoder and embedding, now trained adversarially
        if not cls.run_autoencoders(group, [*encoder.parameters(), *G.parameters()], reconstruction, ae_epochs):
            return group.done(encoder, G)
        opt_d, opt_g = first.method._adam(D.parameters()), first.method._adam(G.parameters())
        # --compile compiles G only: the penalty differentiates through D's gradients (double backward), which
        # torch.compile does not support (as dagan's critic)

        def uniform_labels(n):
            return group.draw(lambda i, phase: phase.method._uniform_labels(n))

        with group.phase("generator", "critic"):
            for epoch in range(ae_epochs + 1, first.epochs + 1):
                running = torch.zeros(group.size, 2, device=device)
                for indices in group.batches(lambda ph: ph.method._batches(len(ph.x), first.steps, device)):
                    real, labels, n = group.take("x", indices), group.take("y", indices), len(indices[0])
                    for _ in range(p["n_critic"]):
                        group.step_begin()
                        z = group.draw(lambda i, ph, k=n: torch.randn(k, p["latent_dim"], device=device,
                                                                      generator=ph.method.rng))
                        fake_labels, wrong = uniform_labels(n), uniform_labels(n)
                        with first.ctx.autocast():
                            with torch.no_grad():
                                fake = run_G(z, fake_labels).to(real.dtype)
                            real_logits, fake_logits, wrong_logits = D(real, labels), D(fake, fake_labels), D(real, wrong)
                            d_cost = per_member(critic_cost, real_logits.float(), fake_logits.float(),
                                                wrong_logits.float())
                        alpha = group.draw(lambda i, ph, k=n: torch.rand(k, 1, 1, 1, device=device,
                                                                         generator=ph.method.rng))
                        x_hat = interpolate(real, fake, alpha)
                        (grad,) = torch.autograd.grad(D(x_hat, labels).sum(), x_hat, create_graph=True)
                        d_loss = d_cost + p["gp_weight"] * per_member(penalty_of, grad)
                        group.update("critic", opt_d, d_loss, 3 * n)
                    z = group.draw(lambda i, ph, k=n: torch.randn(k, p["latent_dim"], device=device,
                                                                  generator=ph.method.rng))
                    fake_labels = uniform_labels(n)
                    D.requires_grad_(False)
                    with first.ctx.autocast():
                        g_loss = per_member(generator_cost, D(run_G(z, fake_labels), fake_labels).float())
                    group.update("generator", opt_g, g_loss, n)
                    D.requires_grad_(True)
                    running += torch.stack([d_loss.detach(), g_loss.detach()], dim=1)
                means = (running / max(1, first.steps)).tolist()  # one host sync per epoch
                if not group.end_epoch(epoch, [{"d_loss": d, "g_loss": g} for d, g in means]):
                    break
        return group.done(encoder, G, D)

    @torch.no_grad()
    def generate(self, n: int, label: int, generator=None) -> torch.Tensor:
        if label not in self._present.tolist():
            raise ValueError(f"bagan-gp has no class {label}: absent from the training set")
        self.G.eval()
        z = torch.randn(n, self.params["latent_dim"], device=self._present.device, generator=generator)
        images = self.G(z, torch.full((n,), label, dtype=torch.long, device=self._present.device))
        self.G.train()
        return images
