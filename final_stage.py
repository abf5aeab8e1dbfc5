"""The final stage of a search: its best final candidates by shared-weight score, each trained
alone for a few epochs, and the best of those by valid accuracy as the search's answer.

Shared-weight scores rank cells poorly (README, "How much to trust a search's answer": Kendall tau
about 0 to 0.2 against retrained accuracy). With --final_train_top_k K (default 3; 0: the best
shared score is the answer, the original's) the K best distinct final candidates are each
trained alone for --final_train_epochs E epochs by the retraining's own code
(trainer.build_and_train, in a graph and a session of their own inside the search's process):
the search's child (size and flags),
the search's seed (0 if it has none) for every candidate, no augmentation (n_aug_img 1), one
cosine LR cycle of E epochs (the LR is set per epoch: E = 1 trains at --child_lr_max), valid and
test evaluated after the last epoch only. Each trains in
output_dir/final_stage/<E>ep_<arc>/ (a retraining's output_dir): a stopped stage resumes there,
and a finished candidate is not trained again.

  pick(data, flags, records, shared_best, epoch_s) -> (arc string, valid_acc): the search's answer
  top_candidates(final_scores, k)  -> [(arc, shared score)]: the k best distinct arcs (pure)
  choose(short_accs)               -> index of the best short-trained candidate (pure)
"""
import os
import time
import types

import tensorflow.compat.v1 as tf

import progress
import records as records_lib
import search_space

SOURCE = "short_train"  # arcs.tsv's source of a candidate's valid_acc after its short training
FOLDER = "final_stage"  # in the search's output_dir: one retraining output_dir per candidate


def top_candidates(final_scores, k):
    """final_scores: [(arc string, shared score)] in the order they were sampled. Returns the k
    best distinct arcs with their scores, best first; ties keep the order of sampling (so the
    first is score_final_arcs' pick). Fewer if there are fewer distinct arcs; [] for k = 0."""
    first_scores = {}
    for arc, score in final_scores:
        first_scores.setdefault(arc, score)
    return sorted(first_scores.items(), key=lambda item: -item[1])[:k]


def choose(short_accs):
    """short_accs: valid accuracies after the short training of the candidates, best shared score
    first. Returns the index of the best; ties go to the better shared score."""
    return max(range(len(short_accs)), key=lambda i: (short_accs[i], -i))


def pick(data, flags, records, shared_best, epoch_s=None):
    """The search's answer after score_final_arcs (shared_best: its (arc, valid_acc)): that one
    with --final_train_top_k 0, else the best of the top candidates trained alone, whose valid
    accuracies go to arcs.tsv (source SOURCE). records: the loop's evaluation.Records; epoch_s:
    seconds per epoch of the search's child steps (None: not timed), for the estimate printed
    before the stage."""
    if not flags.final_train_top_k:
        print("Chosen by the shared-weight score (--final_train_top_k 0)")
        return shared_best
    candidates = top_candidates(_final_scores(records.arcs_path), flags.final_train_top_k)
    accs = train_candidates(data, flags, [arc for arc, _ in candidates], epoch_s)
    n_valid = len(data["labels"]["valid"])
    records.add_arcs([(flags.num_epochs, SOURCE, arc, acc, n_valid)
                      for (arc, _), acc in zip(candidates, accs)])
    best = choose(accs)
    print("Chosen by short training: {}  valid_acc = {:.4f} after {} epochs alone (its shared-score "
          "rank {} of {}, shared valid_acc {:.4f})".format(candidates[best][0], accs[best],
                                                           flags.final_train_epochs, best + 1,
                                                           len(candidates), candidates[best][1]))
    return candidates[best][0], accs[best]


def _final_scores(arcs_path):
    """[(arc, shared valid_acc)] of arcs.tsv's "final" rows (the end of this search's scoring),
    in their order."""
    with open(arcs_path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f.readlines()[1:]]
    return [(row[2], float(row[3])) for row in rows if row[1] == "final"]


def train_candidates(data, flags, arcs, epoch_s=None):
    """Trains each arc (best shared score first) alone, or takes its accuracy from an earlier
    run's folder; prints how long that takes before it starts (from epoch_s, the seconds per
    epoch of the search's child steps) and after the first one it trains (how long the others
    will take).
    Returns their valid accuracies after final_train_epochs epochs."""
    epochs = flags.final_train_epochs
    folders = [os.path.join(flags.output_dir, FOLDER, "{}ep_{}".format(epochs, arc.replace(" ", "-")))
               for arc in arcs]
    accs = [short_train_acc(folder, epochs) for folder in folders]
    print("Training the {} best final candidates alone, {} epochs each ({} already trained), in {}"
          .format(len(arcs), epochs, len(arcs) - accs.count(None), os.path.join(flags.output_dir, FOLDER)))
    if accs.count(None):
        print(before_line(epoch_s, accs.count(None) * epochs))
    timed = False
    for i, (arc, folder) in enumerate(zip(arcs, folders)):
        print("Short training {} of {}: {}{}".format(i + 1, len(arcs), arc,
                                                      "" if accs[i] is None else ", already trained"))
        if accs[i] is None:
            start = time.time()
            accs[i] = train_alone(data, flags, arc, folder)
            if not timed and accs.count(None):
                print(estimate_line(time.time() - start, accs.count(None)))
            timed = True
        print("short_train candidate: {}  valid_acc = {:.4f}".format(arc, accs[i]))
    return accs


def before_line(epoch_s, epochs):
    """The stage's time before it starts: `epochs` epochs of cells trained alone at epoch_s
    seconds each, the pace of the search's child steps: an upper bound, as a search's step also
    samples its cell and reads it from the shared weights (on the shipped digits a cell alone
    took 0.6 to 0.8 of it, its graph build and one evaluation included); epoch_s None: not known yet."""
    if epoch_s is None:
        return "Short training: {} epochs in all; their time is printed after the first candidate " \
               "(no search step was timed in this run)".format(epochs)
    seconds = epoch_s * epochs
    return ("Short training: {} epochs in all, at most about {:.1f} min (the search's child steps took "
            "{:.2f} min per epoch; ends by about {})".format(epochs, seconds / 60.0, epoch_s / 60.0,
                                                    time.strftime("%H:%M", time.localtime(time.time() + seconds))))


def estimate_line(seconds, left):
    """How long the `left` candidates still to train take if each takes `seconds`, as the first."""
    return ("Short training: {:.1f} min for this candidate, about {:.1f} min for the {} left (ends "
            "about {})".format(seconds / 60.0, seconds * left / 60.0, left,
                               time.strftime("%H:%M", time.localtime(time.time() + seconds * left))))


def short_train_acc(folder, epochs):
    """The valid accuracy a candidate's folder recorded after `epochs` epochs, or None: not
    trained that far (or no folder)."""
    return dict(zip(*progress.ProgressLog(folder).series("valid_acc"))).get(epochs)


def candidate_flags(flags, arc, folder):
    """The retraining's flags for one candidate: the search's, with arc as --child_fixed_arc,
    folder as --output_dir, --final_train_epochs epochs (one cosine LR cycle, one eval at the
    end), no augmentation, the search's seed or 0, and the retraining-only flags off."""
    epochs = flags.final_train_epochs
    return types.SimpleNamespace(**dict(
        flags.flag_values_dict(), child_fixed_arc=arc, output_dir=folder, reset_output_dir=False,
        num_epochs=epochs, child_lr_T_0=epochs, eval_every_epochs=epochs, n_aug_img=1,
        seed=0 if flags.seed is None else flags.seed,
        mixed_precision="none", child_recompute="none", train_with_valid=False, export_only=False))


def train_alone(data, flags, arc, folder):
    """Trains (or resumes) arc alone in folder as main_child_trainer.py would with
    candidate_flags, in a graph of its own; returns its valid accuracy after the last epoch."""
    import trainer  # here, not above: trainer imports loop, which imports search_end and this module
    cand = candidate_flags(flags, arc, folder)
    fixed_arc = search_space.parse_arc(arc, flags.child_num_cells)
    records_lib.prepare_output_dir(folder, False, records_lib.shaping_flags(
        cand, "final", fixed_arc, len(data["class_names"])))
    with tf.Graph().as_default():
        trainer.build_and_train(cand, dict(data, n_aug_img=1), fixed_arc, None)
    return short_train_acc(folder, cand.num_epochs)
