"""ROC curves as PNG bytes, drawn from the ROC points stored in the results (nothing is recomputed).

Byte-identical output for identical results: the figure is built on a private Agg canvas (no
pyplot global state, no GUI backend), under matplotlib's default style whatever the user's
matplotlibrc says, and saved without the "Software" PNG text chunk that carries the version.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np

from packager.report.format import score
from packager.results import ModelResult, Verification

_STYLE: dict[str, object] = {
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
}
_FAR_LINE_MIN = 1e-6


def _series(model: ModelResult) -> list[tuple[str, Verification]]:
    """FP32 and every variant in its gate mode, for each embedding output with verification metrics
    (only embedding outputs have them, and only with pairs); labelled by output when there are several."""
    found = []
    for variant in [model.reference, *model.variants]:
        mode = variant.modes.get(variant.gate_mode)
        for out in mode.outputs if mode is not None else []:
            if out.kind == "embedding" and out.verification is not None:
                found.append((variant.variant, out.name, out.verification))
    several = len({name for _, name, _ in found}) > 1
    return [(f"{variant} [{name}]" if several else variant, v) for variant, name, v in found]


def roc_png(model: ModelResult) -> bytes | None:
    """One PNG with the ROC of FP32 and every variant on a log FAR axis; ``None`` without verification.

    The log axis starts at 1/impostors, the smallest FAR the data can resolve, so the plot never
    suggests a curve where there are no measurements. Each series is drawn as a staircase through
    the stored points (the pessimistic reading between two thinned points).
    """
    series = _series(model)
    if not series:
        return None
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context(["default", _STYLE]):
        fig = Figure(figsize=(6.4, 4.4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        floor = min(1.0 / v.negatives for _, v in series)
        lowest_tar = 1.0
        for name, v in series:
            fpr = np.asarray(v.roc_fpr)
            tpr = np.asarray(v.roc_tpr)
            shown = fpr > 0
            if shown.any():
                lowest_tar = min(lowest_tar, float(tpr[shown].min()))
            ax.plot(fpr[shown], tpr[shown], drawstyle="steps-post", label=f"{name} (AUC {score(v.auc)})")
        for key in sorted({k for _, v in series for k in v.tar_at_far}, key=float):
            far = float(key)
            if far >= max(floor, _FAR_LINE_MIN):
                ax.axvline(far, color="0.5", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlim(floor, 1.0)
        # Good models live at TAR 0.9-1.0: start the axis just below the lowest plotted point.
        ax.set_ylim(max(0.0, math.floor((lowest_tar - 0.02) * 10) / 10), 1.005)
        ax.set_xlabel("false accept rate (log scale)")
        ax.set_ylabel("true accept rate")
        ax.set_title(f"{model.name}: verification ROC")
        ax.legend(loc="lower right")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """Inline image for a self-contained HTML page (no external files or links)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
