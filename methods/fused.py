"""Fused training: the S members of a group (cells that differ only in their seed and data) trained as one
batched network, one launch where there were S (issue 30; README, "Fused cells").

Layout: a group's inputs carry a leading member axis, (S, B, C, H, W). Convolutions run "folded", the members
side by side on the channel axis, (B, S x C, H, W), as one grouped convolution (``groups = S``): member s's
output channels see only its own input channels, so nothing crosses between members, and pooling and ReLU act
per channel; batch norm over the members' channels side by side keeps each member's statistics and running
buffers (ResNet-32). Linear layers are batched matrix products over the member axis. A group of one is the
solo network itself (``classifier.fit_group``): the solo cell.

A member is exactly its own cell:
- parameters: each member's network is built under its own seed (``torch.manual_seed(seed)``, then the
  solo constructor), and the group stacks those tensors, so initialisation is the solo cell's;
- randomness: dropout masks come from the member's own generator, a copy of the default generator's state
  after its network was built (``member_generator``); on the CPU the solo cell's ``nn.Dropout`` draws the very
  same numbers (``bernoulli_(1 - p)`` on a tensor of the activations' shape), so its masks are the solo cell's;
- the loss is the sum of the members' own losses, never their mean, so each member's gradient is its own
  (an optimiser over the stacked tensors, Adam or SGD, is element-wise: S independent optimisers);
- a member whose loss goes NaN or Inf fails alone: its terms leave the sum, so the others' gradients and
  updates never see it.
Float sums differ between a grouped and a plain convolution and between a batched and a plain matrix product,
so a member of a group of S > 1 matches its solo cell to float rounding, not in bits (the tests state the
tolerance); a group of one is bit for bit the solo cell.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (PyTorch's own convention)


def member_generator(device: torch.device) -> torch.Generator:
    """A generator in the default generator's current state on ``device``: what a solo cell's dropout would
    draw from next, kept for the member alone."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.Generator(device).set_state(torch.cuda.get_rng_state(device))
    return torch.Generator().set_state(torch.get_rng_state())


def dropout_noise(shape, p: float, generators, device) -> torch.Tensor | None:
    """Dropout's multiplicative noise for each member, (S, *shape): Bernoulli(1 - p) / (1 - p), each member's
    from its own generator, drawn as ``nn.functional.dropout`` draws it on the CPU. None when p is 0."""
    if p <= 0:
        return None
    return torch.stack([torch.empty(shape, device=device).bernoulli_(1 - p, generator=g).div_(1 - p)
                        for g in generators])


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Member-wise linear layers: x (S, B, F_in), weight (S, F_out, F_in), bias (S, F_out) or None."""
    if bias is None:
        return torch.bmm(x, weight.transpose(1, 2))
    return torch.baddbmm(bias[:, None], x, weight.transpose(1, 2))


def cosine(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Member-wise ``CosineLinear``: normalised inputs against normalised weights."""
    return torch.bmm(F.normalize(x, dim=2), F.normalize(weight, dim=2).transpose(1, 2))


def fold(x: torch.Tensor) -> torch.Tensor:
    """(S, B, C, H, W) -> (B, S x C, H, W): the members side by side on the channel axis."""
    s, b = x.shape[:2]
    return x.transpose(0, 1).reshape(b, s * x.shape[2], *x.shape[3:])


def unfold_flat(x: torch.Tensor, members: int) -> torch.Tensor:
    """(B, S x C, H, W) or (B, S x F) -> (S, B, C x H x W): each member's maps flattened as ``nn.Flatten``
    flattens them."""
    return x.reshape(x.shape[0], members, -1).transpose(0, 1)


class StackedCNN(nn.Module):
    """S ``CommonCNN``s (``methods/classifier.py``) as one network: each parameter stacked on a leading member
    axis, under the solo network's name (dots as underscores). ``embed`` maps (S, B, C, H, W) to the features
    (S, B, 128) and ``classify`` those to logits (S, B, K), where the solo network splits; ``forward`` gives
    both."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = len(members)
        self.names = [name for name, _ in members[0].named_parameters()]
        self.dropout = members[0].head[2].p
        self.hidden = members[0].head[0].out_features  # the features dropout acts on
        self.cosine = not hasattr(members[0].head[3], "bias")
        self.stacked = nn.ParameterDict({
            name.replace(".", "_"): nn.Parameter(torch.stack([dict(m.named_parameters())[name].detach()
                                                              for m in members]))
            for name in self.names})

    def _p(self, name: str) -> torch.Tensor:
        return self.stacked[name.replace(".", "_")]

    def _conv(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        weight, bias = self._p(f"{layer}.weight"), self._p(f"{layer}.bias")
        out = F.conv2d(x, weight.flatten(0, 1), bias.flatten(), padding=1, groups=self.members)
        return F.max_pool2d(F.relu(out), 2)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(S, B, C, H, W) -> the penultimate features (S, B, 128), after the ReLU and before dropout."""
        h = self._conv(self._conv(fold(x), "features.0"), "features.3")
        h = linear(unfold_flat(h, self.members), self._p("head.0.weight"), self._p("head.0.bias"))
        return F.relu(h)

    def classify(self, features: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Dropout (``noise``, from ``dropout_noise``; None in evaluation) and the last layer."""
        if noise is not None:
            features = features * noise
        if self.cosine:
            return cosine(features, self._p("head.3.weight"))
        return linear(features, self._p("head.3.weight"), self._p("head.3.bias"))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The features and the logits of every member (what ``MemberView`` hands each member's loss)."""
        features = self.embed(x)
        return features, self.classify(features, noise)

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Member ``index``'s parameters as the solo network's state dict (copies)."""
        return {name: self._p(name)[index].detach().clone() for name in self.names}


def _fold_layer(layers: list[nn.Module]) -> nn.Module:
    """One layer of S members' feature extractors, folded: a convolution grouped over the members, a batch norm
    over their channels side by side (each channel's statistics are its member's own), a residual block told
    how many members it carries; a layer without parameters (ReLU, pooling, flatten) as it is."""
    first, members = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        conv = nn.Conv2d(first.in_channels * members, first.out_channels * members, first.kernel_size,
                         first.stride, first.padding, bias=first.bias is not None, groups=first.groups * members)
        conv.weight = nn.Parameter(torch.cat([layer.weight.detach() for layer in layers]))
        if first.bias is not None:
            conv.bias = nn.Parameter(torch.cat([layer.bias.detach() for layer in layers]))
        return conv.to(first.weight.device)
    if isinstance(first, nn.BatchNorm2d):
        norm = nn.BatchNorm2d(first.num_features * members, first.eps, first.momentum).to(first.weight.device)
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(norm, name).copy_(torch.cat([getattr(layer, name) for layer in layers]))
            norm.num_batches_tracked.copy_(first.num_batches_tracked)
        return norm
    if list(first.named_parameters(recurse=False)) or list(first.named_buffers(recurse=False)):
        raise TypeError(f"fused.py cannot fold a {type(first).__name__}")
    children = [name for name, _ in first.named_children()]
    if not children:
        return first
    folded = copy.copy(first)  # a container (Sequential, a residual block): its children folded in turn
    folded._modules = {name: _fold_layer([layer.get_submodule(name) for layer in layers]) for name in children}
    if hasattr(folded, "members"):
        folded.members = members
    return folded


class StackedResNet32(nn.Module):
    """S ``ResNet32``s (``methods/resnet.py``) as one network: the feature extractor folded (grouped
    convolutions, batch norm over the members' channels side by side, each member's shortcut padded on its own
    channels), the last layer batched. Batch norm's statistics are per member and per channel, as each solo
    network's are. ``embed``, ``classify`` and ``forward`` as ``StackedCNN``'s; ResNet-32 has no dropout."""

    dropout = 0.0
    hidden = 64

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = len(members)
        self.features = _fold_layer([m.features for m in members])
        last = [m.head[0] for m in members]
        self.cosine = not hasattr(last[0], "bias")
        self.last_weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in last]))
        self.last_bias = None if self.cosine else nn.Parameter(torch.stack([layer.bias.detach() for layer in last]))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(S, B, C, H, W) -> the pooled features (S, B, 64)."""
        return unfold_flat(self.features(fold(x)), self.members)

    def classify(self, features: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.cosine:
            return cosine(features, self.last_weight)
        return linear(features, self.last_weight, self.last_bias)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(x)
        return features, self.classify(features, noise)

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Member ``index``'s parameters and batch-norm buffers as the solo network's state dict (copies)."""
        state = {}
        for name, tensor in self.features.state_dict().items():
            own = tensor if tensor.ndim == 0 else tensor.chunk(self.members)[index]  # num_batches_tracked: shared
            state[f"features.{name}"] = own.detach().clone()
        state["head.0.weight"] = self.last_weight[index].detach().clone()
        if self.last_bias is not None:
            state["head.0.bias"] = self.last_bias[index].detach().clone()
        return state


def stack(members: list[nn.Module]) -> nn.Module:
    """The members' networks (built alone, each under its own seed) as one stacked network."""
    if type(members[0]).__name__ == "ResNet32":
        return StackedResNet32(members)
    return StackedCNN(members)


class MemberView:
    """What one member's loss sees as its model: the group's output for this member. ``view(x)`` is its
    logits, ``view.embed(x)`` its features, ``view.classify(f)`` its logits again for those features. ``x``
    must be the member's own batch: the group computed every member's outputs in one pass."""

    def __init__(self, inputs: torch.Tensor, features: torch.Tensor, logits: torch.Tensor):
        self.inputs, self.features, self.logits = inputs, features, logits

    def _check(self, x) -> None:
        if x is not self.inputs:
            raise ValueError("a fused member's loss must call its model on the batch it was given")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.logits

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return self.features

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        if features is not self.features:
            raise ValueError("a fused member's loss may classify only its own features")
        return self.logits
