import json
import time

import pytest

from compiler.diagnostics import NetError
from compiler.printer import print_network
from gensynth import inquisitor as inquisitor_module
from gensynth import loop as synth_module
from gensynth.generator import GeneratorState
from gensynth.inquisitor import Budget, fine_tune_config
from gensynth.loop import SynthConfig, synthesize
from netdsl.cli.main import main
from netdsl.loader import load_network_text
from tests.gensynth.synth_fixtures import TINY_NET, journaled, kill_9_after, processes_naming

REQS = ["macs<=60K", "acc>=0.3"]


def config(data, **kw) -> SynthConfig:
    budget = Budget(images=160, epochs=1, final_epochs=2, batch_size=32, lr=0.05, final_lr=0.05, probe_images=64,
                    latency_seconds=0.2, device="cpu")
    base = dict(data=data, requirements=REQS, cycles=2, per_cycle=2, budget=budget, prototype_epochs=2, finalists=1)
    base.update(kw)
    return SynthConfig(**base)


def tiny():
    return load_network_text(TINY_NET, "tiny.net")


def test_whole_loop_meets_structural_requirements_and_writes_the_run(tmp_path, data):
    result = synthesize(tiny(), config(data), tmp_path / "run")
    out = result.out
    for name in ("generator.json", "journal.sqlite", "report.md", "pareto.png", "prototype.safetensors",
                 "fermi-1.net", "fermi-1.safetensors"):
        assert (out / name).exists(), name
    assert len(result.candidates) == 4
    assert all(r.macs <= 60e3 for r in result.candidates + result.finals)
    assert result.prototype.macs > 60e3
    final = result.finals[0]
    assert 0 <= final.test["acc"] <= 1 and final.val["acc"] > 0.3
    state = GeneratorState.load(out / "generator.json")
    assert state.cycle == 2 and state.requirements == REQS
    report = (out / "report.md").read_text()
    assert "prototype" in report and "fermi-1" in report and "NetScore" in report
    # the fermi file is a real network
    from netdsl.loader import load_network
    assert load_network(str(out / "fermi-1.net")).graph["name"] == "Fermi1"


def test_resume_continues_without_redoing_candidates(tmp_path, data, monkeypatch):
    calls = []
    real = inquisitor_module.inquire

    def counting(task, **held):
        calls.append(task.key)
        return real(task, **held)

    monkeypatch.setattr(synth_module, "inquire", counting)
    monkeypatch.setattr(inquisitor_module, "inquire", counting)

    class CrashError(Exception):
        pass

    seen = []

    def crash_after_three(kind, payload):
        if kind == "candidate":
            seen.append(payload.key)
            if len(seen) == 3:
                raise CrashError

    with pytest.raises(CrashError):
        synthesize(tiny(), config(data), tmp_path / "run", on_event=crash_after_three)
    before = {k for k in calls if ":" in k and not k.startswith("final")}
    assert before == {"0:0", "0:1", "1:0"}
    calls.clear()
    result = synthesize(tiny(), config(data), tmp_path / "run", resume=True)
    searched = [k for k in calls if k not in ("prototype",) and not k.startswith("final")]
    assert searched == ["1:1"]  # only the unfinished candidate, and the prototype is not retrained
    assert "prototype" not in calls
    assert sorted(r.key for r in result.candidates) == ["0:0", "0:1", "1:0", "1:1"]


def test_existing_run_needs_resume_and_the_same_prototype(tmp_path, data):
    synthesize(tiny(), config(data, cycles=1, per_cycle=1), tmp_path / "run")
    with pytest.raises(NetError, match="already holds a synthesis run"):
        synthesize(tiny(), config(data, cycles=1, per_cycle=1), tmp_path / "run")
    other = load_network_text(TINY_NET.replace("conv(24", "conv(20"), "other.net")
    with pytest.raises(NetError, match="another prototype"):
        synthesize(other, config(data, cycles=1, per_cycle=1), tmp_path / "run", resume=True)
    with pytest.raises(NetError, match="nothing to resume"):
        synthesize(tiny(), config(data), tmp_path / "empty", resume=True)


def test_unsatisfiable_requirement_is_refused_before_training(tmp_path, data):
    start = time.perf_counter()
    with pytest.raises(NetError, match="cannot be met: the smallest network"):
        synthesize(tiny(), config(data, requirements=["macs<=100"]), tmp_path / "run")
    assert not (tmp_path / "run" / "prototype.safetensors").exists()
    assert time.perf_counter() - start < 10


def test_cli_survives_kill_9_and_resumes(tmp_path, data, capsys):
    out = tmp_path / "run"
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    args = [str(net), "--data", data, "--req", REQS[0], "--req", REQS[1], "--cycles", "2", "--per-cycle", "3",
            "--prototype-epochs", "1", "--images", "160", "--final-epochs", "1", "--finalists", "1",
            "--device", "cpu"]
    done = kill_9_after(args, out)
    assert len(done) >= 2, "the run should have journaled candidates before it was killed"
    deadline = time.monotonic() + 15
    while processes_naming(str(out)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_naming(str(out)), "the killed driver's pool workers should exit, not wait forever"
    code = main(["synth", *args, "--resume", str(out), "--json"])
    assert code == (0 if json.loads(capsys.readouterr().out)["met"] else 3)  # 3: finished, no network met them all
    after = journaled(out)
    for key, record in done:
        assert after[key] == record  # nothing finished was redone or lost
    assert {f"{c}:{i}" for c in range(2) for i in range(3)} <= set(after)


def test_bad_requirement_on_the_cli_exits_2(tmp_path, capsys):
    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    assert main(["synth", str(net), "--req", "flops<=2M", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown metric 'flops'" in err and "known metrics" in err and "Traceback" not in err


def test_results_do_not_depend_on_the_number_of_workers(tmp_path, data):
    one = synthesize(tiny(), config(data, cycles=1, per_cycle=3, workers=1), tmp_path / "one")
    # the same trained prototype (its weights seed θG's magnitude prior), evaluated in 1 or 2 processes
    weights = str(tmp_path / "one" / "prototype.safetensors")
    two = synthesize(tiny(), config(data, cycles=1, per_cycle=3, workers=2, prototype_weights=weights),
                     tmp_path / "two")
    by_key = lambda result: {r.key: (r.seed, r.arch, r.macs, r.score, r.importance)  # noqa: E731
                             for r in result.candidates}
    assert by_key(one) == by_key(two)  # to the last digit: every candidate runs on executor.THREADS threads
    assert [r.key for r in two.candidates] == ["0:0", "0:1", "0:2"]  # in index order, not completion order
    assert GeneratorState.load(one.out / "generator.json").channels == GeneratorState.load(
        two.out / "generator.json").channels


def test_distill_hands_the_trained_prototype_to_every_fine_tune(tmp_path, data, monkeypatch):
    import dataclasses

    import torch

    from compiler.backend.lower import lower_to_torch
    from compiler.backend.weights import load_weights_file

    seen = []
    real_train = inquisitor_module.train

    def spy(model, dataset, cfg, teacher=None, **kw):
        seen.append((cfg.distill, teacher))
        return real_train(model, dataset, cfg, teacher=teacher, **kw)

    monkeypatch.setattr(inquisitor_module, "train", spy)
    cfg = config(data, cycles=1, per_cycle=2)
    cfg = dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, distill=0.7))
    synthesize(tiny(), cfg, tmp_path / "run")
    assert len(seen) == 3  # two candidates and the finalist
    prototype = lower_to_torch(tiny()).eval()
    load_weights_file(prototype, str(tmp_path / "run" / "prototype.safetensors"))
    x = torch.randn(4, 1, 8, 8)
    for weight, teacher in seen:
        assert weight == 0.7
        with torch.no_grad():
            torch.testing.assert_close(teacher.eval()(x), prototype(x))


def test_distill_out_of_range_or_on_segmentation_exits_2(tmp_path, capsys):
    from tests.gensynth.tasks.task_fixtures import SEG_NET, write_mask_folder

    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    assert main(["synth", str(net), "--req", "macs<=60K", "--distill", "1.5", "--out", str(tmp_path / "a")]) == 2
    assert "--distill must be in [0, 1], got 1.5" in capsys.readouterr().err
    seg = tmp_path / "seg.net"
    seg.write_text(SEG_NET)
    spec = write_mask_folder(tmp_path / "masks", n=16)
    assert main(["synth", str(seg), "--data", spec, "--req", "macs<=1G", "--distill", "0.5",
                 "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "distillation is for classification only" in err and "Traceback" not in err


def test_search_candidates_are_scored_with_fresh_batchnorm_statistics(tmp_path, data, monkeypatch):
    calls = []
    real = inquisitor_module.recalibrate_batchnorm

    def spy(model, x, device, **kw):
        calls.append(len(x))
        return real(model, x, device, **kw)

    monkeypatch.setattr(inquisitor_module, "recalibrate_batchnorm", spy)
    cfg = config(data, cycles=1, per_cycle=2)
    synthesize(tiny(), cfg, tmp_path / "run")
    assert calls == [min(cfg.budget.bn_images, cfg.budget.images)] * 2  # the two candidates; not the finalist
    calls.clear()
    import dataclasses

    off = dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, bn_images=0))
    synthesize(tiny(), off, tmp_path / "off")
    assert calls == []


def test_finalists_can_train_from_scratch_instead_of_inheriting(tmp_path, data, monkeypatch):
    import dataclasses

    import torch
    from safetensors.torch import load_file

    starts = {}
    real_train = inquisitor_module.train

    def spy(model, dataset, cfg, teacher=None, **kw):
        if cfg.epochs == 2:  # the finalist (search candidates train one epoch)
            starts["weight"] = model.state_dict()["conv.weight"].clone()
            starts["lr"] = cfg.lr
        return real_train(model, dataset, cfg, teacher=teacher, **kw)

    monkeypatch.setattr(inquisitor_module, "train", spy)
    base = config(data, cycles=1, per_cycle=1)
    seen = {}
    for init in ("inherit", "scratch"):
        cfg = dataclasses.replace(base, budget=dataclasses.replace(base.budget, final_init=init, final_lr=None))
        result = synthesize(tiny(), cfg, tmp_path / init)
        proto = load_file(str(tmp_path / init / "prototype.safetensors"))["conv.weight"]
        final = result.finals[0]
        kept = final.decisions.widths
        seen[init] = (starts["weight"], proto, kept, starts["lr"])
    inherited, proto, _, lr = seen["inherit"]
    assert lr == 0.02  # the fine-tune rate
    assert any(torch.equal(inherited[i], proto[j]) for i in range(len(inherited)) for j in range(len(proto)))
    fresh, proto, _, lr = seen["scratch"]
    assert lr == 0.05  # the standard rate of a full training
    assert not any(torch.equal(fresh[i], proto[j]) for i in range(len(fresh)) for j in range(len(proto)))


def test_cli_options_reach_the_budget(tmp_path):
    from netdsl.cli.main import build_parser
    from netdsl.cli.synth import config_from_args

    net = tmp_path / "tiny.net"
    net.write_text(TINY_NET)
    args = build_parser().parse_args(["synth", str(net), "--req", "macs<=60K", "--final-from", "scratch",
                                      "--distill", "0.25", "--final-epochs", "13", "--search-from", "scratch"])
    budget = config_from_args(args).budget
    assert (budget.final_init, budget.distill, budget.final_epochs, budget.search_init) == ("scratch", 0.25, 13, "scratch")
    default = config_from_args(build_parser().parse_args(["synth", str(net), "--req", "macs<=60K"])).budget
    assert (default.final_init, default.distill, default.search_init) == ("inherit", 0.0, "inherit")
    assert config_from_args(build_parser().parse_args(["synth", str(net), "--factorize", "0.3"])).factorize == 0.3
    assert config_from_args(build_parser().parse_args(["synth", str(net)])).factorize == SynthConfig.factorize
    with pytest.raises(NetError, match="--factorize must be in"):
        config_from_args(build_parser().parse_args(["synth", str(net), "--factorize", "2"]))
    assert config_from_args(build_parser().parse_args(["synth", str(net), "--stride", "0.5"])).stride == 0.5
    assert config_from_args(build_parser().parse_args(["synth", str(net)])).stride == SynthConfig.stride
    with pytest.raises(NetError, match="--stride must be in"):
        config_from_args(build_parser().parse_args(["synth", str(net), "--stride", "-0.1"]))
    cfg = config_from_args(build_parser().parse_args(["synth", str(net), "--update-rate", "0.9",
                                                      "--update-temperature", "0.25"]))
    assert (cfg.update_rate, cfg.update_temperature) == (0.9, 0.25)
    for flag, value in (("--update-rate", "0"), ("--update-rate", "1.5"), ("--update-temperature", "0")):
        with pytest.raises(NetError, match=f"{flag} must be"):
            config_from_args(build_parser().parse_args(["synth", str(net), flag, value]))
    recipe = config_from_args(build_parser().parse_args(
        ["synth", str(net), "--optimizer", "adamw", "--batch-size", "32", "--augment", "--prototype-lr", "0.003",
         "--lr", "0.0005", "--final-lr", "0.001"]))
    assert (recipe.budget.optimizer, recipe.budget.batch_size, recipe.budget.augment) == ("adamw", 32, True)
    assert (recipe.prototype_lr, recipe.budget.lr, recipe.budget.final_lr) == (0.003, 0.0005, 0.001)
    assert config_from_args(build_parser().parse_args(["synth", str(net)])).budget.batch_size is None
    warm = config_from_args(build_parser().parse_args(["synth", str(net), "--warmup-epochs", "2"])).budget
    assert warm.warmup_epochs == 2.0
    # a one-epoch search fine-tune warms up over its one epoch; the finalist's over two of its ten
    assert fine_tune_config(warm, "classify", 0, final=False).warmup_epochs == 1.0
    assert fine_tune_config(warm, "classify", 0, final=True).warmup_epochs == 2.0
    with pytest.raises(NetError, match="--warmup-epochs must be at least 0"):
        config_from_args(build_parser().parse_args(["synth", str(net), "--warmup-epochs", "-1"]))
    with pytest.raises(NetError, match="--final-lr must be positive"):
        config_from_args(build_parser().parse_args(["synth", str(net), "--final-lr", "0"]))
    assert config_from_args(build_parser().parse_args(["synth", str(net), "--no-learn"])).learn is False
    assert config_from_args(build_parser().parse_args(["synth", str(net), "--screen", "8"])).screen == 8
    assert config_from_args(build_parser().parse_args(["synth", str(net)])).learn is True


def test_a_journal_from_before_strides_resumes_without_them(tmp_path):
    """A config saved before --stride existed keeps the behaviour it was run with: no strides."""
    saved = SynthConfig(data="x.npz", requirements=["macs<=60K"]).to_json()
    del saved["stride"]
    assert SynthConfig.from_json(saved).stride == 0.0
    assert SynthConfig.from_json(SynthConfig(data="x.npz", requirements=[], stride=0.25).to_json()).stride == 0.25


def test_allocation_spread_reaches_the_generator(tmp_path, data):
    """SynthConfig.allocation_spread is θG's exploration of budget splits: 0 draws every group at its learned scale."""
    result = synthesize(tiny(), config(data, allocation_spread=0.0), tmp_path / "run")
    assert GeneratorState.load(result.out / "generator.json").spread == 0.0
    drawn = [v for r in result.candidates for v in r.decisions.scales.values()]
    assert drawn and all(v == 0.0 for v in drawn)
    wide = synthesize(tiny(), config(data, allocation_spread=1.0), tmp_path / "wide")
    assert any(v != 0.0 for r in wide.candidates for v in r.decisions.scales.values())


def test_factorized_candidates_inherit_weights_and_train(tmp_path, data):
    """With --factorize 1 every first-cycle candidate is depthwise-separable, and its inherited weights work."""
    result = synthesize(tiny(), config(data, factorize=1.0), tmp_path / "run")
    first = [r for r in result.candidates if r.cycle == 0]
    assert first and all(len(r.decisions.factorized) == 2 for r in first)
    assert GeneratorState.load(result.out / "generator.json").factorize
    from netdsl.loader import load_network

    fermi = load_network(str(result.out / "fermi-1.net"))
    assert result.finals[0].val["acc"] > 0.3 and result.finals[0].macs <= 60e3  # four classes: chance 0.25
    assert sum(d["op"] == "dwconv" for _, d in fermi.nodes(data=True)) == 2  # every candidate was factorized


def test_strided_candidates_inherit_weights_and_train(tmp_path, data):
    """With --stride 1 every first-cycle candidate runs at lower resolution, and its inherited weights work."""
    result = synthesize(tiny(), config(data, stride=1.0), tmp_path / "run")
    first = [r for r in result.candidates if r.cycle == 0]
    assert first and all(len(r.decisions.strided) == 2 for r in first)  # the stem and the stage-2 conv
    assert GeneratorState.load(result.out / "generator.json").stride
    from netdsl.loader import load_network

    fermi = load_network(str(result.out / "fermi-1.net"))
    assert result.finals[0].val["acc"] > 0.3 and result.finals[0].macs <= 60e3  # four classes: chance 0.25
    assert any(d["op"] == "conv" and d["attrs"]["stride"] == 2 for _, d in fermi.nodes(data=True))


def test_search_candidates_can_train_from_scratch_too(tmp_path, data, monkeypatch):
    """--search-from scratch: a candidate's short training starts from a fresh initialisation at the standard rate."""
    import dataclasses

    import torch
    from safetensors.torch import load_file

    starts = []
    real_train = inquisitor_module.train

    def spy(model, dataset, cfg, teacher=None, **kw):
        if cfg.epochs == 1:  # a search candidate (the finalist trains two)
            starts.append((model.state_dict()["conv.weight"].clone(), cfg.lr))
        return real_train(model, dataset, cfg, teacher=teacher, **kw)

    monkeypatch.setattr(inquisitor_module, "train", spy)
    base = config(data, cycles=1, per_cycle=1)
    for init in ("inherit", "scratch"):
        starts.clear()
        cfg = dataclasses.replace(base, budget=dataclasses.replace(base.budget, search_init=init, lr=None))
        synthesize(tiny(), cfg, tmp_path / init)
        proto = load_file(str(tmp_path / init / "prototype.safetensors"))["conv.weight"]
        (weight, lr), = starts
        inherited = any(torch.equal(weight[i], proto[j]) for i in range(len(weight)) for j in range(len(proto)))
        assert (inherited, lr) == ((True, 0.02) if init == "inherit" else (False, 0.05))


def test_a_failing_candidate_is_journaled_and_the_run_goes_on(tmp_path, data, monkeypatch):
    real = inquisitor_module.inquire

    def out_of_memory_at_0_1(task, **held):
        if task.key == "0:1":
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(task, **held)

    monkeypatch.setattr(inquisitor_module, "inquire", out_of_memory_at_0_1)
    result = synthesize(tiny(), config(data, cycles=1, per_cycle=3), tmp_path / "run")
    assert [r.key for r in result.failed] == ["0:1"] and len(result.candidates) == 2 and result.finals
    assert "out of memory" in result.failed[0].error
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Failed candidates: 1" in report and "0:1 after 1 attempt(s): RuntimeError: CUDA out of memory" in report
    assert "Evaluated on: in-process" in report


def test_a_cycle_whose_candidates_all_fail_stops_the_run_and_resume_redoes_them(tmp_path, data, monkeypatch):
    real = inquisitor_module.inquire

    def broken(task, **held):
        raise RuntimeError("no space left on device")

    monkeypatch.setattr(inquisitor_module, "inquire", broken)
    with pytest.raises(NetError, match="every candidate of cycle 1 failed; the first: RuntimeError: no space"):
        synthesize(tiny(), config(data, cycles=1, per_cycle=2), tmp_path / "run")
    monkeypatch.setattr(inquisitor_module, "inquire", real)
    result = synthesize(tiny(), config(data, cycles=1, per_cycle=2), tmp_path / "run", resume=True)
    assert sorted(r.key for r in result.candidates) == ["0:0", "0:1"] and result.failed == []
    rows = journaled(tmp_path / "run")
    assert sorted(key for key in rows if key.startswith("0:")) == ["0:0", "0:1"]  # replaced: one record per key


def test_without_learning_every_cycle_draws_from_the_starting_generator(tmp_path, data):
    """learn=False (netdsl synth --no-learn) is random search in the generator's space: θG never moves, the first
    cycle is the learned run's own, and the later ones are fresh draws from θG's starting distribution."""
    import json

    from gensynth.generator import sample
    from gensynth.journal import Journal
    from gensynth.loop import candidate_seed
    from gensynth.requirements import parse_requirements
    from gensynth.space import search_space

    learned = synthesize(tiny(), config(data, cycles=3, stride=0.5), tmp_path / "learned")
    frozen = synthesize(tiny(), config(data, cycles=3, stride=0.5, learn=False), tmp_path / "frozen")
    journal = Journal(frozen.out / "journal.sqlite")
    states = [json.loads(row[0]) for row in journal.db.execute("SELECT state FROM generator ORDER BY cycle")]
    journal.close()
    assert [s["cycle"] for s in states] == [0, 1, 2, 3]
    assert all({k: v for k, v in s.items() if k != "cycle"} == {k: v for k, v in states[0].items() if k != "cycle"}
               for s in states)
    first = {r.key: r.arch for r in learned.candidates if r.cycle == 0}
    assert first == {r.key: r.arch for r in frozen.candidates if r.cycle == 0}
    start = GeneratorState.from_json(states[0])
    space, reqs = search_space(tiny()), parse_requirements(REQS)
    for r in frozen.candidates:  # every candidate is the starting generator's sample for its seed
        assert r.seed == candidate_seed(0, r.cycle, int(r.key.split(":")[1]))
        assert sample(start, space, r.seed, reqs).arch == r.arch
    assert GeneratorState.load(learned.out / "generator.json").channels != start.channels


def test_a_widened_space_fills_a_budget_above_the_prototype_with_wider_layers(tmp_path, data):
    """With widen=2 and a budget twice the prototype's MACs, candidates grow past the prototype's widths; their
    inherited weights (the trained prototype's, new channels initialised) train, and the generator samples the
    widened prototype."""
    from compiler.cost import network_cost
    from gensynth.journal import Journal

    proto_macs = network_cost(tiny()).macs
    cfg = config(data, requirements=[f"macs<={2 * proto_macs}"], utility="accuracy", widen=2.0, cycles=1)
    result = synthesize(tiny(), cfg, tmp_path / "run")
    widths = [max(r.decisions.widths.values()) for r in result.candidates]
    assert max(widths) > 24  # stage 2's prototype width
    assert all(proto_macs < r.macs <= 2 * proto_macs for r in result.candidates)
    assert result.prototype.macs == proto_macs and result.finals[0].val["acc"] > 0.3
    state = GeneratorState.load(result.out / "generator.json")
    assert state.weights == "prototype-wide.safetensors" and (result.out / state.weights).exists()
    assert sorted(len(p) for p in state.channels.values()) == [24, 48]
    assert state.prototype == print_network(tiny()) and state.widen == 2.0  # the user's prototype, and how far
    from gensynth.generate import generate_networks

    made = generate_networks(result.out / "generator.json", [7], tmp_path / "generated")
    assert made[0].macs <= 2 * proto_macs
    journal = Journal(result.out / "journal.sqlite")
    assert journal.get_meta("config")["widen"] == 2.0
    journal.close()


def test_the_prototype_and_every_candidate_train_with_the_recipe_given(tmp_path, data, monkeypatch):
    """netdsl synth's --optimizer, --batch-size, --augment and --prototype-lr reach the prototype's training too."""
    import dataclasses

    from gensynth.training import train as train_module

    seen = []
    real_train = train_module.train

    def spy(model, dataset, cfg, *a, **kw):
        seen.append((len(dataset.train_y), cfg.optimizer, cfg.batch_size, cfg.augment, cfg.lr))
        return real_train(model, dataset, cfg, *a, **kw)

    monkeypatch.setattr(train_module, "train", spy)
    monkeypatch.setattr(inquisitor_module, "train", spy)
    cfg = config(data, cycles=1, per_cycle=1, prototype_lr=0.003)
    cfg = dataclasses.replace(cfg, budget=dataclasses.replace(cfg.budget, optimizer="adamw", batch_size=16,
                                                              augment=True))
    synthesize(tiny(), cfg, tmp_path / "run")
    assert [s[1:] for s in seen] == [("adamw", 16, True, 0.003), ("adamw", 16, True, 0.05), ("adamw", 16, True, 0.05)]


def test_the_predictor_screens_later_cycles_and_picks_the_finalist(tmp_path, data):
    """screen=3: from the second cycle on, each candidate is the best of three of G's samples by the predictor's
    expected improvement; the finalist is the best predicted candidate, and every candidate regenerates."""
    from gensynth.loop import candidate_seed

    result = synthesize(tiny(), config(data, cycles=2, per_cycle=2, screen=3, stride=0.5), tmp_path / "run")
    later = [r for r in result.candidates if r.cycle == 1]
    assert len(later) == 2 and len({r.seed for r in later}) == 2
    assert {r.seed for r in later} <= {candidate_seed(0, 1, j) for j in range(6)}
    assert result.finals[0].arch in {r.arch for r in result.candidates}
