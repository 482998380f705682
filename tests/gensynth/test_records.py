import json

import pytest

from gensynth.journal import Journal
from gensynth.records import Candidate, Decisions
from gensynth.requirements import judge, parse_requirements

# a search candidate as journals stored it before tasks, scales and rewrites existed
OLD = {"key": "0:1", "cycle": 0, "seed": 7, "arch": "abc", "decisions": {"widths": {"0": 8}, "dropped": [], "picks": {}},
       "final": False, "val_acc": 0.8, "macs": 50000, "params": 1200, "memory": 4096, "latency": 0.001,
       "accuracy": 0.8, "netscore": 60.0, "density": 66.0, "utility": 60.0, "meets": True, "missed": [],
       "violation": 0.0, "wall_s": 3.0, "importance": {"0": [0.1] * 8}}


def test_a_record_from_before_tasks_reads_as_classification():
    r = Candidate.from_json(OLD)
    assert (r.task, r.metric, r.score, r.test_score) == ("classify", "acc", 0.8, None)
    assert r.searched and r.decisions.widths == {"0": 8} and r.decisions.scales == {} and r.decisions.strided == ()
    assert r.value("acc") == 0.8 and r.value("macs") == 50000


def test_json_roundtrip_keeps_the_flat_journal_format():
    final = Candidate(key="final:abc", cycle=1, seed=3, arch="abc", final=True, task="segment", metric="miou",
                      val={"miou": 0.5, "pixel_acc": 0.9}, test={"miou": 0.4, "pixel_acc": 0.8}, macs=10,
                      decisions=Decisions(widths={"1": 4}, factorized=("conv",)), missed=("macs<=5",), name="fermi-1")
    saved = json.loads(json.dumps(final.to_json()))
    assert saved["score"] == saved["val_miou"] == 0.5 and saved["test_score"] == saved["test_miou"] == 0.4
    assert saved["decisions"]["factorized"] == ["conv"] and saved["missed"] == ["macs<=5"]
    assert Candidate.from_json(saved) == final
    assert not final.searched and final.summary()["test_pixel_acc"] == 0.8 and "decisions" not in final.summary()


def test_the_journal_reads_old_records_and_filters_searched_ones(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite", create=True)
    journal.db.execute("INSERT INTO candidates VALUES (?, ?, ?, ?, ?)", ("0:1", 0, 7, "abc", json.dumps(OLD)))
    journal.add_candidate(Candidate(key="prototype", cycle=-1, seed=0, arch="p", final=True, val={"acc": 0.9}))
    journal.add_candidate(Candidate(key="final:abc", cycle=0, seed=7, arch="abc", final=True, val={"acc": 0.85}))
    assert [r.key for r in journal.candidates()] == ["0:1", "prototype", "final:abc"]
    assert [r.key for r in journal.searched()] == ["0:1"]
    assert journal.candidate("prototype").score == 0.9
    journal.close()


@pytest.mark.parametrize("reqs, meets, missed", [
    (["macs<=60K", "acc>=0.7"], True, ()),
    (["macs<=40K", "acc>=0.9", "latency<=2ms"], False, ("macs<=40K", "acc>=0.9")),
    (["miou>=0.5"], True, ()),  # a metric the record does not hold is not judged
])
def test_requirements_judge_a_record_through_the_registry(reqs, meets, missed):
    verdict = judge(parse_requirements(reqs), Candidate.from_json(OLD).value)
    assert (verdict.meets, verdict.missed) == (meets, missed)
    assert (verdict.violation > 0) == (not meets)
