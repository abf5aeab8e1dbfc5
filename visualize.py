"""Draws the normal and the reduction cell of an arc string as two PNG files (OpenCV only).

    python visualize.py ARC_OR_FILE --output_dir images/ [--num_cells 5] [--prefix NAME]

writes <output_dir>/<prefix>normal.png and <output_dir>/<prefix>reduction.png.

API
  draw_cell(cell_arc, title) -> np.ndarray   BGR uint8 picture of one cell (4 * B ints)
  draw_arc(arc_text, output_dir, num_cells=5, prefix="") -> [normal_png, reduction_png]
      arc_text: the arc string or a file holding it (search_space.parse_arc checks it, UserError if bad)

Layout: left to right by node depth (inputs c_{k-2}, c_{k-1} at depth 0, node n one column after
its deepest input, the concatenated output last). Every edge is a quadratic curve from the right
side of its source box to the left side of its target box; it is bent until it crosses no other box
and its op label (on a white backing box) overlaps no box and no other label.
"""
import argparse
import os
import sys

import cv2
import numpy as np

from errors import UserError, WriteFailed
import records
import search_space

FONT = cv2.FONT_HERSHEY_SIMPLEX
LABEL_SCALE, LABEL_THICK = 0.55, 1
NODE_SCALE, NODE_THICK = 0.65, 2
TITLE_SCALE, TITLE_THICK = 0.8, 2
BOX_W, BOX_H = 120, 46
COL_W, ROW_H = 420, 100          # distance between column centres / between node centres in a column
MARGIN = 30
AA = cv2.LINE_AA
INPUT_COLOR = (182, 228, 250)     # BGR: light orange
NODE_COLOR = (240, 220, 180)      # light blue
OUTPUT_COLOR = (190, 235, 190)    # light green
EDGE_COLOR = (70, 70, 70)
CONCAT_COLOR = (175, 175, 175)   # light grey, drawn dashed: unused nodes into the output
OP_COLORS = [(170, 60, 20), (120, 40, 160), (30, 130, 30), (20, 100, 200), (130, 130, 0)]
LABEL_CLEARANCE = 40              # px a label keeps from boxes that are not its edge's ends


def _node_names(num_cells):
    return ["c_{k-2}", "c_{k-1}"] + ["node {}".format(n) for n in range(2, num_cells + 2)] + ["c_{k}"]


def _cell_graph(cell_arc):
    """-> (num_cells, edges [(src, dst, op or None)], output id). op None: an edge into the concat."""
    cell_arc = [int(v) for v in cell_arc]
    if len(cell_arc) % 4 or not cell_arc:
        raise UserError("a cell needs 4 integers per node, got {}".format(len(cell_arc)))
    b = len(cell_arc) // 4
    out_id = b + 2
    edges, used = [], set()
    for i in range(b):
        n = i + 2
        x_id, x_op, y_id, y_op = cell_arc[4 * i:4 * i + 4]
        for src, op in ((x_id, x_op), (y_id, y_op)):
            if not (0 <= src < n and 0 <= op < len(search_space.OP_NAMES)):
                raise UserError("node {}: input {} / op {} out of range".format(n, src, op))
            edges.append((src, n, op))
            used.add(src)
    for src in range(b + 2):
        if src not in used:
            edges.append((src, out_id, None))
    return b, edges, out_id


def _layout(b, edges, out_id):
    """Node centres {id: (x, y)}: columns by depth, rows ordered by the mean row of the inputs."""
    depth = {0: 0, 1: 0}
    for n in range(2, b + 2):
        depth[n] = 1 + max(depth[s] for s, d, _ in edges if d == n)
    depth[out_id] = max(depth.values()) + 1
    columns = {}
    for n in sorted(depth):
        columns.setdefault(depth[n], []).append(n)
    rows = max(len(c) for c in columns.values())
    pos = {}
    for d in sorted(columns):
        nodes = columns[d]
        if d > 0:  # barycentre ordering: fewer crossings
            key = {n: np.mean([pos[s][1] for s, t, _ in edges if t == n]) for n in nodes}
            nodes = sorted(nodes, key=lambda n: (key[n], n))
        step = rows * ROW_H / float(len(nodes))  # spread every column over the full height
        for r, n in enumerate(nodes):
            pos[n] = (d * COL_W, (r + 0.5) * step)
    return pos


def _box(center, w=BOX_W, h=BOX_H, pad=0):
    x, y = center
    return (x - w / 2.0 - pad, y - h / 2.0 - pad, x + w / 2.0 + pad, y + h / 2.0 + pad)


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(points, box):
    return np.any((points[:, 0] > box[0]) & (points[:, 0] < box[2]) &
                  (points[:, 1] > box[1]) & (points[:, 1] < box[3]))


def _bezier(p0, c, p2, n=40):
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(c) + t ** 2 * np.asarray(p2)


def _text_size(text, scale, thick):
    (w, h), base = cv2.getTextSize(text, FONT, scale, thick)
    return w, h, base


def _anchors(edges, pos):
    """Edge end points spread along the box sides (sorted by the other end's row)."""
    start, end = {}, {}
    for key, side, other in ((start, 0, 1), (end, 1, 0)):
        by_node = {}
        for i, e in enumerate(edges):
            by_node.setdefault(e[side], []).append(i)
        for node, ids in by_node.items():
            ids.sort(key=lambda i: (pos[edges[i][other]][1], pos[edges[i][other]][0], i))
            k = len(ids)
            x = pos[node][0] + (BOX_W / 2.0 if side == 0 else -BOX_W / 2.0)
            for j, i in enumerate(ids):
                dy = (j - (k - 1) / 2.0) * min(12.0, (BOX_H - 10) / max(k - 1, 1))
                key[i] = (x, pos[node][1] + dy)
    return start, end


def _route(edges, pos):
    """-> [(points [n, 2], label_rect or None)] with curves and labels placed without overlaps."""
    boxes = {n: _box(p, pad=6) for n, p in pos.items()}
    near = {n: _box(p, pad=16) for n, p in pos.items()}  # a box and its arrow heads
    far = {n: _box(p, pad=LABEL_CLEARANCE) for n, p in pos.items()}
    start, end = _anchors(edges, pos)
    placed_labels, routes = [], [None] * len(edges)
    bends = [0.0] + [s * k * 28.0 for k in range(1, 13) for s in (1, -1)]
    label_ts = (0.6, 0.5, 0.7, 0.4, 0.8, 0.3, 0.75, 0.35, 0.25)
    order = sorted(range(len(edges)), key=lambda i: (edges[i][2] is None,
                                                     pos[edges[i][1]][0] - pos[edges[i][0]][0], i))
    for i in order:
        src, dst, op = edges[i]
        p0, p2 = np.array(start[i]), np.array(end[i])
        others = [boxes[n] for n in boxes if n not in (src, dst)]
        # a label next to another node's box reads as that node's: keep it well clear of those
        label_free = [near[n] if n in (src, dst) else far[n] for n in pos]
        twin = sum(1 for j in order[:order.index(i)] if edges[j][:2] == (src, dst))
        best = None
        for bend in bends:
            if twin and bend == 0.0:
                continue  # the second edge between the same pair: curved away from the first
            c = (p0 + p2) / 2.0 + np.array([0.0, bend])
            pts = _bezier(p0, c, p2)
            cost = sum(_inside(pts[2:-2], b) for b in others) * 10
            cost += sum(_inside(pts, r) for r in placed_labels) * 3
            label = None
            if op is not None:
                w, h, base = _text_size(search_space.OP_NAMES[op], LABEL_SCALE, LABEL_THICK)
                best_label = None
                for t in label_ts:
                    m = pts[int(round(t * (len(pts) - 1)))]
                    rect = (m[0] - w / 2 - 5, m[1] - h / 2 - 5, m[0] + w / 2 + 5, m[1] + h / 2 + base + 3)
                    lc = sum(_overlap(rect, b) for b in label_free) * 5
                    lc += sum(_overlap(rect, r) for r in placed_labels) * 5
                    if best_label is None or lc < best_label[0]:
                        best_label = (lc, rect)
                    if lc == 0:
                        break
                cost += best_label[0]
                label = best_label[1]
            if best is None or cost < best[0]:
                best = (cost, pts, label)
            if cost == 0:
                break
        routes[i] = (best[1], best[2])
        if best[2] is not None:
            placed_labels.append(best[2])
    return routes


def _arrow_head(img, pts, color, size=11):
    tip, back = pts[-1], pts[-4]
    d = tip - back
    d = d / (np.linalg.norm(d) + 1e-9)
    n = np.array([-d[1], d[0]])
    poly = np.array([tip, tip - size * d + 0.45 * size * n, tip - size * d - 0.45 * size * n])
    cv2.fillConvexPoly(img, np.round(poly * 16).astype(np.int32), color, AA, 4)


def _dashed(img, pts, color, dash=12.0):
    """A polyline pts [n, 2] drawn as dashes of `dash` px with equal gaps."""
    dense = np.concatenate([np.linspace(a, b, 8, endpoint=False) for a, b in zip(pts[:-1], pts[1:])])
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    on = (along // dash) % 2 == 0
    for a, b, keep in zip(dense[:-1], dense[1:], on[:-1]):
        if keep:
            cv2.line(img, tuple(np.round(a * 16).astype(int)), tuple(np.round(b * 16).astype(int)),
                     color, 2, AA, 4)


def _put_centered(img, text, center, scale, thick, color=(0, 0, 0)):
    w, h, _ = _text_size(text, scale, thick)
    org = (int(round(center[0] - w / 2.0)), int(round(center[1] + h / 2.0)))
    cv2.putText(img, text, org, FONT, scale, color, thick, AA)


def draw_cell(cell_arc, title):
    """One cell (4 * B ints: index_1 op_1 index_2 op_2 per node) -> BGR uint8 image."""
    b, edges, out_id = _cell_graph(cell_arc)
    pos = _layout(b, edges, out_id)
    routes = _route(edges, pos)
    # bounding box of everything, then shift into the canvas
    xs, ys = [], []
    for n, p in pos.items():
        bx = _box(p)
        xs += [bx[0], bx[2]]
        ys += [bx[1], bx[3]]
    for pts, rect in routes:
        xs += [pts[:, 0].min(), pts[:, 0].max()]
        ys += [pts[:, 1].min(), pts[:, 1].max()]
        if rect is not None:
            xs += [rect[0], rect[2]]
            ys += [rect[1], rect[3]]
    tw, th, _ = _text_size(title, TITLE_SCALE, TITLE_THICK)
    legend_h = 30
    x0, y0 = min(xs) - MARGIN, min(ys) - MARGIN - th - 25
    width = int(np.ceil(max(max(xs) - x0 + MARGIN, tw + 2 * MARGIN)))
    height = int(np.ceil(max(ys) - y0 + MARGIN + legend_h))
    off = np.array([-x0, -y0])
    img = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(img, title, (MARGIN, MARGIN + th), FONT, TITLE_SCALE, (0, 0, 0), TITLE_THICK, AA)

    for (src, dst, op), (pts, _) in zip(edges, routes):
        color = CONCAT_COLOR if op is None else OP_COLORS[op]
        p = pts + off
        if op is None:
            _dashed(img, p, color)
        else:
            cv2.polylines(img, [np.round(p * 16).astype(np.int32)], False, color, 2, AA, 4)
        _arrow_head(img, p, color)
    for n, p in pos.items():
        x1, y1, x2, y2 = [int(round(v)) for v in _box(np.array(p) + off)]
        fill = INPUT_COLOR if n < 2 else OUTPUT_COLOR if n == out_id else NODE_COLOR
        cv2.rectangle(img, (x1, y1), (x2, y2), fill, -1, AA)
        cv2.rectangle(img, (x1, y1), (x2, y2), (40, 40, 40), 2, AA)
        _put_centered(img, _node_names(b)[n], np.array(p) + off, NODE_SCALE, NODE_THICK)
    for (src, dst, op), (pts, rect) in zip(edges, routes):
        if rect is None:
            continue
        r = [int(round(v)) for v in (rect[0] + off[0], rect[1] + off[1], rect[2] + off[0], rect[3] + off[1])]
        cv2.rectangle(img, (r[0], r[1]), (r[2], r[3]), (255, 255, 255), -1)
        cv2.rectangle(img, (r[0], r[1]), (r[2], r[3]), OP_COLORS[op], 1, AA)
        w, h, base = _text_size(search_space.OP_NAMES[op], LABEL_SCALE, LABEL_THICK)
        cv2.putText(img, search_space.OP_NAMES[op], (r[0] + 5, r[1] + 5 + h), FONT, LABEL_SCALE,
                    OP_COLORS[op], LABEL_THICK + 1, AA)
    note = "dashed grey arrows: unused nodes, concatenated into the cell output c_{k}"
    cv2.putText(img, note, (MARGIN, height - 14), FONT, 0.5, (90, 90, 90), 1, AA)
    return img


def draw_arc(arc_text, output_dir, num_cells=5, prefix=""):
    """Parses the arc (string or file), writes <prefix>normal.png and <prefix>reduction.png.

    Returns the two paths. Raises UserError for a bad arc or an output_dir it cannot create,
    WriteFailed for a PNG it cannot write (e.g. a full disk).
    """
    normal, reduce_ = search_space.parse_arc(arc_text, num_cells)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as e:
        raise UserError("--output_dir {}: cannot create it ({})".format(output_dir, e.strerror))
    paths = []
    for name, cell, title in (("normal", normal, "Normal cell"), ("reduction", reduce_, "Reduction cell")):
        path = os.path.join(output_dir, "{}{}.png".format(prefix, name))
        img = draw_cell(cell, "{}  ({})".format(title, " ".join(str(v) for v in cell)))
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise UserError("cannot encode {}".format(path))
        records.write_atomic(path, buf.tobytes())
        paths.append(path)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description="Draw the normal and reduction cell of an arc string.")
    parser.add_argument("arc", help="the arc string (quoted) or a file holding it, e.g. best_arc.txt")
    parser.add_argument("--output_dir", default="images", help="folder for the two PNG files")
    parser.add_argument("--num_cells", type=int, default=5, help="nodes per cell (--child_num_cells)")
    parser.add_argument("--prefix", default="", help="file name prefix, e.g. best_")
    args = parser.parse_args(argv)
    try:
        if args.num_cells <= 0:
            raise UserError("--num_cells must be positive, got {}".format(args.num_cells))
        for path in draw_arc(args.arc, args.output_dir, args.num_cells, args.prefix):
            print(path)
    except UserError as e:
        print("error: {}".format(e).replace("--child_fixed_arc", "arc"), file=sys.stderr)
        return 2
    except WriteFailed as e:
        print("error: {}".format(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
