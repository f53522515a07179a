"""Counted floating-point operations of a traced TensorFlow function (its graph, not a model).

    counts = count_flops(tf.function(step).get_concrete_function(batch))
    counts.total, counts.by_op_type, counts.by_source, counts.uncounted

Method: every op of the function's graph that its outputs or stateful ops depend on (the
runtime prunes the others), and of the functions it calls (PartitionedCall /
StatefulPartitionedCall bodies, the larger branch of an If, a While body times its trip count
when that is a constant), is counted from its static shapes by
  1. the gap formulas of `ANALYTIC` below, for op types TF registers no statistics for:
     Conv3D's input and filter gradients (2 Kt Kh Kw Cin x the forward output elements, as
     the forward), Einsum (2 x the product of every index's size for two operands, the input
     size for one), 3D pooling and its gradient (window x outputs), and unary math ops (one
     per element); else
  2. TF's registered FLOP statistics (`ops.get_stats_for_node_def(graph, node, "flops")`: the
     formulas `tf.compat.v1.profiler` uses; MatMul / BatchMatMul 2 K x outputs, Conv2D and
     Conv3D 2 K Cin x outputs, Conv2D's backprops, elementwise ops one per element, Sum/Mean
     per input element) when the op type has one.
Everything else is not counted and listed in `uncounted` with its output elements: data
movement (Reshape, Gather, Cast, Concat ...) has no arithmetic; the rest is small next to
the convolutions and matmuls (the report shows its element count as an upper bound).
"""

import dataclasses
import re
from collections import Counter
from typing import Dict, Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops, tensor_util
from tensorflow.python.util import deprecation

# Ops without arithmetic (or with no floating-point arithmetic): never reported as gaps.
NO_ARITHMETIC = frozenset(
    """Const Placeholder Identity IdentityN ReadVariableOp AssignVariableOp VarHandleOp NoOp
    Reshape Shape ShapeN Size Rank Squeeze ExpandDims Transpose ConcatV2 ConcatOffset Pack
    Unpack Split SplitV Slice StridedSlice StridedSliceGrad Tile Fill ZerosLike OnesLike
    BroadcastTo BroadcastArgs BroadcastGradientArgs GatherV2 GatherNd ScatterNd
    ResourceGather ResourceScatterUpdate TensorScatterUpdate Cast Bitcast StopGradient
    PreventGradient Range OneHot Select SelectV2 Where InvertPermutation Reverse ReverseV2
    Pad PadV2 MirrorPad LogicalAnd LogicalOr LogicalNot Any All TopKV2 ArgMax ArgMin
    StatelessRandomGetKeyCounter StatelessRandomUniformV2 StatelessRandomNormalV2
    StatelessTruncatedNormalV2 StatelessRandomUniformIntV2 RandomUniform RandomStandardNormal
    TensorListReserve TensorListFromTensor TensorListStack TensorListGetItem
    TensorListSetItem TensorListLength TensorListElementShape EnsureShape CheckNumerics
    Assert FloorMod FloorDiv Floor Ceil Sign Round Rint NonMaxSuppressionV5
    NonMaxSuppressionV4 NonMaxSuppressionV3 UnsortedSegmentMax Unique""".split()
)
UNARY_MATH = frozenset(
    """Relu Relu6 ReluGrad Relu6Grad Elu EluGrad Selu Sqrt SqrtGrad Exp Expm1 Log1p Sigmoid
    SigmoidGrad Tanh TanhGrad Softplus Abs Sin Cos Erf Inv Softsign LeakyRelu LeakyReluGrad
    Gelu DivNoNan MulNoNan Xlogy Xdivy Max Min Prod""".split()
)


def _shape(tensor) -> Optional[list]:
    shape = tensor.shape
    return shape.as_list() if shape.is_fully_defined() else None


def _elements(tensor) -> Optional[int]:
    shape = _shape(tensor)
    return None if shape is None else int(np.prod(shape, dtype=np.int64))


def conv3d_backprop_flops(op) -> Optional[int]:
    """Conv3DBackpropInput(V2) / Conv3DBackpropFilter(V2): inputs (input or its sizes, filter
    or its sizes, out_backprop [N, D', H', W', Cout]); 2 Kt Kh Kw Cin x out_backprop elements,
    the forward's count (each forward multiply-add has one in each gradient)."""
    if op.type.startswith("Conv3DBackpropInput"):
        filter_shape = _shape(op.inputs[1])
    else:
        filter_shape = _shape(op.outputs[0])  # the filter gradient has the filter's shape
    grad = _elements(op.inputs[2])
    if filter_shape is None or grad is None:
        return None
    kt, kh, kw, cin, _ = filter_shape
    return 2 * kt * kh * kw * cin * grad


def einsum_flops(op) -> Optional[int]:
    """Einsum: two operands -> 2 x the product of the size of every index (each multiply-add
    of the contraction); one operand (transpose / reduction) -> its input elements."""
    equation = op.get_attr("equation").decode()
    inputs, _ = equation.replace(" ", "").split("->")
    sizes = {}
    for subscripts, tensor in zip(inputs.split(","), op.inputs):
        shape = _shape(tensor)
        if shape is None:
            return None
        if "..." in subscripts:
            head, tail = subscripts.split("...")
            n_ellipsis = len(shape) - len(head) - len(tail)
            # Ellipsis dims as pseudo-indices numbered from the right (broadcast alignment).
            subscripts = list(head) + [f"#{n_ellipsis - i}" for i in range(n_ellipsis)] + list(tail)
        for index, size in zip(subscripts, shape):
            sizes[index] = max(sizes.get(index, 1), size)
    if len(op.inputs) == 1:
        return _elements(op.inputs[0])
    return 2 * int(np.prod(list(sizes.values()), dtype=np.int64))


def pool3d_flops(op) -> Optional[int]:
    """MaxPool3D / AvgPool3D: window volume x output elements (one compare or add each);
    their gradients: window volume x the forward's output elements (the gradient input)."""
    ksize = op.get_attr("ksize")
    window = int(np.prod(ksize))
    if op.type in ("MaxPool3D", "AvgPool3D"):
        outputs = _elements(op.outputs[0])
    else:  # MaxPool3DGrad(orig_input, orig_output, grad); AvgPool3DGrad(shape, grad)
        outputs = _elements(op.inputs[-1])
    return None if outputs is None else window * outputs


ANALYTIC = {
    "Conv3DBackpropInput": conv3d_backprop_flops,
    "Conv3DBackpropInputV2": conv3d_backprop_flops,
    "Conv3DBackpropFilter": conv3d_backprop_flops,
    "Conv3DBackpropFilterV2": conv3d_backprop_flops,
    "Einsum": einsum_flops,
    "MaxPool3D": pool3d_flops,
    "AvgPool3D": pool3d_flops,
    "MaxPool3DGrad": pool3d_flops,
    "AvgPool3DGrad": pool3d_flops,
}
for _name in UNARY_MATH:
    ANALYTIC[_name] = lambda op: _elements(op.outputs[0])


_REGISTERED = {}


def _registered(op_type: str) -> bool:
    """Whether TF registers FLOP statistics for `op_type` (`ops.RegisterStatistics`)."""
    if op_type not in _REGISTERED:
        try:
            ops._stats_registry.lookup(f"{op_type},flops")  # noqa: SLF001
            _REGISTERED[op_type] = True
        except LookupError:
            _REGISTERED[op_type] = False
    return _REGISTERED[op_type]


@dataclasses.dataclass
class FlopCount:
    """total: counted FLOPs. by_op_type: op type -> FLOPs. by_source: 'tf_registry' /
    'analytic' -> FLOPs. uncounted: op type -> output elements of ops with arithmetic that
    no formula counts. unknown_shape: op type -> ops skipped for a dynamic shape. notes:
    While loops whose trip count was not a constant (body counted once)."""

    total: int = 0
    by_op_type: Dict[str, int] = dataclasses.field(default_factory=Counter)
    by_source: Dict[str, int] = dataclasses.field(default_factory=Counter)
    by_dtype: Dict[str, int] = dataclasses.field(default_factory=Counter)
    uncounted: Dict[str, int] = dataclasses.field(default_factory=Counter)
    unknown_shape: Dict[str, int] = dataclasses.field(default_factory=Counter)
    notes: list = dataclasses.field(default_factory=list)

    def add(self, other: "FlopCount", times: int = 1) -> None:
        self.total += times * other.total
        for name in ("by_op_type", "by_source", "by_dtype", "uncounted", "unknown_shape"):
            mine = getattr(self, name)
            for key, value in getattr(other, name).items():
                mine[key] += times * value
        self.notes += other.notes

    def to_json(self) -> dict:
        top = dict(sorted(self.by_op_type.items(), key=lambda kv: -kv[1]))
        return dict(
            total=int(self.total),
            by_source={k: int(v) for k, v in self.by_source.items()},
            by_dtype={k: int(v) for k, v in self.by_dtype.items()},
            by_op_type={k: int(v) for k, v in top.items() if v},
            uncounted_output_elements={k: int(v) for k, v in self.uncounted.items()},
            unknown_shape_ops=dict(self.unknown_shape),
            notes=list(self.notes),
        )


def _function_graph(graph, name: str):
    """The FuncGraph of function `name` as called from `graph` (looked up outwards)."""
    g = graph
    while g is not None:
        function = g._get_function(name)  # noqa: SLF001
        if function is not None:
            return function.graph
        g = getattr(g, "outer_graph", None)
    raise KeyError(f"function {name} not found from graph {graph.name}")


def _op_flops(op) -> tuple:
    """-> (FLOPs or None when its shapes are dynamic, source) of one op without a body.
    ANALYTIC comes first: Model Garden registers its own Einsum statistics when
    `official.core.train_utils` is imported (two operands only), so the registry's content
    depends on what was imported."""
    if op.type in ANALYTIC:
        return ANALYTIC[op.type](op), "analytic"
    if _registered(op.type):
        try:
            stats = ops.get_stats_for_node_def(op.graph, op.node_def, "flops")
        except ValueError:  # assert_is_fully_defined: a dynamic shape
            return None, "tf_registry"
        return int(stats.value or 0), "tf_registry"
    return 0, None


def _trip_count(op) -> Optional[int]:
    """While (v2) inputs are (loop counter, maximum iterations, loop vars...)."""
    value = tensor_util.constant_value(op.inputs[1]) if len(op.inputs) > 1 else None
    return None if value is None or int(value) < 0 else int(value)


def _needed_ops(graph) -> Optional[set]:
    """Names of the ops that the function's outputs and control outputs (its stateful ops)
    depend on: the runtime prunes the rest (e.g. the input gradient of a trunk's first conv,
    which `tape.gradient` w.r.t. the weights builds but nothing reads). None for a graph
    without outputs (a plain tf.Graph): every op counts."""
    roots = [t.op for t in getattr(graph, "outputs", [])]
    roots += list(getattr(graph, "control_outputs", []))
    if not roots:
        return None
    needed, stack = set(), roots
    while stack:
        op = stack.pop()
        if op.name in needed:
            continue
        needed.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return needed


def count_graph_flops(graph) -> FlopCount:
    """FlopCount of `graph` (a tf.Graph / FuncGraph) and the functions its ops call; ops
    that no output or stateful op depends on are not counted (`_needed_ops`)."""
    counts = FlopCount()
    needed = _needed_ops(graph)
    for op in graph.get_operations():
        if needed is not None and op.name not in needed:
            continue
        attrs = op.node_def.attr
        if op.type in ("While", "StatelessWhile"):
            body = count_graph_flops(_function_graph(graph, attrs["body"].func.name))
            trips = _trip_count(op)
            if trips is None:
                counts.notes.append(f"{op.name}: trip count unknown, body counted once")
            counts.add(body, trips or 1)
            continue
        if op.type in ("If", "StatelessIf"):
            branches = [
                count_graph_flops(_function_graph(graph, attrs[key].func.name))
                for key in ("then_branch", "else_branch")
            ]
            counts.add(max(branches, key=lambda c: c.total))
            continue
        if "f" in attrs and attrs["f"].func.name:  # (Stateful)PartitionedCall and the like
            counts.add(count_graph_flops(_function_graph(graph, attrs["f"].func.name)))
            continue
        flops, source = _op_flops(op)
        if flops is None:
            counts.unknown_shape[op.type] += 1
            continue
        if source is None:
            if op.type not in NO_ARITHMETIC and op.outputs and op.outputs[0].dtype.is_floating:
                counts.uncounted[op.type] += _elements(op.outputs[0]) or 0
            continue
        counts.total += flops
        counts.by_op_type[op.type] += flops
        counts.by_source[source] += flops
        dtype = op.outputs[0].dtype.name if op.outputs else "none"
        counts.by_dtype[dtype] += flops
    return counts


def count_flops(function) -> FlopCount:
    """FlopCount of a ConcreteFunction (`tf.function(...).get_concrete_function(...)`)."""
    graph = function.graph if hasattr(function, "graph") else function
    if not isinstance(graph, tf.Graph):
        raise TypeError(f"count_flops takes a ConcreteFunction or a Graph, got {type(function)}")
    # TF's registered statistics call a TF1 shape helper that logs a deprecation warning.
    with deprecation.silence():
        return count_graph_flops(graph)


def op_type_pattern(pattern: str, counts: FlopCount) -> int:
    """FLOPs of the op types matching regular expression `pattern` (e.g. '^Conv3D')."""
    return sum(v for k, v in counts.by_op_type.items() if re.search(pattern, k))
