"""PLINK 2 file sets (``.pgen``/``.pvar``/``.psam``, read with pgenlib) as cohorts."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from fedgen.core.errors import DataError
from fedgen.data.genotypes import MISSING
from fedgen.data.plink import (
    BlockReader,
    GenotypeFileCohort,
    Samples,
    require_file,
    text_lines,
)


@dataclass(frozen=True)
class PgenCohort(GenotypeFileCohort):
    """A PLINK 2 file set ``<path>.pgen``/``.pvar``/``.psam`` (see :class:`GenotypeFileCohort`
    for the phenotype, the filters and the minor allele).

    The ``.psam`` gives the individuals (its ``IID`` column; a ``.psam`` without a header line
    is read as a ``.fam``) and, unless ``phenotype`` is set, the phenotype (the column
    ``phenotype_column``, by default ``PHENO1``). The ``.pvar`` gives the SNP IDs (its ``ID``
    column; without a ``#CHROM`` header it is read as a ``.bim``). Variants must be biallelic;
    genotypes count the ALT allele before the minor-allele flip. Dosages are not read (hard
    calls only).
    """

    extensions: ClassVar[tuple[str, ...]] = (".pgen", ".pvar", ".psam")

    def check_files(self) -> tuple[int, int]:
        pgen, pvar, psam = (self.file(ext) for ext in (".pgen", ".pvar", ".psam"))
        for path, what in (
            (pgen, "PLINK 2 .pgen file"),
            (pvar, ".pvar file"),
            (psam, ".psam file"),
        ):
            require_file(path, what, self.prefix())
        try:
            with pgen.open("rb") as handle:
                magic = handle.read(3)
        except OSError as exc:
            raise DataError(f"cannot read {pgen}: {exc}") from exc
        if len(magic) < 3 or magic[:2] != b"\x6c\x1b":
            shown = " ".join(f"{b:02x}" for b in magic) or "nothing"
            raise DataError(
                f"{pgen} is not a PLINK 2 .pgen file: it starts with {shown}, not the magic "
                "bytes 6c 1b; set dataset.path to a .pgen file set (plink2 --make-pgen)"
            )
        n = len(self.samples().iids)
        p = len(self.snp_ids())
        if not n or not p:
            raise DataError(f"{psam if not n else pvar} is empty; the file set holds no cohort")
        with _PgenReader(pgen, n, p, psam, pvar) as reader:
            reader.check_last()
        return n, p

    def samples(self) -> Samples:
        psam = self.file(".psam")
        lines = [(number, line) for number, line in text_lines(psam) if not line.startswith("##")]
        if lines and lines[0][1].startswith(("#FID", "#IID")):
            header = lines[0][1][1:].split()
            rows = lines[1:]
        else:
            header = ["FID", "IID", "PAT", "MAT", "SEX", "PHENO1"]  # a .fam read as .psam
            rows = lines
        if "IID" not in header:
            raise DataError(f"{psam} has no IID column in its header; fix the file")
        column = self.phenotype_column or "PHENO1"
        at = header.index(column) if column in header else None
        iids, phenotypes = [], []
        for number, line in rows:
            fields = line.split()
            if len(fields) != len(header):
                raise DataError(
                    f"{psam}, line {number}: has {len(fields)} fields but the header has "
                    f"{len(header)} ({' '.join(header)}); fix the file"
                )
            iids.append(fields[header.index("IID")])
            if at is not None:
                phenotypes.append(fields[at])
        return Samples(iids, phenotypes if at is not None else None, str(psam))

    def snp_ids(self) -> list[str]:
        pvar = self.file(".pvar")
        lines = [(number, line) for number, line in text_lines(pvar) if not line.startswith("##")]
        if lines and lines[0][1].startswith("#CHROM"):
            header = lines[0][1][1:].split()
            rows = lines[1:]
        else:
            header = ["CHROM", "ID", "CM", "POS", "ALT", "REF"]  # a .bim read as .pvar
            rows = lines
        if "ID" not in header or "ALT" not in header:
            raise DataError(f"{pvar} has no ID or ALT column in its header; fix the file")
        id_at, alt_at = header.index("ID"), header.index("ALT")
        ids = []
        for number, line in rows:
            fields = line.split()
            if len(fields) != len(header):
                raise DataError(
                    f"{pvar}, line {number}: has {len(fields)} fields but the header has "
                    f"{len(header)}; fix the file"
                )
            if "," in fields[alt_at]:
                raise DataError(
                    f"{pvar}, line {number}: variant '{fields[id_at]}' is multiallelic "
                    f"(ALT {fields[alt_at]}); keep biallelic variants with plink2 "
                    "--max-alleles 2 --make-pgen"
                )
            ids.append(fields[id_at])
        return ids

    def open_reader(self, n: int, p: int) -> AbstractContextManager[BlockReader]:
        return _PgenReader(self.file(".pgen"), n, p, self.file(".psam"), self.file(".pvar"))


class _PgenReader:
    def __init__(self, pgen: Path, n: int, p: int, psam: Path, pvar: Path) -> None:
        import pgenlib

        self._path, self._n, self._p = pgen, n, p
        try:
            self._reader = pgenlib.PgenReader(bytes(pgen), raw_sample_ct=n, variant_ct=p)
        except RuntimeError as exc:
            reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
            raise DataError(
                f"{pgen} does not match {psam} ({n} individuals) and {pvar} ({p} variants): "
                f"{str(reason).strip()}; rewrite the file set with plink2 --make-pgen"
            ) from exc
        self._subset: NDArray[np.intp] | None = None

    def check_last(self) -> None:
        """Read the last variant: a truncated file fails there."""
        try:
            self._reader.read(self._p - 1, np.empty(self._n, dtype=np.int8))
        except RuntimeError as exc:
            raise DataError(
                f"{self._path} cannot be read to its last variant ({exc}): it is truncated; "
                "rewrite the file set with plink2 --make-pgen"
            ) from exc

    def read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.int8]:
        if self._subset is None or not np.array_equal(self._subset, rows):
            subset = None if rows.size == self._n else rows.astype(np.uint32)
            self._reader.change_sample_subset(subset)
            self._subset = rows.copy()
        out = np.empty((cols.size, rows.size), dtype=np.int8)
        self._reader.read_list(cols.astype(np.uint32), out)
        block = np.ascontiguousarray(out.T)
        block[block == -9] = MISSING
        return block

    def __enter__(self) -> _PgenReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.close()
