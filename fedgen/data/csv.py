"""A user's own cohort from a CSV file: SNP columns coded 0/1/2 and a binary label column."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fedgen.core import progress
from fedgen.core.errors import ConfigError, DataError
from fedgen.core.records import Cohort
from fedgen.data.genotypes import (
    MISSING,
    check_fraction,
    count_calls,
    fill_missing,
    rounded_means,
    with_reference,
)

log = logging.getLogger("fedgen")

# Cells read as missing values (compared upper-cased): empty, NA, NaN and PLINK's ".".
_MISSING_CELLS = frozenset({"", "NA", "NAN", "."})


@dataclass(frozen=True)
class CsvCohort:
    """Load a cohort from ``path``.

    Every column except ``label_column``, ``id_column`` and those in ``drop_columns`` is a SNP
    and must hold 0, 1 or 2 in every row; the label must be 0 or 1. The first bad cell is
    reported with its file, row (1-based, header excluded) and column. ``drop_columns`` absent
    from the file are ignored; by default ``sex``, ``ancestry_group`` and PLINK's ``FID`` and
    ``IID`` are dropped.

    ``id_column`` (optional) names a column of individual IDs: never a feature, every row must
    have one and no two rows the same.

    ``missing`` says what an empty, ``NA``, ``NaN`` or ``.`` cell does: ``error`` (the default)
    stops the run at the first one; ``impute`` fills a missing genotype with its SNP's rounded
    mean genotype (the rule of :mod:`fedgen.data.genotypes`, as for PLINK files) and drops a
    row whose label is missing; the log counts both.

    ``reference_fraction`` of the rows (drawn at random from ``rng``) are set aside as reference
    individuals: outside every client, what attackers such as ``lrt`` and ``lira`` calibrate
    on. 0 (the default) keeps every row in the federation, and those attacks then ask for it.
    """

    path: str
    label_column: str = "label"
    drop_columns: Sequence[str] = field(
        default_factory=lambda: ("sex", "ancestry_group", "FID", "IID")
    )
    reference_fraction: float = 0.0
    id_column: str | None = None
    missing: str = "error"

    def check(self) -> None:
        """The cheap checks, before any run starts: settings, and that the file can be read
        and has a label column and SNP columns (its header). Cells are checked by ``load``."""
        self._header(self._path())

    def _path(self) -> Path:
        check_fraction(self.reference_fraction)
        if self.missing not in ("error", "impute"):
            raise ConfigError(f"dataset.missing={self.missing!r} must be error or impute")
        path = Path(self.path).expanduser()
        if path.is_dir():
            raise DataError(
                f"cohort file {path} is a directory; set dataset.path to a CSV file in it"
            )
        if not path.is_file():
            raise DataError(
                f"cohort file {path} does not exist; set dataset.path to an existing CSV file"
            )
        return path

    def _header(self, path: Path, first: list[str] | None = None) -> tuple[list[str], list[int]]:
        """The header's names and the SNP columns' indices (reads the first line if needed)."""
        if first is None:
            try:
                with path.open(newline="", encoding="utf-8-sig") as handle:
                    first = next(csv.reader(handle), [])
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise DataError(f"cannot read cohort file {path}: {exc}") from exc
        if not first:
            raise DataError(f"cohort file {path} is empty; it needs a header row and data rows")
        header = [name.strip() for name in first]
        if self.label_column not in header:
            raise DataError(
                f"cohort file {path} has no '{self.label_column}' column; add it or set "
                "dataset.label_column"
            )
        if self.id_column is not None and self.id_column not in header:
            raise DataError(
                f"cohort file {path} has no '{self.id_column}' column; add it or set "
                "dataset.id_column (null for none)"
            )
        drop = {*self.drop_columns, self.label_column, self.id_column}
        snp_cols = [i for i, name in enumerate(header) if name not in drop]
        if not snp_cols:
            raise DataError(f"cohort file {path} has no SNP columns besides the label")
        return header, snp_cols

    def load(self, rng: np.random.Generator) -> Cohort:
        """Read and validate the file; ``rng`` draws the reference rows, if any."""
        path = self._path()
        try:
            # utf-8-sig: spreadsheet programs often start a UTF-8 CSV with a byte-order mark.
            with path.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.reader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DataError(f"cannot read cohort file {path}: {exc}") from exc
        header, snp_cols = self._header(path, rows[0] if rows else [])
        label_col = header.index(self.label_column)
        data = rows[1:]
        while data and not any(cell.strip() for cell in data[-1]):
            data.pop()  # blank lines at the end of a file are not rows
        if not data:
            raise DataError(f"cohort file {path} has a header but no data rows")
        genotypes = np.empty((len(data), len(snp_cols)), dtype=np.int8)
        labels = np.empty(len(data), dtype=np.int8)
        snp_values = {"0": 0, "1": 1, "2": 2}
        impute = self.missing == "impute"
        seen: dict[str, int] = {}
        for r, row in enumerate(progress.track(data, f"reading {path.name}")):
            if len(row) != len(header):
                raise DataError(
                    f"{path}, row {r + 1}: has {len(row)} fields but the header has {len(header)}"
                )
            if self.id_column is not None:
                self._check_id(path, r, row[header.index(self.id_column)].strip(), seen)
            label = row[label_col].strip()
            if label in ("0", "1"):
                labels[r] = int(label)
            elif impute and label.upper() in _MISSING_CELLS:
                labels[r] = -1
            else:
                raise DataError(_bad_cell(path, r, self.label_column, label, "0 or 1"))
            for c, col in enumerate(snp_cols):
                cell = row[col].strip()
                value = snp_values.get(cell)
                if value is None:
                    if not (impute and cell.upper() in _MISSING_CELLS):
                        raise DataError(_bad_cell(path, r, header[col], cell, "0, 1 or 2"))
                    value = int(MISSING)
                genotypes[r, c] = value
        names = tuple(header[i] for i in snp_cols)
        if impute:
            genotypes, labels = self._impute(path, genotypes, labels, names)
        return with_reference(genotypes, labels, names, {}, self.reference_fraction, rng)

    def _check_id(self, path: Path, row: int, value: str, seen: dict[str, int]) -> None:
        if value.upper() in _MISSING_CELLS:
            raise DataError(
                f"{path}, row {row + 1}, column '{self.id_column}': the individual ID is "
                "missing; give every row an ID (or set dataset.id_column=null)"
            )
        if value in seen:
            raise DataError(
                f"{path}, row {row + 1}, column '{self.id_column}': ID '{value}' already names "
                f"row {seen[value] + 1}; keep one row per individual"
            )
        seen[value] = row

    @staticmethod
    def _impute(
        path: Path, genotypes: NDArray[np.int8], labels: NDArray[np.int8], names: tuple[str, ...]
    ) -> tuple[NDArray[np.int8], NDArray[np.int8]]:
        """Drop rows with a missing label, then fill missing genotypes (rounded SNP means)."""
        if np.any(labels < 0):
            kept = labels >= 0
            log.info(
                "dataset: dropped %d of %d rows of %s with a missing label",
                labels.size - int(np.count_nonzero(kept)),
                labels.size,
                path,
            )
            genotypes, labels = genotypes[kept], labels[kept]
            if not labels.size:
                raise DataError(f"cohort file {path} has no row with a label")
        counts = count_calls(genotypes)
        empty = np.flatnonzero(counts[3] == genotypes.shape[0])
        if empty.size:
            raise DataError(
                f"cohort file {path}: column '{names[empty[0]]}' has no genotype to impute "
                "from (every value is missing); drop it with dataset.drop_columns"
            )
        imputed = fill_missing(genotypes, rounded_means(counts))
        if imputed:
            log.info(
                "dataset: imputed %d missing genotypes of %s with their SNP's rounded mean",
                imputed,
                path,
            )
        return genotypes, labels


def _bad_cell(path: Path, row: int, column: str, value: str, allowed: str) -> str:
    if value.upper() in _MISSING_CELLS:
        shown = "a missing value" + (f" ('{value}')" if value else "")
        fix = "fix the file, or set dataset.missing=impute"
    else:
        shown = f"'{value}'"
        fix = "fix the file (genotypes are minor-allele counts, the label is binary)"
    return f"{path}, row {row + 1}, column '{column}': {shown} where {allowed} is required; {fix}"
