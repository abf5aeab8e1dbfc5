"""bench/search_quality.py's variant and reference strings, and bench/quality_summary.py's paired
statistics over seeds on hand-made results (no TensorFlow, no run)."""
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import quality_summary as qs  # noqa: E402
import search_quality  # noqa: E402
import search_space  # noqa: E402
from errors import UserError  # noqa: E402

B1_ARC = "0 1 0 1 1 0 1 0"


# ------------------------------------------------------------------------- search_quality
def test_variants_are_named_flag_lists_and_bad_ones_are_one_line_errors():
    parse = lambda text: search_quality.parse_named("--enas_variants", text, search_quality.shlex.split)
    assert parse("default=; lr = --controller_lr 0.01 --nocontroller_advantage_norm;") == [
        ("default", []), ("lr", ["--controller_lr", "0.01", "--nocontroller_advantage_norm"])]
    assert parse("") == []
    for text, says in (("crn", "expected NAME=VALUE"),
                       ("my lr=--controller_lr 0.01", "expected NAME=VALUE"),
                       ("a=;a=--controller_lr 0.01", "the name a is given twice"),
                       ("a=--search_args 'unclosed", "--enas_variants a: No closing quotation")):
        with pytest.raises(UserError, match=says) as e:
            parse(text)
        assert "\n" not in str(e.value) and str(e.value).startswith("--enas_variants")


def test_a_final_stage_variant_searches_as_the_variant_without_its_stage():
    extra = ["--controller_baseline", "loo", "--final_train_top_k", "3", "--final_train_epochs=5"]
    assert search_quality.without_flags(extra, search_quality.FINAL_STAGE_FLAGS) == [
        "--controller_baseline", "loo"]
    assert search_quality.without_flags(extra[:2], search_quality.FINAL_STAGE_FLAGS) == extra[:2]


def test_a_search_with_the_default_stage_is_a_copy_of_the_one_without(tmp_path, monkeypatch):
    """The default search (final stage on) runs as a copy of the --final_train_top_k 0 search,
    which runs first; a search whose flags turn the stage off is no copy of anything."""
    runs = []

    def run(script, flags, log_path):  # a finished search: its best_arc.txt and its own file
        out = flags[flags.index("--output_dir") + 1]
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "best_arc.txt"), "w") as f:
            f.write(B1_ARC)
        open(os.path.join(out, "ran_{}".format(len(runs))), "w").close()
        runs.append(flags[:-2])
    monkeypatch.setattr(search_quality, "run", run)
    args = search_quality.parse_args(["--data_dir", str(tmp_path / "d"), "--num_cells", "1"])
    default = search_quality.search_dir(args, str(tmp_path), "enas", [])
    assert [r[-2:] for r in runs] == [["--final_train_top_k", "0"], ["--num_epochs", "10"]]
    assert sorted(os.listdir(default)) == ["best_arc.txt", "ran_0", "ran_1"]  # ran_0: copied
    off = search_quality.search_dir(args, str(tmp_path), "enas", ["--final_train_top_k=0"])
    assert len(runs) == 2 and sorted(os.listdir(off)) == ["best_arc.txt", "ran_0"]


def test_references_are_checked_arcs_of_their_own_b(tmp_path):
    args = search_quality.parse_args(["--data_dir", "d"])
    assert args.reference_arcs == [("authors", search_quality.AUTHORS_ARC),
                                   ("png_fork", search_space.CIFAR10_ARC)]
    arc_file = tmp_path / "best_arc.txt"
    arc_file.write_text(" 0 1  0 1 1 0 1 0\n")
    parse = lambda text: search_quality.parse_named("--reference_arcs", text, search_quality.reference_arc)
    assert parse("mine={};b1={}".format(arc_file, B1_ARC)) == [("mine", B1_ARC), ("b1", B1_ARC)]
    for text, says in (("short=0 1 0", "expected 8 \\* B integers"), ("none=", "got 0"),
                       ("op=0 9 0 1 1 0 1 0", "op id and must be in 0..4, got 9")):
        with pytest.raises(UserError, match=says) as e:
            parse(text)
        assert str(e.value).startswith("--reference_arcs ") and "child_fixed_arc" not in str(e.value)


def test_references_of_another_b_are_skipped_with_a_note(capsys):
    references = "b1={};authors={}".format(B1_ARC, search_quality.AUTHORS_ARC)
    args = search_quality.parse_args(["--data_dir", "d", "--num_cells", "1", "--reference_arcs", references])
    assert search_quality.reference_cells(args) == [("ref:b1", "reference", B1_ARC, B1_ARC)]
    assert capsys.readouterr().out == "note: reference authors not retrained: its B is 5, --num_cells 1\n"


def test_bad_input_stops_before_any_run_or_file(monkeypatch, tmp_path, capsys, make_png_dataset):
    """A malformed --enas_variants: one error line, exit status 2; a flag the searches do not know
    in any variant: an error naming it before the first run; work_dir is not made either way."""
    monkeypatch.setattr(search_quality, "run", None)  # any run would fail
    work = tmp_path / "work"
    make_png_dataset(tmp_path / "data")
    argv = ["--data_dir", str(tmp_path / "data"), "--work_dir", str(work)]
    with pytest.raises(SystemExit) as e:
        search_quality.main(argv + ["--enas_variants", "default=;crn"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: --enas_variants: expected NAME=VALUE pairs separated by ';' " \
                                      "(NAME of letters, digits, _ and -), got 'crn'\n"
    with pytest.raises(SystemExit):
        search_quality.main(argv + ["--num_random", "1"])
    assert capsys.readouterr().err.startswith("error: --num_random must be at least 2")
    with pytest.raises(SystemExit) as e:
        search_quality.main(argv + ["--enas_variants", "default=;typo=--controler_lr 0.01"])
    assert "controler_lr" in str(e.value.code) and "\n" not in str(e.value.code)
    assert not work.exists()


# -------------------------------------------------------------------------- quality_summary
def result(seed, random, cells, key="k" * 40):
    """A hand-made seed result: random cells of test (= valid) accuracies random, then cells
    {name: accuracy}, their source the name's prefix."""
    rows = [dict(name="random_{}".format(i), source="random", defined_by="", arc="", valid=a, test=a)
            for i, a in enumerate(random)]
    rows += [dict(name=name, source={"rs": "rs-ws", "en": "enas", "re": "reference"}[name[:2]],
                  defined_by=name, arc="", valid=a, test=a) for name, a in cells.items()]
    return dict(seed=seed, key=key, args={}, rows=rows)


SEEDS = [  # random means 0.6, 0.5, 0.7; sds 0.1, 0.1, 0.2; enas:crn missing in seed 2
    result(0, [0.5, 0.6, 0.7], {"rs-ws": 0.65, "enas:default": 0.8, "enas:crn": 0.7, "ref:authors": 0.9}),
    result(1, [0.4, 0.5, 0.6], {"rs-ws": 0.45, "enas:default": 0.6, "enas:crn": 0.7, "ref:authors": 0.8}),
    result(2, [0.5, 0.7, 0.9], {"rs-ws": 0.7, "enas:default": 0.65, "ref:authors": 0.95}),
]


def test_random_stats_and_margins_in_random_sds():
    assert qs.random_stats(SEEDS[2], "test") == pytest.approx((0.7, 0.2, 0.9))
    assert qs.accuracy(SEEDS[2], qs.RANDOM, "valid") == pytest.approx(0.7)
    assert qs.accuracy(SEEDS[2], "enas:crn", "test") is None
    assert qs.in_sds(0.3, 0.2) == pytest.approx(1.5)
    assert np.isnan(qs.in_sds(0.3, 0.0)) and np.isnan(qs.in_sds(0.3, float("nan")))
    assert np.isnan(qs.sd([0.5]))
    assert qs.cell_text(SEEDS[2], "ref:authors", "test") == "0.9500 (+1.25)"
    assert qs.cell_text(SEEDS[2], "enas:crn", "test") == "-"


def test_paired_margins_over_the_seeds_holding_both():
    margins, scaled = qs.paired_margins(SEEDS, "enas:default", qs.RANDOM, "test")
    np.testing.assert_allclose(margins, [0.2, 0.1, -0.05])
    np.testing.assert_allclose(scaled, [2.0, 1.0, -0.25])
    mean, spread_sd, wins, n = qs.spread(margins)
    assert (mean, wins, n) == (pytest.approx(0.25 / 3), 2, 3)
    assert spread_sd == pytest.approx(np.sqrt((0.35 ** 2 + 0.05 ** 2 + 0.4 ** 2) / 9 / 2))
    margins, scaled = qs.paired_margins(SEEDS, "enas:crn", "enas:default", "test")  # seeds 0, 1
    np.testing.assert_allclose(margins, [-0.1, 0.1])
    np.testing.assert_allclose(scaled, [-1.0, 1.0])
    assert qs.spread(margins)[2:] == (1, 2)
    assert qs.spread([0.0, 0.1])[2] == 1  # a tie is no win
    assert qs.baselines(SEEDS) == [qs.RANDOM, "rs-ws", "enas:default", "ref:authors"]
    assert qs.baselines(SEEDS[2:]) == [qs.RANDOM, "rs-ws", "enas:default", "ref:authors"]
    assert qs.baselines([result(0, [0.5, 0.6], {"enas:crn": 0.7})]) == [qs.RANDOM, "enas:crn"]


def test_summary_groups_the_seeds_by_key_and_prints_the_paired_table(tmp_path, capsys):
    for r in SEEDS + [result(0, [0.1, 0.2], {"rs-ws": 0.3}, key="other" * 8)]:
        with open(tmp_path / "quality_seed{}_{}.json".format(r["seed"], r["key"][:12]), "w") as f:
            json.dump(dict(r, args=dict(search_epochs=1, search_args="", retrain_epochs=1,
                                        retrain_args="", num_random=3)), f)
    groups = qs.load_results([str(tmp_path)])
    assert sorted((key[:5], [r["seed"] for r in results]) for key, results in groups.items()) == [
        ("kkkkk", [0, 1, 2]), ("other", [0])]
    qs.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "enas:default       random mean         +0.0833  0.1258    +0.92    1.13    2/3" in out
    assert "enas:crn           enas:default        -0.0000  0.1414    -0.00    1.41    1/2" in out
    assert "ref:authors        rs-ws               +0.2833  0.0577    +2.42    1.13    3/3" in out
    assert "enas:crn            0.7000 (+1.00)  0.7000 (+2.00)               -" in out
    assert "rs-ws              random mean         +0.1500     nan    +2.12     nan    1/1" in out
    with pytest.raises(UserError, match="a second result of seed 0"):
        qs.load_results([str(tmp_path), str(tmp_path / "quality_seed0_kkkkkkkkkkkk.json")])
    with pytest.raises(UserError, match="none: no such file or folder"):
        qs.load_results([str(tmp_path / "none")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no quality_seed"):
        qs.load_results([str(tmp_path / "empty")])


def test_a_name_standing_for_other_flags_in_another_seed_is_refused():
    other = result(1, [0.4, 0.6], {"enas:crn": 0.7})
    other["rows"][-1]["defined_by"] = "--controller_lr 0.01"
    with pytest.raises(UserError, match="enas:crn is 'enas:crn' in one seed and '--controller_lr 0.01' "
                                        "in seed 1"):
        qs.check_rows_alike(SEEDS[:1] + [other])
    qs.check_rows_alike(SEEDS)
