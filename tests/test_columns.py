"""ColumnTable: the per-answer and rank tables, built a column at a time."""

from __future__ import annotations

import gc
import math

import numpy as np
import pandas as pd

from raq.core.columns import ColumnTable
from raq.result.tables import ANSWER_METRIC_KINDS, RANK_KINDS
from raq.store import RunStore

KINDS = {"id": "text", "seconds": "float", "count": "int", "sparse": "int", "flag": "bool"}
ROWS = [
    ("q1", 0.5, 3, None, 1),
    ("q2", None, 4, 7, 0),
    ("q3", 1.25, 5, 8, True),
]


def test_each_kind_gets_the_dtype_pandas_would_infer_from_the_rows() -> None:
    frame = ColumnTable(KINDS).extend(ROWS).frame()
    expected = pd.DataFrame(ROWS, columns=list(KINDS)).astype({"flag": bool})
    assert list(frame.columns) == list(KINDS)
    assert frame.dtypes.to_dict() == expected.dtypes.to_dict()
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["count"].dtype == np.int64  # every value present: integers stay integers
    assert math.isnan(frame.at[0, "sparse"]) and frame.at[1, "sparse"] == 7.0


def test_an_empty_table_has_its_columns_and_dtypes() -> None:
    frame = ColumnTable(KINDS).frame()
    assert frame.empty and list(frame.columns) == list(KINDS)
    assert frame["seconds"].dtype == np.float64 and frame["flag"].dtype == bool


def test_a_column_of_none_only_is_float_nan_not_objects() -> None:
    frame = ColumnTable({"ttft_s": "float"}).extend([(None,), (None,)]).frame()
    assert frame["ttft_s"].dtype == np.float64 and frame["ttft_s"].isna().all()


def test_a_dropped_table_is_freed_without_the_cyclic_collector() -> None:
    """No reference cycles: the columns go as soon as the table does, not at the next GC."""
    gc.collect()
    gc.disable()
    try:
        table = ColumnTable(KINDS).extend(ROWS * 100)
        table.frame()
        del table
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_the_answer_metric_kinds_name_the_store_columns_in_order() -> None:
    assert tuple(ANSWER_METRIC_KINDS) == RunStore.ANSWER_METRIC_FIELDS
    assert list(RANK_KINDS) == ["question_id", "repeat", "judge", "candidate", "rank", "position"]


def test_an_int_column_with_nan_or_fractions_stays_float_like_pandas_infers() -> None:
    rows = [(1,), (float("nan"),), (3,)]
    frame = ColumnTable({"n": "int"}).extend(rows).frame()
    assert frame["n"].dtype == np.float64 and frame["n"].isna().tolist() == [False, True, False]
    halves = ColumnTable({"n": "int"}).extend([(1,), (1.5,)]).frame()
    assert halves["n"].tolist() == [1.0, 1.5]  # never truncated to an integer
