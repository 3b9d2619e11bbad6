"""ONNX Runtime sessions, created the same way for every model.

Graph optimisation, measured here (ORT 1.32, 1 thread, machine shared, so +-10 %):

    model (build 3: PRelu)   BASIC    EXTENDED   ALL
    512-d embedder fp32      15.2     14.3       11.7 ms
    512-d embedder int8      15.8      8.7       10.1 ms
    detector fp32             7.0      6.8        2.9 ms

    model (build 4: PRelu rewritten, 25th percentile of 40 interleaved runs)
    512-d embedder fp32      10.6     10.5        6.9 ms
    192-d embedder fp32      11.3     11.8        7.5 ms
    512-d embedder int8      12.6      5.3        5.0 ms
    192-d embedder int8      13.4      5.8        5.4 ms
    landmarks fp32            0.73     0.62       0.51 ms

Since build 4 every model gets ALL: its NCHWc layout transform pays off for float models, and
for the int8 ones it changes nothing once their PRelu layers no longer run through ORT's slow
PRelu kernel (with it, EXTENDED was best for int8). ALL includes EXTENDED's QDQ -> QLinear
fusions, which since build 6 cover the int8 embedders' PRelu layers too
(edge/modelpack/int8_prelu.py: 512-d int8 5.0 -> 3.7 ms, 192-d 5.4 -> 3.7 ms; build 7,
depthwise QLinearConv for their slopes: 3.35 and 3.4 ms). The 2.5x slowdown of the default level
reported in issue 2 did not reproduce with this runtime. `InferenceSession.run` is
thread-safe, so one session serves every thread.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def make_session(model: str | Path | bytes, threads: int | None = None) -> ort.InferenceSession:
    """A session of the model at a path, or of its bytes."""
    opts = ort.SessionOptions()
    # float and int8 graphs alike measure best at ALL (table above)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads or 0)  # 0: one per physical core
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
