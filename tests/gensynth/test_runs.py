"""Nothing a user made is lost: run folders are claimed, journals validated, resumes explicit (issue 17)."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from compiler.diagnostics import NetError
from gensynth.config import SynthConfig, run_config
from gensynth.feasibility import check_feasible
from gensynth.journal import JOURNAL, Journal
from gensynth.loop import Run, synthesize
from gensynth.requirements import parse_requirements
from gensynth.space import search_space
from netdsl.cli.main import main
from tests.gensynth.synth_fixtures import TINY_NET
from tests.gensynth.test_loop import config, tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    """One small finished run, made on the command line with a requirement nobody meets: exit status 3."""
    root = tmp_path_factory.mktemp("finished")
    (root / "tiny.net").write_text(TINY_NET)
    code = main(["synth", str(root / "tiny.net"), "--data", data, "--req", "macs<=60K", "--req", "acc>=0.999",
                 "--cycles", "1", "--per-cycle", "2", "--prototype-epochs", "1", "--images", "160",
                 "--final-epochs", "1", "--finalists", "1", "--device", "cpu", "--workers", "1",
                 "--out", str(root / "run"), "--json"])
    assert code == 3
    return root / "run"


def copy_run(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def test_a_damaged_journal_stops_the_resume_and_keeps_every_file(finished, tmp_path, data):
    for damage, message in [
        (lambda out: (out / JOURNAL).write_bytes(b""), "the file is empty"),
        (lambda out: (out / (JOURNAL + "-wal")).write_bytes(b"garbage" * 100), "not a SQLite write-ahead log"),
        (lambda out: (out / JOURNAL).write_bytes(b"SQLite format 3\0" + b"\xff" * 5000), "SQLite cannot read it"),
    ]:
        out = copy_run(finished, tmp_path / message.replace(" ", "_"))
        weights = (out / "prototype.safetensors").read_bytes()
        damage(out)
        with pytest.raises(NetError, match=f"{JOURNAL} is damaged: .*{message}") as info:
            synthesize(tiny(), config(data), out, resume=True, explicit=set())
        assert "start a new run with another --out" in info.value.notes[0]
        assert (out / "prototype.safetensors").read_bytes() == weights


def test_a_journal_that_lost_its_records_is_not_trusted(finished, tmp_path, data):
    out = copy_run(finished, tmp_path)
    db = sqlite3.connect(out / JOURNAL)
    db.execute("DELETE FROM candidates")  # as if the -wal holding them were gone
    db.execute("DELETE FROM meta WHERE key='prototype_weights'")
    db.commit()
    db.close()
    weights = (out / "prototype.safetensors").read_bytes()
    with pytest.raises(NetError, match="has no record of prototype.safetensors.*lost records"):
        synthesize(tiny(), config(data), out, resume=True, explicit=set())
    assert (out / "prototype.safetensors").read_bytes() == weights
    db = sqlite3.connect(out / JOURNAL)
    db.execute("DELETE FROM meta WHERE key='config'")
    db.commit()
    db.close()
    with pytest.raises(NetError, match="holds no 'config'"):
        synthesize(tiny(), config(data), out, resume=True, explicit=set())


def test_a_journal_record_or_settings_that_cannot_be_read(tmp_path):
    journal = Journal(tmp_path / JOURNAL, create=True)
    for key in ("prototype_hash", "network"):
        journal.set_meta(key, "x")
    stored = SynthConfig(data="x", requirements=[]).to_json()
    del stored["budget"]
    journal.set_meta("config", stored)
    journal.db.execute("INSERT INTO candidates VALUES ('0:0', 0, 1, 'a', '{not json')")
    journal.close()
    with pytest.raises(NetError, match="record '0:0' is not JSON"):
        Journal(tmp_path / JOURNAL)
    db = sqlite3.connect(tmp_path / JOURNAL)
    db.execute("DELETE FROM candidates")
    db.commit()
    db.close()
    with pytest.raises(NetError, match="its run settings cannot be read .*budget"):
        run_config(tmp_path, SynthConfig(data="x", requirements=[]))


def test_a_run_that_cannot_start_leaves_nothing_behind(tmp_path, data):
    for cfg, message in [(config(data, requirements=["macs<=100"]), "cannot be met: the smallest"),
                         (config("npz:" + str(tmp_path / "missing.npz")), "not found"),
                         (config(data, prototype_weights=str(tmp_path / "w.pt")), "weights file not found")]:
        with pytest.raises(NetError, match=message):
            synthesize(tiny(), cfg, tmp_path / "run")
        assert not (tmp_path / "run").exists()


def test_a_journal_of_a_run_that_did_no_work_does_not_block_the_next(tmp_path, data):
    out = tmp_path / "run"
    out.mkdir()
    stale = Run(out, tiny(), config(data), resume=False)
    stale.open()  # the journal a run killed while training its prototype leaves: settings, no record
    stale.journal.close()
    run = Run(out, tiny(), config(data, cycles=1), resume=False)
    run.open()  # replaced, not "already holds a synthesis run"
    assert run.journal.get_meta("config")["cycles"] == 1
    run.journal.close()


def test_resume_refuses_a_changed_setting_and_reports_the_ones_it_may_change(finished, data):
    stored = run_config(finished, config(data), explicit=set())[0]  # nothing asked for: the run's own settings
    changed = SynthConfig.from_json(stored.to_json())
    changed.requirements = ["macs<=50K"]
    with pytest.raises(NetError, match="requirements differ") as info:
        run_config(finished, changed, explicit={"requirements"})
    assert any("the run has ['macs<=60K', 'acc>=0.999']" in n for n in info.value.notes)
    faster = SynthConfig.from_json(stored.to_json())
    faster.workers = 2
    resumed, notes = run_config(finished, faster, explicit={"workers"})
    assert resumed.workers == 2 and notes == ["workers: 2 (the run had 1)"]
    resumed, notes = run_config(finished, changed, explicit=set())  # not asked for: the run's own, no error
    assert resumed.requirements == stored.requirements


def test_lower_bounds_are_checked_against_the_largest_network(tmp_path, data):
    def feasible(requirement: str) -> None:
        cfg = config(data, requirements=[requirement])
        check_feasible(search_space(tiny()), parse_requirements(cfg.requirements), cfg)

    feasible("params>=3K")
    with pytest.raises(NetError, match="the largest network the generator can reach .* has params = 4,"):
        feasible("params>=50K")


def test_generate_names_its_files_apart_and_never_claims_what_it_did_not_measure(finished, tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["generate", str(finished / "generator.json"), "--seed", "1", "--count", "2", "-o", str(out),
                 "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["networks"]
    assert [r["file"] for r in records] == [str(out / "seed-1.net"), str(out / "seed-2.net")]
    assert all(r["meets"] is None and r["unmeasured"] == ["acc>=0.999"] for r in records)
    assert main(["generate", str(finished / "generator.json"), "-o", str(out)]) == 0
    assert "not measured" in capsys.readouterr().out


@pytest.mark.parametrize("edit, message", [
    (lambda g: g.update(channels="x"), "'channels' must be an object of lists"),
    (lambda g: g["channels"].update({k: v[:-1] for k, v in g["channels"].items()}), "probabilities, the prototype"),
    (lambda g: g.update(cycle="3"), "'cycle' must be a whole number"),
    (lambda g: g.update(weights="../../etc/passwd"), "'weights' must be a file name"),
])
def test_a_hand_edited_generator_is_refused(finished, tmp_path, capsys, edit, message):
    doc = json.loads((finished / "generator.json").read_text())
    edit(doc)
    (tmp_path / "generator.json").write_text(json.dumps(doc))
    assert main(["generate", str(tmp_path / "generator.json"), "-o", str(tmp_path / "gen")]) == 2
    assert message in capsys.readouterr().err


def test_generate_train_with_damaged_prototype_weights(finished, tmp_path, capsys, data):
    run = copy_run(finished, tmp_path)
    weights = run / "prototype.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert main(["generate", str(run / "generator.json"), "-o", str(tmp_path / "gen"), "--train", "--data", data,
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "cannot read weights" in err and "Traceback" not in err


def test_resume_on_the_command_line_says_what_it_keeps_and_what_changed(finished, tmp_path, capsys, data):
    out = copy_run(finished, tmp_path)
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    assert main(["synth", str(net), "--resume", str(out), "--req", "macs<=50K", "--data", data]) == 2
    err = capsys.readouterr().err
    assert "requirements differ" in err and "the run has ['macs<=60K', 'acc>=0.999']" in err
    assert main(["synth", str(net), "--resume", str(out), "--workers", "2", "--device", "cpu"]) == 3  # nothing left
    err = capsys.readouterr().err
    assert "resuming with the run's own settings" in err and "changed on resume: workers: 2 (the run had 1)" in err


def test_synth_out_that_is_a_file(tmp_path, data):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NetError, match="is a file"):
        synthesize(tiny(), config(data), tmp_path / "file")
