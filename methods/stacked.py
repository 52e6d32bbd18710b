"""Any network of a fused group's members as one: ``Stacked`` (issue 30; README, "Fused cells"). Where
``fused.py`` hand-folds the common classifier, this stacks any architecture with PyTorch's model-ensembling
recipe: the members' parameters and buffers stacked on a leading member axis (``torch.func.stack_module_state``),
the network called once per step under ``torch.func.vmap`` over ``functional_call`` (a convolution with a
batched weight runs as one grouped convolution: one launch where there were S). The generator phases of the
generative methods train through it (``generative.GeneratorGroup``).

Inputs and outputs carry the member axis first, (S, B, ...). A group of one is the member's own network called
on ``x[0]``, so a solo cell computes exactly what it did before fusion existed.

A member is exactly its own cell:
- parameters and buffers are each member's own network's (built under its own seed), stacked; batch norm's
  statistics and running buffers are per member (vmap keeps them apart);
- dropout: ``nn.Dropout`` draws from the global generator, which a member cannot share with its mates. Each
  dropout layer of a stacked network takes its mask from the member's own generator instead (``generators``,
  each a copy of the global generator's state after that member's networks were built, as the solo cell's
  would be): the masks are drawn before the vmapped call, in the order the network calls its dropout layers
  (found once per input shape by a pass on the meta device), as ``torch.dropout`` draws them on the CPU
  (``bernoulli_(1 - p)`` over the activations' shape, divided by 1 - p). On the CPU they are the solo cell's
  masks; on a GPU, whose fused dropout kernel draws differently, they are masks of the same law, not the same
  masks (a fused member then matches its solo cell in distribution, not to rounding);
- an optimiser over ``parameters()`` (Adam, SGD: element-wise) is S independent optimisers; the loss handed to
  it must be the SUM of the members' losses (``per_member`` then ``.sum()``), so each gradient is its member's.
After training, ``write_back`` copies each member's tensors into its own network, which then samples alone.
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F  # noqa: N812 (PyTorch's own convention)
from torch.nn.utils.parametrizations import _SpectralNorm as spectral_norm_type


class _MemberDropout(nn.Module):
    """Dropout that multiplies by the next mask handed in (``masks``), or records its input's shape."""

    def __init__(self, p: float, queue: list):
        super().__init__()
        self.p, self.queue = p, queue

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        if self.queue and self.queue[0] == "record":
            self.queue.append((tuple(x.shape), self.p))
            return x
        return x * self.queue.pop(0)


@torch.no_grad()
def _power_method(self, weight_mat: torch.Tensor, n_power_iterations: int) -> None:
    """``parametrizations._SpectralNorm._power_method`` without ``out=`` (which vmap cannot batch): the same
    arithmetic, u from v and then v from u, written back into the buffers with ``copy_``."""
    u, v = self._u, self._v
    for _ in range(n_power_iterations):
        u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=self.eps)
        v = F.normalize(torch.mv(weight_mat.H, u), dim=0, eps=self.eps)
    self._u.copy_(u)
    self._v.copy_(v)


def _vmap_friendly(module: nn.Module) -> None:
    """Spectral normalisation's power iteration in a form vmap can batch (the stacked copy's only)."""
    for child in module.modules():
        if isinstance(child, spectral_norm_type):
            child._power_method = types.MethodType(_power_method, child)


def _swap_dropout(module: nn.Module, queue: list) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Dropout):
            setattr(module, name, _MemberDropout(child.p, queue))
        else:
            _swap_dropout(child, queue)


class _Call(nn.Module):
    """``functional_call`` calls ``forward``: this calls another method of the wrapped network."""

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net, self.method = net, method

    def forward(self, *args):
        return getattr(self.net, self.method)(*args)


def _unsqueeze(out):
    if isinstance(out, torch.Tensor):
        return out.unsqueeze(0)
    parts = [_unsqueeze(o) for o in out]
    return type(out)(*parts) if hasattr(out, "_fields") else type(out)(parts)  # a named tuple, a tuple, a list


class Stacked(nn.Module):
    """S networks of one architecture as one module. ``stacked(*xs)`` calls ``forward``, ``stacked.call(name,
    *xs)`` another method; every input and output has the member axis first."""

    def __init__(self, nets: list[nn.Module], generators: list[torch.Generator] | None = None):
        super().__init__()
        self.size, self.nets = len(nets), nets
        if self.size == 1:
            self.solo = nets[0]
            object.__setattr__(self, "solo_calls", {})  # method -> a compiled callable (GeneratorGroup.compiled)
            return
        params, buffers = stack_module_state(nets)
        self.names = list(params)
        self.stacked = nn.ParameterDict({n.replace(".", "__"): nn.Parameter(t) for n, t in params.items()})
        for name, tensor in buffers.items():
            self.register_buffer("b__" + name.replace(".", "__"), tensor)
        self.buffer_names = list(buffers)
        self.queue: list = []
        self.base = copy.deepcopy(nets[0]).to("meta")
        _swap_dropout(self.base, self.queue)
        _vmap_friendly(self.base)
        self.generators = generators
        self.shapes: dict = {}  # (method, input shapes, training) -> the dropout masks' shapes, in call order

    def train(self, mode: bool = True):
        super().train(mode)
        for net in self.nets:
            net.train(mode)
        if self.size > 1:
            self.base.train(mode)
        return self

    def forward(self, *args):
        return self.call("forward", *args)

    def _state(self):
        params = {n: self.stacked[n.replace(".", "__")] for n in self.names}
        buffers = {n: getattr(self, "b__" + n.replace(".", "__")) for n in self.buffer_names}
        return params, buffers

    def _plan(self, key, target: nn.Module, prefix: str, args) -> list:
        """The shapes and rates of the dropout masks ``target`` draws, in call order, on one member's ``args``
        (no member axis); found once per ``key`` by a pass on the meta device."""
        if key not in self.shapes:
            params, buffers = self._state()
            meta = {prefix + n: t[0].to("meta") for n, t in {**params, **buffers}.items()}
            self.queue[:] = ["record"]
            with torch.no_grad():
                functional_call(target, meta, tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in args))
            self.shapes[key], self.queue[:] = self.queue[1:], []
        if self.shapes[key] and self.generators is None:
            raise ValueError("a stacked network with dropout needs each member's generator")
        return self.shapes[key]

    @staticmethod
    def _mask(shape, p: float, generator: torch.Generator, device) -> torch.Tensor:
        return torch.empty(shape, device=device).bernoulli_(1 - p, generator=generator).div_(1 - p)

    def _masks(self, method: str, target: nn.Module, prefix: str, args) -> list[torch.Tensor]:
        key = (method, tuple(tuple(a.shape) if isinstance(a, torch.Tensor) else a for a in args), self.base.training)
        plan = self._plan(key, target, prefix, [a[0] if isinstance(a, torch.Tensor) else a for a in args])
        device = args[0].device
        return [torch.stack([self._mask(shape, p, g, device) for g in self.generators]) for shape, p in plan]

    def call(self, method: str, *args):
        """``method`` of every member's network (a method, or a submodule by its attribute name) on its own
        inputs: every tensor argument has the member axis first; any other argument (a class index) is the
        same for every member."""
        if self.size == 1:
            fn = self.solo_calls[method] if method in self.solo_calls else getattr(self.solo, method)
            return _unsqueeze(fn(*(a[0] if isinstance(a, torch.Tensor) else a for a in args)))
        target = self.base if method == "forward" else _Call(self.base, method)
        prefix = "" if method == "forward" else "net."
        masks = self._masks(method, target, prefix, args)
        params, buffers = self._state()
        tensors = [a for a in args if isinstance(a, torch.Tensor)]

        def one(params, buffers, masks, *xs):
            self.queue[:] = list(masks)
            state = {prefix + n: t for n, t in {**params, **buffers}.items()}
            given = iter(xs)
            return functional_call(target, state, tuple(next(given) if isinstance(a, torch.Tensor) else a
                                                        for a in args))

        out = vmap(one)(params, buffers, masks, *tensors)
        self.queue[:] = []
        return out

    def subset(self, params) -> list[torch.Tensor]:
        """The stacked tensors of some of the first member's parameters (``params``, in their order): what an
        optimiser over part of the network (one head, one class's unit) steps."""
        if self.size == 1:
            return list(params)
        names = {id(p): name for name, p in self.nets[0].named_parameters()}
        return [self.stacked[names[id(p)].replace(".", "__")] for p in params]

    def member(self, index: int, *args):
        """Member ``index``'s network alone on its own inputs (no member axis): for a batch whose size differs
        between members, which cannot stack. Its parameters and buffers are that member's slices of the
        stacked ones, so gradients and batch-norm statistics land where the stacked calls put them."""
        if self.size == 1:
            return self.solo_calls.get("forward", self.solo)(*args)
        params, buffers = self._state()
        plan = self._plan(("member", tuple(tuple(a.shape) for a in args), self.base.training), self.base, "", args)
        self.queue[:] = [self._mask(shape, p, self.generators[index], args[0].device) for shape, p in plan]
        try:
            return functional_call(self.base, {n: t[index] for n, t in {**params, **buffers}.items()}, args)
        finally:
            self.queue[:] = []

    @torch.no_grad()
    def write_back(self) -> None:
        """Each member's trained tensors (and its last gradients) into its own network (a group of one trained
        it in place)."""
        if self.size == 1:
            return
        params, buffers = self._state()
        for i, net in enumerate(self.nets):
            state = {n: t[i] for n, t in {**params, **buffers}.items()}
            net.load_state_dict(state)
            for name, param in net.named_parameters():  # the last update's gradients too (the tests read them)
                grad = params[name].grad
                param.grad = None if grad is None else grad[i].clone()
