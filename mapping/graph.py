"""The layer-graph IR: a small closed set of typed ops over NCHW tensors.

A :class:`Graph` is a tuple of :class:`Node` in topological order, named inputs, one or more named
outputs, and one parameter table keyed by the owning module's qualified name. A block executed T
times references the same parameter keys T times: memory is counted once (``Graph.param_bytes``),
compute T times (one node per execution). Nothing here imports torch; parameters are numpy arrays.

Every value's first dimension is the batch. Op semantics are PyTorch's (ONNX's where torch has none):
unary activations and math ops map one input; ADD/SUB/MUL/DIV take two inputs broadcast as numpy does
or one input and a :class:`Scalar`; CONSTANT has the graph input as its only input (for the batch size) and
broadcasts ``params["value"]`` (shape ``(1, *shape[1:])``) over it; MATMUL and ATTENTION take two / three
activations of rank >= 3; REDUCE_* reduce ``Reduce.dims`` (never 0); PRELU's ``weight``, GROUPNORM's and
BATCHNORM's ``gamma``/``beta`` run along dim 1; LAYERNORM's along the last dims.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

__all__ = [
    "Op", "Node", "Graph", "Input", "Conv2d", "Linear", "BatchNorm", "Pool", "AdaptivePool", "Concat", "ChannelShuffle",
    "Reshape", "Upsample", "Slice", "Scalar", "Quantize", "NoAttrs",
    "Gelu", "LeakyRelu", "Softplus", "Clamp", "Elu", "LayerNorm", "GroupNorm", "Softmax", "Reduce", "Permute",
    "Pad", "Attention", "Trunc", "MultiThreshold", "quant_levels", "ACTIVATIONS", "UNARY_MATH", "ARITHMETIC",
]


class Op(str, enum.Enum):
    """The closed set of operations of the IR."""

    CONV2D = "conv2d"
    CONV_TRANSPOSE2D = "conv_transpose2d"  # attrs: mapping._conv_transpose.ConvTranspose2d (graph.py is full)
    LINEAR = "linear"
    BATCHNORM = "batchnorm"
    RELU = "relu"
    RELU6 = "relu6"
    HARDSWISH = "hardswish"
    SIGMOID = "sigmoid"
    HARDSIGMOID = "hardsigmoid"
    SILU = "silu"
    TANH = "tanh"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    ADAPTIVE_AVGPOOL = "adaptive_avgpool"
    ADD = "add"
    MUL = "mul"
    CONCAT = "concat"
    CHANNEL_SHUFFLE = "channel_shuffle"
    RESHAPE = "reshape"  # flatten and view are reshapes that keep the batch dimension
    UPSAMPLE = "upsample"
    SLICE = "slice"  # channel split / narrow along one dimension
    SIGN = "sign"  # sign with sign(0) = +1 (binary networks)
    QUANTIZE = "quantize"  # uniform fake-quantization of activations
    # activations with attributes or parameters
    GELU = "gelu"
    LEAKY_RELU = "leaky_relu"
    PRELU = "prelu"  # params: weight (1 or C entries, along dim 1)
    ELU = "elu"
    MISH = "mish"
    SOFTPLUS = "softplus"
    CLAMP = "clamp"  # also hardtanh
    # elementwise math (one input; POW's exponent is a Scalar)
    EXP = "exp"
    LOG = "log"
    SQRT = "sqrt"
    RSQRT = "rsqrt"
    ERF = "erf"
    ABS = "abs"
    NEG = "neg"
    POW = "pow"
    ROUND, FLOOR, CEIL = "round", "floor", "ceil"  # rounding to an integer value: half to even, down, up
    # two-operand arithmetic beyond ADD/MUL (numpy broadcasting, or a Scalar operand)
    SUB = "sub"
    DIV = "div"
    WHERE = "where"  # (cond, x, y): x where cond != 0 else y; (cond, x) + Scalar v: y = v (reverse: x = v)
    # normalisation and reductions
    LAYERNORM = "layernorm"  # over the last len(normalized_shape) dims; params gamma, beta (optional)
    GROUPNORM = "groupnorm"  # over groups of channels (dim 1) and all spatial dims; params gamma, beta
    SOFTMAX = "softmax"  # softmax or log-softmax along one dim
    REDUCE_MEAN = "reduce_mean"
    REDUCE_SUM = "reduce_sum"
    REDUCE_MAX = "reduce_max"
    PERMUTE = "permute"  # data movement: the batch dimension stays first
    PAD = "pad"  # constant padding
    CONSTANT = "constant"  # a parameter broadcast over the batch; inputs[0] only gives the batch size
    # products of two activations
    MATMUL = "matmul"  # torch.matmul over the last two dims, leading dims broadcast
    ATTENTION = "attention"  # softmax(q k^T * scale [+ causal mask]) v over (N, ..., L, E)
    # quantized networks as QONNX writes them
    TRUNC = "trunc"  # QONNX Trunc: drop least significant bits of a quantized value
    MULTITHRESHOLD = "multithreshold"  # FINN/QONNX MultiThreshold; params thresholds[C, T]

    def __str__(self) -> str:
        return self.value


BUFFER_ROLES = frozenset({"mean", "var"})  # batch-norm running statistics
ACTIVATIONS = frozenset({Op.RELU, Op.RELU6, Op.HARDSWISH, Op.SIGMOID, Op.HARDSIGMOID, Op.SILU, Op.TANH, Op.GELU,
                         Op.LEAKY_RELU, Op.PRELU, Op.ELU, Op.MISH, Op.SOFTPLUS, Op.CLAMP})
UNARY_MATH = frozenset({Op.EXP, Op.LOG, Op.SQRT, Op.RSQRT, Op.ERF, Op.ABS, Op.NEG, Op.POW, Op.ROUND, Op.FLOOR, Op.CEIL})
# elementwise ops of two operands: two inputs broadcast as numpy does, or one input and a Scalar attribute
ARITHMETIC = frozenset({Op.ADD, Op.MUL, Op.SUB, Op.DIV})


# ----------------------------------------------------------------------------- attributes
@dataclass(frozen=True, slots=True)
class NoAttrs:
    """Attributes of ops that have none (activations, add of two tensors, ...)."""


@dataclass(frozen=True, slots=True)
class Conv2d:
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    bias: bool = True

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels

    @property
    def rows(self) -> int:
        """Rows of the weight matrix seen by a crossbar / MVAU: (Cin/groups)·kh·kw."""
        return self.in_channels // self.groups * self.kernel[0] * self.kernel[1]


@dataclass(frozen=True, slots=True)
class Linear:
    in_features: int
    out_features: int
    bias: bool = True


@dataclass(frozen=True, slots=True)
class BatchNorm:
    num_features: int
    eps: float = 1e-5


@dataclass(frozen=True, slots=True)
class Pool:
    """Max or average pooling (torch semantics)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = True


@dataclass(frozen=True, slots=True)
class AdaptivePool:
    output_size: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Concat:
    dim: int = 1


@dataclass(frozen=True, slots=True)
class ChannelShuffle:
    groups: int


@dataclass(frozen=True, slots=True)
class Reshape:
    """Reshape keeping the batch dimension: output shape is (N, *shape)."""

    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Upsample:
    size: tuple[int, int]
    mode: str = "nearest"  # "nearest" | "bilinear"
    align_corners: bool = False


@dataclass(frozen=True, slots=True)
class Slice:
    """``x[..., start:stop:step, ...]`` along ``dim`` (start, stop resolved: 0 <= start, stop <= size)."""

    dim: int
    start: int
    stop: int
    step: int = 1


@dataclass(frozen=True, slots=True)
class Scalar:
    """Binary op with a constant scalar operand: y = x op value (or value op x when ``reverse``)."""

    value: float
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Quantize:
    """Uniform quantization of activations to ``bits`` with step ``scale``, as QONNX's Quant computes it
    (qonnx ``quant.py``): ``y = (rnd(clip(x / scale + zero_point, lo, hi)) - zero_point) * scale`` with
    ``[lo, hi]`` = ``[-2**(bits-1), 2**(bits-1) - 1]`` signed or ``[0, 2**bits - 1]`` unsigned; ``narrow`` drops one
    level (``lo + 1`` signed, ``hi - 1`` unsigned); a 1-bit signed quantizer gives +-1. ``rnd`` is ``rounding``
    ("ROUND" = half to even, "CEIL", "FLOOR")."""

    bits: int
    scale: float
    signed: bool = False
    zero_point: float = 0.0
    narrow: bool = False
    rounding: str = "ROUND"


def quant_levels(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """The integer range ``(lo, hi)`` of a :class:`Quantize` (QONNX's ``min_int`` / ``max_int``)."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


@dataclass(frozen=True, slots=True)
class Gelu:
    approximate: str = "none"  # "none" (erf) | "tanh"


@dataclass(frozen=True, slots=True)
class LeakyRelu:
    negative_slope: float = 0.01


@dataclass(frozen=True, slots=True)
class Elu:
    alpha: float = 1.0


@dataclass(frozen=True, slots=True)
class Softplus:
    """``log(1 + exp(beta x)) / beta``, ``x`` itself where ``beta x > threshold`` (torch)."""

    beta: float = 1.0
    threshold: float = 20.0


@dataclass(frozen=True, slots=True)
class Clamp:
    """``min(max(x, lo), hi)``; None leaves that side open."""

    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True, slots=True)
class LayerNorm:
    normalized_shape: tuple[int, ...]
    eps: float = 1e-5


@dataclass(frozen=True, slots=True)
class GroupNorm:
    groups: int
    eps: float = 1e-5


@dataclass(frozen=True, slots=True)
class Softmax:
    dim: int
    log: bool = False


@dataclass(frozen=True, slots=True)
class Reduce:
    """Reduction over ``dims`` (never the batch dimension 0)."""

    dims: tuple[int, ...]
    keepdim: bool = False


@dataclass(frozen=True, slots=True)
class Permute:
    perm: tuple[int, ...]  # perm[0] == 0


@dataclass(frozen=True, slots=True)
class Pad:
    """``F.pad``: ``pads[d] = (before, after)`` per dim (0 for the batch, < 0 crops); modes: ``kernels.fp32.pad``."""

    pads: tuple[tuple[int, int], ...]
    value: float = 0.0
    mode: str = "constant"  # "constant" (fills value) | "reflect" | "replicate" | "circular": torch's names

    def __post_init__(self) -> None:
        if self.mode not in ("constant", "reflect", "replicate", "circular"):
            raise ValueError(f"Pad mode {self.mode!r}: one of constant, reflect, replicate, circular")


@dataclass(frozen=True, slots=True)
class Attention:
    """Scaled-dot-product attention of inputs (q, k, v[, mask]): ``softmax(q k^T * scale + mask) v``; ``scale``
    None means ``1/sqrt(E)``; ``causal`` masks keys after the query position; the optional fourth input is an
    additive float mask (a relative-position bias) broadcast to (..., L, S)."""

    scale: float | None = None
    causal: bool = False


@dataclass(frozen=True, slots=True)
class Trunc:
    """QONNX Trunc as qonnx ``trunc.py`` ``trunc_v1`` computes it (the op of models importing the QONNX domain
    at opset 1): ``y = (rnd(round(x / scale + zero_point) / 2**(in_bits - out_bits)) - zero_point) * scale`` with
    ``round`` half to even and ``rnd`` the ``rounding`` mode (QONNX's names: "FLOOR", "ROUND"/"HALF_EVEN",
    "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN"). The truncated integer is not scaled back by
    ``2**(in_bits - out_bits)`` and the whole ``zero_point`` is subtracted. Opset >= 2 selects ``Trunc_v2``
    (output scale, clamp to ``out_bits``, signed/narrow), which these fields cannot express."""

    in_bits: int
    out_bits: int
    scale: float
    zero_point: float = 0.0
    rounding: str = "FLOOR"


@dataclass(frozen=True, slots=True)
class MultiThreshold:
    """FINN/QONNX MultiThreshold (qonnx ``multithreshold.py``): ``y = out_scale * #{t in thresholds[c] : x >= t}
    + out_bias`` per element of channel c (dim 1), in float32; NaN counts 0. params ``thresholds`` f32[C or 1, T]
    (a count: the order within a row does not matter). QONNX's node reads its channel axis from ``data_layout``
    and, without one, takes rank-3 inputs as NWC (channels last): an importer must permute those first."""

    out_scale: float = 1.0
    out_bias: float = 0.0


Attrs = (NoAttrs | Conv2d | Linear | BatchNorm | Pool | AdaptivePool | Concat | ChannelShuffle | Reshape
         | Upsample | Slice | Scalar | Quantize | Gelu | LeakyRelu | Elu | Softplus | Clamp | LayerNorm | GroupNorm
         | Softmax | Reduce | Permute | Pad | Attention | Trunc | MultiThreshold)


# ----------------------------------------------------------------------------- nodes and graphs
@dataclass(frozen=True, slots=True)
class Node:
    """One operation. ``params`` maps a role ("weight", "bias", "mean", ...) to a key of
    ``Graph.params``; ``module`` is the qualified name of the torch module it came from (for errors
    and reports); ``meta`` carries annotations added by passes (e.g. quantization scales)."""

    name: str
    op: Op
    inputs: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: Any = NoAttrs()
    params: Mapping[str, str] = field(default_factory=dict)
    module: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    def __reduce__(self):  # mapping proxies do not pickle; rebuild from plain dicts
        return (Node, (self.name, self.op, self.inputs, self.shape, self.attrs, dict(self.params), self.module,
                       dict(self.meta)))

    def replace(self, **changes: Any) -> "Node":
        return dataclasses.replace(self, **changes)

    @property
    def numel(self) -> int:
        """Elements of the output for one sample (batch dimension excluded)."""
        return int(np.prod(self.shape[1:], dtype=np.int64))


@dataclass(frozen=True, slots=True)
class Input:
    name: str
    shape: tuple[int, ...]


def _read_only(a: Any) -> Any:
    """A parameter as the graph holds it: a read-only view of an array (an edit in place, a fault injected into
    ``graph.params[k]``, fails loudly instead of leaving the simulators' per-array caches stale)."""
    if isinstance(a, np.ndarray) and a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Graph:
    """A traced network. Build new graphs with :meth:`replace` (passes never mutate)."""

    nodes: tuple[Node, ...]
    inputs: tuple[Input, ...]
    outputs: tuple[str, ...]
    params: Mapping[str, np.ndarray] = field(default_factory=dict)
    name: str = "graph"
    batch_fixed: bool = False  # the model moves or merges the batch dimension: a graph of one sample (batch 1)
    _index: Mapping[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "params", MappingProxyType({k: _read_only(v) for k, v in self.params.items()}))
        index = {n.name: n for n in self.nodes}
        if len(index) != len(self.nodes):
            raise ValueError("duplicate node names in graph")
        known = {i.name for i in self.inputs}
        for n in self.nodes:  # topological order and parameter references
            missing = [i for i in n.inputs if i not in known]
            if missing:
                raise ValueError(f"node {n.name!r} reads {missing} before they are produced")
            for role, key in n.params.items():
                if key not in self.params:
                    raise ValueError(f"node {n.name!r} references missing parameter {key!r} ({role})")
            known.add(n.name)
        for o in self.outputs:
            if o not in known:
                raise ValueError(f"graph output {o!r} is not produced by any node")
        object.__setattr__(self, "_index", MappingProxyType(index))

    def __reduce__(self):  # mapping proxies do not pickle; rebuild from plain dicts
        return (Graph, (self.nodes, self.inputs, self.outputs, dict(self.params), self.name, self.batch_fixed))

    # -- access
    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def __getitem__(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def shape_of(self, name: str) -> tuple[int, ...]:
        for i in self.inputs:
            if i.name == name:
                return i.shape
        return self._index[name].shape

    def param(self, node: Node, role: str) -> np.ndarray:
        return self.params[node.params[role]]

    def consumers(self) -> dict[str, list[Node]]:
        """Map from a value's name to the nodes that read it."""
        out: dict[str, list[Node]] = {i.name: [] for i in self.inputs}
        for n in self.nodes:
            out.setdefault(n.name, [])
            for i in n.inputs:
                out[i].append(n)
        return out

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.inputs[0].shape

    @property
    def batch(self) -> int:
        return self.inputs[0].shape[0]

    @property
    def param_count(self) -> int:
        """Distinct constant tensors referenced by nodes (a shared block counts once): what the hardware stores.
        Batch-norm running statistics are not counted; for a forward that reads only its parameters this is torch's
        ``parameters()`` count (docs/concepts/ir.md: buffers used as operands and weights used in two layouts
        count too)."""
        used = {k for n in self.nodes for role, k in n.params.items() if role not in BUFFER_ROLES}
        return int(sum(self.params[k].size for k in used))

    def replace(self, **changes: Any) -> "Graph":
        return dataclasses.replace(self, **changes)

    def summary(self) -> str:
        lines = [f"Graph {self.name}: {len(self.nodes)} nodes, inputs "
                 + ", ".join(f"{i.name}{list(i.shape)}" for i in self.inputs)
                 + f", outputs {list(self.outputs)}"]
        for n in self.nodes:
            lines.append(f"  {n.name:<28} {n.op.value:<16} {str(list(n.shape)):<22} <- {', '.join(n.inputs)}")
        return "\n".join(lines)


def with_source_shapes(graph: Graph, shapes: Mapping[str, tuple[int, ...]]) -> Graph:
    """``graph`` with each output node's shape in the source model (``meta["source_shape"]``) when the graph is
    ``batch_fixed``: there an output that does not keep the batch first carries a leading unit dim in the IR, and
    :func:`hwsim.simulate` gives the user the source's shape back (the values are the same)."""
    if not graph.batch_fixed:
        return graph
    return graph.replace(nodes=tuple(n.replace(meta={**n.meta, "source_shape": tuple(shapes[n.name])})
                                     if n.name in shapes else n for n in graph.nodes))
