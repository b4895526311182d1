"""Training reports: PNG figures and one self-contained HTML page per model."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from modelport.metadata import ModelCard


def _figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5.5, 4.2), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _confusion(card: ModelCard, out: Path) -> Path:
    assert card.evaluation.confusion_matrix is not None and card.classes is not None
    cm = np.asarray(card.evaluation.confusion_matrix)
    fig, ax = _figure()
    ax.imshow(cm, cmap="Blues")
    labels = [str(c) for c in card.classes]
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(
            j, i, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black"
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (test split)")
    return _save(fig, out / "confusion_matrix.png")


def _roc(card: ModelCard, y_true: np.ndarray, proba: np.ndarray, out: Path) -> Path:
    from sklearn.metrics import roc_curve

    assert card.classes is not None
    fig, ax = _figure()
    pairs = [(1, card.classes[1])] if len(card.classes) == 2 else list(enumerate(card.classes))
    for col, cls in pairs:
        fpr, tpr, _ = roc_curve(y_true == cls, proba[:, col])
        ax.plot(fpr, tpr, label=f"class {cls}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC curve (AUC {card.evaluation.test['roc_auc']:.3f})")
    ax.legend(loc="lower right")
    return _save(fig, out / "roc_curve.png")


def _regression(y_true: np.ndarray, y_pred: np.ndarray, out: Path) -> list[Path]:
    fig, ax = _figure()
    ax.scatter(y_true, y_pred, s=12, alpha=0.7)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("actual")
    ax.set_ylabel("predicted")
    ax.set_title("Predicted vs actual (test split)")
    first = _save(fig, out / "predicted_vs_actual.png")
    fig, ax = _figure()
    ax.scatter(y_pred, y_true - y_pred, s=12, alpha=0.7)
    ax.axhline(0, linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual - predicted)")
    ax.set_title("Residuals (test split)")
    return [first, _save(fig, out / "residuals.png")]


def _loss(history: dict[str, list[float]], out: Path) -> Path:
    fig, ax = _figure()
    for key in ("loss", "val_loss"):
        if key in history:
            ax.plot(range(1, len(history[key]) + 1), history[key], label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training loss")
    ax.legend()
    return _save(fig, out / "loss_curve.png")


def write_report(
    out: Path,
    tag: str,
    card: ModelCard,
    y_test: np.ndarray,
    predictions: list[Any],
    probabilities: np.ndarray | None,
    history: dict[str, list[float]] | None,
    gate_lines: list[str],
) -> Path:
    """Write the figures and ``report.html`` into ``out``; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    pictures: list[Path] = []
    if card.task == "classification":
        assert probabilities is not None
        pictures += [_confusion(card, out), _roc(card, y_test, probabilities, out)]
    else:
        pictures += _regression(y_test.astype(float), np.asarray(predictions, float), out)
    if history:
        pictures.append(_loss(history, out))

    ev = card.evaluation
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in ev.test.items()
    )
    imgs = "".join(
        f'<figure><img alt="{p.stem}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"></figure>'
        for p in pictures
    )
    flag = " <b>over-fitted</b>" if ev.overfit else ""
    gate = "".join(f"<li>{html.escape(line)}</li>" for line in gate_lines)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(tag)}: training report</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3rem .6rem}}
figure{{display:inline-block;margin:.5rem}}</style></head><body>
<h1>{html.escape(tag)}</h1>
<p>{card.framework} {card.task} on {html.escape(card.data_source)}; target
<code>{html.escape(card.target)}</code>; rows train/validation/test:
{card.rows["train"]}/{card.rows["validation"]}/{card.rows["test"]}.</p>
<h2>Held-out test metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>
<p>{ev.score_name}: train {ev.train_score:.4f}, validation {ev.validation_score:.4f},
gap {ev.overfit_gap:+.4f}{flag}</p>
<h2>Quality gate</h2><ul>{gate}</ul>
<h2>Figures</h2>{imgs}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf8")
    return path
