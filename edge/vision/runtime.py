"""ONNX Runtime sessions, created the same way for every model.

Graph optimisation: BASIC constant-folds and fuses, EXTENDED adds the QDQ -> QLinear fusions
that make int8 models run int8 kernels (without them a QDQ model runs dequantize + float conv
and is slower than fp32). Level ALL adds the NCHWc layout transform, which ran the embedder
about 2.5x slower on this kind of CPU (measured in issue 2), so it is never used.
`InferenceSession.run` is thread-safe, so one session serves every worker thread.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def make_session(path: str | Path, threads: int | None = None, quantized: bool = False) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if quantized else ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    )
    opts.intra_op_num_threads = int(threads or 0)  # 0: one per physical core
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
