"""The search's final stage (final_stage.py, --final_train_top_k K, --final_train_epochs E): which
cell it chooses from hand-made scores, its flags' checks, a tiny search that trains its top
candidates alone, and a stage killed and resumed. Runs are forked by test_reliability's
ForkRunner."""
import json
import os
import re
import signal
import types

import pytest

import final_stage
import records
from helpers import assert_one_line_error, data_flags
from test_reliability import (SEARCH_BATCHES, SEARCH_TINY, latest_step, read_arcs,  # noqa: F401
                              runner, search_data)  # fixtures

# sampled in this order; "b" twice (one arc, one candidate), "b" and "d" tie on shared score
SHARED = [("a", 0.50), ("b", 0.90), ("c", 0.70), ("b", 0.90), ("d", 0.90), ("e", 0.10)]
SHORT = {"a": 0.99, "b": 0.60, "c": 0.80, "d": 0.80, "e": 0.95}


def stage_answer(tmp_path, monkeypatch, k, short_acc=SHORT):
    """final_stage.pick's answer after a search whose arcs.tsv holds SHARED as "final" rows, if
    each candidate's short training gave short_acc[arc]: ((arc, valid_acc), the rows it adds)."""
    os.makedirs(str(tmp_path), exist_ok=True)
    path = str(tmp_path / "arcs.tsv")
    records.append_rows(path, [(3, "final", arc, acc, 8) for arc, acc in SHARED])
    added = []
    monkeypatch.setattr(final_stage, "train_candidates",
                        lambda data, flags, arcs, epoch_s: [short_acc[arc] for arc in arcs])
    return final_stage.pick({"labels": {"valid": [0] * 8}},
                            types.SimpleNamespace(final_train_top_k=k, final_train_epochs=1, num_epochs=3),
                            types.SimpleNamespace(arcs_path=path, add_arcs=added.extend),
                            ("b", 0.9)), added


def test_top_candidates_are_distinct_best_first_ties_in_sampling_order():
    assert final_stage.top_candidates(SHARED, 3) == [("b", 0.9), ("d", 0.9), ("c", 0.7)]
    assert [arc for arc, _ in final_stage.top_candidates(SHARED, 10)] == ["b", "d", "c", "a", "e"]
    assert final_stage.top_candidates(SHARED, 0) == []


def test_choice_by_short_training_ties_to_the_better_shared_rank(tmp_path, monkeypatch, capsys):
    answer, added = stage_answer(tmp_path, monkeypatch, 3)
    assert answer == ("d", 0.8)  # c ties d: d has the better shared score
    assert added == [(3, "short_train", "b", 0.6, 8), (3, "short_train", "d", 0.8, 8),
                     (3, "short_train", "c", 0.8, 8)]
    assert "Chosen by short training: d  valid_acc = 0.8000 after 1 epochs alone (its shared-score " \
           "rank 2 of 3, shared valid_acc 0.9000)" in capsys.readouterr().out
    assert stage_answer(tmp_path / "b", monkeypatch, 3, dict(SHORT, b=0.8))[0] == ("b", 0.8)
    assert stage_answer(tmp_path / "one", monkeypatch, 1)[0] == ("b", 0.6)  # trained, and the answer


def test_the_time_before_the_stage_is_the_search_child_steps_pace_or_said_unknown():
    assert final_stage.before_line(90.0, 6).startswith(
        "Short training: 6 epochs in all, at most about 9.0 min (the search's child steps took 1.50 min "
        "per epoch; ends by about ")
    assert final_stage.before_line(None, 6) == ("Short training: 6 epochs in all; their time is printed "
                                                "after the first candidate (no search step was timed "
                                                "in this run)")


def test_choice_with_k_above_the_candidates_or_zero(tmp_path, monkeypatch, capsys):
    answer, added = stage_answer(tmp_path, monkeypatch, 100)
    assert answer == ("a", 0.99) and [row[2] for row in added] == ["b", "d", "c", "a", "e"]
    assert "rank 4 of 5" in capsys.readouterr().out
    answer, added = stage_answer(tmp_path / "zero", monkeypatch, 0, {})  # K = 0: nothing trained
    assert answer == ("b", 0.9) and added == []
    assert capsys.readouterr().out == "Chosen by the shared-weight score (--final_train_top_k 0)\n"


@pytest.mark.parametrize("flags, name", [
    (["--final_train_top_k", "-1"], "--final_train_top_k"),
    (["--final_train_top_k", "2", "--final_train_epochs", "0"], "--final_train_epochs")])
def test_bad_stage_flags_stop_before_anything_is_written(flags, name, runner, search_data, tmp_path):  # noqa: F811
    out = str(tmp_path / "out")
    run = runner.run("search", data_flags(search_data) + SEARCH_TINY + [
        "--controller_num_final_arcs", "4", "--output_dir", out] + flags)
    assert_one_line_error(run, name)
    assert not os.path.exists(out)


@pytest.fixture(scope="module")
def noise_data(tmp_path_factory):
    """2 classes of noise, 32 valid images: cells reach different accuracies, seldom 1."""
    from helpers import make_png_dataset
    return make_png_dataset(tmp_path_factory.mktemp("noise"), num_classes=2, per_class=(80, 16, 4),
                            size=8, learnable=False)


def stage_args(dirs, out):
    """A seeded 1-epoch tiny search ending in the stage: 4 final candidates, the top 2 trained
    for 2 epochs each (2, not 1: a stop between a candidate's epochs leaves its checkpoint).
    With seed 2 short training chose the shared score's second (AMD EPYC Zen 4), so the
    answer is not the shared pick's by chance."""
    return data_flags(dirs) + SEARCH_TINY + [
        "--seed", "2", "--num_epochs", "1", "--controller_num_final_arcs", "4",
        "--final_train_top_k", "2", "--final_train_epochs", "2", "--output_dir", out]


@pytest.fixture(scope="module")
def reference(runner, noise_data, tmp_path_factory):  # noqa: F811
    """The search of stage_args run to its end: (run, output_dir)."""
    out = str(tmp_path_factory.mktemp("reference") / "search")
    run = runner.run("search", stage_args(noise_data, out))
    assert run.returncode == 0, run.stderr[-3000:]
    return run, out


def short_rows(out):
    return [r for r in read_arcs(os.path.join(out, "arcs.tsv")) if r[1] == final_stage.SOURCE]


def folder_of(out, arc):
    return os.path.join(out, final_stage.FOLDER, "2ep_" + arc.replace(" ", "-"))


def test_search_trains_its_top_candidates_alone_and_answers_the_best(reference):
    run, out = reference
    rows = read_arcs(os.path.join(out, "arcs.tsv"))
    top = final_stage.top_candidates([(r[2], float(r[3])) for r in rows if r[1] == "final"], 2)
    shorts = short_rows(out)
    assert [r[2] for r in shorts] == [arc for arc, _ in top] and len(top) == 2
    assert {r[0] for r in shorts} == {"1"} and {r[4] for r in shorts} == {"32"}
    accs = [float(r[3]) for r in shorts]
    for arc, acc in zip([r[2] for r in shorts], accs):  # each trained alone, as a retraining
        folder = folder_of(out, arc)
        assert latest_step(folder) == 2 * SEARCH_BATCHES
        with open(os.path.join(folder, "run_flags.json")) as f:
            saved = json.load(f)
        assert (saved["mode"], saved["child_fixed_arc"], saved["child_num_layers"],
                saved["child_out_filters"]) == ("final", arc, 0, 4)
        assert round(final_stage.short_train_acc(folder, 2), 4) == acc
    best = max(range(2), key=lambda i: (accs[i], -i))
    before = re.search(r"^Short training: 4 epochs in all, at most about \d+\.\d min \(the search's child "
                       r"steps took \d+\.\d\d min per epoch; ends by about \d\d:\d\d\)$", run.stdout, re.M)
    assert before and before.start() < run.stdout.index("Short training 1 of 2: "), run.stdout[-3000:]
    with open(os.path.join(out, "best_arc.txt")) as f:
        assert f.read() == shorts[best][2] + "\n"
    assert re.search(r"^Chosen by short training: {}  valid_acc = {} after 2 epochs alone \(its "
                     r"shared-score rank {} of 2,".format(shorts[best][2], shorts[best][3], best + 1),
                     run.stdout, re.M), run.stdout[-3000:]


def stage_record(stdout):
    """The lines of the stage's answer that a resumed run must repeat."""
    return re.findall(r"^(?:short_train candidate|Chosen by|Best architecture): .*$", stdout, re.M)


def same_answer(out, ref_out):
    for name in ("arcs.tsv", "best_arc.txt"):
        with open(os.path.join(out, name)) as f, open(os.path.join(ref_out, name)) as g:
            assert f.read() == g.read(), name


def test_stage_killed_mid_candidate_resumes_to_the_uninterrupted_answer(runner, noise_data, reference,  # noqa: F811
                                                                        tmp_path):
    """Killed after candidate 1's first epoch of 2: the rerun resumes candidate 1 from its
    checkpoint and trains candidate 2; a rerun that finds both trained (a kill before
    best_arc.txt) trains neither. arcs.tsv and best_arc.txt are the run's never stopped."""
    ref_run, ref_out = reference
    out = str(tmp_path / "search")
    args = stage_args(noise_data, out)
    first = runner.start("search", args, stop_at=r"^Progress: epoch 1/2, ")  # the search's is 1/1
    first.wait_stopped()
    first.interrupt(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, "best_arc.txt")) and short_rows(out) == []
    first_arc = short_rows(ref_out)[0][2]
    assert latest_step(folder_of(out, first_arc)) == SEARCH_BATCHES
    second = runner.run("search", args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert re.search(r"^Resumed from \S*{}/model\.ckpt-{} at step {}$".format(
        re.escape(folder_of(out, first_arc)), SEARCH_BATCHES, SEARCH_BATCHES), second.stdout, re.M)
    assert len(re.findall(r"^Training: 2 epochs of ", second.stdout, re.M)) == 2
    assert stage_record(second.stdout) == stage_record(ref_run.stdout) != []
    same_answer(out, ref_out)
    os.remove(os.path.join(out, "best_arc.txt"))
    third = runner.run("search", args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert len(re.findall(r"^Short training [12] of 2: .*, already trained$", third.stdout, re.M)) == 2
    assert "Training: " not in third.stdout and "epochs in all" not in third.stdout
    assert stage_record(third.stdout) == stage_record(ref_run.stdout)
    same_answer(out, ref_out)
