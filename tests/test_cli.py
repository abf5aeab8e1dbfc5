"""End-to-end tests of the two entry scripts, run as subprocesses on a tiny generated data set."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import search_end
import search_space
from helpers import data_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARC16 = "0 0 1 2 1 4 2 3 1 0 0 3 2 4 1 2"
TINY = ["--img_size", "8", "--child_num_layers", "0", "--child_num_cells", "2",
        "--child_out_filters", "4", "--batch_size", "16", "--log_every", "1",
        "--eval_every_epochs", "1", "--seed", "0"]
STEP_LINE = re.compile(r"^epoch = \d+\s+ch_step = \d+\s+loss = \d+\.\d{6}\s+lr = \d+\.\d{4}\s+"
                       r"\|g\| = \d+\.\d{4}\s+tr_acc = \d+\s*/\s*\d+ mins = \d+\.\d{2}", re.M)
@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    from helpers import make_png_dataset
    root = tmp_path_factory.mktemp("cli_data")
    return make_png_dataset(root, num_classes=3, per_class=(16, 4, 4), size=8)


@pytest.fixture(scope="module")
def rgb_dirs(tmp_path_factory):
    """3 classes x (16 train, 4 valid, 4 test) colour 12x12 PNGs."""
    from helpers import make_png_dataset
    root = tmp_path_factory.mktemp("cli_rgb_data")
    return make_png_dataset(root, num_classes=3, per_class=(16, 4, 4), size=12, channel=3)


def _run(script, args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, script] + list(args), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- final training
def test_child_trainer_end_to_end(data_dirs, tmp_path):
    out = str(tmp_path / "final")
    r = _run("main_child_trainer.py", data_flags(data_dirs) + TINY + [
        "--num_epochs", "1", "--n_aug_img", "1", "--child_fixed_arc", ARC16, "--output_dir", out])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    if not os.path.exists("/dev/nvidiactl"):  # no GPU driver: CUDA's failing cuInit is expected
        assert "cuInit" not in r.stderr
    valid = re.findall(r"^valid_accuracy: ([01]\.\d{4})\s*$", r.stdout, re.M)
    test = re.findall(r"^test_accuracy: ([01]\.\d{4})\s*$", r.stdout, re.M)
    assert len(valid) == 1 and len(test) == 1, r.stdout
    for acc in valid + test:  # every one of the 12 examples counted once: a multiple of 1/12
        assert abs(float(acc) * 12 - round(float(acc) * 12)) < 2e-3 and float(acc) <= 1, acc
    steps = STEP_LINE.findall(r.stdout)
    assert len(steps) == 3, r.stdout  # 48 images / batch 16, log_every 1
    assert re.search(r"ch_step = 3\s", r.stdout)
    params = re.search(r"^Model has (\d+) params$", r.stdout, re.M)
    assert params and int(params.group(1)) > 0
    names = os.listdir(out)
    assert "checkpoint" in names
    assert "model.ckpt-3.index" in names, names
    assert any(n.startswith("model.ckpt-3.data-") for n in names), names
    # the log in output_dir holds what was printed
    with open(os.path.join(out, "stdout")) as f:
        assert STEP_LINE.search(f.read())


@pytest.mark.parametrize("script", ["main_controller_child_trainer.py", "main_child_trainer.py"])
@pytest.mark.parametrize("arg", ["-h", "--help", "--helpshort", "--helpfull"])
def test_help_lists_the_flags_and_exits_0_without_tensorflow(script, arg):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, "-X", "importtime", script, arg], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    for flag in ("train_data_dir", "val_data_dir", "test_data_dir", "channel", "img_size",
                 "n_aug_img", "output_dir", "child_num_layers"):
        assert "--{}:".format(flag) in r.stdout
    assert ("--controller_lr:" in r.stdout) == (script == "main_controller_child_trainer.py")
    assert ("--child_fixed_arc:" in r.stdout)
    imported = [line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line]
    assert not [m for m in imported if m.startswith("tensorflow")]


# --------------------------------------------------------------------------------- search
def _read_arcs_tsv(path):
    with open(path) as f:
        lines = f.read().splitlines(True)
    return lines[0], [line.rstrip("\n").split("\t") for line in lines[1:]]


def _check_worth_report(stdout, finals, uniform):
    """What the search's answer is worth: every line search_end.final_scores_lines makes of the
    arcs.tsv rows' scores (exact: correct counts over n_images) is printed."""
    exact = [[round(float(row[3]) * int(row[4])) / float(int(row[4])) for row in group]
             for group in (finals, uniform)]
    for line in search_end.final_scores_lines(*exact, random_search=False):
        assert line + "\n" in stdout, (line, stdout[-2000:])


def test_the_chosen_cell_against_the_best_uniform_cell_ties_are_ties():
    """Equal bests are a tie, not a win; the AUC counts every (candidate, uniform) pair, ties half."""
    assert search_end.compare_final_scores([0.9333, 0.9], [0.9333, 0.5]) == ("tied with", 2.5 / 4)
    assert search_end.compare_final_scores([0.8, 0.8], [0.8, 0.8]) == ("tied with", 0.5)
    assert search_end.compare_final_scores([0.95, 0.6], [0.9, 0.7]) == ("better than", 2 / 4)
    assert search_end.compare_final_scores([0.5], [0.6, 0.4, 0.5]) == ("worse than", 1.5 / 3)
    lines = search_end.final_scores_lines([0.9, 0.7], [0.9, 0.5], random_search=False)
    assert lines[0] == "final candidates: valid_acc mean 0.8000  std 0.1000  best 0.9000  (n = 2)"
    assert lines[1] == "uniform cells:    valid_acc mean 0.7000  std 0.2000  best 0.9000  (n = 2)"
    assert lines[2].startswith("The chosen cell (best of 2 final candidates, 0.9000) is tied with the "
                               "best of 2 uniform cells (0.9000); a candidate beats a uniform cell in "
                               "0.62 of their pairs")


def test_a_sampler_that_learned_nothing_is_even_with_uniform_cells():
    """Both groups drawn from one distribution of accuracies (k / 12, many ties), 2000 times: the
    mean AUC is 0.5 and the chosen cell beats the best uniform cell in half the untied cases
    (the old rank of the best of 10 among 10 single draws put it first or second most of the
    time). Candidates 2 / 12 better move both."""
    rng = np.random.default_rng(0)

    def outcomes(shift):
        results = [search_end.compare_final_scores(rng.binomial(12, 0.5 + shift, 10) / 12.0,
                                                   rng.binomial(12, 0.5, 10) / 12.0)
                   for _ in range(2000)]
        verdicts = [v for v, _ in results if v != "tied with"]
        return np.mean([auc for _, auc in results]), verdicts.count("better than") / len(verdicts)
    auc, better = outcomes(0.0)
    assert abs(auc - 0.5) < 0.02 and abs(better - 0.5) < 0.05, (auc, better)
    auc, better = outcomes(2 / 12)
    assert auc > 0.7 and better > 0.8, (auc, better)


def test_random_search_is_reported_as_uniform_draws():
    """With --random_search the words speak of uniform draws, never of a controller; both keep
    the shared-weight caveat."""
    searched = search_end.final_scores_lines([0.9, 0.8], [0.7, 0.8], random_search=False)
    random = search_end.final_scores_lines([0.9, 0.8], [0.7, 0.8], random_search=True)
    assert searched[:3] == random[:3]
    assert not [line for line in random if "controller" in line]
    assert "--random_search the candidates are uniform draws too" in random[3]
    assert "controller learned" in searched[-1] and "controller" in searched[3]
    for lines in (searched, random):
        assert "scores with the shared weights, not the accuracy a cell reaches when retrained" in lines[-1]
        assert "bench/ranking.py" in lines[-1]


def test_search_end_to_end_then_retrain_best_arc(rgb_dirs, tmp_path):
    """In the GPU layout (--data_format NCHW; the other end-to-end runs use NHWC), on a colour
    folder without --channel: the search with its default final stage (1 epoch here), then the
    retraining command it prints with only size flags added, which takes the search's data
    flags (folders, channel 3, img_size, child_num_cells), and a SavedModel that takes NHWC
    uint8 RGB images."""
    out = str(tmp_path / "search")
    r = _run("main_controller_child_trainer.py", data_flags(rgb_dirs) + TINY + [
        "--data_format", "NCHW", "--num_epochs", "2", "--controller_train_steps", "2", "--controller_num_aggregate", "2",
        "--controller_num_final_arcs", "2", "--final_train_epochs", "1", "--output_dir", out])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "--channel not given: the training images are colour, read as RGB (channel 3)" in r.stdout
    assert "train: 48 images, 3 classes, 8x8x3" in r.stdout

    header, rows = _read_arcs_tsv(os.path.join(out, "arcs.tsv"))
    assert header == "epoch\tsource\tarc\tvalid_acc\tn_images\n"
    assert all(len(row) == 5 for row in rows), rows
    samples = [row for row in rows if row[1] == "sample"]
    finals = [row for row in rows if row[1] == "final"]
    uniform = [row for row in rows if row[1] == "uniform"]
    short = [row for row in rows if row[1] == "short_train"]  # every distinct candidate: 2 < K = 3
    assert len(samples) + len(finals) + len(uniform) + len(short) == len(rows)
    shared = {row[2]: float(row[3]) for row in reversed(finals)}  # an arc's first score
    assert [row[2] for row in short] == sorted(dict.fromkeys(row[2] for row in finals), key=lambda a: -shared[a])
    assert sorted(int(row[0]) for row in samples) == [1] * 10 + [2] * 10
    assert len(finals) == len(uniform) == 2
    for row in rows:
        normal, reduce = search_space.parse_arc(row[2], num_cells=2)
        assert search_space.arc_to_string(normal, reduce) == row[2]
        correct = float(row[3]) * int(row[4])  # a count of correct examples
        assert abs(correct - round(correct)) < 2e-3 and 0 <= round(correct) <= int(row[4]), row
    assert all(int(row[4]) == 12 for row in samples)   # one reward batch: min(16, 12 valid)
    assert all(int(row[4]) == 12 for row in finals + uniform)    # the whole valid split

    with open(os.path.join(out, "best_arc.txt")) as f:
        best = f.read().strip()
    best_acc = max(float(row[3]) for row in short)
    assert best in [row[2] for row in short if float(row[3]) == best_acc]
    assert "Chosen by short training: " + best in r.stdout and "Best architecture: " + best in r.stdout
    _check_worth_report(r.stdout, finals, uniform)
    search_log = r.stdout.split("\nScoring ")[0]
    assert len(STEP_LINE.findall(search_log)) == 6 and len(STEP_LINE.findall(r.stdout)) == 6 + 2 * 3
    assert len(re.findall(r"^ctrl_step = ", r.stdout, re.M)) == 2 * 2 * 2
    # where the run is, and when it ends: a line per epoch with k/N and the time left
    assert "Search: 2 epochs of 3 child steps (6 steps); --num_epochs sets how many" in r.stdout
    progress = re.findall(r"^Progress: epoch (\d)/2, step (\d)/6, \d+\.\d min so far, about "
                          r"\d+\.\d min left \(ends about \d\d:\d\d\), then the scoring of 4 cells and 2 "
                          r"trained alone for 1 epoch each$",
                          r.stdout, re.M)
    assert progress == [("1", "3"), ("2", "6")], r.stdout
    assert "Epoch 1: Training controller (2 updates of 2 sampled cells)" in r.stdout
    command = re.search(r"^Retrain it with .*:\n  (python main_child_trainer.py .*)$", r.stdout, re.M)
    assert command, r.stdout[-3000:]
    assert command.group(1) == "python main_child_trainer.py --child_fixed_arc {} --data_format NCHW".format(
        os.path.join(out, "best_arc.txt"))
    assert command.group(1) + " --num_epochs 10 --child_num_layers 6 --n_aug_img 1" in r.stdout  # quick

    _check_printed_command_retrains_on_the_search_data(command.group(1), out, best, rgb_dirs,
                                                       str(tmp_path / "final"))


def _check_printed_command_retrains_on_the_search_data(command, search_out, best, rgb_dirs,
                                                       retrain_out):
    """The retraining command a search printed, with only size flags added, trains best on the
    search's colour folders (its run_flags.json) and exports a model that takes them."""
    r2 = _run(command.split()[1], command.split()[2:] + [
        "--num_epochs", "1", "--n_aug_img", "1", "--child_num_layers", "0", "--child_out_filters", "4",
        "--batch_size", "16", "--seed", "0", "--output_dir", retrain_out])
    assert r2.returncode == 0, r2.stderr[-3000:]
    train, valid, test = (os.path.abspath(d) for d in rgb_dirs)
    assert ("Data flags from the search in {}: --train_data_dir {} --val_data_dir {} --test_data_dir {} "
            "--noskip_bad_images --channel 3 --img_size 8 --child_num_cells 2 (give a flag to override)"
            .format(os.path.join(search_out, "run_flags.json"), train, valid, test)) in r2.stdout
    assert "train: 48 images, 3 classes, 8x8x3" in r2.stdout
    assert "Training: 1 epochs of 3 child steps (3 steps)" in r2.stdout
    assert re.search(r"^valid_accuracy: [01]\.\d{4}", r2.stdout, re.M)
    assert "model.ckpt-3.index" in os.listdir(retrain_out)
    with open(os.path.join(retrain_out, "run_flags.json")) as f:
        run_flags = json.load(f)
    assert run_flags["child_fixed_arc"] == best  # the retrained arc is the one the search found
    assert (run_flags["train_data_dir"], run_flags["channel"], run_flags["img_size"]) == (train, 3, 8)
    with open(os.path.join(retrain_out, "labels.txt")) as f:
        assert f.read().splitlines() == ["0", "1", "2"]
    _check_saved_model_takes_nhwc_uint8(os.path.join(retrain_out, "saved_model"), rgb_dirs[2])


def _check_saved_model_takes_nhwc_uint8(export_dir, test_dir):
    """The SavedModel's input is [N, 8, 8, 3] uint8 whatever layout trained it; its outputs are
    probabilities."""
    import data_utils
    from predict import Predictor
    p = Predictor(export_dir)
    assert (p.img_size, p.channel) == (8, 3)
    images = np.stack([data_utils.decode_image(os.path.join(test_dir, "0", name), 3, 8)
                       for name in sorted(os.listdir(os.path.join(test_dir, "0")))])
    assert images.dtype == np.uint8 and images.shape == (4, 8, 8, 3)
    probs = p.predict(images)
    assert probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_retrain_bench_profile_accounts_for_the_step():
    """bench/retrain.py on a tiny network: a positive images/s, and the profile
    puts most of the traced op time in named op groups, the convolutions among them."""
    r = _run("bench/retrain.py", ["--skip_memory", "--profile", "--steps", "2", "--warmup", "1",
                                  "--variants", "none,none/all",
                                  "--child_num_layers", "0", "--child_out_filters", "4",
                                  "--batch_size", "16", "--num_images", "64"], timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    speeds = re.findall(r"^(none\S*): \S+ s per step, (\S+) images/s,", r.stdout, re.M)
    assert [p for p, _ in speeds] == ["none", "none/all"] and all(float(v) > 0 for _, v in speeds)
    for table in r.stdout.split("profile, ")[1:]:
        shares = {m[0]: float(m[1]) for m in re.findall(r"^\| ([^|]+) \| [\d.]+ \| ([\d.]+) % \|$",
                                                         table, re.M)}
        assert shares.get("other", 0.0) < 50.0, shares  # the groups name what the step runs
        assert shares["1x1 / full conv"] > 0 and shares["depthwise conv"] > 0, shares
    if not os.path.exists("/dev/nvidiactl"):  # no GPU driver: CUDA's failing cuInit is expected
        assert "cuInit" not in r.stderr


def test_progress_line_within_and_at_the_end_of_an_epoch():
    """The line names the epoch (under way or done) of N, the step of S, and a time left at the
    pace since this process started: 40 steps in 2 min -> the 150 steps left take 7.5 min."""
    import time
    import loop
    now = time.mktime((2026, 1, 1, 12, 0, 0, 0, 1, -1))
    mid = loop.progress_line(50, 20, 10, 10, 120.0, now=now)
    assert mid == ("Progress: in epoch 3/10, step 50/200, 2.0 min so far, about 7.5 min left "
                   "(ends about 12:07)"), mid
    end = loop.progress_line(60, 20, 10, 0, 120.0, now=now)
    assert end.startswith("Progress: epoch 3/10, step 60/200,") and "about 4.7 min left" in end


def test_bench_search_defaults_are_the_search_scripts_defaults():
    """bench/throughput.SEARCH_DEFAULTS (the flags of every benchmark that builds a search graph
    in-process) holds each search flag graph.py reads, at main_controller_child_trainer.py's
    default: a new flag or a changed default shows here, not as a benchmark of other settings."""
    r = subprocess.run([sys.executable, "-c", (
        "import json, enas_flags; enas_flags.define_flags('search'); enas_flags.FLAGS(['x']); "
        "print(json.dumps({n: enas_flags.FLAGS[n].value for n in enas_flags.user_flags}))")],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    defaults = json.loads(r.stdout)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from throughput import SEARCH_DEFAULTS
    with open(os.path.join(ROOT, "graph.py")) as f:
        read_by_graph = set(re.findall(r"flags\.(\w+)", f.read()))
    retraining_only = {"mixed_precision", "child_recompute"}
    assert read_by_graph - retraining_only <= set(SEARCH_DEFAULTS) <= set(defaults) | retraining_only
    assert {k: v for k, v in SEARCH_DEFAULTS.items() if k in defaults} == {
        k: defaults[k] for k in SEARCH_DEFAULTS if k in defaults}
