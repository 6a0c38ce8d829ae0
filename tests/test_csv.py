"""Tests for fedgen.data.csv.CsvCohort: loading a user's cohort file and reporting bad cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedgen.core.errors import ConfigError, DataError
from fedgen.data.csv import CsvCohort


def write(tmp_path: Path, text: str, name: str = "cohort.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


VALID = (
    "rs1,sex,rs2,label,ancestry_group,rs3\n"
    "0,F,1,1,EUR,2\n"
    "2,M,0,0,AFR,1\n"
    "1,F,2,1,EAS,0\n"
    "0,M,0,0,EUR,0\n"
)


def test_valid_file_loads_genotypes_and_labels(tmp_path: Path) -> None:
    cohort = CsvCohort(path=str(write(tmp_path, VALID))).load(np.random.default_rng(0))
    assert cohort.snp_names == ("rs1", "rs2", "rs3")
    assert cohort.genotypes.dtype == np.int8
    assert cohort.labels.dtype == np.int8
    assert np.array_equal(
        cohort.genotypes,
        np.array([[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 0, 0]], dtype=np.int8),
    )
    assert np.array_equal(cohort.labels, np.array([1, 0, 1, 0], dtype=np.int8))
    assert cohort.n_individuals == 4
    assert cohort.n_snps == 3
    assert "sex" not in cohort.snp_names
    assert "ancestry_group" not in cohort.snp_names


def test_rng_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    a = CsvCohort(path=str(path)).load(np.random.default_rng(1))
    b = CsvCohort(path=str(path)).load(np.random.default_rng(2))
    assert np.array_equal(a.genotypes, b.genotypes)
    assert np.array_equal(a.labels, b.labels)


def test_whitespace_around_cells_and_header_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, " snp_a , label \n 2 , 1 \n0,0\n")
    cohort = CsvCohort(path=str(path)).load(np.random.default_rng(0))
    assert cohort.snp_names == ("snp_a",)
    assert np.array_equal(cohort.genotypes, np.array([[2], [0]], dtype=np.int8))
    assert np.array_equal(cohort.labels, np.array([1, 0], dtype=np.int8))


def test_custom_label_and_drop_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "id,a,b,case\n7,1,2,1\n8,0,1,0\n")
    cohort = CsvCohort(path=str(path), label_column="case", drop_columns=("id",)).load(
        np.random.default_rng(0)
    )
    assert cohort.snp_names == ("a", "b")
    assert np.array_equal(cohort.genotypes, np.array([[1, 2], [0, 1]], dtype=np.int8))
    assert np.array_equal(cohort.labels, np.array([1, 0], dtype=np.int8))


def test_default_drop_columns_are_not_required(tmp_path: Path) -> None:
    path = write(tmp_path, "label,x,y\n0,1,1\n1,2,0\n")
    cohort = CsvCohort(path=str(path)).load(np.random.default_rng(0))
    assert cohort.snp_names == ("x", "y")
    assert np.array_equal(cohort.genotypes, np.array([[1, 1], [2, 0]], dtype=np.int8))


def test_genotype_three_names_file_row_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,rs2,label\n0,1,1\n2,3,0\n1,1,1\n")
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path)).load(np.random.default_rng(0))
    message = str(info.value)
    assert str(path) in message
    assert "row 2," in message  # 1-based, header excluded
    assert "column 'rs2'" in message
    assert "'3'" in message


@pytest.mark.parametrize("bad", ["-1", "1.0", "x", "NA"])
def test_non_genotype_values_raise(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, f"rs1,rs2,label\n0,1,1\n1,1,0\n1,1,1\n0,{bad},0\n")
    with pytest.raises(DataError, match=r"row 4, column 'rs2'"):
        CsvCohort(path=str(path)).load(np.random.default_rng(0))


def test_missing_genotype_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,rs2,label\n,1,1\n")
    with pytest.raises(DataError, match=r"row 1, column 'rs1': a missing value"):
        CsvCohort(path=str(path)).load(np.random.default_rng(0))


def test_missing_label_names_row_and_label_column(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,rs2,label\n0,1,1\n1,1,0\n2,0,\n")
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path)).load(np.random.default_rng(0))
    message = str(info.value)
    assert str(path) in message
    assert "row 3," in message
    assert "column 'label'" in message
    assert "missing value" in message


@pytest.mark.parametrize("bad", ["2", "-1", "yes"])
def test_non_binary_label_raises(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, f"rs1,label\n0,1\n1,{bad}\n")
    with pytest.raises(DataError, match=r"row 2, column 'label'"):
        CsvCohort(path=str(path)).load(np.random.default_rng(0))


def test_missing_file_mentions_dataset_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path)).load(np.random.default_rng(0))
    assert "dataset.path" in str(info.value)
    assert str(path) in str(info.value)


def test_directory_instead_of_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset\.path"):
        CsvCohort(path=str(tmp_path)).load(np.random.default_rng(0))


def test_file_without_label_column_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,rs2,phenotype\n0,1,1\n")
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path)).load(np.random.default_rng(0))
    assert "'label'" in str(info.value)
    assert "dataset.label_column" in str(info.value)


def test_ragged_row_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,rs2,label\n0,1,1\n1,0\n")
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path)).load(np.random.default_rng(0))
    message = str(info.value)
    assert str(path) in message
    assert "row 2:" in message
    assert "2 fields" in message
    assert "header has 3" in message


def test_too_long_row_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,label\n0,1,1\n")
    with pytest.raises(DataError, match=r"row 1: has 3 fields but the header has 2"):
        CsvCohort(path=str(path)).load(np.random.default_rng(0))


def test_empty_file_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(DataError, match="empty"):
        CsvCohort(path=str(path)).load(np.random.default_rng(0))


def test_header_without_rows_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,label\n")
    with pytest.raises(DataError, match="no data rows"):
        CsvCohort(path=str(path)).load(np.random.default_rng(0))


def test_file_with_only_label_and_dropped_columns_raises(tmp_path: Path) -> None:
    path = write(tmp_path, "sex,label,ancestry_group\nF,1,EUR\n")
    with pytest.raises(DataError, match="no SNP columns"):
        CsvCohort(path=str(path)).load(np.random.default_rng(0))


def test_byte_order_mark_and_trailing_blank_lines_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbflabel,rs1\r\n1,2\r\n0,0\r\n\r\n\r\n")
    cohort = CsvCohort(path=str(path)).load(np.random.default_rng(0))
    assert cohort.snp_names == ("rs1",)
    assert cohort.labels.tolist() == [1, 0]
    assert cohort.genotypes.ravel().tolist() == [2, 0]


def test_a_directory_as_path_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is a directory"):
        CsvCohort(path=str(tmp_path)).load(np.random.default_rng(0))


def test_fid_and_iid_columns_are_dropped_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, "FID,IID,rs1,label\nf1,p1,2,1\nf1,p2,0,0\n")
    cohort = CsvCohort(path=str(path)).load(np.random.default_rng(0))
    assert cohort.snp_names == ("rs1",)


def test_id_column_is_not_a_feature_and_must_be_unique(tmp_path: Path) -> None:
    path = write(tmp_path, "person,rs1,label\np1,2,1\np2,0,0\n")
    cohort = CsvCohort(path=str(path), id_column="person").load(np.random.default_rng(0))
    assert cohort.snp_names == ("rs1",)
    path = write(tmp_path, "person,rs1,label\np1,2,1\np2,0,0\np1,1,1\n")
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path), id_column="person").load(np.random.default_rng(0))
    assert str(info.value) == (
        f"{path}, row 3, column 'person': ID 'p1' already names row 1; keep one row per individual"
    )
    path = write(tmp_path, "person,rs1,label\np1,2,1\n,0,0\n")
    with pytest.raises(DataError, match=r"row 2, column 'person': the individual ID is missing"):
        CsvCohort(path=str(path), id_column="person").load(np.random.default_rng(0))
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path), id_column="IID").check()
    assert str(info.value) == (
        f"cohort file {path} has no 'IID' column; add it or set dataset.id_column (null for none)"
    )


@pytest.mark.parametrize("token", ["", "NA", "na", ".", "NaN"])
def test_missing_values_error_by_default_and_name_the_fix(tmp_path: Path, token: str) -> None:
    path = write(tmp_path, f"rs1,rs2,label\n0,1,1\n1,{token},0\n")
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path)).load(np.random.default_rng(0))
    shown = "a missing value" + (f" ('{token}')" if token else "")
    assert str(info.value) == (
        f"{path}, row 2, column 'rs2': {shown} where 0, 1 or 2 is required; fix the file, or "
        "set dataset.missing=impute"
    )


def test_missing_impute_fills_rounded_means_and_drops_unlabelled_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Row 3 has no label: it is dropped before the means are taken. Then rs1 is observed
    # 2, 1 -> mean 1.5 -> 2; rs2 0, 1 -> 0.5 -> 0 (halves to even); rs3 1, 0, 1 -> 2/3 -> 1.
    path = write(
        tmp_path,
        "rs1,rs2,rs3,label\n2,0,1,1\nNA,1,.,0\n2,0,2,NA\n1,NA,0,1\n,,1,0\n",
    )
    with caplog.at_level("INFO", logger="fedgen"):
        cohort = CsvCohort(path=str(path), missing="impute").load(np.random.default_rng(0))
    assert cohort.genotypes.dtype == np.int8
    assert cohort.genotypes.tolist() == [[2, 0, 1], [2, 1, 1], [1, 0, 0], [2, 0, 1]]
    assert cohort.labels.tolist() == [1, 0, 1, 0]
    assert "dropped 1 of 5 rows" in caplog.text
    assert "imputed 5 missing genotypes" in caplog.text


def test_missing_impute_needs_an_observed_genotype(tmp_path: Path) -> None:
    path = write(tmp_path, "rs1,rs2,label\n0,NA,1\n1,.,0\n")
    with pytest.raises(DataError) as info:
        CsvCohort(path=str(path), missing="impute").load(np.random.default_rng(0))
    assert str(info.value) == (
        f"cohort file {path}: column 'rs2' has no genotype to impute from (every value is "
        "missing); drop it with dataset.drop_columns"
    )


def test_bad_missing_setting(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(ConfigError, match=r"dataset\.missing='drop' must be error or impute"):
        CsvCohort(path=str(path), missing="drop").check()
