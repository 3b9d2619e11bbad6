"""Fixtures of the vision tests (real parts, started for the test session).

`pipeline` (int8, what the edge runs) and `pipeline_fp32` are loaded once per session from the
built models, so every test module can use the real models without paying the load twice.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pipeline(models_dir):
    from edge.vision import Pipeline

    return Pipeline.load(models_dir, precision="int8", threads=1)


@pytest.fixture(scope="session")
def pipeline_fp32(models_dir):
    from edge.vision import Pipeline

    return Pipeline.load(models_dir, precision="fp32", threads=1)
