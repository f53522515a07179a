"""action_tx.bench.matching: the evidence digest a matches archive keeps, and the suite's resume
matching again an archive cut by other evidence rows (heads_eval.matched_on)."""

import numpy as np

from action_tx.bench import heads_data, heads_eval, matching
from action_tx.data import ava

EVIDENCE_ROWS = [
    ("v", 901, 0, 1, "context"),
    ("v", 901, 1, 1, "context_negative"),
    ("v", 902, 0, 1, "self"),
]


def _write_evidence(path, rows):
    with open(path, "w") as f:
        f.write("video_id,timestamp,person_id,action_id,evidence\n")
        for row in rows:
            f.write("%s,%04d,%d,%d,%s\n" % row)


def test_evidence_digest_is_of_the_rows_not_of_how_they_are_given(tmp_path):
    path = tmp_path / "evidence.csv"
    _write_evidence(path, EVIDENCE_ROWS)
    columns = list(zip(*EVIDENCE_ROWS))
    arrays = dict(
        video_id=np.array(columns[0], dtype=object),
        timestamp=np.array(columns[1]),
        person_id=np.array(columns[2]),
        action_id=np.array(columns[3]),
        evidence=np.array(columns[4], dtype=object),
    )
    digest = matching.evidence_digest(str(path))
    assert len(digest) == 16 and digest == matching.evidence_digest(arrays)
    assert matching.evidence_digest(None) == ""
    other = tmp_path / "other.csv"
    _write_evidence(other, EVIDENCE_ROWS[:1] + [("v", 901, 2, 1, "context_negative")])
    assert matching.evidence_digest(str(other)) != digest
    pooled = matching.evidence_digest([str(path), str(other)])
    assert pooled not in (digest, matching.evidence_digest([str(other), str(path)]))


def _now(split):
    """The digest of the split's evidence file as it is now (what score_seeds passes)."""
    return matching.evidence_digest([split.evidence])


def test_a_resume_matches_again_an_archive_cut_by_other_evidence(tmp_path):
    ann = tmp_path / "annotations"
    ann.mkdir()
    (ann / "ava_val.csv").write_text(
        "v,0901,0.1,0.1,0.4,0.9,1,0\nv,0901,0.5,0.1,0.9,0.9,2,1\nv,0902,0.1,0.1,0.4,0.9,1,0\n"
    )
    (ann / "ava_val_excluded_timestamps.csv").write_text("")
    _write_evidence(ann / "evidence_val.csv", EVIDENCE_ROWS)
    label_map = str(ann / "action_list.pbtxt")
    ava.write_label_map(label_map, ava.LabelMap(ids=(1, 2), names={1: "a", 2: "b"}))
    detections = tmp_path / "detections.csv"
    detections.write_text(
        "v,0901,0.1,0.1,0.4,0.9,1,0.9\nv,0901,0.5,0.1,0.9,0.9,1,0.8\nv,0902,0.1,0.1,0.4,0.9,1,0.7\n"
    )
    split = heads_data.SplitData("data0", 0, str(ann), "unused", "val")
    out = str(tmp_path / "matches.npz")
    assert not heads_eval.matched_on(out, _now(split))  # no archive yet
    heads_eval.match(out, [split], [str(detections)], label_map)
    assert heads_eval.matched_on(out, _now(split))
    kept = matching.load_matches(out)
    assert kept.evidence == matching.evidence_digest([split.evidence])
    assert "context_lookalike" in kept.by_evidence
    # The generator draws other look-alikes: same ground truth, other evidence rows.
    _write_evidence(ann / "evidence_val.csv", EVIDENCE_ROWS[:1] + EVIDENCE_ROWS[2:])
    assert not heads_eval.matched_on(out, _now(split))
    # An archive from before the digest was kept loads with "" and is matched again too.
    with np.load(out) as data:
        arrays = {k: data[k] for k in data.files if k != "evidence"}
    with open(out, "wb") as f:
        np.savez_compressed(f, **arrays)
    assert matching.load_matches(out).evidence == ""
    _write_evidence(ann / "evidence_val.csv", EVIDENCE_ROWS)
    assert not heads_eval.matched_on(out, _now(split))
    # A file cut short (a killed write) is matched again, not a crash.
    with open(out, "wb") as f:
        f.write(b"PK")
    assert not heads_eval.matched_on(out, _now(split))
