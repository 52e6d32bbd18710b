"""``gan``: oversampling each minority class with an unconditional GAN trained on that class alone.

Goodfellow et al., "Generative adversarial nets", NeurIPS 2014, with the DCGAN architecture and training
recipe of Radford, Metz and Chintala, ICLR 2016 (networks in ``dcgan_nets.py``).

What is built: for every class that the balancing rule tops up (``generative.py``: every class smaller
than the largest one), a DCGAN generator and discriminator are trained on that class's training images
only; the generator's samples then fill the class up to the majority's size, and the common classifier
trains on the balanced set.

Defaults and where they come from:
- z ~ N(0, I) of 100 dimensions, Adam lr 2e-4, betas (0.5, 0.999), batch-normalised G and D, LeakyReLU
  0.2 in D, N(0, 0.02) initialisation: DCGAN section 4.
- The non-saturating generator loss -log D(G(z)) (Goodfellow et al. section 3), as binary cross-entropy
  on D's logits; one D update then one G update per step.
Deviations:
- Batch 64 (DCGAN used 128): the minority class of a binary MNIST task at ratio 0.02 has ~120 images.
- Real batches are drawn with replacement from the class's images, and an epoch is ceil(N / batch) steps
  with N the whole training set (``generative.py``), so a class of 120 images still gets a trainable
  number of updates; each minority class's GAN gets that many.
- Width 64 at the first D layer (``dcgan_nets.py`` lists its own deviations from DCGAN).
- Fused groups (``--fuse``; README, "Fused cells"): the members' G and D of every class train as one stacked
  network each (``stacked.py``). Each member draws all its randomness from its own seed as its solo cell does
  (on a GPU its dropout masks are of the same law, not the same masks), and matches its solo cell to float
  rounding (``tests/test_fused_generators.py``); ``--compile`` compiles a group of one only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.methods.dcgan_nets import DCGANDiscriminator, DCGANGenerator
from bench.methods.generative import COMMON_DEFAULTS, GenerativeOversampling, top_up_counts
from bench.methods.generator_group import GeneratorGroup, Phase, per_member
from bench.methods.registry import register


def d_loss_fn(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss, -log D(x) - log(1 - D(G(z))), from its logits."""
    return (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
            + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))


def g_loss_fn(d_fake: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss, -log D(G(z)), from D's logits on generated images."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


@register
class GAN(GenerativeOversampling):
    name = "gan"
    family = "generative oversampling"
    summary = "one unconditional DCGAN per minority class, trained on that class alone; its samples balance"
    citation = ("Goodfellow et al., Generative adversarial nets, NeurIPS 2014; Radford et al., DCGAN, "
                "ICLR 2016")
    defaults = {**COMMON_DEFAULTS, "z_dim": 100, "lr": 2e-4, "beta1": 0.5, "width": 64}

    fused_generators = True

    @classmethod
    def train_generators(cls, phases: list[Phase]) -> list[BaseException | None]:
        group = GeneratorGroup(phases)
        p, device, first = group.params, group.device, phases[0]
        classes = [c for c, n in enumerate(top_up_counts(first.counts, p["phi"])) if n > 0]
        shape = first.x.shape[1:]

        def networks(phase):  # G then D of each class, in the solo cell's order
            return [net.to(device) for _ in classes for net in (DCGANGenerator(shape, p["z_dim"], p["width"]),
                                                                DCGANDiscriminator(shape, 1, p["width"]))]

        built = group.build(networks)
        betas, batch = (p["beta1"], 0.999), p["batch_size"]
        nets = []
        for phase in phases:
            phase.method.generators = {}
        for k, c in enumerate(classes):
            G, D = built[2 * k], built[2 * k + 1]
            for phase, own in zip(phases, G.nets, strict=True):
                phase.method.generators[c] = own
            members = [torch.nonzero(phase.y == c).flatten() for phase in phases]
            nets.append((group.compiled(G), group.compiled(D), torch.optim.Adam(G.parameters(), p["lr"], betas=betas),
                         torch.optim.Adam(D.parameters(), p["lr"], betas=betas), members))
        with group.phase("generator", "discriminator"):
            for epoch in range(1, first.epochs + 1):
                running = torch.zeros(group.size, 2, device=device)
                for G, D, opt_g, opt_d, members in nets:
                    for _ in range(first.steps):
                        group.step_begin()
                        real = group.draw(lambda i, ph, m=members: ph.x[m[i][torch.randint(
                            len(m[i]), (batch,), device=device, generator=ph.method.rng)]])
                        z = group.draw(lambda i, ph: torch.randn(batch, p["z_dim"], device=device,
                                                                 generator=ph.method.rng))
                        with first.ctx.autocast():
                            fake = G(z)
                            d_loss = per_member(d_loss_fn, D(real), D(fake.detach())).float()
                        group.update("discriminator", opt_d, d_loss, 2 * batch)
                        with first.ctx.autocast():
                            g_loss = per_member(g_loss_fn, D(fake)).float()
                        group.update("generator", opt_g, g_loss, batch)
                        running += torch.stack([d_loss.detach(), g_loss.detach()], dim=1)
                means = (running / max(1, first.steps * len(nets))).tolist()  # one host sync per epoch
                if not group.end_epoch(epoch, [{"d_loss": d, "g_loss": g} for d, g in means]):
                    break
        return group.done(*built)

    @torch.no_grad()
    def generate(self, n: int, label: int, generator=None) -> torch.Tensor:
        if label not in self.generators:
            raise ValueError(f"gan trained no generator for class {label}; it has {sorted(self.generators)}")
        G = self.generators[label]
        G.eval()
        z = torch.randn(n, self.params["z_dim"], device=self.device, generator=generator)
        images = G(z)
        G.train()
        return images
