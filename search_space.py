"""The ENAS micro search space: op ids, and the arc string that names a pair of cells.

  SEP_3X3, SEP_5X5, AVG_POOL, MAX_POOL, IDENTITY   the op ids 0..4 (sep convs: two stacked
                                 separable convs; pools: 3x3)
  NUM_OPS, OP_NAMES, SEP_CONV_KERNEL   their count, display names, and the sep convs' kernels
  parse_arc(text, num_cells)     arc string (or path of a file holding it) -> (normal_arc, reduce_arc)
  arc_to_string(normal_arc, reduce_arc)
  random_arc_string(num_cells, rng)   a uniformly drawn arc string (numpy Generator rng)
  MNIST_ARC, CIFAR10_ARC         the cells the original's authors' scripts retrain (B = 5)

An arc is 4 * B integers of the normal cell, then 4 * B of the reduction cell; node n = 2..B+1 is
`index_1 op_1 index_2 op_2` with each index < n. No TensorFlow here: drawing a cell needs none.
"""
import os
import re

from errors import UserError

SEP_3X3, SEP_5X5, AVG_POOL, MAX_POOL, IDENTITY = range(5)
NUM_OPS = 5
OP_NAMES = ["sep 3x3", "sep 5x5", "avg 3x3", "max 3x3", "identity"]
SEP_CONV_KERNEL = {SEP_3X3: 3, SEP_5X5: 5}
MNIST_ARC = "1 2 1 3 0 1 0 4 1 1 1 1 0 1 0 1 1 0 0 1 0 1 0 4 1 0 2 0 0 3 1 1 0 0 0 0 4 1 1 0"
CIFAR10_ARC = "1 0 1 1 1 1 0 0 1 1 0 0 0 3 0 3 1 3 1 1 1 1 0 3 0 3 0 3 1 3 0 1 1 3 0 2 0 3 1 0"


def _arc_error(text, why):
    text = " ".join(text.split())
    shown = text if len(text) <= 60 else text[:57] + "..."
    return UserError("--child_fixed_arc '{}': {}".format(shown, why))


def read_arc_text(text):
    """Returns the arc string itself, or the contents of the file `text` names."""
    text = text.strip()
    if text and os.path.isfile(text):
        try:
            with open(text) as f:
                return f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError("--child_fixed_arc {}: cannot read it as a text file ({})".format(text, e))
    return text


def parse_arc(text, num_cells):
    """Parses an arc string of 8 * num_cells integers (or a path to a file holding it).

    Returns (normal_arc, reduce_arc), two lists of 4 * num_cells ints. Node n (n = 2..B+1) is the
    group `index_1 op_1 index_2 op_2`; each index must be < n and each op in 0..NUM_OPS-1.
    Raises UserError naming --child_fixed_arc and what was expected.
    """
    text = read_arc_text(text)
    pieces = text.split()
    expected = 8 * num_cells
    if len(pieces) != expected:
        raise _arc_error(text, "expected {} integers (4 per node, {} nodes, normal cell then "
                               "reduction cell), got {}".format(expected, num_cells, len(pieces)))
    bad = next((p for p in pieces if not re.fullmatch(r"-?[0-9]+", p)), None)
    if bad is not None:
        raise _arc_error(text, "expected integers, got '{}'".format(bad[:20]))
    arc = [int(p) for p in pieces]
    for pos, value in enumerate(arc):
        cell = "normal" if pos < 4 * num_cells else "reduction"
        node = (pos % (4 * num_cells)) // 4 + 2
        if pos % 2 == 0 and not 0 <= value < node:
            raise _arc_error(text, "integer {} ({} cell, node {}) is an input index and must be in "
                                   "0..{}, got {}".format(pos + 1, cell, node, node - 1, value))
        if pos % 2 == 1 and not 0 <= value < NUM_OPS:
            raise _arc_error(text, "integer {} ({} cell, node {}) is an op id and must be in "
                                   "0..{}, got {}".format(pos + 1, cell, node, NUM_OPS - 1, value))
    return arc[:4 * num_cells], arc[4 * num_cells:]


def arc_to_string(normal_arc, reduce_arc):
    """The ready-to-paste string: normal cell then reduction cell, space separated."""
    return " ".join(str(int(v)) for v in list(normal_arc) + list(reduce_arc))


def random_arc_string(num_cells, rng):
    """A uniformly drawn arc: node n picks each input in 0..n-1 and each op in 0..NUM_OPS-1."""
    def cell():
        return [int(v) for n in range(2, num_cells + 2)
                for v in (rng.integers(n), rng.integers(NUM_OPS), rng.integers(n), rng.integers(NUM_OPS))]
    return arc_to_string(cell(), cell())
