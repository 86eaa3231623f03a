"""Tables built a column at a time, so a run of n answers never holds n row tuples.

Numbers go straight into typed arrays (8 bytes a value, None kept as NaN). The per-answer
table (``RunResult.answer_metrics``) then costs about a hundred bytes a row; a list of row
tuples of Python objects cost several times that, before pandas copied it into a frame.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Kind = Literal["text", "float", "int", "bool"]


class ColumnTable:
    """Rows in, one pandas frame out. Column kinds:

    - ``text``: any Python objects (names, ids, error messages), kept as they come;
    - ``float``: float64, None as NaN;
    - ``int``: int64 when every value is present and whole, else float64 with NaN for the
      missing ones (None or NaN), as pandas infers; exact up to 2**53;
    - ``bool``: bool, from anything truthy (SQLite gives 0 and 1).
    """

    def __init__(self, kinds: dict[str, Kind]) -> None:
        self.kinds = dict(kinds)
        self._columns: list[list[Any] | array[Any]] = []
        self._has_none = [False] * len(kinds)
        appenders: list[Callable[[Any], None]] = []
        for position, kind in enumerate(kinds.values()):
            if kind == "text":
                column: list[Any] | array[Any] = []
                appenders.append(column.append)
            elif kind == "bool":
                column = array("b")
                appenders.append(_bool_appender(column))
            else:
                column = array("d")
                appenders.append(_number_appender(column, self._has_none, position))
            self._columns.append(column)
        self._appenders = appenders

    def append(self, row: Sequence[Any]) -> None:
        for add, value in zip(self._appenders, row, strict=True):
            add(value)

    def extend(self, rows: Iterable[Sequence[Any]]) -> ColumnTable:
        for row in rows:
            self.append(row)
        return self

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame with one dtype per kind (see the class docstring)."""
        import numpy as np
        import pandas as pd

        data: dict[str, Any] = {}
        for (name, kind), column, has_none in zip(
            self.kinds.items(), self._columns, self._has_none, strict=True
        ):
            if kind == "text":
                values = np.empty(len(column), dtype=object)
                values[:] = column
                data[name] = values
            elif kind == "bool":
                data[name] = np.frombuffer(column, dtype=np.int8).astype(bool)
            elif kind == "int" and not has_none and _whole(values := np.frombuffer(column)):
                data[name] = values.astype(np.int64)
            else:
                data[name] = np.frombuffer(column, dtype=np.float64).copy()
        return pd.DataFrame(data, columns=list(self.kinds))


def _number_appender(
    column: array[float], has_none: list[bool], position: int
) -> Callable[[Any], None]:
    # The closures hold the column, never the table: a cycle back to it would keep every
    # column alive until the cyclic garbage collector happened to run.
    add = column.append
    nan = math.nan

    def append(value: Any) -> None:
        if value is None or value != value:  # None or NaN: missing
            has_none[position] = True
            add(nan)
        else:
            add(value)

    return append


def _whole(values: np.ndarray) -> bool:
    import numpy as np

    return bool(np.all(np.floor(values) == values))


def _bool_appender(column: array[int]) -> Callable[[Any], None]:
    add = column.append

    def append(value: Any) -> None:
        add(1 if value else 0)

    return append
