"""A model's state as one flat vector: what is averaged, filtered and EMA'd.

The vector holds every parameter and every floating-point buffer (e.g. batch-norm
running statistics) in `named_parameters()` / `named_buffers()` order, so that the
sync algorithms and the EMA never need to know the model type. Integer buffers
(e.g. `num_batches_tracked`) are left alone.

With `share=True` (the training workers) the model's tensors are re-pointed to views of
one contiguous buffer, so reading the flat state costs nothing and writing it is one
copy; this must happen before an optimizer is built on the model.
"""

from __future__ import annotations

import torch
from torch import nn


class FlatState:
    """Read a model's float state into a flat tensor and write one back."""

    def __init__(self, model: nn.Module, share: bool = False) -> None:
        self.tensors: list[torch.Tensor] = [p for _, p in model.named_parameters()]
        self.tensors += [b for _, b in model.named_buffers() if b.is_floating_point()]
        self.names = [n for n, _ in model.named_parameters()]
        self.names += [n for n, b in model.named_buffers() if b.is_floating_point()]
        self.shapes = [tuple(t.shape) for t in self.tensors]
        self.numel = sum(t.numel() for t in self.tensors)
        self.params: list[nn.Parameter] = [p for p in model.parameters()]
        self.buffer: torch.Tensor | None = None
        if share and self.tensors:
            dtypes = {t.dtype for t in self.tensors}
            if len(dtypes) == 1:
                self._share(model)

    @torch.no_grad()
    def _share(self, model: nn.Module) -> None:
        buf = torch.cat([t.detach().reshape(-1) for t in self.tensors])
        off = 0
        views = []
        for t in self.tensors:
            n = t.numel()
            views.append(buf[off : off + n].view_as(t))
            off += n
        n_params = len([p for p in model.parameters()])
        for p, v in zip(self.params, views[:n_params], strict=True):
            p.data = v
        float_bufs = [
            (m, k)
            for m in model.modules()
            for k, b in m._buffers.items()
            if b is not None and b.is_floating_point()
        ]
        for (m, k), v in zip(float_bufs, views[n_params:], strict=True):
            m._buffers[k] = v
        self.tensors = [*self.params, *views[n_params:]]
        self.buffer = buf

    def get(self) -> torch.Tensor:
        """The flat state: the live shared buffer (do not modify it) or a new copy."""
        if self.buffer is not None:
            return self.buffer
        return torch.cat([t.detach().reshape(-1) for t in self.tensors])

    @torch.no_grad()
    def set(self, flat: torch.Tensor) -> None:
        if flat.numel() != self.numel:
            raise ValueError(f"flat state has {flat.numel()} values, model has {self.numel}")
        if self.buffer is not None:
            if flat.data_ptr() != self.buffer.data_ptr():
                self.buffer.copy_(flat)
            return
        off = 0
        for t in self.tensors:
            n = t.numel()
            t.copy_(flat[off : off + n].view_as(t))
            off += n

    def grads(self) -> torch.Tensor:
        """Flat gradient of the parameters (zeros where a parameter has no grad)."""
        return torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                for p in self.params
            ]
        )

    @torch.no_grad()
    def set_grads(self, flat: torch.Tensor) -> None:
        off = 0
        for p in self.params:
            n = p.numel()
            g = flat[off : off + n].view_as(p)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
            off += n

    def describe(self) -> dict[str, list[int]]:
        return {n: list(s) for n, s in zip(self.names, self.shapes, strict=True)}
