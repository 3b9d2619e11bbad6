"""How far a measured error rate may really be: the exact (Clopper-Pearson) upper bound of a
count of errors among trials, the figure the benches print beside a rate.

0 of 1,800 strangers admitted is not "0 %": at 95 % confidence the rate may be up to 0.205 %,
twice a 0.1 % goal. A goal is met only when this bound is under it. The bound takes the trials
as independent; the benches' are not quite (the same strangers in several galleries, a few
subjects' frames), so the true uncertainty is wider still.
"""

from __future__ import annotations

import math


def upper95(errors: int, trials: int) -> float | None:
    """The two-sided 95 % Clopper-Pearson upper bound of errors / trials (None without
    trials): the p at which seeing `errors` or fewer has probability 2.5 %."""
    if trials <= 0:
        return None
    if errors >= trials:
        return 1.0
    if errors == 0:
        return 1.0 - 0.025 ** (1.0 / trials)

    def at_most(p: float) -> float:  # P(X <= errors) for X ~ Binomial(trials, p), in log space
        logs = [math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1)
                + i * math.log(p) + (trials - i) * math.log1p(-p) for i in range(errors + 1)]
        top = max(logs)
        return math.exp(top) * sum(math.exp(v - top) for v in logs)

    lo, hi = errors / trials, 1.0
    for _ in range(100):  # bisection: at_most falls as p grows
        mid = (lo + hi) / 2
        if at_most(mid) > 0.025:
            lo = mid
        else:
            hi = mid
    return hi
