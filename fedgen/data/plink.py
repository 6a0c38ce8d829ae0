"""PLINK 1 binary file sets (``.bed``/``.bim``/``.fam``, read with bed-reader) as cohorts.

The shared machinery of the PLINK readers lives here too (:class:`GenotypeFileCohort`): the
phenotype (from the sample file or a separate phenotype file), PLINK's quality-control
filters, the minor-allele convention, imputation and the reference rows.
:mod:`fedgen.data.pgen` adds PLINK 2's ``.pgen``/``.pvar``/``.psam``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray

from fedgen.core import progress
from fedgen.core.errors import ConfigError, DataError
from fedgen.core.records import Cohort
from fedgen.data.genotypes import (
    MISSING,
    allele_frequency,
    call_variance,
    check_fraction,
    count_calls,
    fill_missing,
    qc_snps,
    rounded_means,
    with_reference,
)

log = logging.getLogger("fedgen")

# Column blocks are sized so that one block of int8 calls stays near this many bytes.
_BLOCK_BYTES = 8 * 2**20
_MISSING_TOKENS = frozenset({"-9", "NA", "NAN", ".", ""})
_CODINGS = {"1/2": {"1": 0, "2": 1, "0": -1}, "0/1": {"0": 0, "1": 1}}


class BlockReader(Protocol):
    """Reads genotype blocks from an open file set."""

    def read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.int8]:
        """Calls of individuals ``rows`` (increasing) at SNPs ``cols``: int8 (n_rows, n_cols),
        0/1/2 counts of the file's counted allele or :data:`~fedgen.data.genotypes.MISSING`."""
        ...


@dataclass(frozen=True)
class Samples:
    """The individuals of a sample file: IDs, and phenotype cells if the file has a phenotype."""

    iids: list[str]
    phenotypes: list[str] | None
    source: str


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped line) of the non-blank lines of a text file."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield number, line.strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def count_lines(path: Path, skip_prefix: str | None = None) -> int:
    """The number of non-blank lines of ``path`` (not starting with ``skip_prefix``)."""
    return sum(
        1 for _, line in text_lines(path) if skip_prefix is None or not line.startswith(skip_prefix)
    )


def require_file(path: Path, what: str, prefix: Path) -> None:
    """Fail with the fix unless ``path`` is a readable file."""
    if not path.is_file():
        raise DataError(
            f"{what} {path} does not exist; set dataset.path to the prefix of a complete file "
            f"set (dataset.path={prefix} needs {prefix}.*)"
        )


@dataclass(frozen=True)
class GenotypeFileCohort:
    """What the PLINK readers share: phenotype, quality control, minor allele, imputation.

    Attributes
    ----------
    path : str
        The file set's prefix (``data/cohort`` for ``data/cohort.bed``, ...); a path ending in
        one of the file set's extensions is taken as its prefix.
    phenotype : str or None
        A separate phenotype file (a header row; tab/space- or comma-separated) with an ID
        column ``id_column`` and the phenotype column ``phenotype_column``; every other column
        (FID, covariates, ...) is ignored and never a feature. Individuals absent from it have a
        missing phenotype. None: the phenotype of the sample file (``.fam`` column 6, or the
        ``.psam`` column ``phenotype_column``, default ``PHENO1``).
    phenotype_column : str or None
        The phenotype's column; None picks the phenotype file's only column besides FID/IID.
    id_column : str
        The phenotype file's individual-ID column, matched to the sample file's IIDs.
    phenotype_coding : {"1/2", "0/1"}
        PLINK's case/control coding: 1 = control, 2 = case, 0 and -9 missing ("1/2"), or
        0 = control, 1 = case ("0/1", PLINK's ``--1``); NA, ``.`` and -9 are missing in both.
        Individuals with a missing phenotype are dropped (the log says how many).
    mind, geno, maf : float or None
        PLINK's filters, in PLINK 1's order: ``mind`` drops individuals whose share of missing
        calls exceeds it, then ``geno`` drops SNPs whose share of missing calls (among the
        individuals left) exceeds it, then ``maf`` drops SNPs whose minor-allele frequency is
        below it. None (the default) turns a filter off. SNPs with no observed call are always
        dropped.
    extract : str or None
        A SNP list file (PLINK's ``--extract``: one SNP ID per line, first field): only those
        SNPs are read, before any filter.
    top_k : int or None
        After the filters, keep ``top_k`` SNPs: the first ones in file order
        (``top_k_by: first``) or those whose observed calls vary most (``variance``; ties in
        file order). The SNPs keep their file order.
    missing : {"impute", "error"}
        Missing calls left after the filters are imputed with the SNP's rounded mean genotype
        (:mod:`fedgen.data.genotypes`; the log counts them), or stop the run.
    reference_fraction : float
        Share of the individuals (drawn from ``rng``, after quality control) set aside as
        reference individuals outside every client.

    Notes
    -----
    **Minor allele.** The readers count the file's allele 1 (bed-reader's ``count_A1``: the
    ``.bim``'s A1, column 5) or the ``.pvar``'s ALT; then every SNP whose counted allele has a
    frequency above 0.5 among the kept individuals' observed calls is flipped (2 - x), so that
    genotypes are *minor-allele* counts whatever the A1/A2 or REF/ALT convention of the file.
    ``metadata["maf"]`` holds each kept SNP's minor-allele frequency.
    """

    path: str
    phenotype: str | None = None
    phenotype_column: str | None = None
    id_column: str = "IID"
    phenotype_coding: str = "1/2"
    mind: float | None = None
    geno: float | None = None
    maf: float | None = None
    extract: str | None = None
    top_k: int | None = None
    top_k_by: str = "variance"
    missing: str = "impute"
    reference_fraction: float = 0.0

    extensions: ClassVar[tuple[str, ...]] = ()  # each file format's own

    # -- what each file format provides --------------------------------------------------
    def check_files(self) -> tuple[int, int]:
        """Check the file set (existence, magic bytes, sizes); return (n_samples, n_snps)."""
        raise NotImplementedError

    def samples(self) -> Samples:
        """The sample file's IIDs and phenotype cells."""
        raise NotImplementedError

    def snp_ids(self) -> list[str]:
        """The variant file's SNP IDs, in file order."""
        raise NotImplementedError

    def open_reader(self, n: int, p: int) -> AbstractContextManager[BlockReader]:
        """The genotype file, open for block reads."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def prefix(self) -> Path:
        """The file set's prefix (``dataset.path`` without one of the set's extensions)."""
        path = Path(self.path).expanduser()
        if path.suffix in self.extensions:
            return path.with_suffix("")
        return path

    def file(self, extension: str) -> Path:
        prefix = self.prefix()
        return prefix.with_name(prefix.name + extension)

    def check(self) -> None:
        """The cheap checks, before any run: settings, files, magic bytes, counts vs sizes."""
        self._checked()

    def _checked(self) -> tuple[int, int]:
        self._check_settings()
        n, p = self.check_files()
        for name in ("phenotype", "extract"):
            value = getattr(self, name)
            if value is not None and not Path(value).expanduser().is_file():
                raise DataError(
                    f"dataset.{name}={value} does not exist; set it to an existing file (or null)"
                )
        return n, p

    def _check_settings(self) -> None:
        check_fraction(self.reference_fraction)
        for name, high in (("mind", 1.0), ("geno", 1.0), ("maf", 0.5)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"dataset.{name}={value!r} must be a number or null")
            if not 0.0 <= value <= high:
                raise ConfigError(f"dataset.{name}={value!r} must be in [0, {high}] (or null)")
        if self.top_k is not None and (
            isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1
        ):
            raise ConfigError(f"dataset.top_k={self.top_k!r} must be a positive integer or null")
        for name, allowed in (
            ("top_k_by", ("variance", "first")),
            ("missing", ("impute", "error")),
            ("phenotype_coding", tuple(_CODINGS)),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"dataset.{name}={getattr(self, name)!r} must be one of {', '.join(allowed)}"
                )

    def load(self, rng: np.random.Generator) -> Cohort:
        """Read, filter and impute the file set; ``rng`` draws the reference rows, if any."""
        n, p = self._checked()
        samples = self.samples()
        ids = self.snp_ids()
        labels = self._labels(samples)
        rows = np.flatnonzero(labels >= 0)
        if rows.size < n:
            log.info(
                "dataset: dropped %d of %d individuals with a missing phenotype",
                n - rows.size,
                n,
            )
        if not rows.size:
            raise DataError(
                f"no individual of {samples.source} has a case/control phenotype; check "
                "dataset.phenotype, dataset.phenotype_column and dataset.phenotype_coding"
            )
        cols = self._extracted(ids)
        with self.open_reader(n, p) as reader:
            rows = self._mind(reader, rows, cols, n)
            counts = np.concatenate(
                [count_calls(block) for _, block in _blocks(reader, rows, cols)], axis=1
            )
            keep = qc_snps(counts, geno=self.geno, maf=self.maf)
            dropped = int(cols.size - np.count_nonzero(keep))
            if dropped:
                log.info(
                    "dataset: dropped %d of %d SNPs (geno=%s, maf=%s, or no observed call)",
                    dropped,
                    cols.size,
                    self.geno,
                    self.maf,
                )
            keep_idx = self._top_k(np.flatnonzero(keep), counts)
            if not keep_idx.size:
                raise DataError(
                    f"no SNP of {self.prefix()} is left after quality control; loosen "
                    "dataset.geno or dataset.maf"
                )
            cols, counts = cols[keep_idx], counts[:, keep_idx]
            genotypes, freq = self._read(reader, rows, cols, counts, ids)
        names = tuple(ids[i] for i in cols)
        return with_reference(
            genotypes,
            labels[rows],
            names,
            {"maf": np.minimum(freq, 1.0 - freq)},
            self.reference_fraction,
            rng,
        )

    def _labels(self, samples: Samples) -> NDArray[np.int8]:
        """Binary phenotype per sample: 0/1, or -1 where missing (int8, shape (n_samples,))."""
        if self.phenotype is None:
            if samples.phenotypes is None:
                raise DataError(
                    f"{samples.source} has no phenotype column "
                    f"'{self.phenotype_column or 'PHENO1'}'; set dataset.phenotype_column or "
                    "give a phenotype file with dataset.phenotype"
                )
            cells: list[str | None] = list(samples.phenotypes)
            source = samples.source
        else:
            cells, source = self._phenotype_file(samples.iids)
        coding = _CODINGS[self.phenotype_coding]
        labels = np.empty(len(cells), dtype=np.int8)
        for i, cell in enumerate(cells):
            if cell is None or cell.upper() in _MISSING_TOKENS:
                labels[i] = -1
                continue
            value = coding.get(cell)
            if value is None:
                raise DataError(
                    f"{source}: individual '{samples.iids[i]}' has phenotype '{cell}', not a "
                    f"case/control value in dataset.phenotype_coding={self.phenotype_coding} "
                    "(NA, . and -9 are missing); fix the file or set "
                    "dataset.phenotype_coding to 1/2 or 0/1"
                )
            labels[i] = value
        return labels

    def _phenotype_file(self, iids: Sequence[str]) -> tuple[list[str | None], str]:
        """The phenotype cell of each sample IID from ``self.phenotype`` (None if absent)."""
        assert self.phenotype is not None
        path = Path(self.phenotype).expanduser()
        lines = list(text_lines(path))
        if not lines:
            raise DataError(f"phenotype file {path} is empty; it needs a header row")

        def fields(line: str) -> list[str]:
            if comma:
                return [cell.strip() for cell in next(csv.reader([line]))]
            return line.split()

        comma = "," in lines[0][1]
        header = fields(lines[0][1].lstrip("#"))
        if self.id_column not in header:
            raise DataError(
                f"phenotype file {path} has no '{self.id_column}' column (its header: "
                f"{' '.join(header)}); set dataset.id_column"
            )
        column = self.phenotype_column
        if column is None:
            others = [name for name in header if name not in ("FID", "IID", self.id_column)]
            if len(others) != 1:
                raise DataError(
                    f"phenotype file {path} has {len(others)} columns besides the IDs "
                    f"({' '.join(others)}); name the phenotype with dataset.phenotype_column"
                )
            column = others[0]
        if column not in header:
            raise DataError(
                f"phenotype file {path} has no '{column}' column (its header: "
                f"{' '.join(header)}); set dataset.phenotype_column"
            )
        id_at, value_at = header.index(self.id_column), header.index(column)
        values: dict[str, str] = {}
        for number, line in lines[1:]:
            row = fields(line)
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {number}: has {len(row)} fields but the header has "
                    f"{len(header)}; fix the file"
                )
            if row[id_at] in values:
                raise DataError(
                    f"{path}, line {number}: {self.id_column} '{row[id_at]}' appears twice; "
                    "keep one row per individual"
                )
            values[row[id_at]] = row[value_at]
        if len(set(iids)) != len(iids):
            raise DataError(
                f"the sample file of {self.prefix()} repeats an IID, so dataset.phenotype "
                "cannot be matched by IID; make the IIDs unique"
            )
        unknown = len(set(values) - set(iids))
        if unknown:
            log.info("dataset: %d individuals of %s are not in the genotype files", unknown, path)
        return [values.get(iid) for iid in iids], f"phenotype file {path}"

    def _extracted(self, ids: list[str]) -> NDArray[np.intp]:
        """The SNP columns to consider: all, or those of the ``extract`` list, in file order."""
        if self.extract is None:
            return np.arange(len(ids), dtype=np.intp)
        path = Path(self.extract).expanduser()
        wanted = {line.split()[0] for _, line in text_lines(path)}
        cols = np.array([i for i, sid in enumerate(ids) if sid in wanted], dtype=np.intp)
        if not cols.size:
            raise DataError(
                f"no SNP of the list {path} is in {self.prefix()}; check dataset.extract "
                "(one SNP ID per line, as in the variant file)"
            )
        if len(wanted) > cols.size:
            log.info(
                "dataset: %d SNPs of %s are not in the file set", len(wanted) - cols.size, path
            )
        return cols

    def _mind(
        self, reader: BlockReader, rows: NDArray[np.intp], cols: NDArray[np.intp], n: int
    ) -> NDArray[np.intp]:
        """PLINK's ``--mind``: drop individuals whose share of missing calls exceeds it."""
        if self.mind is None:
            return rows
        missing = np.zeros(rows.size, dtype=np.int64)
        for _, block in _blocks(reader, rows, cols):
            missing += np.count_nonzero(block == MISSING, axis=1)
        kept = rows[missing <= self.mind * cols.size]
        if kept.size < rows.size:
            log.info(
                "dataset: dropped %d of %d individuals with more than %s missing calls (mind)",
                rows.size - kept.size,
                rows.size,
                self.mind,
            )
        if not kept.size:
            raise DataError(
                f"no individual of {self.prefix()} passes dataset.mind={self.mind}; loosen it"
            )
        return kept

    def _top_k(self, kept: NDArray[np.intp], counts: NDArray[np.int64]) -> NDArray[np.intp]:
        """Indices into ``kept`` order: at most ``top_k`` of them, in file order."""
        if self.top_k is None or self.top_k >= kept.size:
            return kept
        if self.top_k_by == "first":
            return kept[: self.top_k]
        variance = call_variance(counts[:, kept])
        best = np.argsort(-variance, kind="stable")[: self.top_k]
        return kept[np.sort(best)]

    def _read(
        self,
        reader: BlockReader,
        rows: NDArray[np.intp],
        cols: NDArray[np.intp],
        counts: NDArray[np.int64],
        ids: list[str],
    ) -> tuple[NDArray[np.int8], NDArray[np.float64]]:
        """The kept calls as minor-allele counts, imputed; and each SNP's counted-allele
        frequency after the flip (the minor-allele frequency)."""
        if self.missing == "error" and np.any(counts[3]):
            j = int(np.flatnonzero(counts[3])[0])
            raise DataError(
                f"SNP '{ids[cols[j]]}' of {self.prefix()} has {counts[3, j]} missing calls "
                "and dataset.missing=error; set dataset.missing=impute or drop such SNPs "
                "with dataset.geno=0"
            )
        freq = allele_frequency(counts)
        flip = freq > 0.5
        fill = rounded_means(counts)
        genotypes = np.empty((rows.size, cols.size), dtype=np.int8)
        imputed = 0
        for start, block in _blocks(reader, rows, cols):
            stop = start + block.shape[1]
            imputed += fill_missing(block, fill[start:stop])
            flipped = flip[start:stop]
            block[:, flipped] = 2 - block[:, flipped]
            genotypes[:, start:stop] = block
        if imputed:
            log.info(
                "dataset: imputed %d missing calls (%.3g%% of %d) with their SNP's rounded "
                "mean genotype",
                imputed,
                100.0 * imputed / genotypes.size,
                genotypes.size,
            )
        return genotypes, np.where(flip, 1.0 - freq, freq)


def _blocks(
    reader: BlockReader, rows: NDArray[np.intp], cols: NDArray[np.intp]
) -> Iterator[tuple[int, NDArray[np.int8]]]:
    """(first column, block) over ``cols`` in column blocks of about ``_BLOCK_BYTES``."""
    step = max(1, _BLOCK_BYTES // max(1, rows.size))
    starts = range(0, cols.size, step)
    for start in progress.track(starts, "reading genotypes"):
        yield start, reader.read(rows, cols[start : start + step])


class _BedReader:
    def __init__(self, path: Path, n: int, p: int) -> None:
        from bed_reader import open_bed

        self._bed = open_bed(path, iid_count=n, sid_count=p, count_A1=True)

    def read(self, rows: NDArray[np.intp], cols: NDArray[np.intp]) -> NDArray[np.int8]:
        block = self._bed.read(index=np.s_[rows, cols], dtype="int8", order="C")
        return np.asarray(block, dtype=np.int8)

    def __enter__(self) -> _BedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bed.__exit__(None, None, None)


@dataclass(frozen=True)
class PlinkCohort(GenotypeFileCohort):
    """A PLINK 1 binary file set ``<path>.bed``/``.bim``/``.fam`` (see
    :class:`GenotypeFileCohort` for the phenotype, the filters and the minor allele).

    The ``.fam`` gives the individuals (IID: column 2) and, unless ``phenotype`` is set, the
    phenotype (column 6); the ``.bim`` gives the SNP IDs (column 2). The ``.bed`` must be
    SNP-major (what PLINK writes) and exactly as long as the ``.fam`` and ``.bim`` say. (A SNP
    takes ceil(n/4) bytes, so a ``.fam`` with up to 3 extra or missing lines can go unnoticed
    when n/4 rounds up to the same size: the format has no count of its own to check against.)
    """

    extensions: ClassVar[tuple[str, ...]] = (".bed", ".bim", ".fam")

    def check_files(self) -> tuple[int, int]:
        bed, bim, fam = (self.file(ext) for ext in (".bed", ".bim", ".fam"))
        for path, what in ((bed, "PLINK .bed file"), (bim, ".bim file"), (fam, ".fam file")):
            require_file(path, what, self.prefix())
        try:
            with bed.open("rb") as handle:
                magic = handle.read(3)
            size = bed.stat().st_size
        except OSError as exc:
            raise DataError(f"cannot read {bed}: {exc}") from exc
        if len(magic) < 3 or magic[:2] != b"\x6c\x1b":
            shown = " ".join(f"{b:02x}" for b in magic) or "nothing"
            raise DataError(
                f"{bed} is not a PLINK .bed file: it starts with {shown}, not the magic bytes "
                "6c 1b 01; set dataset.path to a PLINK 1 binary file set (plink --make-bed)"
            )
        if magic[2] != 1:
            raise DataError(
                f"{bed} is an individual-major .bed file (mode byte {magic[2]:02x}, not 01); "
                f"rewrite it SNP-major with plink --bfile {self.prefix()} --make-bed"
            )
        n, p = count_lines(fam), count_lines(bim)
        if not n or not p:
            raise DataError(f"{fam if not n else bim} is empty; the file set holds no cohort")
        per_snp = (n + 3) // 4
        expected = 3 + per_snp * p
        if size != expected:
            held, partial = divmod(size - 3, per_snp)
            if not partial:
                raise DataError(
                    f"{bed} holds {held} SNPs for the {n} individuals of {fam}, but {bim} "
                    f"lists {p}: the .bed is truncated or the .bim does not belong to it; "
                    "rewrite the file set with plink --make-bed"
                )
            raise DataError(
                f"{bed} is {size} bytes, but {n} individuals ({fam}) x {p} SNPs ({bim}) need "
                f"3 + {p} x {per_snp} = {expected}: the .bed is truncated or the .fam does not "
                "belong to it; rewrite the file set with plink --make-bed"
            )
        return n, p

    def samples(self) -> Samples:
        fam = self.file(".fam")
        iids, phenotypes = [], []
        for number, line in text_lines(fam):
            fields = line.split()
            if len(fields) != 6:
                raise DataError(
                    f"{fam}, line {number}: has {len(fields)} fields, but a .fam line has 6 "
                    "(FID IID father mother sex phenotype); fix the file"
                )
            iids.append(fields[1])
            phenotypes.append(fields[5])
        return Samples(iids, phenotypes, str(fam))

    def snp_ids(self) -> list[str]:
        bim = self.file(".bim")
        ids = []
        for number, line in text_lines(bim):
            fields = line.split()
            if len(fields) != 6:
                raise DataError(
                    f"{bim}, line {number}: has {len(fields)} fields, but a .bim line has 6 "
                    "(chromosome ID cM position A1 A2); fix the file"
                )
            ids.append(fields[1])
        return ids

    def open_reader(self, n: int, p: int) -> AbstractContextManager[BlockReader]:
        return _BedReader(self.file(".bed"), n, p)
