"""The finishing steps every bench's DET figure shares: log-log error axes, labels, grid, legend, PNG."""

from __future__ import annotations

from pathlib import Path


def save_det(fig, ax, out: Path, *, xlabel: str, ylabel: str, title: str, vline: float | None = None,
             legend: dict | None = None, dpi: int = 110, title_size: float | None = 9) -> str:
    """Finish the DET figure `fig` (its one axes `ax`): log-log axes, a grey line at `vline` (the
    rate in force; None: none), grid, legend (matplotlib's options, default a small font), and write
    it to `out` (PNG); the path written."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log")
    ax.set_yscale("log")
    if vline is not None:
        ax.axvline(vline, color="grey", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, **({} if title_size is None else {"fontsize": title_size}))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(**(legend or {"fontsize": 8}))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return str(out)
