"""Bringing source models to a common opset and a clean graph.

The npm models are opset 9 and SFace opset 11; per-channel QDQ quantization needs opset 13
(per-axis QuantizeLinear/DequantizeLinear), so every model is converted to TARGET_OPSET first.
"""

from __future__ import annotations

import onnx
from onnx import version_converter

from edge.modelpack.errors import ModelBuildError

TARGET_OPSET = 13


def upgrade(data: bytes, name: str) -> onnx.ModelProto:
    model = onnx.load_from_string(data)
    _drop_initializer_inputs(model)
    current = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if current < TARGET_OPSET:
        try:
            model = version_converter.convert_version(model, TARGET_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors from C++
            raise ModelBuildError(f"{name}: opset {current} -> {TARGET_OPSET} conversion failed: {exc}") from None
    onnx.checker.check_model(model)
    return model


def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Remove weights that are also listed as graph inputs (SFace's exporter lists all 174).

    A weight that is a graph input may be overridden at run time, so ONNX Runtime will not fold
    BatchNorm into the convolutions before it, and the quantizer calibrates it like an activation.
    """
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
