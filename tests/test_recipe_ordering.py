"""Recipe tables rank dglmm's rows and the paper's and say, computed, whether the two orderings agree."""

from dglmm.recipe import paper_table
from dglmm.report import ordering_agreement

HEAD = ["model", "R@20", "NDCG@20", "paper R@20", "paper NDCG@20"]


def test_same_ordering_agrees_on_every_pair():
    rows = [["MF", "0.1000", "0.05", "0.0440", "0.02"], ["LightGCN", "0.2000 ± 0.0100*", "0.06", "0.0698", "0.03"],
            ["TMFUN", "0.3000", "0.07", "0.1032", "0.04"]]
    text = paper_table(HEAD, rows)
    lines = text.splitlines()
    assert lines[0].endswith("rank R@20  paper rank R@20")
    assert lines[2].split()[-2:] == ["3", "3"] and lines[4].split()[-2:] == ["1", "1"]
    assert lines[-1] == ("ordering by R@20 agrees with the paper's: 3 of 3 pairs in the same order "
                         "(Kendall tau +1.00); best: TMFUN here, TMFUN in the paper")


def test_reversed_ordering_differs_and_rows_without_paper_numbers_are_left_out():
    rows = [["A", "0.3", "-", "0.1", "-"], ["B", "0.2", "-", "0.2", "-"], ["C", "0.1", "-", "0.3", "-"],
            ["D", "0.9", "-", "-", "-"]]
    text = paper_table(HEAD, rows)
    assert text.splitlines()[-1] == ("ordering by R@20 differs from the paper's: 0 of 3 pairs in the same order "
                                     "(Kendall tau -1.00); best: A here, C in the paper")
    assert text.splitlines()[5].split()[-2:] == ["-", "-"]  # D: no paper number, no rank


def test_one_swapped_pair_and_ties():
    line = ordering_agreement(["a", "b", "c", "d"], [4.0, 3.0, 1.0, 2.0], [4.0, 3.0, 2.0, 1.0], "R@20")
    assert "5 of 6 pairs" in line and "Kendall tau +0.67" in line
    assert "fewer than two" in ordering_agreement(["a"], [1.0], [1.0], "R@20")


def test_tables_without_paper_numbers_are_unchanged():
    from dglmm.report import format_table

    rows = [["MF", "0.1", "0.05"]]
    assert paper_table(["model", "R@20", "NDCG@20"], rows) == format_table(["model", "R@20", "NDCG@20"], rows)


def test_ties_are_counted_and_a_constant_side_has_no_tau():
    line = ordering_agreement(["image", "text", "both"], [0.38, 0.38, 0.38], [0.077, 0.084, 0.090], "R@20")
    assert "0 of 3 pairs in the same order, 3 tied on one side" in line
    assert "Kendall tau undefined: one side all tied" in line


def test_quick_keeps_list_options_that_are_not_sweeps():
    from dglmm.recipe import defines_sweep
    from dglmm.train.run import model_sections

    sections = model_sections("micro")
    assert defines_sweep("train.lr=[0.01,0.001]", sections)
    assert defines_sweep("model.lambda_coeff=[0.7,0.9]", sections)
    assert defines_sweep("model.modalities=[[image],[text]]", sections)
    assert not defines_sweep("model.modalities=[image]", sections)  # one subset, not a grid
    assert not defines_sweep("model.lambda_coeff=0.7", sections)
