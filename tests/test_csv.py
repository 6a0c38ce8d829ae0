"""Tests for fedgen.data.csv.CsvCohort: loading a user's cohort file and reporting bad cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedgen.core.errors import DataError
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
