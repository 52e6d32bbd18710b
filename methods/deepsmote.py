"""``deepsmote``: an encoder/decoder trained for reconstruction, SMOTE in its latent space, decoded images.

Paper: D. Dablain, B. Krawczyk and N. V. Chawla, "DeepSMOTE: Fusing deep learning and SMOTE for imbalanced
data", IEEE TNNLS 34(9), 2023 (arXiv:2105.02340); official code github.com/dd1github/DeepSMOTE
(``DeepSMOTE_MNIST.py`` and ``GenerateSamples.py``, read for the details below, not copied).

1. **Training** (the generator phase of ``generative.py``): an encoder (image -> ``latent_dim`` values) and a
   decoder (back to an image in [-1, 1]) trained together with Adam (lr 2e-4, the code's betas 0.9/0.999) on
   the whole imbalanced training set. Each step's loss is the sum of two mean squared errors:
   - the reconstruction of the batch, MSE(decoder(encoder(x)), x);
   - the paper's penalty term: one class is drawn uniformly among the classes present, up to 100 of its
     images without replacement; they are encoded WITHOUT gradient (the code detaches the latents), and their
     decoding is compared with the images, MSE(decoder(z), x_class). The code shifts the latents and the images
     by the same cyclic permutation before comparing them, which leaves every latent paired with its own
     image; we compute the same loss without the shift (a no-op). The encoding runs in training mode, so the
     class sample also updates the encoder's batch-norm statistics, as in the code.
2. **Generation**: every training image is encoded (evaluation mode); a class topped up with n images gets n
   latents from SMOTE on that class's latents (imbalanced-learn's ``SMOTE``, k = 5 nearest neighbours within
   the class: a latent plus a uniform fraction of the way to one of its neighbours, the code's ``G_SM``),
   decoded. Top-up and classifier follow ``generative.py`` (phi = 1: every class to n_max; the common classifier
   on real + generated images under the budget contract).

Networks: the suite's DCGAN blocks (``dcgan_nets.py``), sized for any square image, in the style of the official
networks (4x4 convolutions with LeakyReLU 0.2 and batch normalisation on all but the first, a linear layer to
the latent; the decoder a linear layer then 4x4 transposed convolutions with batch normalisation and ReLU, tanh
out). Deviations:
- **Not the code's MNIST networks.** Counted for MNIST (1x28x28) with the defaults (``latent_dim`` 300, ``width``
  64); the code's counts measured by instantiating its ``Encoder`` and ``Decoder`` classes (``DeepSMOTE_MNIST.py``
  at commit 13b0063) outside the suite:
  - encoder: the code's is four bias-free 4x4 stride-2 convolutions, 1 -> 64 -> 128 -> 256 -> 512 channels
    (28 -> 14 -> 7 -> 3 -> 1 pixels) down to 512x1x1, then Linear(512, 300): 2,909,228 parameters. Ours is two,
    1 -> 64 -> 128 (28 -> 14 -> 7; a bias on the first), then Linear(6,272, 300): 2,014,316 parameters.
  - decoder: the code's is Linear(300, 512 x 7 x 7) with a bias and ReLU (no batch normalisation), then 4x4
    transposed convolutions with biases of stride 1, 1 and 2, 512 -> 256 -> 128 -> 1 channels (7 -> 10 -> 13 ->
    28 pixels), batch normalisation and ReLU between, tanh: 10,176,129 parameters. Ours is Linear(300, 128 x 7
    x 7) without bias, batch normalisation and ReLU, then two 4x4 stride-2 transposed convolutions 128 -> 64 -> 1
    (7 -> 14 -> 28; a bias on the last only), tanh: 2,014,081 parameters.
- **Initialisation**: ours is DCGAN's (weights N(0, 0.02), batch-norm scales N(1, 0.02)); the code calls no
  initialiser, so its layers keep PyTorch's defaults.
- **Which weights generate**: the code saves the encoder and decoder after every epoch whose training loss is
  the lowest so far, and ``GenerateSamples.py`` generates from that lowest-training-loss checkpoint
  (``bst_enc.pth``, ``bst_dec.pth``); we generate from the weights after the last update.
- Batch 64 and the contract's G updates per optimiser (the code: batch 100, 200 epochs, the
  ``paper_schedule``); ``latent_dim`` None takes the code's sizes, 300 for grey images (MNIST) and 600 for
  colour (CIFAR-10).
The budget: the encoder and the decoder are the generator role (two optimisers, G updates each).
A class to top up with at most ``k_neighbors`` images interpolates with its count - 1 neighbours instead
(``deepsmote.json`` records the k each class used): the code would fail there (as ``smote`` refuses), but the
latent space has no pixel-level reason to need 5 neighbours, and 3 minority images (digits at ratio 0.025) still
give segments to sample. A class of one image, with no segment at all, is refused (``skip``).
- Fused groups (``--fuse``; README, "Fused cells"): the members' encoders and decoders train as one stacked
  network each (``stacked.py``); when the members drew penalty classes of different sizes in a step, each
  member's penalty batch runs alone through its slice of the stacked weights. Each member draws all its
  randomness from its own seed as its solo cell does (on a GPU its dropout masks are of the same law, not the
  same masks), and matches its solo cell to float rounding (``tests/test_fused_generators.py``); ``--compile``
  compiles a group of one only.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)
from torch import nn

from bench.methods.base import FitContext
from bench.methods.classifier import shuffled_batches
from bench.methods.dcgan_nets import DCGANGenerator, DCGANTrunk
from bench.methods.generative import COMMON_DEFAULTS, GenerativeOversampling, top_up_counts
from bench.methods.generator_group import GeneratorGroup, Phase, per_member
from bench.methods.registry import register

PENALTY_SAMPLE = 100  # images of the drawn class in the penalty term (the code's nsamp)


class Encoder(nn.Module):
    def __init__(self, image_shape, latent_dim: int, width: int):
        super().__init__()
        self.trunk = DCGANTrunk(image_shape, width)
        self.fc = nn.Linear(self.trunk.out_features, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x))


@register
class DeepSMOTE(GenerativeOversampling):
    name = "deepsmote"
    family = "generative oversampling"
    summary = "encoder/decoder with the permutation penalty; SMOTE on the latents of each class, decoded"
    citation = "Dablain, Krawczyk and Chawla, DeepSMOTE: Fusing deep learning and SMOTE for imbalanced data, TNNLS 2023"
    defaults = {**COMMON_DEFAULTS, "latent_dim": None, "lr": 2e-4, "width": 64, "k_neighbors": 5}
    paper_schedule = {"gan_epochs": 200, "batch_size": 100}  # DeepSMOTE_MNIST.py

    def skip(self, task) -> str | None:
        counts = task.train.counts()
        short = [c for c, n in enumerate(top_up_counts(counts, self.params["phi"])) if n > 0 and counts[c] < 2]
        if short:
            return (f"SMOTE in the latent space needs at least 2 images of every class it tops up; class "
                    f"{short[0]} has {int(counts[short[0]])}")
        return None

    def neighbours(self, count: int) -> int:
        """k for a class of ``count`` images: ``k_neighbors``, or count - 1 when the class is smaller."""
        return min(int(self.params["k_neighbors"]), count - 1)

    fused_generators = True

    @classmethod
    def train_generators(cls, phases: list[Phase]) -> list[BaseException | None]:
        group = GeneratorGroup(phases)
        p, device, first = group.params, group.device, phases[0]
        shape = first.x.shape[1:]
        latent = p["latent_dim"] or (300 if shape[0] == 1 else 600)
        encoder, decoder = group.build(lambda phase: [Encoder(shape, latent, p["width"]).to(device),
                                                      DCGANGenerator(shape, latent, p["width"]).to(device)])
        for phase, enc, dec in zip(phases, encoder.nets, decoder.nets, strict=True):
            phase.method.encoder, phase.method.decoder = enc, dec
        enc_opt = torch.optim.Adam(encoder.parameters(), p["lr"])
        dec_opt = torch.optim.Adam(decoder.parameters(), p["lr"])
        run_encoder, run_decoder = group.compiled(encoder), group.compiled(decoder)
        classes = [[torch.nonzero(phase.y == c).flatten() for c in range(len(phase.counts)) if phase.counts[c] > 0]
                   for phase in phases]
        batches = [shuffled_batches(len(phase.x), p["batch_size"], phase.method.rng, device) for phase in phases]

        def penalty_images(i, phase):  # the penalty's images: up to PENALTY_SAMPLE of one class drawn uniformly
            # one host synchronisation per step (the class's size sets the batch's), as in the solo cell
            drawn = classes[i][int(torch.randint(len(classes[i]), (1,), device=device, generator=phase.method.rng))]
            return drawn[torch.randperm(len(drawn), device=device, generator=phase.method.rng)[:PENALTY_SAMPLE]]

        with group.phase("generator"):
            for epoch in range(1, first.epochs + 1):
                running = torch.zeros(group.size, 2, device=device)
                for _ in range(first.steps):
                    group.step_begin()
                    batch = group.take("x", [next(own) for own in batches])
                    chosen = [penalty_images(i, phase) for i, phase in enumerate(phases)]
                    with first.ctx.autocast():
                        reconstruction = per_member(F.mse_loss, run_decoder(run_encoder(batch)).float(), batch)
                        if len({len(c) for c in chosen}) == 1:  # one size: the members' penalties as one batch
                            target = group.take("x", chosen)
                            with torch.no_grad():
                                z_class = run_encoder(target)  # detached, as in the code
                            penalty = per_member(F.mse_loss, run_decoder(z_class).float(), target)
                        else:  # the members drew classes of different sizes: each member's networks alone
                            penalty = torch.stack([cls._penalty(encoder, decoder, i, phase.x[c])
                                                   for i, (phase, c) in enumerate(zip(phases, chosen, strict=True))])
                        loss = reconstruction + penalty
                    group.update("generator", (enc_opt, dec_opt), loss,
                                 [(batch.shape[1], batch.shape[1] + len(c)) for c in chosen])
                    running += torch.stack([reconstruction.detach(), penalty.detach()], dim=1)
                means = (running / first.steps).tolist()  # one host sync per epoch
                if not group.end_epoch(epoch, [{"reconstruction": m, "penalty": n} for m, n in means]):
                    break
        encoder.write_back()
        decoder.write_back()
        for i, phase in enumerate(phases):
            if group.failed[i] is None:
                phase.method._encode_training_set(phase.x, phase.y)
                phase.method._write_latent_note(latent, phase.counts, phase.ctx)
        return group.failed

    @staticmethod
    def _penalty(encoder, decoder, index: int, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            z_class = encoder.member(index, images)
        return F.mse_loss(decoder.member(index, z_class).float(), images)

    def _write_latent_note(self, latent: int, counts, ctx: FitContext) -> None:
        used = {c: self.neighbours(int(n)) for c, n in enumerate(top_up_counts(counts, self.params["phi"])) if n > 0}
        ctx.artifact_dir.mkdir(parents=True, exist_ok=True)
        (ctx.artifact_dir / "deepsmote.json").write_text(json.dumps({"latent_dim": latent, "smote_k": {
            str(c): self.neighbours(int(counts[c])) for c in used}}))

    @torch.no_grad()
    def _encode_training_set(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> None:
        self.encoder.eval()
        with self.autocast():
            z = torch.cat([self.encoder(x[i:i + chunk]).float() for i in range(0, len(x), chunk)])
        self.latents, self.latent_labels = z.cpu().numpy(), y.cpu().numpy()

    @torch.no_grad()
    def generate(self, n: int, label: int, generator=None) -> torch.Tensor:
        from imblearn.over_sampling import SMOTE  # imported when used (PixelOversampling says why)

        have = int((self.latent_labels == label).sum())
        seed = int(torch.randint(2 ** 31 - 1, (1,), device=self.device, generator=generator))
        smote = SMOTE(sampling_strategy={label: have + n}, k_neighbors=self.neighbours(have), random_state=seed)
        resampled, _ = smote.fit_resample(self.latents, self.latent_labels)
        new = torch.as_tensor(resampled[len(self.latents):], dtype=torch.float32, device=self.device)
        self.decoder.eval()
        images = self.decoder(new)
        self.decoder.train()
        return images
