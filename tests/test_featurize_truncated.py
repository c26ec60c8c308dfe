"""featurize refuses a BAM or CRAM that was cut short, naming it and where it now ends.

A file cut at a BGZF block (or CRAM container) boundary with its EOF marker put back reads
to htslib as a shorter, valid file: fetches past the cut find nothing, silently, or leave an
error pysam reports only on closing ("[Errno 0] Closing failed: Success"). Built here from a
small made-up contig: reads with het SNPs, sorted and indexed, as BAM and CRAM; then copies
cut at a block boundary (EOF put back), inside a block, without the EOF marker, and a CRAM
cut at a container. Each is refused: exit 2, "truncated", the file, the last read it holds
(the last that reading the cut copy from its start yields), no traceback, no output.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import pysam
import pytest

from kerasport.cli import main
from kerasport.featurize import FeaturizeError
from kerasport.featurize.cram_slices import index_rows
from kerasport.featurize.reads import LastRead, _closer
from kerasport.featurize.truncation import CRAM_EOFS, find_truncation

# The empty block a BGZF file ends with (the SAM/BAM spec, 4.1.2).
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
LENGTH = 20_000
REGION = f"chr1:1-{LENGTH}"
READS, READ_LENGTH = 3000, 100
SNPS = range(500, LENGTH, 1000)  # 0-based; every other read covering one carries the alt
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deepvariant-testdata"
SHARED_BAM = DATA / "NA12878_S1.chr20.10_10p1mb.bam"
SHARED_REF = DATA / "ucsc.hg19.chr20.unittest.fasta.gz"


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ref.fa (+ .fai), reads.bam (+ .bai) and reads.cram (+ .crai, small slices)."""
    root = tmp_path_factory.mktemp("whole")
    rng = random.Random(7)
    bases = "".join(rng.choice("ACGT") for _ in range(LENGTH))
    ref = root / "ref.fa"
    ref.write_text(">chr1\n" + "\n".join(bases[i : i + 60] for i in range(0, LENGTH, 60)) + "\n")
    pysam.faidx(str(ref))
    header = pysam.AlignmentHeader.from_dict(
        {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr1", "LN": LENGTH}]})
    bam = root / "reads.bam"
    with pysam.AlignmentFile(str(bam), "wb", header=header) as out:
        for index, start in enumerate(sorted(rng.randrange(LENGTH - READ_LENGTH)
                                             for _ in range(READS))):
            sequence = list(bases[start : start + READ_LENGTH])
            for snp in SNPS:
                if index % 2 and start <= snp < start + READ_LENGTH:
                    sequence[snp - start] = "C" if sequence[snp - start] != "C" else "G"
            read = pysam.AlignedSegment(header)
            read.query_name, read.flag = f"r{index}", 16 if index % 3 else 0
            read.reference_id, read.reference_start = 0, start
            read.query_sequence, read.cigarstring = "".join(sequence), f"{READ_LENGTH}M"
            read.mapping_quality = 60
            read.query_qualities = pysam.qualitystring_to_array("I" * READ_LENGTH)
            out.write(read)
    pysam.index(str(bam))
    cram = root / "reads.cram"
    with (pysam.AlignmentFile(str(bam)) as source,
          pysam.AlignmentFile(str(cram), "wc", template=source, reference_filename=str(ref),
                              format_options=[b"seqs_per_slice=300"]) as out):
        for read in source:
            out.write(read)
    pysam.index(str(cram))
    return {"ref": ref, "bam": bam, "cram": cram}


def bgzf_blocks(data: bytes) -> list[int]:
    """Each BGZF block's offset: a block's size is its extra field's BC subfield (BSIZE)."""
    offsets, pos = [], 0
    while pos < len(data):
        offsets.append(pos)
        (extra,) = struct.unpack_from("<H", data, pos + 10)
        field = pos + 12
        while data[field : field + 2] != b"BC":  # subfields: 2 id bytes, length, data
            field += 4 + struct.unpack_from("<H", data, field + 2)[0]
            assert field < pos + 12 + extra, f"no BSIZE in the block at {pos}"
        pos += struct.unpack_from("<H", data, field + 4)[0] + 1
    return offsets


def copy_cut(source: Path, target: Path, keep: int, tail: bytes) -> Path:
    """The first `keep` bytes of `source`, then `tail`, beside a copy of its index."""
    target.write_bytes(source.read_bytes()[:keep] + tail)
    suffix = ".crai" if source.suffix == ".cram" else ".bai"
    shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
    return target


def cut_bam_at_block(whole: dict[str, Path], target: Path) -> Path:
    blocks = bgzf_blocks(whole["bam"].read_bytes())
    return copy_cut(whole["bam"], target, blocks[len(blocks) // 2], BGZF_EOF)


def cut_bam_inside_a_block(whole: dict[str, Path], target: Path) -> Path:
    blocks = bgzf_blocks(whole["bam"].read_bytes())
    middle = len(blocks) // 2
    return copy_cut(whole["bam"], target, (blocks[middle] + blocks[middle + 1]) // 2, BGZF_EOF)


def cut_bam_without_eof(whole: dict[str, Path], target: Path) -> Path:
    blocks = bgzf_blocks(whole["bam"].read_bytes())
    return copy_cut(whole["bam"], target, blocks[len(blocks) // 2], b"")


def cut_cram_at_container(whole: dict[str, Path], target: Path) -> Path:
    containers = sorted({row[3] for row in index_rows(Path(f"{whole['cram']}.crai"))})
    return copy_cut(whole["cram"], target, containers[len(containers) // 2], CRAM_EOFS[0])


CUTS: dict[str, Callable[[dict[str, Path], Path], Path]] = {
    "bam_at_a_block": cut_bam_at_block,
    "bam_inside_a_block": cut_bam_inside_a_block,
    "bam_without_eof": cut_bam_without_eof,
    "cram_at_a_container": cut_cram_at_container,
}


def last_held(path: Path, ref: Path) -> str:
    """The last read that reading the file from its start yields (where the cut is)."""
    last = None
    verbosity = pysam.set_verbosity(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pysam's about a missing EOF marker
            reads = pysam.AlignmentFile(str(path), ignore_truncation=True,
                                        reference_filename=str(ref))
        with contextlib.suppress(OSError):  # at the cut
            for read in reads.fetch(until_eof=True):
                last = read
        with contextlib.suppress(OSError):
            reads.close()
    finally:
        pysam.set_verbosity(verbosity)
    assert last is not None
    return f"{last.reference_name}:{last.reference_start + 1:,}"


def featurize(reads: Path, ref: Path, out: Path, region: str = REGION) -> int:
    return main(["featurize", str(reads), "--ref", str(ref), "--region", region, "-o", str(out)])


def test_the_whole_files_featurize(whole: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The control: uncut, both give examples, and the index check finds nothing."""
    for kind in ("bam", "cram"):
        assert find_truncation(whole[kind], kind == "cram") is None
        assert featurize(whole[kind], whole["ref"], tmp_path / f"{kind}.npz") == 0
        assert f"{len(SNPS)} candidates" in capsys.readouterr().out


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_cut_file_is_refused_naming_it_and_its_last_read(
    cut: str, whole: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix = ".cram" if cut.startswith("cram") else ".bam"
    reads = CUTS[cut](whole, tmp_path / f"cut{suffix}")
    out = tmp_path / "out.npz"
    assert featurize(reads, whole["ref"], out) == 2
    err = capsys.readouterr().err
    assert f"{suffix[1:].upper()} {reads} is truncated" in err, err
    assert f"the last read it holds is at {last_held(reads, whole['ref'])}." in err, err
    assert "Traceback" not in err and "Closing failed" not in err
    assert not out.exists() and list(tmp_path.glob("*.npz*")) == []


def test_without_the_index_check_htslib_s_errors_still_name_the_place(
    whole: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An index that cannot tell (made again, or unread): htslib's "truncated file" while
    reading is named with the file and the last read read, and not replaced by the error
    pysam raises when the file is then closed."""
    monkeypatch.setattr("kerasport.featurize.reads.find_truncation", lambda *_: None)
    reads = cut_bam_inside_a_block(whole, tmp_path / "cut.bam")
    assert featurize(reads, whole["ref"], tmp_path / "out.npz") == 2
    err = capsys.readouterr().err
    assert (f"cannot read BAM {reads} at chr1:1-{LENGTH:,}: truncated file, "
            f"after the read at {last_held(reads, whole['ref'])}") in err, err
    assert "Closing failed" not in err and not (tmp_path / "out.npz").exists()


def test_an_error_reported_only_on_closing_is_raised_unless_another_is_on_its_way() -> None:
    class Failing:
        def close(self) -> None:
            raise OSError(0, "Closing failed")

    close = _closer(Failing(), "BAM x.bam", LastRead())  # type: ignore[arg-type]
    with pytest.raises(FeaturizeError, match=r"BAM x.bam is truncated or damaged: .*Closing "
                       r"failed.*after the read at none"):
        close(None, None, None)
    assert close(FeaturizeError, FeaturizeError("first"), None) is False


@pytest.mark.shared_data
@pytest.mark.skipif(not SHARED_BAM.exists(), reason=f"no shared test data at {DATA}")
def test_the_shared_bam_cut_in_half_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """What the tester saw: the real reads, a tile past the cut ("Closing failed" before)."""
    blocks = bgzf_blocks(SHARED_BAM.read_bytes())
    reads = copy_cut(SHARED_BAM, tmp_path / "cut.bam", blocks[len(blocks) // 2], BGZF_EOF)
    out = tmp_path / "out.npz"
    assert featurize(reads, SHARED_REF, out, "chr20:10,000,001-10,100,000") == 2
    err = capsys.readouterr().err
    assert f"BAM {reads} is truncated" in err
    assert f"the last read it holds is at {last_held(reads, SHARED_REF)}." in err, err
    assert not out.exists()
