"""The upper bound the benches print beside an error rate: 0 of 1,800 strangers admitted is up
to 0.205 % at 95 %, not 0 (the docs called such a count "holds with room" against 0.1 %)."""

from __future__ import annotations

import pytest

from edge.bench.bounds import upper95


@pytest.mark.parametrize("errors,trials,bound", [(0, 1800, 0.002047), (0, 192, 0.019030), (1, 100, 0.054459),
                                                 (29, 35746, 0.001165), (9, 27380, 0.000624)])
def test_exact_upper_bounds_of_published_counts(errors, trials, bound):
    assert upper95(errors, trials) == pytest.approx(bound, abs=2e-6)


def test_edges():
    assert upper95(0, 0) is None and upper95(5, 5) == 1.0
    assert upper95(3, 1000) > upper95(3, 10_000) > 3 / 10_000
