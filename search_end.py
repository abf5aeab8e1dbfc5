"""The end of a search: its answer (best_arc.txt, the cell's diagrams, the command that retrains
it) and what that answer is worth (the final candidates' shared-weight scores against as many
uniformly drawn cells).

  pick_best_arc(sess, g, data, flags, records, epoch_s)   the whole end (a finished search's
                                                 rerun only reprints the answer)
  after_last_epoch(flags) -> that end in words, for the progress lines
  score_final_arcs(sess, g, data, flags, records) -> (best final arc string, its valid_acc)
  report_final_scores(final_accs, uniform_accs, random_search)   prints final_scores_lines:
                                                 what the answer is worth, in words
  compare_final_scores(final_accs, uniform_accs) -> ("better than" | "tied with" | "worse than",
                                                 AUC): the chosen cell against the best uniform
                                                 cell, and every candidate against every one
"""
import os

import numpy as np

import final_stage
import records as records_lib
import reward as reward_lib
import scoring
import search_space
import visualize


def pick_best_arc(sess, g, data, flags, records, epoch_s=None):
    """Scores controller_num_final_arcs samples on the whole valid set (score_final_arcs) and
    with --final_train_top_k trains the best alone (final_stage.pick) unless best_arc.txt exists;
    writes best_arc.txt, draws the cell, prints how to retrain it.
    g: the search's graph.Graph in sess; records: the loop's evaluation.Records; epoch_s: seconds
    per epoch of this process's child steps (None: not timed), for the final stage's estimate."""
    best_path = os.path.join(flags.output_dir, "best_arc.txt")
    if os.path.exists(best_path):
        best_arc, best_acc = open(best_path).read().strip(), None
    else:
        records_lib.keep_rows_up_to(records.arcs_path, flags.num_epochs,
                                    drop_sources=("final", "uniform", final_stage.SOURCE))
        shared_best = score_final_arcs(sess, g, data, flags, records)
        best_arc, best_acc = final_stage.pick(data, flags, records, shared_best, epoch_s)
        records_lib.write_atomic(best_path, best_arc + "\n")
    acc = "" if best_acc is None else "  valid_acc = {:.4f}".format(best_acc)
    print("Best architecture: {}{}".format(best_arc, acc))
    visualize.draw_arc(best_arc, flags.output_dir, num_cells=flags.child_num_cells, prefix="best_arc_")
    print("Retrain it with (main_child_trainer.py's defaults: 630 epochs of 15 layers, hours on a "
          "CPU; the README's quick start also gives the authors' CIFAR-10 recipe):\n  " +
          records_lib.retrain_command(flags, best_path))
    print("or, for a check in minutes:\n  " + records_lib.retrain_command(flags, best_path) +
          " --num_epochs 10 --child_num_layers 6 --n_aug_img 1 --output_dir output/final_quick")


def after_last_epoch(flags):
    """What pick_best_arc does, in words: 'the scoring of 2N cells' (N final candidates and N
    uniform cells), and the final stage's trainings if it has one."""
    words = "the scoring of {} cells".format(2 * flags.controller_num_final_arcs)
    if flags.final_train_top_k:
        epochs = flags.final_train_epochs
        words += " and {} trained alone for {} epoch{} each".format(
            min(flags.final_train_top_k, flags.controller_num_final_arcs), epochs, "s" * (epochs != 1))
    return words


def score_final_arcs(sess, g, data, flags, records):
    """Scores controller_num_final_arcs of the sampler's cells and as many uniformly drawn
    ones on the whole valid set (arcs.tsv sources "final" and "uniform"); reports how the two
    compare (report_final_scores). Returns the best final candidate (arc, valid_acc)."""
    num = flags.controller_num_final_arcs
    print("Scoring {0} sampled cells and {0} uniformly drawn ones on the whole valid set".format(num))
    n_valid = len(data["labels"]["valid"])
    rows = []
    for source, sampler, kind in (("final", g.sampler, reward_lib.FINAL_KIND),
                                  ("uniform", g.uniform_sampler, reward_lib.UNIFORM_FINAL_KIND)):
        arcs = [sess.run(sampler.sample_arc, {g.sample_key: reward_lib.sample_key_of(kind, k)})
                for k in range(num)]
        for arc, acc in zip(arcs, scoring.score_arcs(sess, g, n_valid, arcs)):
            rows.append((flags.num_epochs, source, search_space.arc_to_string(*arc), acc, n_valid))
            print("{} candidate: {}  valid_acc = {:.4f}".format(source, rows[-1][2], acc))
    records.add_arcs(rows)
    best = max((r for r in rows if r[1] == "final"), key=lambda r: r[3])
    report_final_scores([r[3] for r in rows if r[1] == "final"],
                        [r[3] for r in rows if r[1] == "uniform"], flags.random_search)
    records.plot()
    return best[2], best[3]


def compare_final_scores(final_accs, uniform_accs):
    """The chosen cell (the best final candidate) against the best of the uniform cells, scored
    alike: ("better than" | "tied with" | "worse than", auc), auc the fraction of (candidate,
    uniform cell) pairs in which the candidate scores higher, ties counting half (the Mann-Whitney
    AUC; 0.5 in expectation when both groups come from one distribution).
    final_accs, uniform_accs: shared-weight valid accuracies, one per cell."""
    best_final, best_uniform = max(final_accs), max(uniform_accs)
    verdict = ("better than" if best_final > best_uniform else
               "tied with" if best_final == best_uniform else "worse than")
    diff = np.subtract.outer(np.asarray(final_accs, float), np.asarray(uniform_accs, float))
    return verdict, float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def final_scores_lines(final_accs, uniform_accs, random_search):
    """The lines report_final_scores prints: each group's mean, std and best, the comparison
    (compare_final_scores) in words, what a sampler that learned nothing gives, and what
    shared-weight scores can and cannot show. random_search: the candidates are uniform draws
    too (--random_search), so no controller is spoken of."""
    verdict, auc = compare_final_scores(final_accs, uniform_accs)
    lines = ["{:<17} valid_acc mean {:.4f}  std {:.4f}  best {:.4f}  (n = {})".format(
        name + ":", np.mean(accs), np.std(accs), np.max(accs), len(accs))
        for name, accs in (("final candidates", final_accs), ("uniform cells", uniform_accs))]
    lines.append("The chosen cell (best of {} final candidates, {:.4f}) is {} the best of {} uniform "
                 "cells ({:.4f}); a candidate beats a uniform cell in {:.2f} of their pairs (ties count "
                 "half).".format(len(final_accs), max(final_accs), verdict, len(uniform_accs),
                                 max(uniform_accs), auc))
    if random_search:
        lines.append("With --random_search the candidates are uniform draws too: expect 0.50, and "
                     "\"better than\" as often as \"worse than\"; the two groups differ by chance alone.")
    else:
        lines.append("A controller that learned nothing the shared weights see gives 0.50 in expectation, "
                     "and \"better than\" as often as \"worse than\".")
    shows = ("a higher score does not show that a cell retrains better" if random_search else
             "they show whether the controller learned to prefer cells the shared weights score "
             "higher, not that the chosen cell retrains better")
    lines.append("These are scores with the shared weights, not the accuracy a cell reaches when "
                 "retrained alone: {}. bench/ranking.py measures how well these scores predict "
                 "retrained accuracy on your data.".format(shows))
    return lines


def report_final_scores(final_accs, uniform_accs, random_search):
    """Prints what the search's answer is worth (final_scores_lines)."""
    print("\n".join(final_scores_lines(final_accs, uniform_accs, random_search)))
