"""bench/ranking.py's statistics on hand-made tables, and the benchmarks' run caches
(bench/cache_key.py; no TensorFlow)."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import cache_key  # noqa: E402
import ranking  # noqa: E402
import search_quality  # noqa: E402


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
    """search_quality.search_dir (ranking's shared child too) runs a search once per set of
    resolved flags: a default given explicitly is the same search; a search left in work_dir with
    other flags (other width, channels, seed) is not restored."""
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
    assert shared_child("--search_args", "--child_out_filters 4 --batch_size 128") == first
    others = {shared_child("--search_args", "--child_out_filters 8"), shared_child("--channel", "1"),
              shared_child("--seed", "1"), shared_child("--sampler", "controller")}
    assert len(runs) == 5 and first not in others and len(others) == 4
    assert "--random_search" in runs[0] and "--random_search" not in runs[-1]


def test_the_cache_key_holds_every_resolved_flag_and_the_data():
    """cache_key.key_of: the same resolved flags and data hit; another size, channel count (or a
    channel left to the data), data folder or data content misses; the output folder is no part,
    nor a flag added later at its old behaviour (a value of it misses)."""
    flags = {"mode": "final", "train_data_dir": "d/train", "img_size": 16, "channel": 1, "seed": 0,
             "output_dir": "w/retrain_1", "child_fixed_arc": "0 1 0 1 1 0 1 0"}
    data = {"train_data_dir": ["/d/train", [["0", 8, 800], ["1", 8, 812]]]}
    key = cache_key.key_of(flags, data)
    assert cache_key.key_of(dict(flags), {"train_data_dir": ["/d/train", [["0", 8, 800], ["1", 8, 812]]]}) == key
    assert cache_key.key_of(dict(flags, output_dir="w/retrain_2", train_data_dir="./d/train"), data) == key
    assert cache_key.key_of(dict(flags, controller_reward_batch_from_epoch=None), data) == key
    misses = [cache_key.key_of(dict(flags, **change), data)
              for change in ({"img_size": 32}, {"channel": 3}, {"channel": None}, {"seed": 1},
                             {"controller_reward_batch_from_epoch": 6})]
    misses += [cache_key.key_of(flags, {"train_data_dir": identity}) for identity in (
        ["/e/train", [["0", 8, 800], ["1", 8, 812]]], ["/d/train", [["0", 9, 900], ["1", 8, 812]]],
        ["/d/train", [["0", 8, 801], ["1", 8, 812]]], ["/d/train", None])]
    assert len(set(misses + [key])) == len(misses) + 1


def test_a_retraining_is_reused_only_with_the_same_resolved_flags_and_data(monkeypatch, tmp_path,
                                                                            make_png_dataset):
    """search_quality.retrained (ranking's too): a default given explicitly is the same run; another
    data folder, --img_size, --channel or new images in the same folder retrain."""
    retrainings = []
    monkeypatch.setattr(search_quality, "retrain",
                        lambda flags, out: retrainings.append(out) or (0.5, 0.4))
    make_png_dataset(tmp_path / "a")
    make_png_dataset(tmp_path / "b", per_class=(8, 3, 2))
    arc, work = "0 1 0 1 1 0 1 0", str(tmp_path / "work")
    os.makedirs(work)

    def retrain(*argv):
        args = search_quality.parse_args(["--num_cells", "1", "--work_dir", work] + list(argv))
        return search_quality.retrained(args, work, arc)
    data_a = ["--data_dir", str(tmp_path / "a")]
    assert retrain(*data_a) == (0.5, 0.4) and len(retrainings) == 1
    retrain(*data_a, "--retrain_args=--child_out_filters 16")  # the retraining's default
    assert len(retrainings) == 1
    retrain(*data_a, "--img_size", "16")
    retrain(*data_a, "--channel", "3")
    retrain("--data_dir", str(tmp_path / "b"))
    make_png_dataset(tmp_path / "a", per_class=(9, 2, 2))  # one more training image per class
    retrain(*data_a)
    assert len(retrainings) == 5 and len(set(retrainings)) == 5


def test_reward_noise_common_batches_cancel_a_batch_offset():
    """bench/reward_noise.noise_table on hand-made rewards: each batch shifts every cell's reward
    by its own offset. On a common batch the offset cancels (noise 0, the cells' order kept:
    rho 1); a batch per cell mixes the offsets into the order (rho below 1, noise = the offsets'
    sd)."""
    import reward_noise
    whole = np.array([0.30, 0.32, 0.34, 0.36])
    offsets = np.array([0.0, 0.1, -0.1, 0.05])
    table = reward_noise.noise_table(whole, whole[None, :] + offsets[:, None])
    assert table["cells_sd"] == pytest.approx(np.std(whole))
    assert table["noise_common"] == pytest.approx(0.0, abs=1e-12)
    assert table["noise_own"] == pytest.approx(np.std(offsets))
    assert table["rho_common"] == pytest.approx(1.0)
    assert table["rho_own"] < 0.5
