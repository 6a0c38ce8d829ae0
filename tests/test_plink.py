"""PLINK readers on real files: bed-reader's and pgenlib's writers, read back with PLINK's QC."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bed_reader import to_bed
from numpy.typing import NDArray

from fedgen.core.errors import ConfigError, DataError
from fedgen.core.records import Cohort
from fedgen.data import PgenCohort, PlinkCohort

RNG = np.random.default_rng


def write_bed(
    tmp_path: Path,
    calls: NDArray[np.float64],
    pheno: list[str] | None = None,
    name: str = "cohort",
) -> Path:
    """Write ``calls`` (n, p; NaN missing; counts of A1) with bed-reader; return the prefix."""
    n, p = calls.shape
    prefix = tmp_path / name
    to_bed(
        prefix.with_suffix(".bed"),
        calls,
        properties={
            "iid": [f"i{k}" for k in range(n)],
            "sid": [f"rs{j}" for j in range(p)],
            "pheno": pheno if pheno is not None else ["1", "2"] * (n // 2) + ["2"] * (n % 2),
        },
        num_threads=1,
    )
    return prefix


def write_pgen(tmp_path: Path, calls: NDArray[np.float64], pheno: list[str]) -> Path:
    """The same cohort as a PLINK 2 file set (pgenlib's writer; hand-written .pvar/.psam)."""
    import pgenlib

    n, p = calls.shape
    prefix = tmp_path / "cohort2"
    writer = pgenlib.PgenWriter(
        bytes(prefix.with_suffix(".pgen")), n, variant_ct=p, nonref_flags=False
    )
    for j in range(p):
        writer.append_biallelic(np.where(np.isnan(calls[:, j]), -9, calls[:, j]).astype(np.int8))
    writer.close()
    prefix.with_suffix(".pvar").write_text(
        "##fileformat=PVARv1.0\n#CHROM\tPOS\tID\tREF\tALT\n"
        + "".join(f"1\t{j + 1}\trs{j}\tA\tG\n" for j in range(p))
    )
    prefix.with_suffix(".psam").write_text(
        "#IID\tSEX\tPHENO1\n" + "".join(f"i{k}\t1\t{pheno[k]}\n" for k in range(n))
    )
    return prefix


def oracle(calls: NDArray[np.float64], rows: NDArray[np.bool_]) -> NDArray[np.int8]:
    """The documented reading, computed in float: keep rows, impute rint(mean), flip majors."""
    kept = calls[rows]
    mean = np.nanmean(kept, axis=0)
    filled = np.where(np.isnan(kept), np.rint(mean), kept)
    flipped = np.where(mean / 2 > 0.5, 2 - filled, filled)
    return flipped.astype(np.int8)


def random_calls(n: int, p: int, seed: int, missing: float = 0.05) -> NDArray[np.float64]:
    rng = RNG(seed)
    freq = rng.uniform(0.05, 0.95, size=p)  # about half the SNPs count the major allele
    calls = rng.binomial(2, freq, size=(n, p)).astype(np.float64)
    calls[rng.random((n, p)) < missing] = np.nan
    return calls


def load(source: PlinkCohort | PgenCohort) -> Cohort:
    return source.load(RNG(0))


def test_round_trip_imputes_flips_and_drops_missing_phenotypes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = random_calls(60, 15, seed=1)
    pheno = [["1", "2", "-9", "2", "1", "0"][k % 6] for k in range(60)]
    prefix = write_bed(tmp_path, calls, pheno)
    with caplog.at_level(logging.INFO, logger="fedgen"):
        cohort = load(PlinkCohort(path=str(prefix)))
    has_pheno = np.array([c in ("1", "2") for c in pheno])
    assert cohort.genotypes.dtype == np.int8 and cohort.labels.dtype == np.int8
    assert np.array_equal(cohort.genotypes, oracle(calls, has_pheno))
    assert cohort.labels.tolist() == [int(c == "2") for c in pheno if c in ("1", "2")]
    assert cohort.snp_names == tuple(f"rs{j}" for j in range(15))
    # minor-allele counts: every SNP's mean is at most 1 and metadata holds its frequency
    freq = cohort.genotypes.mean(axis=0) / 2
    assert np.all(freq <= 0.5 + 0.05)  # imputation moves a frequency a little
    assert np.all(cohort.metadata["maf"] <= 0.5)
    n_missing = int(np.isnan(calls[has_pheno]).sum())
    assert n_missing > 0
    assert "dropped 20 of 60 individuals with a missing phenotype" in caplog.text
    assert f"imputed {n_missing} missing calls" in caplog.text


def test_path_may_name_any_file_of_the_set(tmp_path: Path) -> None:
    prefix = write_bed(tmp_path, random_calls(8, 3, seed=2, missing=0))
    a = load(PlinkCohort(path=str(prefix)))
    b = load(PlinkCohort(path=str(prefix.with_suffix(".bed"))))
    assert np.array_equal(a.genotypes, b.genotypes)


def test_a_major_allele_count_is_flipped(tmp_path: Path) -> None:
    calls = np.array([[2, 0], [2, 1], [1, 0], [2, 0]], dtype=np.float64)
    cohort = load(PlinkCohort(path=str(write_bed(tmp_path, calls))))
    # rs0 counts the major allele (frequency 7/8): read as minor-allele counts 0,0,1,0
    assert cohort.genotypes[:, 0].tolist() == [0, 0, 1, 0]
    assert cohort.genotypes[:, 1].tolist() == [0, 1, 0, 0]
    assert cohort.metadata["maf"].tolist() == [1 / 8, 1 / 8]


def test_zero_one_coding(tmp_path: Path) -> None:
    prefix = write_bed(tmp_path, random_calls(4, 2, 3, 0), pheno=["0", "1", "NA", "1"])
    cohort = load(PlinkCohort(path=str(prefix), phenotype_coding="0/1"))
    assert cohort.labels.tolist() == [0, 1, 1]


# A hand-built cohort for the filters. Individual i4 misses 3 of 5 calls; rs1 is missing only
# in i4 and rs4 in i1 and i2; rs3's minor allele has frequency 1/10 once i4 is gone.
QC = np.array(
    [
        [0, 1, 0, 1, 1],
        [1, 0, 1, 0, np.nan],
        [2, 1, 0, 0, np.nan],
        [0, 0, 0, 0, 0],
        [np.nan, np.nan, 0, np.nan, 1],
        [1, 2, 1, 0, 1],
    ],
    dtype=np.float64,
)


@pytest.mark.parametrize(
    ("options", "rows", "snps"),
    [
        ({}, [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4]),
        # --mind 0.5: i4's share of missing calls (3/5) exceeds it; i1, i2 (1/5) stay
        ({"mind": 0.5}, [0, 1, 2, 3, 5], [0, 1, 2, 3, 4]),
        # PLINK 1's order: --mind first, so rs0, rs1 and rs3 no longer miss a call for --geno
        ({"mind": 0.5, "geno": 0.0}, [0, 1, 2, 3, 5], [0, 1, 2, 3]),
        # without --mind, --geno 0.2 drops rs4 (2/6 missing) but keeps rs0, rs1, rs3 (1/6)
        ({"geno": 0.2}, [0, 1, 2, 3, 4, 5], [0, 1, 2, 3]),
        # --maf 0.1 keeps rs3 (exactly 0.1 over i0..i3, i5: "below" is strict); 0.11 drops it
        ({"mind": 0.5, "maf": 0.1}, [0, 1, 2, 3, 5], [0, 1, 2, 3, 4]),
        ({"mind": 0.5, "maf": 0.11}, [0, 1, 2, 3, 5], [0, 1, 2, 4]),
    ],
)
def test_qc_filters_follow_plink(
    tmp_path: Path, options: dict[str, Any], rows: list[int], snps: list[int]
) -> None:
    prefix = write_bed(tmp_path, QC, pheno=["1", "2"] * 3)
    cohort = load(PlinkCohort(path=str(prefix), **options))
    assert cohort.snp_names == tuple(f"rs{j}" for j in snps)
    kept = np.zeros(6, dtype=bool)
    kept[rows] = True
    assert np.array_equal(cohort.genotypes, oracle(QC, kept)[:, snps])
    assert cohort.labels.tolist() == [k % 2 for k in rows]


def test_maf_geno_oracle_on_a_random_cohort(tmp_path: Path) -> None:
    calls = random_calls(80, 40, seed=4, missing=0.08)
    calls[:, 5] = 0  # monomorphic: maf 0
    calls[:30, 7] = np.nan  # 30/80 missing
    prefix = write_bed(tmp_path, calls)
    cohort = load(PlinkCohort(path=str(prefix), maf=0.2, geno=0.1))
    missing_rate = np.isnan(calls).mean(axis=0)
    freq = np.nanmean(calls, axis=0) / 2
    maf = np.minimum(freq, 1 - freq)
    expected = [f"rs{j}" for j in range(40) if missing_rate[j] <= 0.1 and maf[j] >= 0.2]
    assert "rs5" not in expected and "rs7" not in expected
    assert list(cohort.snp_names) == expected
    assert np.allclose(cohort.metadata["maf"], maf[[int(s[2:]) for s in expected]])


def test_snp_subset_by_list_file_and_top_k(tmp_path: Path) -> None:
    calls = random_calls(50, 10, seed=5, missing=0)
    calls[:, 3] = np.tile([0, 2], 25)  # the largest variance (1.0)
    calls[:, 8] = np.tile([0, 1], 25)  # 0.25, below most binomial SNPs
    prefix = write_bed(tmp_path, calls)
    (tmp_path / "keep.txt").write_text("rs8\nrs1 extra fields\n\nrs3\nrs_unknown\n")
    cohort = load(PlinkCohort(path=str(prefix), extract=str(tmp_path / "keep.txt")))
    assert cohort.snp_names == ("rs1", "rs3", "rs8")
    first = load(PlinkCohort(path=str(prefix), top_k=4, top_k_by="first"))
    assert first.snp_names == ("rs0", "rs1", "rs2", "rs3")
    top = load(PlinkCohort(path=str(prefix), top_k=3))
    variance = calls.var(axis=0)
    best = sorted(np.argsort(-variance, kind="stable")[:3])
    assert 3 in best
    assert top.snp_names == tuple(f"rs{j}" for j in best)
    assert np.array_equal(top.genotypes, oracle(calls, np.ones(50, bool))[:, best])


@pytest.mark.parametrize("sep", ["\t", ",", " "])
def test_phenotype_file_by_iid_with_covariates_ignored(tmp_path: Path, sep: str) -> None:
    calls = random_calls(6, 4, seed=6, missing=0)
    prefix = write_bed(tmp_path, calls, pheno=["-9"] * 6)
    rows = [
        ["FID", "IID", "age", "status", "pc1"],
        ["0", "i5", "40", "2", "0.1"],
        ["0", "i0", "51", "1", "0.2"],
        ["0", "i2", "33", "NA", "0.3"],
        ["0", "i3", "60", "2", "0.4"],
        ["0", "stranger", "60", "2", "0.4"],
    ]
    (tmp_path / "pheno.txt").write_text("".join(sep.join(r) + "\n" for r in rows))
    cohort = load(
        PlinkCohort(
            path=str(prefix), phenotype=str(tmp_path / "pheno.txt"), phenotype_column="status"
        )
    )
    kept = np.array([True, False, False, True, False, True])  # i0, i3, i5 have a phenotype
    assert cohort.labels.tolist() == [0, 1, 1]
    assert cohort.n_snps == 4  # age and pc1 are not features
    assert np.array_equal(cohort.genotypes, oracle(calls, kept))


def test_phenotype_file_with_one_value_column_needs_no_name(tmp_path: Path) -> None:
    prefix = write_bed(tmp_path, random_calls(3, 2, seed=7, missing=0))
    (tmp_path / "p.txt").write_text("#FID IID case\n0 i0 2\n0 i1 1\n0 i2 2\n")
    cohort = load(PlinkCohort(path=str(prefix), phenotype=str(tmp_path / "p.txt")))
    assert cohort.labels.tolist() == [1, 0, 1]
    (tmp_path / "p.txt").write_text("IID case age\ni0 2 3\n")
    with pytest.raises(DataError) as info:
        load(PlinkCohort(path=str(prefix), phenotype=str(tmp_path / "p.txt")))
    assert str(info.value) == (
        f"phenotype file {tmp_path / 'p.txt'} has 2 columns besides the IDs (case age); "
        "name the phenotype with dataset.phenotype_column"
    )


def test_missing_error_mode_and_reference_rows(tmp_path: Path) -> None:
    calls = random_calls(40, 5, seed=8, missing=0)
    calls[3, 2] = np.nan
    prefix = write_bed(tmp_path, calls)
    with pytest.raises(DataError) as info:
        load(PlinkCohort(path=str(prefix), missing="error"))
    assert str(info.value) == (
        f"SNP 'rs2' of {prefix} has 1 missing calls and dataset.missing=error; set "
        "dataset.missing=impute or drop such SNPs with dataset.geno=0"
    )
    whole = load(PlinkCohort(path=str(prefix)))
    split = PlinkCohort(path=str(prefix), reference_fraction=0.25).load(RNG(3))
    assert split.reference is not None
    assert split.n_individuals == 30 and split.reference.n_individuals == 10
    together = np.vstack([split.genotypes, split.reference.genotypes])
    assert sorted(map(tuple, together)) == sorted(map(tuple, whole.genotypes))


# -- malformed input: one clear error each ----------------------------------------------------


@pytest.fixture()
def good(tmp_path: Path) -> Path:
    return write_bed(tmp_path, random_calls(10, 6, seed=9))  # 10 individuals: 3 bytes per SNP


def error_of(prefix: Path, **options: Any) -> str:
    with pytest.raises(DataError) as info:
        PlinkCohort(path=str(prefix), **options).check()
    return str(info.value)


def test_truncated_bed(good: Path) -> None:
    bed = good.with_suffix(".bed")
    bed.write_bytes(bed.read_bytes()[:-2])
    assert error_of(good) == (
        f"{bed} is 19 bytes, but 10 individuals ({good}.fam) x 6 SNPs ({good}.bim) need "
        "3 + 6 x 3 = 21: the .bed is truncated or the .fam does not belong to it; rewrite the "
        "file set with plink --make-bed"
    )


def test_bim_fam_count_mismatch(good: Path) -> None:
    bim = good.with_suffix(".bim")
    bim.write_text(bim.read_text() + "1\trs_extra\t0\t7\tA\tG\n")
    assert error_of(good) == (
        f"{good}.bed holds 6 SNPs for the 10 individuals of {good}.fam, but {bim} lists 7: the "
        ".bed is truncated or the .bim does not belong to it; rewrite the file set with plink "
        "--make-bed"
    )
    bim.write_text("".join(bim.read_text().splitlines(keepends=True)[:6]))
    fam = good.with_suffix(".fam")
    fam.write_text(fam.read_text() + "0 i10 0 0 0 1\n0 i11 0 0 0 1\n0 i12 0 0 0 1\n")
    assert error_of(good) == (
        f"{good}.bed is 21 bytes, but 13 individuals ({fam}) x 6 SNPs ({bim}) need 3 + 6 x 4 = "
        "27: the .bed is truncated or the .fam does not belong to it; rewrite the file set with "
        "plink --make-bed"
    )


def test_wrong_magic_bytes(good: Path) -> None:
    bed = good.with_suffix(".bed")
    bed.write_bytes(b"PK\x03" + bed.read_bytes()[3:])
    assert error_of(good) == (
        f"{bed} is not a PLINK .bed file: it starts with 50 4b 03, not the magic bytes 6c 1b 01; "
        "set dataset.path to a PLINK 1 binary file set (plink --make-bed)"
    )
    bed.write_bytes(b"\x6c\x1b\x00" + bed.read_bytes()[3:])
    assert error_of(good) == (
        f"{bed} is an individual-major .bed file (mode byte 00, not 01); rewrite it SNP-major "
        f"with plink --bfile {good} --make-bed"
    )


@pytest.mark.parametrize("ext", [".bed", ".bim", ".fam"])
def test_missing_file(good: Path, ext: str) -> None:
    good.with_suffix(ext).unlink()
    what = {".bed": "PLINK .bed file", ".bim": ".bim file", ".fam": ".fam file"}[ext]
    assert error_of(good) == (
        f"{what} {good}{ext} does not exist; set dataset.path to the prefix of a complete file "
        f"set (dataset.path={good} needs {good}.*)"
    )


def test_malformed_text_files(good: Path) -> None:
    fam = good.with_suffix(".fam")
    lines = fam.read_text().splitlines()
    fam.write_text("\n".join([*lines[:3], "0 i3 0 0 1", *lines[4:]]) + "\n")
    with pytest.raises(DataError) as info:
        load(PlinkCohort(path=str(good)))
    assert str(info.value) == (
        f"{fam}, line 4: has 5 fields, but a .fam line has 6 (FID IID father mother sex "
        "phenotype); fix the file"
    )
    fam.write_text("\n".join([*lines[:3], "0 i3 0 0 1 case", *lines[4:]]) + "\n")
    with pytest.raises(DataError) as info:
        load(PlinkCohort(path=str(good)))
    assert str(info.value) == (
        f"{fam}: individual 'i3' has phenotype 'case', not a case/control value in "
        "dataset.phenotype_coding=1/2 (NA, . and -9 are missing); fix the file or set "
        "dataset.phenotype_coding to 1/2 or 0/1"
    )


def test_bad_settings_and_missing_side_files(good: Path) -> None:
    with pytest.raises(ConfigError, match=r"dataset\.maf=0\.7 must be in \[0, 0\.5\]"):
        PlinkCohort(path=str(good), maf=0.7).check()
    with pytest.raises(ConfigError, match=r"dataset\.top_k=0 must be a positive integer"):
        PlinkCohort(path=str(good), top_k=0).check()
    with pytest.raises(ConfigError, match=r"dataset\.missing='drop' must be one of"):
        PlinkCohort(path=str(good), missing="drop").check()
    assert error_of(good, extract=str(good.parent / "none.txt")) == (
        f"dataset.extract={good.parent / 'none.txt'} does not exist; set it to an existing "
        "file (or null)"
    )
    with pytest.raises(DataError) as info:
        load(PlinkCohort(path=str(good), maf=0.5, geno=0.0))
    assert str(info.value) == (
        f"no SNP of {good} is left after quality control; loosen dataset.geno or dataset.maf"
    )


# -- PLINK 2 ----------------------------------------------------------------------------------


def test_pgen_reads_what_the_bed_reader_reads(tmp_path: Path) -> None:
    calls = random_calls(30, 12, seed=10)
    pheno = [["1", "2", "-9"][k % 3] for k in range(30)]
    plink = load(PlinkCohort(path=str(write_bed(tmp_path, calls, pheno)), geno=0.1, top_k=6))
    pgen = load(PgenCohort(path=str(write_pgen(tmp_path, calls, pheno)), geno=0.1, top_k=6))
    assert pgen.snp_names == plink.snp_names
    assert np.array_equal(pgen.genotypes, plink.genotypes)
    assert np.array_equal(pgen.labels, plink.labels)
    everything = load(PgenCohort(path=str(tmp_path / "cohort2")))
    assert np.array_equal(everything.genotypes, oracle(calls, np.array([c != "-9" for c in pheno])))


def test_pgen_malformed(tmp_path: Path) -> None:
    calls = random_calls(9, 5, seed=11, missing=0)
    prefix = write_pgen(tmp_path, calls, ["1", "2", "1"] * 3)
    pgen = prefix.with_suffix(".pgen")
    data = pgen.read_bytes()

    def error() -> str:
        with pytest.raises(DataError) as info:
            PgenCohort(path=str(prefix)).check()
        return str(info.value)

    pgen.write_bytes(data[:-2])
    assert error() == (
        f"{pgen} cannot be read to its last variant (read() error 4): it is truncated; "
        "rewrite the file set with plink2 --make-pgen"
    )
    pgen.write_bytes(b"\x00\x00" + data[2:])
    assert error() == (
        f"{pgen} is not a PLINK 2 .pgen file: it starts with 00 00 10, not the magic bytes "
        "6c 1b; set dataset.path to a .pgen file set (plink2 --make-pgen)"
    )
    pgen.write_bytes(data)
    psam = prefix.with_suffix(".psam")
    psam.write_text(psam.read_text() + "extra\t1\t2\n")
    assert error() == (
        f"{pgen} does not match {psam} (10 individuals) and {prefix}.pvar (5 variants): "
        f"PgfiInitPhase1() was called with raw_sample_ct == 10, but {pgen} contains 9 "
        "samples.; rewrite the file set with plink2 --make-pgen"
    )


# -- the command line --------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_runs_on_a_plink_file_set(tmp_path: Path) -> None:
    calls = random_calls(300, 20, seed=12, missing=0.03)
    pheno = [["1", "2", "-9", "2", "1"][k % 5] for k in range(300)]
    write_bed(tmp_path, calls, pheno, name="study")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["FEDGEN_CACHE_DIR"] = str(tmp_path / "cache")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedgen",
            "dataset=plink",
            "dataset.path=study",
            "federation.num_rounds=2",
            "tracking=none",
            "figures=false",
            "hydra.run.dir=run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["metrics"]["fed/test_accuracy"] >= 0
    assert record["params"]["dataset.path"] == "study"
    log = (tmp_path / "run" / "cli.log").read_text()
    assert "dropped 60 of 300 individuals with a missing phenotype" in log
    assert "imputed " in log
    assert "cohort 240 individuals x 20 SNPs" in log
