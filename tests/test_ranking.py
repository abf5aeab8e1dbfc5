"""bench/ranking.py's statistics on hand-made tables (no TensorFlow)."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import ranking  # noqa: E402


def test_kendall_tau_counts_concordant_pairs():
    # pairs of [1, 2, 3, 4] against [1, 3, 2, 4]: 5 concordant, 1 discordant -> (5 - 1) / 6
    assert ranking.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert ranking.kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # tau-b with a tie in x: (2 - 0) / sqrt(2 * 3)
    assert ranking.kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / np.sqrt(6))
    assert np.isnan(ranking.kendall_tau([1, 1, 1], [1, 2, 3]))


def test_spearman_rho_is_the_correlation_of_ranks():
    # d = [0, 1, 1, 0]: 1 - 6 * 2 / (4 * 15)
    assert ranking.spearman_rho([0.1, 0.2, 0.3, 0.4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert ranking.spearman_rho([1, 2, 3], [1, 4, 9]) == pytest.approx(1.0)  # monotone, not linear
    np.testing.assert_array_equal(ranking.ranks([0.5, 0.1, 0.5, 0.9]), [2.5, 1, 2.5, 4])


def test_top1_regret_is_the_best_minus_the_first_pick():
    shared, retrained = [0.5, 0.9, 0.7], [0.8, 0.6, 0.9]
    assert ranking.top1_regret(shared, retrained) == pytest.approx(0.3)
    assert ranking.top1_regret([0.1, 0.2, 0.3], [0.1, 0.2, 0.3]) == 0.0


def test_bootstrap_interval_holds_the_statistic_and_narrows_with_agreement():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = x + 0.3 * rng.normal(size=30)
    lo, hi = ranking.bootstrap_interval(ranking.kendall_tau, x, y, 500)
    assert 0.4 < lo < ranking.kendall_tau(x, y) < hi <= 1.0
    lo_noise, hi_noise = ranking.bootstrap_interval(ranking.kendall_tau, x, rng.normal(size=30), 500)
    assert lo_noise < 0 < hi_noise


def test_each_cell_is_scored_from_the_shared_weights_the_search_left():
    """Fine-tuning one cell must not leak into the next cell's score: the weights are restored
    before each cell (a stand-in weight counts the fine-tuning steps since the restore)."""
    weights = {"w": 0}

    def tune(arc):
        weights["w"] += 3

    scores = ranking.score_cells(["a", "b", "a"], lambda: weights.update(w=0), tune,
                                 lambda arc: (arc, weights["w"]))
    assert scores == [("a", 3), ("b", 3), ("a", 3)]


def test_each_cell_is_retrained_with_each_seed_and_ranked_by_the_mean(monkeypatch, capsys):
    """--retrain_seeds 2: every cell retrained with --seed and --seed + 1 (the other flags kept);
    the noise ceiling is the tau between the two seeds' valid accuracies."""
    table = {("a", 5): (0.9, 0.8), ("b", 5): (0.7, 0.6), ("a", 6): (0.5, 0.5), ("b", 6): (0.9, 0.9)}
    monkeypatch.setattr(ranking.search_quality, "retrained",
                        lambda args, work_dir, arc: table[(arc, args.seed)])
    args = ranking.parse_args(["--data_dir", "d", "--seed", "5", "--retrain_seeds", "2"])
    valid, test = ranking.retrained_by_seed(args, "w", ["a", "b"])
    np.testing.assert_allclose(valid.mean(0), [0.7, 0.8])
    np.testing.assert_allclose(test, [[0.8, 0.6], [0.5, 0.9]])
    assert args.seed == 5
    ranking.print_noise_ceiling(valid)
    assert "Kendall tau -1.000" in capsys.readouterr().out


def test_a_search_is_reused_only_with_the_same_flags(monkeypatch, tmp_path):
    """search_quality.search_dir (ranking's shared child too) runs a search once per set of flags:
    a search left in work_dir with other flags (other width, channels, seed) is not restored."""
    runs = []

    def run(script, flags, log_path):
        out = flags[flags.index("--output_dir") + 1]
        os.makedirs(out)
        open(os.path.join(out, "best_arc.txt"), "w").write(" ".join(flags))
        runs.append(flags)
    monkeypatch.setattr(ranking.search_quality, "run", run)

    def shared_child(*argv):
        args = ranking.parse_args(["--data_dir", "d"] + list(argv))
        return ranking.train_shared_child(args, str(tmp_path))
    first = shared_child("--search_args", "--child_out_filters 4")
    assert shared_child("--search_args", "--child_out_filters 4") == first and len(runs) == 1
    others = {shared_child("--search_args", "--child_out_filters 8"), shared_child("--channel", "1"),
              shared_child("--seed", "1"), shared_child("--sampler", "controller")}
    assert len(runs) == 5 and first not in others and len(others) == 4
    assert "--random_search" in runs[0] and "--random_search" not in runs[-1]
