"""GAMO's networks (Mullick, Datta and Das, ICCV 2019; sizes from the official Keras code, SankhaSubhra/GAMO,
files ``fashion_mnist_net.py`` and ``fashion_mnist_gamo2pix_net.py``), written afresh in PyTorch.

- ``ConvexGenerator`` G: a conditional transient mapping unit (cTMU: [noise, one-hot class] -> dense 256,
  ReLU, batch norm -> dense 64, ReLU, batch norm) shared by all classes, and one instance generation unit
  (IGU) per minority class i: dense 64 -> n_i, softmax = convex weights over the class's n_i instances; the
  generated sample is weights @ (the instances' feature vectors).
- ``ConditionalDiscriminator`` D: [feature vector, one-hot class] -> dense 256, LeakyReLU(0.1) -> dense
  128, LeakyReLU(0.1) -> 1 logit (the official model ends in a sigmoid; we return the logit and apply the
  sigmoid in the loss).
- ``FeatureVAE`` (GAMO2pix): features -> dense 128, tanh -> mean and log-variance of a 100-d code;
  decoder: dense 32 x s0 x s0, LeakyReLU(0.1) -> k transposed 4x4 stride-2 convolutions of 32 channels with
  LeakyReLU(0.1) -> 4x4 'same' convolution to the image channels, tanh. The official decoder is the 28x28
  case (7 -> 14 -> 28); other sizes use the same plan as the DCGAN networks (s0 >= 4, k doublings).
- Dense layers use Keras' default initialisation (Glorot-uniform weights, zero biases); batch norm uses
  Keras' momentum 0.9 (PyTorch momentum 0.1) and epsilon 1e-3.
The classifier M (feature extractor F + head) is the common CNN of ``classifier.py``, see ``gamo.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.methods.base import one_hot
from bench.methods.capsan_nets import upsampling_plan


def keras_init(module: nn.Module) -> None:
    """Keras' defaults for dense and convolutional layers: Glorot-uniform weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _keras_bn(features: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(features, eps=1e-3, momentum=0.1)


class ConvexGenerator(nn.Module):
    """cTMU shared by the classes + one IGU per generated class; ``class_sizes`` maps class -> n_i."""

    def __init__(self, n_classes: int, class_sizes: dict[int, int], z_dim: int = 100,
                 hidden: int = 256, transient: int = 64):
        super().__init__()
        self.n_classes, self.z_dim = n_classes, z_dim
        self.tmu = nn.Sequential(
            nn.Linear(z_dim + n_classes, hidden), nn.ReLU(), _keras_bn(hidden),
            nn.Linear(hidden, transient), nn.ReLU(), _keras_bn(transient),
        )
        self.igus = nn.ModuleDict({str(c): nn.Linear(transient, n) for c, n in class_sizes.items()})
        self.apply(keras_init)

    def class_parameters(self, label: int) -> list[nn.Parameter]:
        """What a G update for class ``label`` trains: the shared cTMU and that class's IGU."""
        return [*self.tmu.parameters(), *self.igus[str(label)].parameters()]

    def convex_weights(self, z: torch.Tensor, label: int) -> torch.Tensor:
        """(B, n_label) non-negative weights, each row summing to 1."""
        onehot = one_hot(torch.full((len(z),), label, device=z.device, dtype=torch.long), self.n_classes, z.dtype)
        h = self.tmu(torch.cat([z, onehot], dim=1))
        return torch.softmax(self.igus[str(label)](h), dim=1)

    def forward(self, z: torch.Tensor, label: int, instances: torch.Tensor) -> torch.Tensor:
        """Convex combinations (B, d) of the class's ``instances`` (n_label, d)."""
        return self.convex_weights(z, label) @ instances


class ConditionalDiscriminator(nn.Module):
    """Real/fake logit of a feature vector given its class."""

    def __init__(self, feature_dim: int, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.net = nn.Sequential(
            nn.Linear(feature_dim + n_classes, 256), nn.LeakyReLU(0.1),
            nn.Linear(256, 128), nn.LeakyReLU(0.1),
            nn.Linear(128, 1),
        )
        self.apply(keras_init)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        onehot = one_hot(labels, self.n_classes, features.dtype)
        return self.net(torch.cat([features, onehot], dim=1))


class FeatureVAE(nn.Module):
    """GAMO2pix: a variational auto-encoder from a feature vector of F to an image in [-1, 1]."""

    def __init__(self, feature_dim: int, image_shape, z_dim: int = 100, hidden: int = 128, width: int = 32):
        super().__init__()
        channels, height, width_px = image_shape
        if height != width_px:
            raise ValueError(f"GAMO2pix needs square images; got {height}x{width_px}")
        self.n_up = max(1, upsampling_plan(height, n_conv=5))
        self.start, self.width = height // 2 ** self.n_up, width
        self.encoder = nn.Sequential(nn.Linear(feature_dim, hidden), nn.Tanh())
        self.mean = nn.Linear(hidden, z_dim)
        self.log_var = nn.Linear(hidden, z_dim)
        self.fc = nn.Linear(z_dim, width * self.start * self.start)
        layers = []
        for _ in range(self.n_up):
            layers += [nn.ConvTranspose2d(width, width, 4, 2, 1), nn.LeakyReLU(0.1)]
        # Keras' 'same' padding for an even kernel: one row/column before, two after.
        layers += [nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(width, channels, 4), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)
        self.apply(keras_init)

    def encode(self, features: torch.Tensor, generator: torch.Generator | None = None):
        """A code drawn by reparameterisation, with its mean and log-variance."""
        h = self.encoder(features)
        mean, log_var = self.mean(h), self.log_var(h)
        eps = torch.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        return mean + torch.exp(0.5 * log_var) * eps, mean, log_var

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fc(code), 0.1).view(len(code), self.width, self.start, self.start)
        return self.decoder(x)

    def forward(self, features: torch.Tensor, generator: torch.Generator | None = None):
        code, mean, log_var = self.encode(features, generator)
        return self.decode(code), mean, log_var

    @staticmethod
    def loss(images: torch.Tensor, recon: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor):
        """Squared error summed over each image's pixels plus the KL divergence to N(0, I), batch mean."""
        squared = (recon - images).pow(2).flatten(1).sum(1)
        kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1)
        return (squared + kl).mean()
