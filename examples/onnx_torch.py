"""An ONNX graph run op by op with PyTorch on the GPU: the baseline of examples/gpu_run.py where
onnxruntime's CUDA execution provider is not installed. Same graph, same weights, cuDNN kernels.

Covers the CNN ops of the ONNX zoo and of tf2onnx's MobileNets; any other op raises
NotImplementedError naming it (the caller then reports no baseline for that model).
"""
import numpy as np
import onnx
from onnx import numpy_helper


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pairs(pads):
    """ONNX [b1, b2, e1, e2] -> F.pad's (l2, r2, l1, r1)."""
    n = len(pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


class TorchGraph:
    def __init__(self, path, device="cuda"):
        import torch
        self.torch, self.device = torch, device
        self.model = onnx.load(path)
        g = self.model.graph
        self.consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()).to(device) for t in g.initializer}
        self.inputs = [i.name for i in g.input if i.name not in self.consts]
        self.outputs = [o.name for o in g.output]
        for n in g.node:
            if not hasattr(self, "_" + n.op_type):
                raise NotImplementedError(f"op {n.op_type} (node '{n.name}')")

    def run_numpy(self, feeds):
        torch = self.torch
        with torch.inference_mode():
            env = dict(self.consts)
            for k in self.inputs:
                env[k] = torch.from_numpy(np.ascontiguousarray(feeds[k])).to(self.device)
            for n in self.model.graph.node:
                args = [env[i] if i else None for i in n.input]
                outs = getattr(self, "_" + n.op_type)(args, _attrs(n))
                for name, v in zip(n.output, outs if isinstance(outs, tuple) else (outs,)):
                    env[name] = v
            return [env[o].cpu().numpy() for o in self.outputs]

    # ---- ops: each returns a tensor (or a tuple of them) ------------------------------------------
    def _Conv(self, a, at):
        F = self.torch.nn.functional
        x, w, b = a[0], a[1], a[2] if len(a) > 2 else None
        pads = list(at.get("pads", [0] * 2 * (w.dim() - 2)))
        if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise NotImplementedError("Conv auto_pad")
        k = len(pads) // 2
        if pads[:k] != pads[k:]:
            x, pads = F.pad(x, _pairs(pads)), [0] * 2 * k
        return F.conv2d(x, w, b, at.get("strides", 1), pads[:k], at.get("dilations", 1), at.get("group", 1))

    def _pool(self, a, at, kind):
        F = self.torch.nn.functional
        x, ks = a[0], at["kernel_shape"]
        pads = list(at.get("pads", [0] * 2 * len(ks)))
        k = len(pads) // 2
        ceil = bool(at.get("ceil_mode", 0))
        if pads[:k] != pads[k:]:
            if kind == "avg" and not at.get("count_include_pad", 0):  # divide by the window's unpadded count
                ones = F.pad(self.torch.ones_like(x[:, :1]), _pairs(pads))
                x = F.pad(x, _pairs(pads))
                return (F.avg_pool2d(x, ks, at.get("strides", 1), 0, ceil_mode=ceil)
                        / F.avg_pool2d(ones, ks, at.get("strides", 1), 0, ceil_mode=ceil))
            x, pads = F.pad(x, _pairs(pads), value=-float("inf") if kind == "max" else 0.0), [0] * 2 * k
        if kind == "max":
            return F.max_pool2d(x, ks, at.get("strides", 1), pads[:k], ceil_mode=ceil)
        return F.avg_pool2d(x, ks, at.get("strides", 1), pads[:k], ceil_mode=ceil,
                            count_include_pad=bool(at.get("count_include_pad", 0)))

    def _MaxPool(self, a, at):
        return self._pool(a, at, "max")

    def _AveragePool(self, a, at):
        return self._pool(a, at, "avg")

    def _GlobalAveragePool(self, a, at):
        return a[0].mean(dim=tuple(range(2, a[0].dim())), keepdim=True)

    def _Relu(self, a, at):
        return self.torch.relu(a[0])

    def _Clip(self, a, at):
        lo = a[1] if len(a) > 1 and a[1] is not None else at.get("min")
        hi = a[2] if len(a) > 2 and a[2] is not None else at.get("max")
        return self.torch.clamp(a[0], None if lo is None else float(lo), None if hi is None else float(hi))

    def _BatchNormalization(self, a, at):
        F = self.torch.nn.functional
        return F.batch_norm(a[0], a[3], a[4], a[1], a[2], False, 0.0, at.get("epsilon", 1e-5))

    def _LRN(self, a, at):
        F = self.torch.nn.functional
        return F.local_response_norm(a[0], at["size"], at.get("alpha", 1e-4), at.get("beta", 0.75), at.get("bias", 1.0))

    def _Gemm(self, a, at):
        x, w = a[0], a[1]
        if at.get("transA", 0):
            x = x.t()
        if at.get("transB", 0):
            w = w.t()
        y = at.get("alpha", 1.0) * (x @ w)
        return y + at.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y

    def _MatMul(self, a, at):
        return a[0] @ a[1]

    def _Add(self, a, at):
        return a[0] + a[1]

    def _Mul(self, a, at):
        return a[0] * a[1]

    def _Sum(self, a, at):
        out = a[0]
        for t in a[1:]:
            out = out + t
        return out

    def _Concat(self, a, at):
        return self.torch.cat(a, dim=at["axis"])

    def _Dropout(self, a, at):
        return a[0]

    def _Softmax(self, a, at):
        return self.torch.softmax(a[0], dim=at.get("axis", -1))

    def _Reshape(self, a, at):
        shape = [int(s) for s in a[1].tolist()]
        shape = [a[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return a[0].reshape(shape)

    def _Flatten(self, a, at):
        return a[0].flatten(at.get("axis", 1)) if at.get("axis", 1) == 1 else a[0].reshape(
            int(np.prod(a[0].shape[:at["axis"]])), -1)

    def _Transpose(self, a, at):
        return a[0].permute(*at.get("perm", list(reversed(range(a[0].dim())))))

    def _axes(self, a, at):
        return at["axes"] if "axes" in at else [int(v) for v in a[1].tolist()]

    def _Squeeze(self, a, at):
        x = a[0]
        if "axes" not in at and (len(a) < 2 or a[1] is None):
            return x.squeeze()
        for ax in sorted((d % x.dim() for d in self._axes(a, at)), reverse=True):
            x = x.squeeze(ax)
        return x

    def _Unsqueeze(self, a, at):
        x = a[0]
        for ax in sorted(self._axes(a, at)):
            x = x.unsqueeze(ax)
        return x

    def _Pad(self, a, at):
        F = self.torch.nn.functional
        pads = at["pads"] if "pads" in at else [int(v) for v in a[1].tolist()]
        if at.get("mode", b"constant") not in (b"constant", "constant"):
            raise NotImplementedError("Pad mode")
        value = float(a[2]) if len(a) > 2 and a[2] is not None else at.get("value", 0.0)
        return F.pad(a[0], _pairs(pads), value=value)

    def _ConstantOfShape(self, a, at):
        v = at.get("value")
        fill = float(numpy_helper.to_array(v).ravel()[0]) if v is not None else 0.0
        return self.torch.full([int(s) for s in a[0].tolist()], fill, device=self.device)
