"""The data stage: loading, schema validation, cleansing rules, the stable split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import ConfigError, DataError
from pipeline.stages.data import (
    BUILTIN,
    cleanse,
    data_hash,
    load,
    prepare,
    row_keys,
    split,
    validate,
)
from pipeline.stages.datasets import DatasetSpec, load_spec


def test_csv_and_parquet_load_the_same_rows(tmp_path: Path, tiny_spec: DatasetSpec,
                                            tiny_frame: pd.DataFrame) -> None:
    tiny_frame.to_csv(tmp_path / "d.csv", index=False)
    tiny_frame.to_parquet(tmp_path / "d.parquet", index=False)
    from_csv = validate(load(str(tmp_path / "d.csv"), tiny_spec), tiny_spec)
    from_parquet = validate(load(str(tmp_path / "d.parquet"), tiny_spec), tiny_spec)
    pd.testing.assert_frame_equal(from_csv, from_parquet)


def test_empty_file_is_a_one_line_error(tmp_path: Path, tiny_spec: DatasetSpec) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        load(str(tmp_path / "empty.csv"), tiny_spec)


def test_header_only_file_has_no_rows(tmp_path: Path, tiny_spec: DatasetSpec) -> None:
    (tmp_path / "header.csv").write_text("size,grade,y\n")
    with pytest.raises(DataError, match="no rows"):
        validate(load(str(tmp_path / "header.csv"), tiny_spec), tiny_spec)


def test_missing_file_and_unknown_format(tmp_path: Path, tiny_spec: DatasetSpec) -> None:
    with pytest.raises(DataError, match="no such file"):
        load(str(tmp_path / "nope.csv"), tiny_spec)
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"neither \.csv nor \.parquet"):
        load(str(tmp_path / "d.xlsx"), tiny_spec)


def test_missing_column_is_named(tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match=r"missing column.*grade"):
        validate(tiny_frame.drop(columns="grade"), tiny_spec)


def test_text_in_a_numeric_column_is_named_with_its_row(tiny_spec: DatasetSpec,
                                                        tiny_frame: pd.DataFrame) -> None:
    frame = tiny_frame.astype({"size": object})
    frame.loc[7, "size"] = "big"
    with pytest.raises(DataError, match=r"column 'size'.*1 value\(s\) are text.*row 8"):
        validate(frame, tiny_spec)


def test_numbers_in_a_categorical_column_are_a_dtype_error(tiny_spec: DatasetSpec,
                                                           tiny_frame: pd.DataFrame) -> None:
    frame = tiny_frame.assign(grade=1.5)
    with pytest.raises(DataError, match="column 'grade': expected categories"):
        validate(frame, tiny_spec)


def test_numeric_text_is_accepted_as_numbers(tiny_spec: DatasetSpec,
                                             tiny_frame: pd.DataFrame) -> None:
    frame = tiny_frame.assign(size=tiny_frame["size"].astype(str))
    assert validate(frame, tiny_spec)["size"].dtype == np.float64


def test_a_column_that_is_all_missing_is_rejected(tiny_spec: DatasetSpec,
                                                  tiny_frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="column 'size': every value is missing"):
        validate(tiny_frame.assign(size=np.nan), tiny_spec)


def test_cleansing_counts_every_rule(tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame) -> None:
    frame = validate(tiny_frame, tiny_spec)
    dirty = pd.concat([frame, frame.iloc[:3]], ignore_index=True)  # 3 duplicates
    dirty.loc[10, "y"] = np.nan  # missing target → dropped
    dirty.loc[11, "y"] = -5.0  # invalid target → dropped
    dirty.loc[12, "size"] = 0.0  # invalid (min is exclusive) → blanked
    dirty.loc[13, "size"] = 1e9  # out of range → blanked
    dirty.loc[14, "grade"] = "z"  # unknown category → blanked
    clean, report = cleanse(dirty, tiny_spec)
    assert report.counts["drop_duplicates"] == 3
    assert report.counts["drop_missing_target"] == 1
    assert report.counts["drop_invalid_target"] == 1
    assert report.counts["blank_invalid_size"] == 2
    assert report.counts["blank_invalid_grade"] == 1
    assert report.rows_in == len(dirty)
    assert report.rows_out == len(clean) == len(dirty) - 5
    assert clean["size"].isna().sum() == 2
    assert clean["grade"].isna().sum() == 1


def test_cleansing_that_leaves_a_column_empty_is_an_error(tiny_spec: DatasetSpec,
                                                          tiny_frame: pd.DataFrame) -> None:
    frame = validate(tiny_frame.assign(size=500.0), tiny_spec)
    with pytest.raises(DataError, match="column 'size': no valid value left"):
        cleanse(frame, tiny_spec)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["size", "grade", "y"]).reset_index(drop=True)


def test_split_puts_each_row_in_the_same_set_whatever_their_order(
    tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame
) -> None:
    clean, _ = cleanse(validate(tiny_frame, tiny_spec), tiny_spec)
    sets_a = split(clean, validation_fraction=0.2, test_fraction=0.25)
    shuffled = clean.sample(frac=1.0, random_state=3).reset_index(drop=True)
    sets_b = split(shuffled, validation_fraction=0.2, test_fraction=0.25)
    for a, b in zip(sets_a, sets_b, strict=True):
        pd.testing.assert_frame_equal(_sorted(a), _sorted(b))
    train, validation, test = sets_a
    assert len(train) + len(validation) + len(test) == len(clean)
    assert 0.15 < len(test) / len(clean) < 0.35
    assert 0.1 < len(validation) / len(clean) < 0.3
    train_keys, validation_keys, test_keys = (set(row_keys(part)) for part in sets_a)
    assert not train_keys & validation_keys
    assert not (train_keys | validation_keys) & test_keys


def test_a_new_validation_fraction_never_moves_a_row_in_or_out_of_the_test_set(
    tiny_spec: DatasetSpec, tiny_frame: pd.DataFrame
) -> None:
    clean, _ = cleanse(validate(tiny_frame, tiny_spec), tiny_spec)
    _, _, test = split(clean, validation_fraction=0.2, test_fraction=0.25)
    _, wider, same_test = split(clean, validation_fraction=0.4, test_fraction=0.25)
    pd.testing.assert_frame_equal(_sorted(test), _sorted(same_test))
    assert len(wider) > 0.3 * len(clean)


@pytest.mark.parametrize(("validation", "test", "message"), [
    (0.2, 1.0, "data.test_fraction"),
    (0.0, 0.2, "data.validation_fraction"),
    (0.5, 0.5, "leave no training rows"),
])
def test_split_rejects_fractions_that_leave_a_set_empty(
        tiny_frame: pd.DataFrame, validation: float, test: float, message: str) -> None:
    with pytest.raises(DataError, match=message):
        split(tiny_frame, validation_fraction=validation, test_fraction=test)


def test_data_hash_changes_with_the_data(tiny_frame: pd.DataFrame) -> None:
    changed = tiny_frame.copy()
    changed.loc[0, "y"] += 1
    assert data_hash(tiny_frame) == data_hash(tiny_frame.copy())
    assert data_hash(tiny_frame) != data_hash(changed)


def test_the_demo_dataset_prepares_with_its_known_flaws() -> None:
    data = prepare(load_spec("diamonds"), source=BUILTIN, validation_fraction=0.2,
                   test_fraction=0.2)
    assert data.report.rows_in == 53_940
    assert data.report.counts["drop_duplicates"] == 146
    assert data.report.counts["blank_invalid_z"] >= 20  # zero depths
    assert len(data.train) + len(data.validation) + len(data.test) == data.report.rows_out
    assert len(data.test) == 10_956, "the sealed test set is the one held out before"
    assert list(data.x_train.columns) == data.spec.feature_names
    again = prepare(load_spec("diamonds"), source=BUILTIN)
    pd.testing.assert_frame_equal(data.test, again.test)
    pd.testing.assert_frame_equal(data.validation, again.validation)
    assert data.data_hash == again.data_hash


def test_unknown_dataset_module_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"no dataset module pipeline/stages/datasets/nope\.py"):
        load_spec("nope")
    with pytest.raises(ConfigError, match="neither a module name"):
        load_spec("../etc")


def test_every_bad_column_is_found_at_once(tiny_spec: DatasetSpec,
                                          tiny_frame: pd.DataFrame) -> None:
    frame = tiny_frame.assign(grade=1.5).astype({"size": object})
    frame.loc[7, "size"] = "big"
    with pytest.raises(DataError, match=r"^column 'size': .* \(and 1 more\)$") as err:
        validate(frame, tiny_spec)
    assert [p.split(":")[0] for p in err.value.problems] == ["column 'size'", "column 'grade'"]
