"""``bagan``: BAGAN, the balancing GAN (Mariani, Scheidegger, Istrate, Bekas and Malossi, "BAGAN: Data
augmentation with balancing GAN", arXiv:1803.09655, 2018; official Keras code: github.com/IBM/BAGAN,
``balancing_gan.py`` and ``bagan_train.py``).

What is built, in the order of the official code:
1. Autoencoder pre-training on the whole imbalanced training set (every class, majority included): the
   encoder is the discriminator's convolutional trunk followed by a linear layer to a 100-dimensional
   latent code, the decoder is the generator; mean-squared reconstruction error, Adam.
2. Initialisation of the GAN from the autoencoder: the generator *is* the trained decoder (it starts with
   the decoder's weights), the discriminator's trunk takes the encoder's trunk weights, and its head
   (c + 1 logits, a softmax over the c classes plus a "fake" class) starts fresh. One Gaussian
   N(mu_c, Sigma_c) per class, with full covariance, is fitted on the encoder's codes of that class's
   training images (``np.mean`` and ``np.cov`` of the codes, as the official code does); class c's
   latent vectors are drawn from it.
3. Adversarial training. Each step takes a real batch (the images with their class labels) and
   ceil(batch / c) generated images whose classes are drawn from the discriminator's class ratio and
   whose target is the fake class c; the discriminator minimises the categorical cross-entropy over the
   concatenated batch. The generator then gets (ceil(batch / c) + batch) latent vectors, classes drawn
   from the generator's class ratio, and minimises the cross-entropy of the (not updated) discriminator's
   softmax against those classes: its samples from class c's Gaussian should be classified as class c.
   The fake class is never a target of the generator's loss.
   Class ratios (official ``_set_class_ratios``): "uniform" (the official default for both) gives every
   class 1/c; "rebalance" gives class c 2/c - p_c (p_c its share of the training set), negative values
   set to 0 and the rest renormalised.
4. Oversampling: class c's minority images come from G(z), z ~ N(mu_c, Sigma_c); the common classifier
   trains on the balanced set (``generative.py``).

The budget (the contract of ``budget.py``). ``gan_epochs`` (default: round(``epoch_scale`` x the cell's
epochs), as for every generative baseline) counts the *adversarial* epochs of ceil(N / batch) steps (N the
whole training set), one D and one G update each: the generator gets the contract's G updates, the
discriminator as many. The autoencoder (role "autoencoder" in the ledger) gets ``ae_epochs`` epochs of the
same length before them; its default, None, means "as many as the adversarial epochs", i.e. G updates, as
in the official code (``train`` sets ``autoenc_epochs = epochs``: autoencoder and GAN epochs one to one;
the official epoch count itself is a command-line value, not this contract's). The common classifier
then gets its U updates. ``losses.json`` has
``ae_loss`` (one value per autoencoder epoch) then ``d_loss`` and ``g_loss`` (one per adversarial epoch),
numbered consecutively (a divergence in the adversarial phase reads "diverged at epoch ae_epochs + k").

``schedule = "paper"`` (``paper_schedule``, stored as ``bagan[schedule=paper]``): the official code's
schedule, off the contract: batch 32 (``bagan_train.py``) and 150 adversarial epochs (the repository's
``run.sh`` passes ``-e 150``; the command line's own default is 3), with as many autoencoder epochs before
them (``autoenc_epochs = epochs``). On a binary MNIST task (N = 6,744) that is 31,650 updates each for the
autoencoder, D and G.

Defaults and where they come from:
- latent size 100 (``BalancingGAN.__init__`` ``latent_size=100``);
- Adam lr 5e-5, beta1 0.5 (``bagan_train.py`` ``--learning_rate`` default 0.00005, ``adam_beta_1 = 0.5``;
  beta2 is Keras's default 0.999), one fresh optimiser each for the autoencoder, D and G, as the code
  compiles three models;
- dropout 0.3 after every LeakyReLU of the encoder / discriminator trunk (``_build_common_encoder``);
- ``d_sampling`` and ``g_sampling`` "uniform" (``--sampling_mode_for_discriminator`` / ``_generator``
  defaults); ``ae_epochs`` = adversarial epochs (``autoenc_epochs = epochs``);
- ``cov_ridge`` 0.01: ours, see the deviations.

Deviations from the paper and the official code:
- Networks: the shared DCGAN networks of ``dcgan_nets.py`` (width 64) instead of BAGAN's, for every
  image size and for parity with ``gan`` and ``acgan``. The official generator (dense 1024, dense
  128 x r x r, upsampling + 5x5 convolutions of 256/128 channels, no normalisation) costs ~0.8 G
  multiply-adds per 28x28 image (about 30x the DCGAN generator), which no CPU budget of this suite affords;
  the DCGAN generator keeps its batch normalisation (BAGAN's has none) and samples in eval mode. The
  trunk is the official one in spirit (no normalisation, LeakyReLU, dropout 0.3) but with DCGAN's 4x4
  stride-2 convolutions (BAGAN: 3x3, alternating strides 2 and 1, 32 to 256 channels) and LeakyReLU
  slope 0.2 (Keras's default 0.3); every layer starts from DCGAN's N(0, 0.02) (Keras: Glorot).
- Batch 64 (the official ``bagan_train.py`` uses 32), the suite's common generative batch; the epoch is
  ceil(N / 64) steps over a seeded shuffle, the last batch possibly smaller (the official generator drops it).
- A class with fewer codes than latent dimensions + 1 has a singular covariance. The official code hands
  it to ``np.random.multivariate_normal`` as is (sampling inside the span of the codes, or NaN for a
  single image); we add a ridge of ``cov_ridge`` x the mean of the covariance's diagonal (the mean of the
  whole training set's code variances when the class has one image) to its diagonal, so every class
  Gaussian is a proper full-rank one. Classes with more codes keep the plain ``np.cov`` estimate. Latents
  are drawn as mu + U sqrt(L) e (eigendecomposition of Sigma in float64, e ~ N(0, I) from the cell's
  seeded generator), the same distribution as numpy's SVD-based sampler.
- A class absent from the training set gets no Gaussian and a ratio of 0 (the other ratios are
  renormalised); the official code assumes every class present.
- No per-epoch evaluation on the test set (the official code only logs it; training does not use it).
- Fused groups (``--fuse``; README, "Fused cells"): the members' autoencoders, then their G and D, train as one
  stacked network each (``stacked.py``); the class Gaussians are each member's own. Each member draws all its
  randomness from its own seed as its solo cell does (on a GPU its dropout masks are of the same law, not the
  same masks), and matches its solo cell to float rounding (``tests/test_fused_generators.py``); ``--compile``
  compiles a group of one only.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.dcgan_nets import DCGANDiscriminator, DCGANGenerator, DCGANTrunk
from bench.methods.generative import COMMON_DEFAULTS, GenerativeOversampling
from bench.methods.generator_group import GeneratorGroup, Phase, per_member
from bench.methods.registry import register

SAMPLING_MODES = ("uniform", "rebalance")


class Encoder(nn.Module):
    """The autoencoder's encoder: the discriminator's trunk, then a linear map to the latent code."""

    def __init__(self, image_shape, latent_dim: int, width: int, dropout: float):
        super().__init__()
        self.trunk = DCGANTrunk(image_shape, width, norm="none", dropout=dropout)
        self.fc = nn.Linear(self.trunk.out_features, latent_dim)
        nn.init.normal_(self.fc.weight, 0.0, 0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x))


def class_ratios(counts, mode: str) -> np.ndarray:
    """The probability of each class in a generated batch (official ``_set_class_ratios``)."""
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}; got {mode!r}")
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    k = present.sum()
    if mode == "uniform":
        ratios = present / k
    else:
        ratios = np.where(present, 2.0 / k - counts / counts.sum(), 0.0)
        ratios = np.clip(ratios, 0.0, None)
        if ratios.sum() == 0:  # only possible with a single present class
            ratios = present.astype(np.float64)
        ratios = ratios / ratios.sum()
    return ratios


def sample_labels(ratios: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` class labels drawn from ``ratios`` (over the c real classes only: never the fake class c)."""
    return torch.multinomial(ratios, n, replacement=True, generator=generator)


def fit_class_gaussians(codes: np.ndarray, labels: np.ndarray, n_classes: int, ridge: float):
    """Per-class mean (c, d) and covariance (c, d, d) of the codes, float64; NaN rows for absent classes.

    A class with at most d codes (a singular ``np.cov``) gets ``ridge`` x mean(diag) added to its diagonal;
    mean(diag) is the pooled code variance when the class has a single code."""
    codes = np.asarray(codes, dtype=np.float64)
    d = codes.shape[1]
    means = np.full((n_classes, d), np.nan)
    covs = np.full((n_classes, d, d), np.nan)
    pooled = float(np.mean(np.var(codes, axis=0, ddof=1))) if len(codes) > 1 else 1.0
    for c in range(n_classes):
        members = codes[labels == c]
        if len(members) == 0:
            continue
        means[c] = members.mean(axis=0)
        cov = np.cov(members.T) if len(members) > 1 else np.zeros((d, d))
        if len(members) <= d:
            scale = float(np.mean(np.diag(cov)))
            cov = cov + ridge * (scale if scale > 0 else pooled) * np.eye(d)
        covs[c] = cov
    return means, covs


def covariance_factor(cov: np.ndarray) -> np.ndarray:
    """A matrix A with A A^T = cov (cov symmetric PSD): U sqrt(max(L, 0)), float64."""
    values, vectors = np.linalg.eigh(cov)
    return vectors * np.sqrt(np.clip(values, 0.0, None))


def d_loss_fn(logits_real: torch.Tensor, labels_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss: cross-entropy of the (c + 1)-way softmax on the concatenated batch, real
    images against their class, generated ones against the fake class c (the last logit)."""
    fake_class = logits_real.shape[1] - 1
    targets = torch.cat([labels_real, torch.full((len(logits_fake),), fake_class, device=labels_real.device,
                                                 dtype=labels_real.dtype)])
    return F.cross_entropy(torch.cat([logits_real, logits_fake]), targets)


def g_loss_fn(logits_fake: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The generator's loss: cross-entropy of D's (c + 1)-way softmax against the sampled classes."""
    return F.cross_entropy(logits_fake, labels)


class AutoencoderFirst:
    """The generator phase of an autoencoder-initialised GAN (BAGAN, BAGAN-GP): ``ae_epochs`` autoencoder
    epochs (None: as many as the adversarial ones), then the contract's adversarial epochs, each of ceil(N /
    batch) steps over a seeded shuffle."""

    def adversarial_epochs(self, epochs: int, steps: int) -> int:
        return super().gan_epochs(epochs, steps)

    def autoencoder_epochs(self, epochs: int, steps: int) -> int:
        ae = self.params["ae_epochs"]
        return self.adversarial_epochs(epochs, steps) if ae is None else int(ae)

    def gan_epochs(self, epochs: int, steps: int) -> int:
        """The whole generator phase, as the base class counts it: autoencoder + adversarial epochs."""
        return self.autoencoder_epochs(epochs, steps) + self.adversarial_epochs(epochs, steps)

    def _batches(self, n: int, steps: int, device):
        batch = self.params["batch_size"]
        order = torch.randperm(n, device=device, generator=self.rng)
        for step in range(steps):
            yield order[step * batch:(step + 1) * batch]

    @staticmethod
    def run_autoencoders(group, parameters, reconstruction_loss, epochs: int) -> bool:
        """``epochs`` epochs of ``steps`` autoencoder updates of every member of ``group`` (one Adam over the
        stacked ``parameters``, role "autoencoder"), on ``reconstruction_loss(indices)`` -> (S,): each member's
        loss on its batch of training indices; one ``ae_loss`` per epoch. False when every member failed."""
        first = group.phases[0]
        opt = first.method._adam(parameters)
        with group.phase("autoencoder"):
            for epoch in range(1, epochs + 1):
                running = torch.zeros(group.size, device=group.device)
                for indices in group.batches(lambda ph: ph.method._batches(len(ph.x), first.steps, group.device)):
                    group.step_begin()
                    with first.ctx.autocast():
                        loss = reconstruction_loss(indices).float()
                    group.update("autoencoder", opt, loss, len(indices[0]))
                    running += loss.detach()
                means = (running / max(1, first.steps)).tolist()  # one host sync per epoch
                if not group.end_epoch(epoch, [{"ae_loss": mean} for mean in means]):
                    return False
        return True


@register
class BAGAN(AutoencoderFirst, GenerativeOversampling):
    name = "bagan"
    family = "generative oversampling"
    summary = ("BAGAN: autoencoder-initialised GAN with per-class Gaussian latents and a c+1-class "
               "discriminator; its class-conditional samples balance")
    citation = ("Mariani, Scheidegger, Istrate, Bekas and Malossi, BAGAN: Data augmentation with balancing "
                "GAN, arXiv:1803.09655, 2018")
    defaults = {**COMMON_DEFAULTS, "ae_epochs": None, "latent_dim": 100, "lr": 5e-5, "beta1": 0.5,
                "width": 64, "dropout": 0.3, "d_sampling": "uniform", "g_sampling": "uniform",
                "cov_ridge": 0.01}
    paper_schedule = {"batch_size": 32, "gan_epochs": 150}  # the official run.sh's (see the docstring)

    def __init__(self, **params):
        super().__init__(**params)
        for key in ("d_sampling", "g_sampling"):
            if self.params[key] not in SAMPLING_MODES:
                raise ValueError(f"{key} must be one of {SAMPLING_MODES}; got {self.params[key]!r}")

    # -- the three phases ---------------------------------------------------------------------------------
    def build(self, image_shape, n_classes: int, device: torch.device) -> None:
        p = self.params
        self.encoder = Encoder(image_shape, p["latent_dim"], p["width"], p["dropout"]).to(device)
        self.decoder = DCGANGenerator(image_shape, p["latent_dim"], p["width"]).to(device)
        self.D = DCGANDiscriminator(image_shape, n_classes + 1, p["width"], norm="none",
                                    dropout=p["dropout"]).to(device)

    def _adam(self, params):
        return torch.optim.Adam(params, self.params["lr"], betas=(self.params["beta1"], 0.999))

    @torch.no_grad()
    def init_gan(self, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        """G from the decoder, D's trunk from the encoder's, and the class Gaussians from the codes."""
        self.G = copy.deepcopy(self.decoder)  # the official generator *is* the trained decoder
        self.D.trunk.load_state_dict(self.encoder.trunk.state_dict())
        self.encoder.eval()  # codes as Keras ``predict`` computes them: no dropout
        with self.autocast():
            codes = torch.cat([self.encoder(x[i:i + 1024]).float() for i in range(0, len(x), 1024)])
        self.encoder.train()
        means, covs = fit_class_gaussians(codes.double().cpu().numpy(), y.cpu().numpy(), n_classes,
                                          self.params["cov_ridge"])
        self.means, self.covariances = means, covs
        factors = np.stack([covariance_factor(c) if np.isfinite(c).all() else np.zeros_like(c) for c in covs])
        self._mu = torch.as_tensor(np.nan_to_num(means), dtype=torch.float32, device=x.device)
        self._factor = torch.as_tensor(factors, dtype=torch.float32, device=x.device)

    def latents(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(mu_c, Sigma_c) for each label c."""
        eps = torch.randn(len(labels), self._mu.shape[1], device=self._mu.device, generator=generator)
        return self._mu[labels] + torch.einsum("nij,nj->ni", self._factor[labels], eps)

    fused_generators = True

    @classmethod
    def train_generators(cls, phases: list[Phase]) -> list[BaseException | None]:
        group = GeneratorGroup(phases)
        p, device, first = group.params, group.device, phases[0]
        n_classes, shape = len(first.counts), first.x.shape[1:]
        ae_epochs = first.method.autoencoder_epochs(first.ctx.epochs, first.steps)

        def networks(phase):
            phase.method.build(shape, n_classes, device)
            return [phase.method.encoder, phase.method.decoder, phase.method.D]

        encoders, decoders, discriminators = group.networks(networks)
        encoder, decoder = group.stack(encoders), group.stack(decoders)
        encoder.train()
        decoder.train()
        run_encoder, run_decoder = group.compiled(encoder), group.compiled(decoder)  # --compile (a group of one)

        def reconstruction(indices):
            batch = group.take("x", indices)
            return per_member(F.mse_loss, run_decoder(run_encoder(batch)).float(), batch)

        trained = cls.run_autoencoders(group, [*encoder.parameters(), *decoder.parameters()], reconstruction,
                                       ae_epochs)
        encoder.write_back()
        decoder.write_back()
        if not trained:
            return group.failed
        for phase in phases:  # a member that failed too (its NaN codes give zero Gaussians): it trains on, alone
            phase.method.init_gan(phase.x, phase.y, n_classes)
            phase.method.present = [c for c in range(n_classes) if phase.counts[c] > 0]
        ratios = {key: torch.as_tensor(class_ratios(first.counts, p[key]), dtype=torch.float32, device=device)
                  for key in ("d_sampling", "g_sampling")}
        G, D = group.stack([phase.method.G for phase in phases]), group.stack(discriminators)
        opt_d, opt_g = first.method._adam(D.parameters()), first.method._adam(G.parameters())
        G.train()
        D.train()
        run_G, run_D = group.compiled(G), group.compiled(D)  # --compile (a group of one)

        def latents(labels):  # each member's latents for its labels (S, n), from its own generator
            return torch.stack([phase.method.latents(own, phase.method.rng)
                                for phase, own in zip(phases, labels, strict=True)])

        with group.phase("generator", "discriminator"):
            for epoch in range(ae_epochs + 1, first.epochs + 1):
                running = torch.zeros(group.size, 2, device=device)
                for indices in group.batches(lambda ph: ph.method._batches(len(ph.x), first.steps, device)):
                    group.step_begin()
                    n_real = len(indices[0])
                    n_fake = math.ceil(n_real / n_classes)
                    real, real_labels = group.take("x", indices), group.take("y", indices)
                    # discriminator: real images as their class, generated ones as the fake class
                    with first.ctx.autocast():
                        with torch.no_grad():
                            fake = run_G(latents(group.draw(lambda i, ph, k=n_fake: sample_labels(
                                ratios["d_sampling"], k, ph.method.rng))))
                        logits = run_D(torch.cat([real, fake.to(real.dtype)], 1)).float()
                        d_loss = per_member(d_loss_fn, logits[:, :n_real], real_labels, logits[:, n_real:])
                    group.update("discriminator", opt_d, d_loss, n_real + n_fake)
                    # generator: its class-c samples should be classified as class c by the frozen D
                    labels = group.draw(lambda i, ph, k=n_fake + n_real: sample_labels(ratios["g_sampling"], k,
                                                                                       ph.method.rng))
                    D.requires_grad_(False)
                    with first.ctx.autocast():
                        g_loss = per_member(g_loss_fn, run_D(run_G(latents(labels))).float(), labels)
                    group.update("generator", opt_g, g_loss, labels.shape[1])
                    D.requires_grad_(True)
                    running += torch.stack([d_loss.detach(), g_loss.detach()], dim=1)
                means = (running / max(1, first.steps)).tolist()  # one host sync per epoch
                if not group.end_epoch(epoch, [{"d_loss": d, "g_loss": g} for d, g in means]):
                    break
        return group.done(G, D)

    @torch.no_grad()
    def generate(self, n: int, label: int, generator=None) -> torch.Tensor:
        if label not in self.present:
            raise ValueError(f"bagan has no latent Gaussian for class {label}, absent from the training set")
        self.G.eval()
        labels = torch.full((n,), label, dtype=torch.long, device=self._mu.device)
        images = self.G(self.latents(labels, generator))
        self.G.train()
        return images
