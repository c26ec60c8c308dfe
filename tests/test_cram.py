"""featurize on CRAMs whose reference differs from the FASTA: decoded as htslib decodes them.

DeepVariant's own test CRAM was written against the whole of hg19, and its test FASTA is
hg19's chr20 with everything outside two windows set to N: same length, another @SQ M5, yet
htslib decodes the windows fine, because each CRAM slice carries the MD5 of just the bases
its reads use. These tests build such pairs from the shared BAM: a "full" chr20 (the shared
FASTA with its Ns filled in and one base changed, at CHANGED) and CRAMs cut in small slices,
so the changed base sits in one slice far from the region featurized. Tests that need
../shared/data are marked `shared_data` and skip without it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pysam
import pytest

from kerasport.cli import main
from kerasport.featurize import FeaturizeError, featurize, featurize_region, parse_region
from kerasport.featurize.cram_slices import CramLayoutError, _Cursor, region_slices
from kerasport.featurize.reads import contig_md5

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deepvariant-testdata"
BAM = DATA / "NA12878_S1.chr20.10_10p1mb.bam"
REF = DATA / "ucsc.hg19.chr20.unittest.fasta.gz"
REF_M5 = "d56007d0cc776ca9c0e4f218060eba81"  # the shared FASTA's chr20
CHANGED = 10_018_000  # 0-based: the one base (inside the reads) where "full" differs
FAR = "chr20:10,002,001-10,006,000"  # 12 kb from CHANGED: its slices never reach it
NEAR = "chr20:10,011,001-10,019,000"  # holds CHANGED
READS = (10_000_000, 10_020_000)  # the BAM's reads copied into each CRAM
SLICE = [b"seqs_per_slice=500"]  # about 1 kb of chr20 per slice at this depth

shared_data = pytest.mark.shared_data
needs_data = pytest.mark.skipif(not BAM.exists(), reason=f"no shared test data at {DATA}")


def _skip_without_data() -> None:
    if not BAM.exists():
        pytest.skip(f"no shared test data at {DATA}")


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chr20 as the whole reference has it (REF's Ns filled in, one base changed), and a
    small chrZ for CRAMs that need a second contig; a plain FASTA with its .fai."""
    _skip_without_data()
    with pysam.FastaFile(str(REF)) as fasta:
        chr20 = fasta.fetch("chr20").replace("N", "A")
    chr20 = chr20[:CHANGED] + ("C" if chr20[CHANGED] in "aA" else "A") + chr20[CHANGED + 1:]
    path = tmp_path_factory.mktemp("full") / "full.fa"
    path.write_text(f">chr20\n{chr20}\n>chrZ\n{chr20[10_050_000:10_060_000]}\n")
    pysam.faidx(str(path))
    return path


def _reads(header: pysam.AlignmentHeader, lo: int, hi: int, contig: str = "chr20",
           shift: int = 0) -> Iterator[pysam.AlignedSegment]:
    """The BAM's chr20 reads over [lo, hi) for `header`, placed on `contig` `shift` bases
    earlier; mates elsewhere become '*' (no feature reads them)."""
    with pysam.AlignmentFile(str(BAM)) as source:
        for read in source.fetch("chr20", lo, hi):
            fields = read.to_dict()
            fields["ref_name"], fields["ref_pos"] = contig, str(int(fields["ref_pos"]) - shift)
            fields["next_ref_name"], fields["next_ref_pos"] = "*", "0"
            yield pysam.AlignedSegment.from_dict(fields, header)


def _write_cram(path: Path, reference: Path, options: list[bytes],
                span: tuple[int, int] = READS, with_chrz: bool = False) -> Path:
    """A CRAM of the BAM's chr20 reads in `span`, encoded against `reference`, and its .crai.

    `with_chrz` adds chrZ (10 kb of `full`) and a few reads on it, so that with
    multi_seq_per_slice htslib puts both contigs' reads in one multi-reference slice.
    """
    contigs = ("chr20", "chrZ") if with_chrz else ("chr20",)
    with pysam.AlignmentFile(str(BAM)) as source, pysam.FastaFile(str(reference)) as fasta:
        fields = source.header.to_dict()  # its read groups and programs, not its 25 contigs
        fields["SQ"] = [{"SN": name, "LN": fasta.get_reference_length(name)} for name in contigs]
        header = pysam.AlignmentHeader.from_dict(fields)
    with pysam.AlignmentFile(str(path), "wc", header=header, reference_filename=str(reference),
                             format_options=options) as out:
        for read in _reads(header, *span):
            out.write(read)
        if with_chrz:
            for read in _reads(header, 10_050_100, 10_050_400, "chrZ", 10_050_000):
                out.write(read)
    pysam.index(str(path))
    return path


def _m5(cram: Path, reference: Path) -> str:
    """The @SQ M5 htslib wrote for chr20: that of the FASTA the CRAM was encoded against."""
    with pysam.AlignmentFile(str(cram), "rc", reference_filename=str(reference)) as reads:
        return str(reads.header.to_dict()["SQ"][0]["M5"])


@pytest.fixture(scope="module")
def on_full(full: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written against `full`, as DeepVariant's CRAM against hg19."""
    return _write_cram(tmp_path_factory.mktemp("cram") / "on_full.cram", full, SLICE)


@pytest.fixture(scope="module")
def on_ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Written against the shared FASTA."""
    _skip_without_data()
    return _write_cram(tmp_path_factory.mktemp("cram") / "on_ref.cram", REF, SLICE)


def _same_rows(cram: Path, fasta: Path, region: str) -> None:
    got, want = featurize_region(cram, fasta, region), featurize_region(BAM, REF, region)
    assert len(got.examples) == len(want.examples) > 20
    assert np.array_equal(got.examples.features, want.examples.features)
    assert np.array_equal(got.examples.positions, want.examples.positions)
    assert got.infos == want.infos


# ---------------------------------------------------------------- no data needed


@pytest.mark.parametrize(("encoded", "value"), [
    (b"\x05", 5), (b"\x80\x80", 0x80), (b"\xc1\x02\x03", 0x010203),
    (b"\xe1\x02\x03\x04", 0x01020304), (b"\xff\xff\xff\xff\x0f", -1),
    (b"\xff\xff\xff\xff\x0e", -2),
])
def test_itf8_as_the_cram_spec_defines_it(encoded: bytes, value: int) -> None:
    cursor = _Cursor(encoded)
    assert cursor.itf8() == value and cursor.pos == len(encoded)


def test_a_header_that_ends_early_is_a_layout_error() -> None:
    with pytest.raises(CramLayoutError, match="ends early"):
        _Cursor(b"\xc1\x02").itf8()


def test_an_unreadable_index_is_a_layout_error(tmp_path: Path) -> None:
    cram = tmp_path / "reads.cram"
    cram.write_bytes(b"CRAM\x03\x00" + bytes(20))
    with pytest.raises(CramLayoutError, match=r"no \.crai"):
        region_slices(cram, 0, 0, 10)
    (tmp_path / "reads.cram.crai").write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(CramLayoutError):
        region_slices(cram, 0, 0, 10)
    (tmp_path / "reads.cram.crai").write_text("0\t1\t2\n")
    with pytest.raises(CramLayoutError, match="rows of six numbers"):
        region_slices(cram, 0, 0, 10)
    cram.write_bytes(b"CRAM\x04\x00" + bytes(20))
    with pytest.raises(CramLayoutError, match=r"CRAM version 4\.0"):
        region_slices(cram, 0, 0, 10)


# ---------------------------------------------------------------- the shared reads


@shared_data
@needs_data
@pytest.mark.parametrize("direction", ["cram on full, FASTA masked", "cram on FASTA, full"])
def test_a_reference_differing_only_outside_the_region_decodes_it(
        direction: str, on_full: Path, on_ref: Path, full: Path) -> None:
    """The user's case and its reverse: another whole-contig M5, the same rows as the BAM."""
    cram, fasta = (on_full, REF) if direction.startswith("cram on full") else (on_ref, full)
    with pysam.FastaFile(str(fasta)) as opened:
        assert contig_md5(opened, "chr20") != _m5(cram, fasta)  # refused by M5 alone before
    _same_rows(cram, fasta, FAR)


@shared_data
@needs_data
def test_a_cram_carrying_its_reference_needs_no_fasta_match(full: Path, tmp_path: Path) -> None:
    """Slices with the reference embedded are decoded against it, whatever --ref says."""
    cram = _write_cram(tmp_path / "embedded.cram", full, [b"embed_ref=1", *SLICE])
    _same_rows(cram, REF, NEAR)


@shared_data
@needs_data
@pytest.mark.parametrize("direction", ["cram on full, FASTA masked", "cram on FASTA, full"])
def test_bases_differing_inside_the_region_are_refused_naming_both_references(
        direction: str, on_full: Path, on_ref: Path, full: Path, tmp_path: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    """The slice and both MD5s named are the ones htslib itself reports when it refuses the
    slice (on stderr, with a bare OSError from pysam that names nothing)."""
    cram, fasta = (on_full, REF) if direction.startswith("cram on full") else (on_ref, full)
    slice_ = next(s for s in region_slices(cram, 0, CHANGED, CHANGED + 1))
    assert slice_.start <= CHANGED + 1 <= slice_.end  # the slice that holds the changed base
    with pysam.FastaFile(str(fasta)) as opened:
        here = opened.fetch("chr20", slice_.start - 1, slice_.end).upper().encode()
    capfd.readouterr()
    with (pysam.AlignmentFile(str(cram), "rc", reference_filename=str(fasta)) as reads,
          pytest.raises(OSError, match="truncated file")):
        sum(1 for _ in reads.fetch("chr20", CHANGED, CHANGED + 1))
    htslib = capfd.readouterr().err
    assert f"MD5 checksum reference mismatch at chr20:{slice_.start}-{slice_.end}\n" in htslib
    assert f"CRAM  : {slice_.md5}\n" in htslib
    assert f"Ref   : {hashlib.md5(here).hexdigest()}\n" in htslib
    out = tmp_path / "examples.npz"
    code = main(["featurize", str(cram), "--ref", str(fasta), "--region", NEAR, "-o", str(out)])
    message = capfd.readouterr().err
    assert code == 2 and not out.exists() and "Traceback" not in message
    cram_m5, fasta_m5 = _m5(cram, fasta), REF_M5 if fasta == REF else _m5(on_full, full)
    written_on = full if fasta == REF else REF  # htslib records it as @SQ UR
    assert message == (
        f"kerasport featurize: error: CRAM {cram} was not written against reference {fasta}: "
        f"contig chr20 differs in the bases that {NEAR} needs: the reads at "
        f"chr20:{slice_.start:,}-{slice_.end:,} (one CRAM slice) were encoded against bases "
        f"with MD5 {slice_.md5}, but those bases in the FASTA have MD5 "
        f"{hashlib.md5(here).hexdigest()}; for the whole contig, @SQ M5 {cram_m5} in the "
        f"CRAM's header (UR {written_on}) but M5 {fasta_m5} in the FASTA; pass the FASTA the "
        f"CRAM was made with as --ref\n"
    )


@shared_data
@needs_data
def test_a_slice_htslib_would_not_check_is_refused(full: Path, tmp_path: Path) -> None:
    """A multi-reference slice carries no MD5: htslib decodes it against any FASTA, silently
    giving other bases. With the contig's M5 differing, featurize refuses it."""
    cram = _write_cram(tmp_path / "multi.cram", full, [b"multi_seq_per_slice=1"],
                       (CHANGED - 100, CHANGED + 100), with_chrz=True)
    (piece,) = region_slices(cram, 0, CHANGED, CHANGED + 1)
    assert piece.multi_ref and piece.md5 == ""

    def sequences(fasta: Path) -> list[str | None]:
        with pysam.AlignmentFile(str(cram), "rc", reference_filename=str(fasta)) as reads:
            return [read.query_sequence for read in reads.fetch("chr20", CHANGED, CHANGED + 1)]

    assert sequences(full) != sequences(REF)  # no error from htslib, yet other bases
    region = "chr20:10,017,901-10,018,100"
    with pytest.raises(FeaturizeError, match=(
            rf"CRAM {re.escape(str(cram))} was not written against reference "
            rf"{re.escape(str(REF))}: contig chr20 has @SQ M5 [0-9a-f]{{32}} in the CRAM's "
            rf"header \(UR {re.escape(str(full))}\) but M5 {REF_M5} in the FASTA \(same "
            rf"length, different bases\), and the reads at chr20:[\d,]+-[\d,]+ that {region} "
            r"needs are in a CRAM slice with no reference MD5 \(a multi-reference slice\), "
            r"which htslib would decode against the FASTA unchecked; pass the FASTA")):
        featurize(cram, REF, region)
    featurize(cram, full, region)  # with the FASTA it was written against, it decodes


@shared_data
@needs_data
def test_region_slices_carry_the_md5_of_their_bases(on_full: Path) -> None:
    """The parsed slices tile the reads in file order, and their MD5s are the FASTA's."""
    region = parse_region(FAR)
    slices = region_slices(on_full, 0, region.start, region.end)
    assert len(slices) >= 3
    assert [s.start for s in slices] == sorted(s.start for s in slices)
    assert slices[0].start <= region.start + 1 and slices[-1].end >= region.end
    with pysam.FastaFile(str(REF)) as fasta:
        for piece in slices:
            bases = fasta.fetch("chr20", piece.start - 1, piece.end).upper().encode()
            assert piece.md5 == hashlib.md5(bases).hexdigest() and not piece.multi_ref
