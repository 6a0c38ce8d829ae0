"""A user's own cohort from a CSV file: SNP columns coded 0/1/2 and a binary label column."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fedgen.core.errors import DataError
from fedgen.core.records import Cohort


@dataclass(frozen=True)
class CsvCohort:
    """Load a cohort from ``path``.

    Every column except ``label_column`` and those in ``drop_columns`` is a SNP and must hold
    0, 1 or 2 in every row; the label must be 0 or 1; nothing may be missing. The first bad cell
    is reported with its file, row (1-based, header excluded) and column.

    ``reference_fraction`` of the rows (drawn at random from ``rng``) are set aside as reference
    individuals: outside every client, what attackers such as ``lrt`` and ``lira`` calibrate
    on. 0 (the default) keeps every row in the federation, and those attacks then ask for it.
    """

    path: str
    label_column: str = "label"
    drop_columns: Sequence[str] = field(default_factory=lambda: ("sex", "ancestry_group"))
    reference_fraction: float = 0.0

    def check(self) -> None:
        """The cheap checks, before any run starts: settings, and that the file can be read
        and has a label column and SNP columns (its header). Cells are checked by ``load``."""
        self._header(self._path())

    def _path(self) -> Path:
        if isinstance(self.reference_fraction, bool) or not isinstance(
            self.reference_fraction, int | float
        ):
            raise DataError(
                f"dataset.reference_fraction={self.reference_fraction!r} is not a number"
            )
        if not 0.0 <= self.reference_fraction < 1.0:
            raise DataError(
                f"dataset.reference_fraction={self.reference_fraction!r} must be in [0, 1)"
            )
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
        drop = set(self.drop_columns)
        snp_cols = [
            i for i, name in enumerate(header) if name != self.label_column and name not in drop
        ]
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
        for r, row in enumerate(data):
            if len(row) != len(header):
                raise DataError(
                    f"{path}, row {r + 1}: has {len(row)} fields but the header has {len(header)}"
                )
            label = row[label_col].strip()
            if label not in ("0", "1"):
                raise DataError(_bad_cell(path, r, self.label_column, label, "0 or 1"))
            labels[r] = int(label)
            for c, col in enumerate(snp_cols):
                cell = row[col].strip()
                value = snp_values.get(cell)
                if value is None:
                    raise DataError(_bad_cell(path, r, header[col], cell, "0, 1 or 2"))
                genotypes[r, c] = value
        names = tuple(header[i] for i in snp_cols)
        n_reference = round(self.reference_fraction * labels.size)
        if not n_reference:
            return Cohort(genotypes=genotypes, labels=labels, snp_names=names)
        order = rng.permutation(labels.size)
        ref, kept = np.sort(order[:n_reference]), np.sort(order[n_reference:])
        reference = Cohort(genotypes=genotypes[ref], labels=labels[ref], snp_names=names)
        return Cohort(
            genotypes=genotypes[kept], labels=labels[kept], snp_names=names, reference=reference
        )


def _bad_cell(path: Path, row: int, column: str, value: str, allowed: str) -> str:
    shown = "a missing value" if value == "" else f"'{value}'"
    return (
        f"{path}, row {row + 1}, column '{column}': {shown} where {allowed} is required; "
        "fix the file (genotypes are minor-allele counts, the label is binary)"
    )
