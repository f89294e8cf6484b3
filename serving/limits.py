"""How many values a body may hold, counted in its bytes before anything is built from it.

A 16 MiB body can hold 8 million one-character CSV rows or 5 million empty JSON objects;
built as Python objects they take gigabytes, long before a row limit checked on the
built rows could refuse them. So each parser first counts, in C (`bytes.count`, and
numpy where strings or quoted fields must be told apart), the separators that make
values (JSON's `,` `:` `[` `{` outside strings; CSV's `,` and line ends outside quoted
fields), and refuses a body with more than a valid request can have: `max_rows` rows
of the model's columns, twice over (keys and values, nested tensors), plus `SLACK` for
whatever else a protocol carries (`params`, an `index`, tensor metadata). What passes
holds at most that many values, so the objects the parser then builds are bounded
whatever the body; the row limit itself is then checked on the rows, with its own
message.
"""

from __future__ import annotations

import numpy as np

from serving.errors import InputError, Problem
from serving.model import LoadedModel

SLACK = 65_536
"""Values a body may hold beyond its rows: parameters, an index, metadata."""
SCHEMALESS_COLUMNS = 100
"""The columns a model logged without a signature is budgeted for."""

_QUOTE, _COMMA, _NEWLINE, _RETURN = (ord(c) for c in '",\n\r')
_JSON_KEPT = b'",:[{'
_JSON_DROPPED = bytes(b for b in range(256) if b not in _JSON_KEPT)


def value_budget(model: LoadedModel) -> int:
    """The most values a valid request for `model` can need (see the module)."""
    columns = len(model.schema.columns) if model.schema is not None else SCHEMALESS_COLUMNS
    return model.max_rows * (2 * columns + 2) + SLACK


def check_json(body: bytes, model: LoadedModel) -> None:
    """Refuse a JSON body that holds more values than `value_budget` (`InputError`)."""
    budget = value_budget(model)
    if len(body) <= budget or _json_separators(body) <= budget:
        return
    if _json_separators_outside_strings(body) > budget:
        raise too_many_values(model)


def check_csv(body: bytes, model: LoadedModel) -> None:
    """Refuse a CSV body that holds more cells than `value_budget` (`InputError`)."""
    budget = value_budget(model)
    if len(body) <= budget or _csv_separators(body) <= budget:
        return
    cells = _csv_cells_outside_quotes(body)
    if cells is None or cells > budget:
        raise too_many_values(model)


def too_many_values(model: LoadedModel) -> InputError:
    return InputError([Problem((), f"the body holds more values than {model.max_rows} rows "
                               "of this model's columns can (SERVING_MAX_ROWS)", "too_long")])


def too_many_rows(model: LoadedModel, loc: tuple[str | int, ...] = ()) -> InputError:
    return InputError([Problem(loc, f"at most {model.max_rows} rows per request", "too_long")])


def _json_separators(data: bytes) -> int:
    """An upper bound of the values in JSON text: every value but the first follows one
    of these, and so does every key."""
    return data.count(b",") + data.count(b":") + data.count(b"[") + data.count(b"{")


def _json_separators_outside_strings(body: bytes) -> int:
    """`_json_separators` of the text outside strings, exactly, at numpy's speed.

    Escaped backslashes and quotes are dropped first (so every quote left opens or
    closes a string), then everything but quotes and separators; a quote toggles
    "inside", and the separators counted are those outside.
    """
    text = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _JSON_DROPPED)
    chars = np.frombuffer(text, dtype=np.uint8)
    quotes = chars == _QUOTE
    inside = np.bitwise_xor.accumulate(quotes.view(np.uint8)).view(bool)
    return int(np.count_nonzero(~quotes & ~inside))


def _csv_separators(data: bytes) -> int:
    """An upper bound of the cells in CSV text: each ends at a comma, a line end or the end."""
    return data.count(b",") + data.count(b"\n") + data.count(b"\r") + 1


def _csv_cells_outside_quotes(body: bytes) -> int | None:
    """The cells of CSV text, counted outside quoted fields (blank lines make none).

    None when a quote opens somewhere other than at the start of a field: the CSV reader
    takes such a quote as text, so what follows cannot be told apart here.
    """
    chars = np.frombuffer(body, dtype=np.uint8)
    quotes = chars == _QUOTE
    inside = np.bitwise_xor.accumulate(quotes.view(np.uint8)).view(bool)
    before = np.empty_like(chars)
    before[0], before[1:] = _NEWLINE, chars[:-1]
    opening_after = before[quotes & inside]  # the character before each opening quote
    if not np.isin(opening_after, (_COMMA, _NEWLINE, _RETURN, _QUOTE)).all():
        return None
    line_ends = ((chars == _NEWLINE) | (chars == _RETURN)) & ~inside
    after_line_end = (before == _NEWLINE) | (before == _RETURN)
    unended = 0 if len(chars) and line_ends[-1] else 1  # a last line with no line end
    return int(np.count_nonzero((chars == _COMMA) & ~inside)
               + np.count_nonzero(line_ends & ~after_line_end)) + unended
