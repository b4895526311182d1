"""Training reports: PNG figures and one self-contained HTML page per model."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from modelport.metadata import DATE_PARTS, ModelCard


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
    from sklearn.metrics import auc as sk_auc
    from sklearn.metrics import roc_curve

    assert card.classes is not None
    fig, ax = _figure()
    pairs = [(1, card.classes[1])] if len(card.classes) == 2 else list(enumerate(card.classes))
    # Overlapping curves stay apart: a line style, a marker and a colour per class,
    # and each curve's own AUC in the legend.
    styles = ["-", "--", "-.", ":"]
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    for k, (col, cls) in enumerate(pairs):
        fpr, tpr, _ = roc_curve(y_true == cls, proba[:, col])
        auc = float(sk_auc(fpr, tpr))
        ax.plot(
            fpr,
            tpr,
            linestyle=styles[k % len(styles)],
            marker=markers[k % len(markers)],
            markevery=max(1, len(fpr) // 8),
            markersize=4,
            linewidth=1.5,
            alpha=0.85,
            label=f"class {cls} (AUC {auc:.3f})",
        )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC curve (AUC {card.evaluation.test['roc_auc']:.3f})")
    ax.legend(loc="lower right")
    return _save(fig, out / "roc_curve.png")


def _calibration(card: ModelCard, y_true: np.ndarray, proba: np.ndarray, out: Path) -> Path:
    from sklearn.calibration import calibration_curve

    assert card.classes is not None
    fig, ax = _figure()
    pairs = [(1, card.classes[1])] if len(card.classes) == 2 else list(enumerate(card.classes))
    for k, (col, cls) in enumerate(pairs):
        frac, mean = calibration_curve(y_true == cls, proba[:, col], n_bins=10)
        ax.plot(mean, frac, marker="os^Dv"[k % 5], label=f"class {cls}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title("Calibration (test split, 10 bins)")
    ax.legend(loc="upper left")
    return _save(fig, out / "calibration.png")


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
    resid = y_true - y_pred
    ax.scatter(y_pred, resid, s=12, alpha=0.5, label="test rows")
    # Mean and spread of the residuals per decile of predicted value: a trend or a
    # widening band shows where the model is biased or less sure.
    edges = np.unique(np.quantile(y_pred, np.linspace(0, 1, 11)))
    if len(edges) > 2:
        idx = np.clip(np.searchsorted(edges, y_pred, side="right") - 1, 0, len(edges) - 2)
        centres, means, spreads = [], [], []
        for b in range(len(edges) - 1):
            r = resid[idx == b]
            if len(r):
                centres.append((edges[b] + edges[b + 1]) / 2)
                means.append(r.mean())
                spreads.append(r.std())
        ax.errorbar(
            centres,
            means,
            yerr=spreads,
            color="C3",
            marker="o",
            capsize=3,
            label="mean ± sd per predicted decile",
        )
        ax.legend(loc="best")
    ax.axhline(0, linestyle="--", color="grey", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("residual (actual - predicted)")
    ax.set_title("Residuals by predicted value (test split)")
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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _data_section(card: ModelCard) -> str:
    d = card.data
    if d is None:
        return ""
    facts = [
        ["rows read", str(d.rows)],
        ["rows trained on (all splits)", str(d.rows_used)],
        ["columns by kind", ", ".join(f"{k} {n}" for k, n in sorted(d.columns.items()))],
    ]
    facts += [[f"rows dropped: {why}", str(n)] for why, n in d.dropped_rows.items()]
    if d.dropped_columns:
        facts.append(["columns left out (--drop)", ", ".join(d.dropped_columns)])
    if d.delimiter is not None:
        facts.append(["delimiter, encoding", f"{d.delimiter!r}, {d.encoding}"])
    if d.class_counts:
        total = sum(d.class_counts.values())
        facts.append(
            [
                "class balance",
                ", ".join(f"{c}: {n} ({n / total:.1%})" for c, n in d.class_counts.items()),
            ]
        )
    missing = [
        [f.name, str(f.missing), "" if f.impute is None else f"{d.impute} → {f.impute!r}"]
        for f in card.features
        if f.missing
    ]
    dates = [
        [f.name, " → ".join(f.date_range or []), ", ".join(f"{f.name}.{p}" for p in DATE_PARTS)]
        for f in card.features
        if f.kind == "datetime"
    ]
    out = "<h2>Data</h2>" + _table(["", ""], facts)
    if missing:
        out += "<h3>Missing values</h3>" + _table(["feature", "missing", "imputed with"], missing)
    if dates:
        out += "<h3>Dates</h3>" + _table(["feature", "range", "numeric features"], dates)
    return out


def _per_class_section(card: ModelCard) -> str:
    per = card.evaluation.per_class
    if not per:
        return ""
    rows = [
        [c, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", f"{m['support']:.0f}"]
        for c, m in per.items()
    ]
    return "<h3>Per class (test split)</h3>" + _table(
        ["class", "precision", "recall", "F1", "support"], rows
    )


def _params_section(card: ModelCard) -> str:
    p = card.params
    rows = [["estimator", str(p.get("family", p.get("estimator", "")))]]
    rows.append(["overrides (--param)", str(p.get("overrides") or "none")])
    model = p.get("model_params")
    if isinstance(model, dict):
        rows.append(["all parameters", ", ".join(f"{k}={v}" for k, v in model.items())])
    return "<h2>Model</h2>" + _table(["", ""], rows)


def _leaderboard_section(card: ModelCard) -> str:
    if not card.leaderboard:
        return ""
    rows = [
        [
            ("chosen: " if c.chosen else "") + c.estimator,
            ", ".join(f"{k}={v}" for k, v in c.params.items()),
            f"{c.cv_mean:.4f} ± {c.cv_std:.4f}",
            f"{c.fit_seconds:.3f}",
            f"{c.predict_us_per_row:.0f}",
        ]
        for c in card.leaderboard
    ]
    metric = card.leaderboard[0].metric
    return (
        "<h2>Search leaderboard</h2><p>5-fold cross-validation on the train split; "
        "the chosen model was then evaluated once on the test split.</p>"
        + _table(["estimator", "parameters", f"CV {metric}", "fit s/fold", "predict µs/row"], rows)
    )


def _importance(card: ModelCard, out: Path, top: int = 15) -> Path | None:
    """Global importance (mean |attribution| on the test split) as horizontal bars."""
    if card.importance is None:
        return None
    imp = card.importance
    ranked = sorted(imp.values.items(), key=lambda kv: kv[1], reverse=True)[:top]
    fig, ax = _figure()
    ax.barh([k for k, _ in reversed(ranked)], [v for _, v in reversed(ranked)], color="#4c72b0")
    ax.set_xlabel(f"mean |attribution| ({imp.output})")
    ax.set_title(f"Global importance ({imp.method}, {imp.rows} test rows)")
    ax.tick_params(axis="y", labelsize=7)
    return _save(fig, out / "feature_importance.png")


def write_report(
    out: Path,
    tag: str,
    card: ModelCard,
    y_test: np.ndarray,
    predictions: list[Any],
    probabilities: np.ndarray | None,
    history: dict[str, list[float]] | None,
    gate_lines: list[str],
    importance_html: str | None = None,
) -> Path:
    """Write the figures and ``report.html`` into ``out``; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    pictures: list[Path] = []
    if card.task == "classification":
        assert probabilities is not None
        pictures += [
            _confusion(card, out),
            _roc(card, y_test, probabilities, out),
            _calibration(card, y_test, probabilities, out),
        ]
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
    bars = _importance(card, out)
    importance_bars = (
        f'<figure><img alt="feature_importance" src="data:image/png;base64,'
        f'{base64.b64encode(bars.read_bytes()).decode()}"></figure>'
        if bars
        else ""
    )
    flag = " <b>over-fitted</b>" if ev.overfit else ""
    rule = f"<br><small>{html.escape(ev.overfit_rule)}</small>" if ev.overfit_rule else ""
    importance = (
        f"<h2>Feature importance</h2>{importance_html}"
        if importance_html
        else ""  # the card's global importance is shown beside the metrics
    )
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
{_data_section(card)}
<div style="display:flex;gap:2rem;align-items:flex-start"><div>
<h2>Held-out test metrics</h2><table><tr><th>metric</th><th>value</th></tr>{rows}</table>
</div>{importance_bars}</div>
{_per_class_section(card)}
<p>{ev.score_name}: train {ev.train_score:.4f}, validation {ev.validation_score:.4f},
gap {ev.overfit_gap:+.4f}{flag}{rule}</p>
{_params_section(card)}
{_leaderboard_section(card)}
{importance}
<h2>Quality gate</h2><ul>{gate}</ul>
<h2>Figures</h2>{imgs}
</body></html>
"""
    path = out / "report.html"
    path.write_text(page, encoding="utf8")
    return path
