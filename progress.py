"""Per-epoch values of a run, kept in output_dir/progress.tsv, and line plots of them (OpenCV only).

API
  ProgressLog(output_dir, keep_up_to=None)   reads output_dir/progress.tsv if it exists (resume);
        keep_up_to=epochs_done drops rows of later epochs (and a torn last line), as arcs.tsv does
    .add(epoch, **values)       appends one line per value (whole lines, one write, fsync);
                                a value added again for the same epoch replaces the old one
    .series(name) -> (epochs, values)     sorted by epoch
    .names()                    value names seen so far
    .plot(out_png, series_names, title)   one panel, one line per named series
  plot_train_progress(log_or_path, out_png)          train loss; valid / test accuracy
  zoom_panel(y_label, series) -> panel or None      the later half of a panel on its own y range;
        both plots add it under their accuracy panel when the late values sit in a narrow band
  plot_search_progress(arcs_tsv_path, eval_log, out_png)
        mean valid_acc of the sampled architectures per epoch (arcs.tsv `sample` rows), of the
        final candidates and of the uniform cells scored at the end (`final`, `uniform` rows), plus
        any valid_acc / test_acc in eval_log; controller baseline; controller entropy
  draw_panels(panels, title) -> BGR uint8 image; panels: [(y_label, {name: (xs, ys)})]

progress.tsv lines: `epoch<TAB>name<TAB>value`, after the header `epoch\tname\tvalue`.
"""
import math
import os

import cv2
import numpy as np

import records

PROGRESS_FILE = "progress.tsv"
HEADER = "epoch\tname\tvalue\n"
FONT = cv2.FONT_HERSHEY_SIMPLEX
AA = cv2.LINE_AA
COLORS = [(180, 100, 30), (40, 40, 210), (40, 150, 40), (160, 60, 150), (30, 140, 220), (90, 90, 90)]
PLOT_W, PANEL_H = 780, 300  # width of the axes area; the legend sits right of it
LEFT, TOP, BOTTOM = 90, 40, 55


def _is_value(fields, keep_up_to):
    """A whole progress.tsv line (epoch, name, value) of an epoch up to keep_up_to (None: any)."""
    try:
        epoch, _ = int(fields[0]), float(fields[2])
    except (ValueError, IndexError):
        return False
    return len(fields) == 3 and (keep_up_to is None or epoch <= keep_up_to)


class ProgressLog(object):
    """Per-epoch named values, persisted as whole lines in output_dir/progress.tsv."""

    def __init__(self, output_dir, keep_up_to=None, filename=PROGRESS_FILE):
        self.path = os.path.join(output_dir, filename)
        self.values = {}  # name -> {epoch: value}
        for epoch, name, value in records.keep_lines(self.path, HEADER,
                                                     lambda f: _is_value(f, keep_up_to)):
            self.values.setdefault(name, {})[int(epoch)] = float(value)

    def add(self, epoch, **values):
        """Records values (numbers) for epoch, in memory and as whole lines on disk."""
        text = ""
        for name, value in values.items():
            if value is None:
                continue
            if "\t" in name or "\n" in name:
                raise ValueError("bad value name {!r}".format(name))
            self.values.setdefault(name, {})[int(epoch)] = float(value)
            text += "{}\t{}\t{!r}\n".format(int(epoch), name, float(value))
        records.append_lines(self.path, text, HEADER)

    def names(self):
        return sorted(self.values)

    def series(self, name):
        points = sorted(self.values.get(name, {}).items())
        return [p[0] for p in points], [p[1] for p in points]

    def plot(self, out_png, series_names, title):
        """One panel with a line per named series (missing names are skipped). Returns out_png."""
        panel = ("value", {n: self.series(n) for n in series_names if n in self.values})
        return _save(out_png, draw_panels([panel], title))


# ------------------------------------------------------------------------------------- plots
def _nice_ticks(lo, hi, target=6):
    """Round tick values covering [lo, hi] (steps 1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / float(target)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    n = int(round((end - start) / step))
    return [start + i * step for i in range(n + 1)], step


def _fmt(v, step):
    if step >= 1 and abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    text = "{:.5f}".format(v).rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _text(img, s, org, scale=0.5, color=(0, 0, 0), thick=1):
    cv2.putText(img, s, (int(org[0]), int(org[1])), FONT, scale, color, thick, AA)


def _legend_width(series):
    return max([cv2.getTextSize(n, FONT, 0.5, 1)[0][0] for n in series] + [40]) + 80


def _draw_panel(img, y0, y_label, series):
    """Axes, ticks, grid, lines and legend (right of the axes) of one panel whose top is at y0."""
    x1, x2 = LEFT, LEFT + PLOT_W
    t1, t2 = y0 + TOP, y0 + PANEL_H - BOTTOM
    xs_all = [x for xs, _ in series.values() for x in xs]
    ys_all = [y for _, ys in series.values() for y in ys if math.isfinite(y)]
    cv2.rectangle(img, (x1, t1), (x2, t2), (0, 0, 0), 1, AA)
    _text(img, y_label, (x1, t1 - 12), 0.6, (0, 0, 0), 1)
    if not xs_all or not ys_all:
        _text(img, "no data yet", ((x1 + x2) // 2 - 50, (t1 + t2) // 2), 0.6, (120, 120, 120))
        return
    xticks, xstep = _nice_ticks(min(xs_all), max(max(xs_all), min(xs_all) + 1), 10)
    if xstep < 1:  # epochs are integers
        xticks, xstep = list(range(int(math.floor(xticks[0])), int(math.ceil(xticks[-1])) + 1)), 1
    yticks, ystep = _nice_ticks(min(ys_all), max(ys_all), 5)
    xlo, xhi, ylo, yhi = xticks[0], xticks[-1], yticks[0], yticks[-1]

    def px(x):
        return x1 + (x - xlo) / float(xhi - xlo) * (x2 - x1)

    def py(y):
        return t2 - (y - ylo) / float(yhi - ylo) * (t2 - t1)

    for y in yticks:
        yy = int(round(py(y)))
        cv2.line(img, (x1, yy), (x2, yy), (225, 225, 225), 1, AA)
        cv2.line(img, (x1 - 5, yy), (x1, yy), (0, 0, 0), 1, AA)
        label = _fmt(y, ystep)
        (w, h), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        _text(img, label, (x1 - 9 - w, yy + h // 2), 0.45)
    for x in xticks:
        xx = int(round(px(x)))
        cv2.line(img, (xx, t1), (xx, t2), (235, 235, 235), 1, AA)
        cv2.line(img, (xx, t2), (xx, t2 + 5), (0, 0, 0), 1, AA)
        label = _fmt(x, xstep)
        (w, h), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        _text(img, label, (xx - w // 2, t2 + 10 + h), 0.45)
    _text(img, "epoch", ((x1 + x2) // 2 - 25, t2 + 45), 0.55)
    cv2.rectangle(img, (x1, t1), (x2, t2), (0, 0, 0), 1, AA)
    legend = []
    for k, (name, (xs, ys)) in enumerate(series.items()):
        color = COLORS[k % len(COLORS)]
        pts = np.array([[px(x), py(y)] for x, y in zip(xs, ys) if math.isfinite(y)])
        if len(pts) > 1:
            cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, color, 2, AA, 4)
        for p in pts:
            cv2.circle(img, (int(round(p[0] * 16)), int(round(p[1] * 16))), 3 * 16, color, -1, AA, 4)
        legend.append((name, color))
    # legend box right of the axes, so it never hides a line
    lw, lh = _legend_width(series) - 26, 22 * len(legend) + 8
    lx, ly = x2 + 12, t1
    cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (255, 255, 255), -1)
    cv2.rectangle(img, (lx, ly), (lx + lw, ly + lh), (160, 160, 160), 1, AA)
    for k, (name, color) in enumerate(legend):
        yy = ly + 15 + 22 * k
        cv2.line(img, (lx + 8, yy), (lx + 36, yy), color, 2, AA)
        _text(img, name, (lx + 42, yy + 5), 0.5)


def draw_panels(panels, title):
    """panels: [(y_label, {name: (xs, ys)})], stacked vertically -> BGR uint8 image."""
    head = 45
    width = LEFT + PLOT_W + max(_legend_width(series) for _, series in panels)
    img = np.full((head + PANEL_H * len(panels), width, 3), 255, np.uint8)
    _text(img, title, (LEFT, 30), 0.75, (0, 0, 0), 2)
    for i, (y_label, series) in enumerate(panels):
        _draw_panel(img, head + i * PANEL_H, y_label, series)
    return img


def _save(out_png, img):
    folder = os.path.dirname(out_png) or "."
    os.makedirs(folder, exist_ok=True)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok, out_png
    records.write_atomic(out_png, buf.tobytes())
    return out_png


def _as_log(log_or_path):
    if log_or_path is None or isinstance(log_or_path, ProgressLog):
        return log_or_path
    path = str(log_or_path)
    if os.path.isdir(path):
        return ProgressLog(path)
    return ProgressLog(os.path.dirname(path) or ".", filename=os.path.basename(path))


def _pick(log, names):
    return {n: log.series(n) for n in names if log is not None and n in log.values}


def zoom_panel(y_label, series, max_share=0.4):
    """The later half of a panel's epochs on its own y range, or None when that half already
    spans more than max_share of the full panel's range. A run spends most epochs near its best
    accuracy (say 0.93-1.0 of a 0-1 axis), where the full panel shows a flat line.
    series: {name: (xs, ys)} -> (label, {name: (xs, ys)}) or None."""
    xs_all = sorted({x for xs, _ in series.values() for x in xs})
    ys_all = [y for _, ys in series.values() for y in ys if math.isfinite(y)]
    if len(xs_all) < 4 or not ys_all:
        return None
    first = xs_all[len(xs_all) // 2]
    late = {n: ([x for x in xs if x >= first], [y for x, y in zip(xs, ys) if x >= first])
            for n, (xs, ys) in series.items()}
    late_ys = [y for _, ys in late.values() for y in ys if math.isfinite(y)]
    if not late_ys or max(late_ys) - min(late_ys) > max_share * (max(ys_all) - min(ys_all)):
        return None
    return ("{} from epoch {} (zoomed)".format(y_label, _fmt(first, 1)), late)


def _with_zoom(panels, y_label):
    """panels with a zoom_panel of the panel named y_label inserted after it, where one helps."""
    out = []
    for label, series in panels:
        out.append((label, series))
        zoom = zoom_panel(label, series) if label == y_label else None
        if zoom is not None:
            out.append(zoom)
    return out


def plot_train_progress(log_or_path, out_png, title="Training progress"):
    """Train loss; valid and test accuracy (and its later half zoomed, see zoom_panel).
    log_or_path: ProgressLog, progress.tsv or its folder. Reads the names loss, valid_acc,
    test_acc (and train_acc if present). Returns out_png."""
    log = _as_log(log_or_path)
    panels = [("train loss", _pick(log, ["loss"])),
              ("accuracy", _pick(log, ["train_acc", "valid_acc", "test_acc"]))]
    return _save(out_png, draw_panels(_with_zoom(panels, "accuracy"), title))


def read_sampled_acc(arcs_tsv_path, source="sample"):
    """{epoch: mean valid_acc of the rows of source} from arcs.tsv (missing file: {}); source
    "sample" (each epoch's samples), "final" or "uniform" (the end of search's scores)."""
    per_epoch = {}
    if arcs_tsv_path and os.path.exists(arcs_tsv_path):
        with open(arcs_tsv_path) as f:
            for line in f.readlines()[1:]:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 5 or parts[1] != source or not line.endswith("\n"):
                    continue
                try:
                    per_epoch.setdefault(int(parts[0]), []).append(float(parts[3]))
                except ValueError:
                    continue
    return {e: float(np.mean(v)) for e, v in per_epoch.items()}


def plot_search_progress(arcs_tsv_path, eval_log, out_png, title="Search progress"):
    """Three panels (four with the accuracy's zoom_panel): accuracy (mean valid_acc of the sampled arcs per epoch from arcs.tsv, and the
    eval_log's valid_acc / test_acc if any), controller baseline, controller entropy.
    eval_log: ProgressLog, progress.tsv or its folder, or None; names read: baseline, entropy,
    valid_acc, test_acc. Returns out_png."""
    log = _as_log(eval_log)
    acc = {}
    for source, name in (("sample", "sampled arcs (mean)"), ("final", "final candidates (mean)"),
                         ("uniform", "uniform cells (mean)")):
        by_epoch = sorted(read_sampled_acc(arcs_tsv_path, source).items())
        if by_epoch or source == "sample":
            acc[name] = ([e for e, _ in by_epoch], [a for _, a in by_epoch])
    acc.update(_pick(log, ["valid_acc", "test_acc"]))
    panels = [("accuracy", acc),
              ("controller baseline", _pick(log, ["baseline"])),
              ("controller entropy", _pick(log, ["entropy"]))]
    return _save(out_png, draw_panels(_with_zoom(panels, "accuracy"), title))
