"""Small in-place edits of an ONNX graph shared by the build's rewrites."""

from __future__ import annotations

import onnx


def set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Replace the graph's nodes and drop the initializers no node reads any more."""
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
