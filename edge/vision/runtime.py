"""ONNX Runtime sessions, created the same way for every model.

Graph optimisation, measured here (ORT 1.32, 1 thread, median of 40 runs, machine shared):

    model              BASIC    EXTENDED   ALL
    embedder fp32      15.2     14.3       11.7 ms
    embedder int8      15.8      8.7       10.1 ms
    detector fp32       7.0      6.8        2.9 ms

So float models get ALL (its NCHWc layout transform pays off on this CPU; the 2.5x slowdown
of the default level reported in issue 2 did not reproduce with this runtime) and QDQ int8
models get EXTENDED, which holds the QDQ -> QLinear fusions (without them a QDQ model runs
dequantize + float conv and is slower than fp32) but not the layout transform that slows
them down. `InferenceSession.run` is thread-safe, so one session serves every thread.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def make_session(path: str | Path, threads: int | None = None, quantized: bool = False) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED if quantized else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    opts.intra_op_num_threads = int(threads or 0)  # 0: one per physical core
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
