"""Edge cases of benchmark/relatedness.py: the [0, 1] range check, CSV parsing, the empirical count.

Each test pins one documented behaviour on a hand-computed tiny input (the mutation survivors of
``python -m mutation.run`` on this module).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.relatedness import RelatednessError, estimate, load_csv


def _csv(tmp_path, text: str, name: str = "r.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _refused(path, classes, attributes) -> str:
    """The message of the RelatednessError (exactly that class) that load_csv raises."""
    with pytest.raises(RelatednessError) as info:
        load_csv(path, classes, attributes)
    assert type(info.value) is RelatednessError
    return str(info.value)


def _header_error(path) -> str:
    return f"{path}: expected a header 'class,<attribute>,...' and one row per class"


# --- the [0, 1] range check -------------------------------------------------------------------------

def test_exact_zero_and_exact_one_are_valid_probabilities(tmp_path):
    path = _csv(tmp_path, "class,x,y\na,0,1\nb,1,0\n")
    r = load_csv(path, ("a", "b"), ("x", "y"))
    np.testing.assert_array_equal(r, [[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("value", ["-0.5", "1.5"])
def test_values_outside_zero_one_are_refused(tmp_path, value):
    path = _csv(tmp_path, f"class,x,y\na,0.5,{value}\n")
    assert _refused(path, ("a",), ("x", "y")) == f"{path}: probabilities must lie in [0, 1]"


# --- CSV parsing ------------------------------------------------------------------------------------

def test_empty_file_is_refused_with_the_header_message(tmp_path):
    path = _csv(tmp_path, "")
    assert _refused(path, ("a",), ("x",)) == _header_error(path)


def test_blank_lines_only_is_refused_with_the_header_message(tmp_path):
    path = _csv(tmp_path, "\n\n")  # rows == [[], []]: a first row of no cells
    assert _refused(path, ("a",), ("x",)) == _header_error(path)


def test_first_row_of_one_cell_is_refused_even_when_later_rows_are_wide(tmp_path):
    path = _csv(tmp_path, "class\na,0.5\n")
    assert _refused(path, ("a",), ("x",)) == _header_error(path)


def test_only_the_first_row_is_checked_for_width(tmp_path):
    # a short last row is a class with no values, not a bad header; it is not asked for here
    path = _csv(tmp_path, "class,x\na,0.5\nb\n")
    np.testing.assert_array_equal(load_csv(path, ("a",), ("x",)), [[0.5]])


def test_header_only_file_has_no_classes(tmp_path):
    path = _csv(tmp_path, "class,x,y\n")
    assert _refused(path, ("a",), ("x", "y")) == (
        f"{path}: no entry for ['a']; it has classes [] and attributes ['x', 'y']")


def test_first_body_row_is_read_and_the_header_is_not_a_class(tmp_path):
    path = _csv(tmp_path, "class,x\na,0.25\nb,0.75\n")
    np.testing.assert_array_equal(load_csv(path, ("a",), ("x",)), [[0.25]])
    assert _refused(path, ("a", "c"), ("x",)) == (
        f"{path}: no entry for ['c']; it has classes ['a', 'b'] and attributes ['x']")
    # the header's first cell is no class name: asking for "class" is a missing class, not a bad value
    assert _refused(path, ("class",), ("x",)) == (
        f"{path}: no entry for ['class']; it has classes ['a', 'b'] and attributes ['x']")


def test_blank_rows_are_skipped(tmp_path):
    path = _csv(tmp_path, "class,x,y\n\na,0.25,0.5\n\n\nb,0.75,1\n\n")
    np.testing.assert_array_equal(load_csv(path, ("b", "a"), ("y", "x")), [[1.0, 0.75], [0.5, 0.25]])


# --- the empirical count ----------------------------------------------------------------------------

def _base():
    """3 co-annotated images, 2 classes, 2 attributes; R = [[0.5, 1.0], [1.0, 0.0]].

    class 0: images 0, 1 -> attr0 1/2, attr1 2/2; class 1: image 2 -> attr0 1/1, attr1 unannotated (0/0 -> 0).
    """
    cls = [0, 0, 1]
    cls_mask = [True, True, True]
    att = [[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]
    att_mask = [[True, True], [True, True], [True, False]]
    return cls, cls_mask, att, att_mask


def _estimate(cls, cls_mask, att, att_mask, n_classes=2):
    return estimate(torch.tensor(cls), torch.tensor(cls_mask), torch.tensor(att, dtype=torch.float32),
                    torch.tensor(att_mask), n_classes=n_classes)


def test_base_counts():
    np.testing.assert_array_equal(_estimate(*_base()), [[0.5, 1.0], [1.0, 0.0]])


def test_masked_out_image_with_a_valid_label_is_ignored():
    cls, cls_mask, att, att_mask = _base()
    # image 3: label 1 but its class mask is false; counted, it would make class 1 attr0 1/2, attr1 0/1
    cls, cls_mask = cls + [1], cls_mask + [False]
    att, att_mask = att + [[0.0, 0.0]], att_mask + [[True, True]]
    np.testing.assert_array_equal(_estimate(cls, cls_mask, att, att_mask), [[0.5, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_label_minus_one_with_mask_true_is_ignored(n_classes):
    cls, cls_mask, att, att_mask = _base()
    # image 3: label -1 with a true class mask; counted (as np.eye(N)[-1], the last class) it would
    # change that class's row
    cls, cls_mask = cls + [-1], cls_mask + [True]
    att, att_mask = att + [[0.0, 1.0]], att_mask + [[True, True]]
    expected = [[0.5, 1.0], [1.0, 0.0]] + [[0.0, 0.0]] * (n_classes - 2)
    np.testing.assert_array_equal(_estimate(cls, cls_mask, att, att_mask, n_classes), expected)


def test_soft_target_of_exactly_one_half_is_absent():
    cls = [0, 0]
    cls_mask = [True, True]
    att = [[0.5, 0.51], [0.5, 0.49]]
    att_mask = [[True, True], [True, True]]
    # attr0: 0.5, 0.5 -> 0/2 present; attr1: 0.51 present, 0.49 absent -> 1/2
    np.testing.assert_array_equal(_estimate(cls, cls_mask, att, att_mask, n_classes=1), [[0.0, 0.5]])
