"""The loss curve of a tuning run: a PNG with matplotlib when it is installed, else an SVG written by hand."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_loss(losses: Sequence[float], out_dir: Path) -> Path:
    """Loss per optimizer step -> the written image's path (loss.png or loss.svg)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _svg(losses, out_dir / "loss.svg")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _svg(losses: Sequence[float], path: Path, width: int = 600, height: int = 300, pad: int = 40) -> Path:
    lo, hi = (min(losses), max(losses)) if losses else (0.0, 1.0)
    span, n = (hi - lo) or 1.0, max(len(losses) - 1, 1)
    points = " ".join(
        f"{pad + i * (width - 2 * pad) / n:.1f},{height - pad - (v - lo) * (height - 2 * pad) / span:.1f}"
        for i, v in enumerate(losses)
    )
    path.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<polyline fill="none" stroke="steelblue" stroke-width="2" points="{points}"/>'
        f'<text x="{pad}" y="20" font-size="12">training loss {hi:.3f} → {losses[-1] if losses else 0:.3f}</text>'
        f'<text x="{width // 2}" y="{height - 8}" font-size="12">optimizer step</text></svg>'
    )
    return path
