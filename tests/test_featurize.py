"""featurize: candidates, features and labels on DeepVariant's real NA12878 test reads.

Most tests share one featurization of a 20 kb sub-region (module-scoped fixtures), which
holds all of the truth set's confident intervals; the full 100 kb is featurized once, for
recall. Tests that need ../shared/data are marked `shared_data` and skip without it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pysam
import pytest

from kerasport.examples import read_examples, write_examples
from kerasport.featurize import (
    FeaturizeError,
    FeaturizeResult,
    alt_allele_subsets,
    feature_names,
    featurize,
    featurize_region,
    parse_region,
)
from kerasport.featurize import command as featurize_command
from kerasport.featurize.regions import Region, resolve_contig
from kerasport.featurize.truth import ConfidentRegions, TruthSet, allele_key

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deepvariant-testdata"
BAM = DATA / "NA12878_S1.chr20.10_10p1mb.bam"
REF = DATA / "ucsc.hg19.chr20.unittest.fasta.gz"
TRUTH = DATA / "test_nist.b37_chr20_100kbp_at_10mb.vcf.gz"
BED = DATA / "test_nist.b37_chr20_100kbp_at_10mb.bed"
FULL = "chr20:10,000,000-10,100,000"
SUB = "chr20:10,000,001-10,020,000"  # holds every confident interval of the BED

shared_data = pytest.mark.shared_data
needs_data = pytest.mark.skipif(not BAM.exists(), reason=f"no shared test data at {DATA}")

BASE = feature_names()[:12]
NAMES = feature_names()


def col(result: FeaturizeResult, name: str) -> np.ndarray:
    return result.examples.features[:, NAMES.index(name)]


@pytest.fixture(scope="module")
def labelled() -> FeaturizeResult:
    if not BAM.exists():
        pytest.skip(f"no shared test data at {DATA}")
    return featurize_region(BAM, REF, SUB, TRUTH, BED)


@pytest.fixture(scope="module")
def unlabelled() -> FeaturizeResult:
    if not BAM.exists():
        pytest.skip(f"no shared test data at {DATA}")
    return featurize_region(BAM, REF, SUB)


@pytest.fixture(scope="module")
def truth() -> TruthSet:
    if not BAM.exists():
        pytest.skip(f"no shared test data at {DATA}")
    return TruthSet(TRUTH, parse_region(FULL))


# ---------------------------------------------------------------- no data needed


def test_feature_names() -> None:
    names = feature_names(51)
    assert len(names) == 70 and len(set(names)) == 70
    assert names[:2] == ["num_reads_supports_ref", "num_reads_supports_alt"]
    assert names[12:19] == ["is_snp", "is_insertion", "is_deletion", "is_multiallelic",
                            "is_multiple_alt_alleles", "insertion_length", "deletion_length"]
    assert names[19] == "variant_allele_frequency_at_minus_25"
    assert names[44] == "variant_allele_frequency_at_plus_0"
    assert names[-1] == "variant_allele_frequency_at_plus_25"
    assert len(feature_names(11)) == 30 and len(feature_names(1)) == 20


@pytest.mark.parametrize("window", [0, 50, -3])
def test_even_or_empty_vaf_window_is_refused(window: int) -> None:
    with pytest.raises(FeaturizeError, match="positive odd"):
        feature_names(window)


def test_alt_allele_subsets_follow_deepvariant() -> None:
    assert alt_allele_subsets(1) == [(0,)]
    assert alt_allele_subsets(2) == [(0,), (1,), (0, 1)]
    assert alt_allele_subsets(3) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]


def test_parse_region() -> None:
    assert parse_region("chr20:10,000,001-10,000,100") == Region("chr20", 10_000_000, 10_000_100)
    for bad in ("chr20", "chr20:5-1", "chr20:0-10", "chr20:a-b"):
        with pytest.raises(FeaturizeError, match="region"):
            parse_region(bad)


def test_contig_names_with_and_without_chr() -> None:
    assert resolve_contig("chr20", ["20", "21"], "x") == "20"
    assert resolve_contig("20", ["chr20"], "x") == "chr20"
    assert resolve_contig("20", ["20", "chr20"], "x") == "20"
    with pytest.raises(FeaturizeError, match="has no contig 'chr7'"):
        resolve_contig("chr7", ["chr20"], "BAM x")


def test_allele_keys_ignore_padding() -> None:
    assert allele_key(99, "CA", "C") == allele_key(100, "A", "")
    assert allele_key(99, "CAT", "CT") == allele_key(99, "CA", "C")
    assert allele_key(5, "G", "T") == (5, "G", "T")


def test_truth_labels_count_copies_of_the_subset(tmp_path: Path) -> None:
    """Multi-allelic truth: 1/2 is HET for each alt alone and HOM_ALT for the pair."""
    vcf = tmp_path / "t.vcf"
    vcf.write_text(
        "##fileformat=VCFv4.2\n##contig=<ID=20,length=1000>\n"
        '##FILTER=<ID=LowQual,Description="Low quality">\n'
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS\n"
        "20\t100\t.\tA\tAA,AG\t.\tPASS\t.\tGT\t1/2\n"
        "20\t200\t.\tC\tT\t.\tPASS\t.\tGT\t1/1\n"
        "20\t300\t.\tG\tC\t.\tLowQual\t.\tGT\t1/1\n"
    )
    truth = TruthSet(vcf, parse_region("chr20:1-1000"))  # no index, `chr` on one side only

    class Site:  # the two attributes a label needs
        def __init__(self, start: int, ref: str, alts: list[str]) -> None:
            self.start, self.ref, self.alts = start, ref, alts

    site = Site(99, "A", ["AG", "AA", "AC"])
    labels = [truth.label(site, s) for s in alt_allele_subsets(3)]  # type: ignore[arg-type]
    assert labels == [1, 1, 0, 2, 1, 1]
    assert truth.label(Site(199, "C", ["T"]), (0,)) == 2  # type: ignore[arg-type]
    assert truth.label(Site(199, "C", ["G"]), (0,)) == 0  # type: ignore[arg-type]
    assert truth.label(Site(299, "G", ["C"]), (0,)) == 0  # type: ignore[arg-type] # filtered


def test_confident_regions_need_whole_span(tmp_path: Path) -> None:
    bed = tmp_path / "c.bed"
    bed.write_text("track x\n20\t100\t200\n20\t200\t250\n20\t400\t500\n")
    regions = ConfidentRegions(bed, "chr20")
    assert regions.contains(100, 101) and regions.contains(150, 240)  # merged intervals
    assert not regions.contains(99, 101) and not regions.contains(249, 260)
    assert not regions.contains(300, 301)


def test_missing_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FeaturizeError, match=r"reads \(BAM/CRAM\) .* no such file"):
        featurize(tmp_path / "none.bam", tmp_path / "none.fa", "chr20:1-10")
    with pytest.raises(FeaturizeError, match="need a truth VCF"):
        featurize(tmp_path / "none.bam", tmp_path / "none.fa", "chr20:1-10",
                  confident_bed=tmp_path / "c.bed")
    with pytest.raises(FeaturizeError, match="positive odd"):
        featurize(tmp_path / "none.bam", tmp_path / "none.fa", "chr20:1-10", vaf_window=4)


# ---------------------------------------------------------------- on the real reads


@shared_data
@needs_data
def test_candidate_count_is_sane(unlabelled: FeaturizeResult) -> None:
    # NA12878 has ~1 variant per 1-2 kb; with sequencing errors DeepVariant's thresholds
    # keep a few times that. 20 kb here holds 63 truth variants.
    candidates = unlabelled.candidates
    assert 60 <= len(candidates) <= 300
    starts = [c.start for c in candidates]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    assert all(10_000_000 <= c.start < 10_020_000 for c in candidates)
    assert len(unlabelled.examples) == sum(len(alt_allele_subsets(len(c.alts)))
                                           for c in candidates)
    assert unlabelled.examples.labels is None


@shared_data
@needs_data
def test_confident_truth_variants_are_found_and_labelled(labelled: FeaturizeResult,
                                                         truth: TruthSet) -> None:
    confident = ConfidentRegions(BED, "chr20")
    found = {allele_key(c.start, c.ref, alt): c for c in labelled.candidates for alt in c.alts}
    wanted = [r for r in truth.records
              if confident.contains(r.keys[0][0], r.keys[0][0] + max(len(r.keys[0][1]), 1))]
    snps = [r for r in wanted if all(len(k[1]) == len(k[2]) == 1 for k in r.keys)]
    assert len(snps) >= 40
    assert sum(all(k in found for k in r.keys) for r in snps) >= 0.95 * len(snps)
    assert sum(all(k in found for k in r.keys) for r in wanted) >= 0.9 * len(wanted)
    # ...and each found biallelic truth variant carries its truth genotype as label
    by_site = {(i.pos, tuple(i.alts)): i.label for i in labelled.infos}
    for record in wanted:
        if len(record.keys) == 1 and record.keys[0] in found:
            candidate = found[record.keys[0]]
            alt = next(a for a in candidate.alts
                       if allele_key(candidate.start, candidate.ref, a) == record.keys[0])
            assert by_site[(candidate.pos, (alt,))] == sum(g > 0 for g in record.genotype)


@shared_data
@needs_data
def test_class_balance(labelled: FeaturizeResult, truth: TruthSet) -> None:
    labels = labelled.examples.labels
    assert labels is not None and len(labels) == len(labelled.examples)
    counts = np.bincount(labels, minlength=3)
    assert (counts > 0).all(), counts
    # in GIAB's confident regions nearly every candidate is a real variant; NA12878 has
    # more HOM_ALT than HET calls in this stretch (33+3 vs 12+1 in the truth set)
    assert counts[0] <= 0.3 * counts.sum()
    assert counts[2] > counts[1]
    # every example lies in a confident interval
    confident = ConfidentRegions(BED, "chr20")
    assert all(confident.contains(c.start, c.end) for c in labelled.candidates)


@shared_data
@needs_data
def test_feature_values_are_in_range(unlabelled: FeaturizeResult) -> None:
    x = unlabelled.examples
    assert x.features.dtype == np.int64 and x.features.shape[1] == 70
    assert x.feature_names == NAMES
    r = unlabelled
    assert (x.features >= 0).all()
    np.testing.assert_array_equal(col(r, "alt_indices_depth"),
                                  col(r, "num_reads_supports_ref")
                                  + col(r, "num_reads_supports_alt"))
    assert (col(r, "total_depth") >= col(r, "alt_indices_depth")).all()
    assert (col(r, "num_reads_supports_alt") >= 2).all()  # candidate threshold
    percents = [n for n in NAMES if "frequency" in n or "strand_ratio" in n]
    assert all((x.features[:, NAMES.index(n)] <= 100).all() for n in percents)
    assert (col(r, "variant_allele_frequency") <= col(r, "alt_indices_variant_allele_frequency")
            ).all()
    for name in ("ref_mapping_quality", "alt_mapping_quality"):
        assert (col(r, name) <= 60).all()  # BWA's maximum MAPQ
    for name in ("ref_base_quality", "alt_base_quality"):
        assert (col(r, name) <= 93).all()
    assert (col(r, "alt_mapping_quality") >= 5).all() and (col(r, "alt_base_quality") >= 10).all()
    flags = x.features[:, 12:17]
    assert np.isin(flags, [0, 1]).all()
    assert (flags[:, :3].sum(axis=1) <= 1).all()
    single = col(r, "is_multiple_alt_alleles") == 0  # a pair may mix an insertion and a deletion
    np.testing.assert_array_equal(col(r, "is_insertion")[single] == 1,
                                  col(r, "insertion_length")[single] > 0)
    np.testing.assert_array_equal(col(r, "is_deletion")[single] == 1,
                                  col(r, "deletion_length")[single] > 0)
    assert col(r, "is_snp").sum() > 0.6 * len(x)  # SNPs dominate
    # the candidate's own position sees its alleles
    assert (col(r, "variant_allele_frequency_at_plus_0") > 0).all()
    np.testing.assert_array_equal(x.positions, [i.pos for i in unlabelled.infos])


@shared_data
@needs_data
def test_same_output_twice_and_whatever_the_split(unlabelled: FeaturizeResult,
                                                  tmp_path: Path) -> None:
    again = featurize(BAM, REF, SUB)
    np.testing.assert_array_equal(again.features, unlabelled.examples.features)
    np.testing.assert_array_equal(again.positions, unlabelled.examples.positions)
    halves = [featurize(BAM, REF, "chr20:10,000,001-10,010,000"),
              featurize(BAM, REF, "chr20:10,010,001-10,020,000")]
    np.testing.assert_array_equal(np.concatenate([h.features for h in halves]), again.features)
    a = write_examples(again, tmp_path / "a.tfrecord.gz").read_bytes()
    b = write_examples(unlabelled.examples, tmp_path / "b.tfrecord.gz").read_bytes()
    assert a == b


def _renamed_inputs(tmp_path: Path, region: Region) -> tuple[Path, Path, Path]:
    """BAM (reads of `region` only), truth VCF and BED with the contig called `20`."""
    with pysam.AlignmentFile(str(BAM)) as source:
        header = source.header.to_dict()
        header["SQ"] = [dict(sq, SN=sq["SN"].removeprefix("chr")) for sq in header["SQ"]]
        bam = tmp_path / "renamed.bam"
        with pysam.AlignmentFile(str(bam), "wb", header=header) as out:
            for read in source.fetch(region.contig, region.start, region.end):
                out.write(read)
    pysam.index(str(bam))
    with pysam.VariantFile(str(TRUTH)) as source:
        lines = str(source.header).replace("ID=chr", "ID=")
        body = [str(r).removeprefix("chr") for r in source.fetch("chr20", region.start - 1000,
                                                                  region.end + 1000)]
    vcf = tmp_path / "renamed.vcf"
    vcf.write_text(lines + "".join(body))
    bed = tmp_path / "renamed.bed"
    bed.write_text(BED.read_text().replace("chr20", "20"))
    return bam, vcf, bed


@shared_data
@needs_data
def test_contig_named_20_gives_the_same_examples(tmp_path: Path) -> None:
    text = "chr20:10,004,001-10,009,000"
    region = parse_region(text)
    bam, vcf, bed = _renamed_inputs(tmp_path, region)
    expected = featurize(BAM, REF, text, TRUTH, BED)
    assert len(expected) > 5
    for name in (text, text.removeprefix("chr")):  # either spelling of the region works
        got = featurize(bam, REF, name, vcf, bed)
        np.testing.assert_array_equal(got.features, expected.features)
        np.testing.assert_array_equal(got.labels, expected.labels)


@shared_data
@needs_data
def test_unknown_contig_and_unindexed_bam(tmp_path: Path) -> None:
    with pytest.raises(FeaturizeError, match="has no contig 'chr99'"):
        featurize(BAM, REF, "chr99:1-100")
    (tmp_path / "x.bam").write_bytes(BAM.read_bytes())
    with pytest.raises(FeaturizeError, match="no index"):
        featurize(tmp_path / "x.bam", REF, "chr20:10,000,001-10,000,100")


@shared_data
@needs_data
def test_command_writes_labelled_examples(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    featurize_command.register(parser.add_subparsers(dest="command"))
    out = tmp_path / "train.npz"
    args = parser.parse_args(["featurize", str(BAM), "--ref", str(REF), "--region",
                              "chr20:10,001,001-10,003,000", "--truth", str(TRUTH),
                              "--confident", str(BED), "--vaf-window", "11", "-o", str(out)])
    assert args.func(args) == 0
    back = read_examples(out)
    assert back.features.shape[1] == 30 and back.feature_names == feature_names(11)
    assert back.labels is not None and len(back.labels) == len(back) > 0
    assert back.positions is not None
    assert "examples x 30 features" in capsys.readouterr().out


@shared_data
@needs_data
def test_command_refuses_unknown_output_before_working(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    featurize_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["featurize", str(BAM), "--ref", str(REF), "--region",
                              FULL, "-o", str(tmp_path / "x.parquet")])
    with pytest.raises(ValueError, match="unknown examples format"):
        args.func(args)


@shared_data
@needs_data
def test_full_region_is_fast_and_finds_the_truth(truth: TruthSet) -> None:
    import time

    started = time.perf_counter()
    result = featurize_region(BAM, REF, FULL)
    assert time.perf_counter() - started < 20
    found = {allele_key(c.start, c.ref, alt) for c in result.candidates for alt in c.alts}
    recalled = sum(all(k in found for k in r.keys) for r in truth.records)
    assert recalled >= 0.95 * len(truth.records)  # misses: long repeat indels
    assert 150 <= len(result.candidates) <= 1000


# ---------------------------------------------------------------- CRAM input


def _write_cram(path: Path, region: Region) -> Path:
    """A CRAM of the shared BAM's reads around `region`, encoded against REF, and its .crai.

    Its header keeps only the contig REF has: htslib then uses REF as the external reference
    and writes its @SQ M5 tag, as a real pipeline's CRAM has. (With the BAM's 25 hg19 contigs
    it could not find the others in REF and would embed references instead.) Mates on other
    contigs lose their mate's contig, which no feature reads.
    """
    pad = 1000  # reads a tile's padded pileup can reach beyond the region
    with pysam.AlignmentFile(str(BAM)) as source:
        header = source.header.to_dict()
        header["SQ"] = [sq for sq in header["SQ"] if sq["SN"] == region.contig]
        kept = pysam.AlignmentHeader.from_dict(header)
        with pysam.AlignmentFile(str(path), "wc", header=kept,
                                 reference_filename=str(REF)) as out:
            for read in source.fetch(region.contig, region.start - pad, region.end + pad):
                fields = read.to_dict()
                if fields["next_ref_name"] not in ("=", "*", region.contig):
                    fields["next_ref_name"], fields["next_ref_pos"] = "*", "0"
                out.write(pysam.AlignedSegment.from_dict(fields, kept))
    pysam.index(str(path))
    return path


@pytest.fixture(scope="module")
def cram(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BAM.exists():
        pytest.skip(f"no shared test data at {DATA}")
    return _write_cram(tmp_path_factory.mktemp("cram") / "reads.cram", parse_region(SUB))


@shared_data
@needs_data
def test_cram_gives_the_same_examples_as_the_bam(cram: Path, unlabelled: FeaturizeResult,
                                                 tmp_path: Path) -> None:
    with pysam.AlignmentFile(str(cram), "rc", reference_filename=str(REF)) as reads:
        m5 = [sq.get("M5") for sq in reads.header.to_dict()["SQ"]]
    assert m5 == ["d56007d0cc776ca9c0e4f218060eba81"]  # decoded against REF, not embedded
    got = featurize_region(cram, REF, SUB)
    assert len(got.examples) == len(unlabelled.examples) > 60
    assert np.array_equal(got.examples.features, unlabelled.examples.features)
    assert np.array_equal(got.examples.positions, unlabelled.examples.positions)
    assert got.infos == unlabelled.infos
    # The format comes from the contents: a CRAM named .bam (index beside it) still opens.
    misnamed = tmp_path / "reads.bam"
    misnamed.symlink_to(cram)
    (tmp_path / "reads.bam.crai").symlink_to(cram.with_suffix(".cram.crai"))
    small = "chr20:10,004,001-10,006,000"
    np.testing.assert_array_equal(featurize(misnamed, REF, small).features,
                                  featurize(BAM, REF, small).features)


def _copy_of_reference(path: Path, edit: Callable[[str], str], name: str = "chr20") -> Path:
    """REF's chr20, changed by `edit` and called `name`, as a plain FASTA with its .fai."""
    with pysam.FastaFile(str(REF)) as fasta:
        sequence = edit(fasta.fetch("chr20"))
    path.write_text(f">{name}\n{sequence}\n")
    pysam.faidx(str(path))
    return path


@pytest.fixture(scope="module")
def changed_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """REF with one base of SUB changed: same length, another M5."""
    if not BAM.exists():
        pytest.skip(f"no shared test data at {DATA}")

    def one_base_changed(sequence: str) -> str:
        at = 10_005_000
        return sequence[:at] + ("C" if sequence[at] in "aA" else "A") + sequence[at + 1:]

    return _copy_of_reference(tmp_path_factory.mktemp("ref") / "changed.fa", one_base_changed)


@shared_data
@needs_data
def test_cram_against_another_reference_is_refused(cram: Path, changed_reference: Path,
                                                   tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    featurize_command.register(parser.add_subparsers(dest="command"))
    changed = changed_reference
    shorter = _copy_of_reference(tmp_path / "shorter.fa", lambda s: s[:10_100_000])
    renamed = _copy_of_reference(tmp_path / "renamed.fa", lambda s: s, name="20")
    expected = {
        renamed: r"contig chr20 is called 20 in the FASTA; pass the FASTA the CRAM was made with",
        changed: r"contig chr20 differs in the bases that chr20:10,000,001-10,020,000 needs: "
        r"the reads at chr20:[\d,]+-[\d,]+ \(one CRAM slice\) were encoded against bases with "
        r"MD5 [0-9a-f]{32}, but those bases in the FASTA have MD5 [0-9a-f]{32}; for the whole "
        r"contig, @SQ M5 d56007d0cc776ca9c0e4f218060eba81 in the CRAM's header \(UR "
        r".*unittest\.fasta\.gz\) but M5 [0-9a-f]{32} in the FASTA; pass the FASTA",
        shorter: r"contig chr20 is 63,025,520 bp in the CRAM's header \(@SQ LN\) but chr20 is "
        r"10,100,000 bp in the FASTA",
    }
    out = tmp_path / "out" / "examples.npz"
    out.parent.mkdir()
    for fasta, message in expected.items():
        args = parser.parse_args(["featurize", str(cram), "--ref", str(fasta), "--region", SUB,
                                  "-o", str(out)])
        with pytest.raises(FeaturizeError, match=message) as info:
            args.func(args)
        assert "was not written against reference" in str(info.value)
        assert list(out.parent.iterdir()) == []  # nothing written, not even a partial file


@shared_data
@needs_data
def test_cram_without_index_or_reference_is_clear(cram: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.cram"
    bare.symlink_to(cram)
    with pytest.raises(FeaturizeError, match=r"CRAM .*bare.cram has no index \(\.crai\): run "
                                             r"`samtools index .*` \(or `pysam.index"):
        featurize(bare, REF, SUB)
    with pytest.raises(FeaturizeError, match=r"none.fa: no such file \(a CRAM's reads are "
                                             r"decoded against it\)"):
        featurize(cram, tmp_path / "none.fa", SUB)


@shared_data
@needs_data
def test_cram_decode_failure_names_file_and_place(cram: Path, changed_reference: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the header check (a CRAM without M5 tags), htslib's own slice-MD5 failure, a
    bare "truncated file", still comes out naming the CRAM, the place and the likely cause."""
    from kerasport.featurize import core

    monkeypatch.setattr(core, "check_cram_reference", lambda *args: None)
    with pytest.raises(FeaturizeError, match=r"cannot read CRAM .*reads.cram at chr20:[\d,]+-"
                                             r"[\d,]+: .*changed.fa the reference it was"):
        featurize(cram, changed_reference, SUB)
