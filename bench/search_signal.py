"""Does a search candidate's score predict what it reaches as a finalist? Train every candidate of a run fully.

    python bench/search_signal.py RUN_DIR [RUN_DIR ...] [--no-docs]

RUN_DIR is a synthesis run of bench/peers.py (netdsl synth's journal: e.g. runs/peers/<configuration>/
gen-random-st0.5-scratch-8x-s0). Every search candidate of the run is regenerated from its seed and the generator
state it was drawn from, and trained with the run's finalist recipe (from scratch for P + F epochs, or fine-tuned
from the prototype); validation and test accuracy are recorded in RUN_DIR/oracle.jsonl as each is done, so a rerun
continues. The run's own finalist is not trained again (its journal record is that training, same seed).

Only the --top best-scored candidates are trained (the run's choice is among them, and a candidate scored far below
them is no contender). Per run it reports the Spearman rank correlation between the search score (validation accuracy after the short
fine-tune) and the finalist-recipe validation accuracy, what the run's choice (the best score) reached on test,
and what choosing by finalist-recipe validation accuracy among its candidates would have reached: the most any
choice among these candidates could gain, chosen on validation. If the candidates' final accuracies lie within
the noise of each other, no search over them can win by more than the noise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from benchdoc import markers, write_section  # noqa: E402
from peer_methods import read_jsonl  # noqa: E402

START, END = markers("signal")


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (average ranks for ties)."""
    import numpy as np

    def ranks(v: list[float]) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return np.array([(v < x).sum() + ((v == x).sum() - 1) / 2 for x in v])

    return float(np.corrcoef(ranks(xs), ranks(ys))[0, 1])


# Other scores a candidate could get instead of the search's (one pass of fine-tuning on --images images): the same
# again with another seed (another subset and order: how reproducible the score is), one pass over the whole training
# split from the inherited weights, and one or two passes over it from scratch (the finalist's start).
SIGNALS = {"retest": ("inherit", None, 1, 1), "inherit-full": ("inherit", 10**9, 1, 0),
           "scratch-1": ("scratch", 10**9, 1, 0), "scratch-2": ("scratch", 10**9, 2, 0)}


def oracle(run: Path, top: int, signals: list[str], finals_too: bool = True) -> list[dict]:
    """The run's `top` best-scored search candidates with their finalist-recipe accuracies (trained now, or read
    back), best score first."""
    import dataclasses

    from gensynth.generator import GeneratorState, sample
    from gensynth.inquisitor import inquire
    from gensynth.journal import Journal
    from gensynth.loop import JOURNAL, SynthConfig, make_task
    from gensynth.records import FINAL_PREFIX
    from gensynth.requirements import parse_requirements
    from gensynth.space import search_space
    from netdsl.loader import load_network_text

    journal = Journal(run / JOURNAL)
    cfg = SynthConfig.from_json(journal.get_meta("config"))
    space = search_space(load_network_text(journal.get_meta("prototype"), "prototype.net"), cfg.widen)
    reqs = parse_requirements(cfg.requirements)
    records = journal.candidates()
    searched = sorted((r for r in records if r.searched), key=lambda r: -r.score)[:top]
    finals = {r.arch: r for r in records if r.final and r.key.startswith(FINAL_PREFIX)}
    path = run / "oracle.jsonl"
    done = {r["key"]: r for r in read_jsonl(path)}
    weights = run / "prototype.safetensors"
    path_signals = run / "signals.jsonl"
    measured = {(m["key"], m["signal"]): m["score"] for m in read_jsonl(path_signals)}
    out = []
    for r in searched:
        for name in signals:
            if (r.key, name) in measured:
                continue
            init, images, epochs, offset = SIGNALS[name]
            s = sample(GeneratorState.from_json(journal.generator_at(r.cycle)), space, r.seed, reqs)
            budget = dataclasses.replace(cfg.budget, search_init=init, images=images or cfg.budget.images,
                                         epochs=epochs)
            task = dataclasses.replace(make_task(f"signal:{r.key}", r.cycle, s, space, cfg, weights),
                                       seed=r.seed + offset, budget=budget)
            measured[(r.key, name)] = inquire(task).score
            with path_signals.open("a") as fh:
                fh.write(json.dumps({"key": r.key, "signal": name, "score": measured[(r.key, name)]}) + "\n")
            print(f"  {run.name} {r.key}: {name} {measured[(r.key, name)]:.2%}", flush=True)
        if finals_too and r.key not in done:
            if r.arch in finals:
                f = finals[r.arch]
            else:
                s = sample(GeneratorState.from_json(journal.generator_at(r.cycle)), space, r.seed, reqs)
                assert s.arch == r.arch, f"{run}: candidate {r.key} does not regenerate"
                f = inquire(make_task(f"oracle:{r.key}", r.cycle, s, space, cfg, weights, final=True))
            done[r.key] = {"key": r.key, "arch": r.arch, "final_val": f.val["acc"], "final_test": f.test["acc"],
                           "wall_s": f.wall_s}
            with path.open("a") as fh:
                fh.write(json.dumps(done[r.key]) + "\n")
            print(f"  {run.name} {r.key}: score {r.score:.2%}, final val {f.val['acc']:.2%}, "
                  f"test {f.test['acc']:.2%}", flush=True)
        out.append({"key": r.key, "cycle": r.cycle, "score": r.score, "macs": r.macs,
                    "strided": list(r.decisions.strided), "widths": dict(r.decisions.widths), **done.get(r.key, {}),
                    **{name: measured[(r.key, name)] for name in signals}})
    journal.close()
    return out


def summary(run: Path, rows: list[dict]) -> dict:
    by_score = max(rows, key=lambda r: r["score"])
    by_final = max(rows, key=lambda r: r["final_val"])
    return {"run": run.name, "n": len(rows), "rho_val": spearman([r["score"] for r in rows], [r["final_val"] for r in rows]),
            "rho_test": spearman([r["score"] for r in rows], [r["final_test"] for r in rows]),
            "chosen_test": by_score["final_test"], "oracle_test": by_final["final_test"],
            "mean_test": statistics.fmean(r["final_test"] for r in rows),
            "sd_test": statistics.stdev(r["final_test"] for r in rows) if len(rows) > 1 else 0.0,
            "range_test": (min(r["final_test"] for r in rows), max(r["final_test"] for r in rows))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=6, help="train the N best-scored candidates of each run (default 6)")
    ap.add_argument("--signals", default="", help=f"other scores to measure per candidate, from {', '.join(SIGNALS)}")
    ap.add_argument("--no-oracle", action="store_true",
                    help="train no finalists: list the top candidates with their score and the other signals")
    ap.add_argument("--no-docs", action="store_true")
    args = ap.parse_args()
    lines = ["| run | candidates trained | Spearman ρ (score, final val) | ρ (score, final test) | the run's choice: test % | "
             "best final val among them: test % | their test % (mean ± sd) | range |",
             "|---|---|---|---|---|---|---|---|"]
    signals = [name for name in args.signals.split(",") if name]
    unknown = [name for name in signals if name not in SIGNALS]
    if unknown:
        ap.error(f"unknown signal(s) {', '.join(unknown)}; choose from {', '.join(SIGNALS)}")
    names = ["score", *signals]
    rhos: dict[str, list[float]] = {name: [] for name in names}
    per_signal = ["| run | " + " | ".join(f"ρ ({name}, final val)" for name in names) + " |",
                  "|---|" + "---|" * len(names)]
    if args.no_oracle:
        listing = ["| run | candidate | strided | widths | " + " | ".join(names) + " |",
                   "|---|---|---|---|" + "---|" * len(names)]
        for run in args.runs:
            for r in oracle(run, args.top, signals, finals_too=False):
                listing.append(f"| {run.name} | {r['key']} | {', '.join(r['strided']) or '-'} | "
                               f"{'/'.join(str(w) for w in r['widths'].values())} | "
                               + " | ".join(f"{r[n] * 100:.2f}" for n in names) + " |")
        print("\n".join(listing))
        return 0
    for run in args.runs:
        rows = oracle(run, args.top, signals)
        s = summary(run, rows)
        lines.append(f"| {s['run']} | {s['n']} | {s['rho_val']:+.2f} | {s['rho_test']:+.2f} | {s['chosen_test'] * 100:.2f} | "
                     f"{s['oracle_test'] * 100:.2f} | {s['mean_test'] * 100:.2f} ± {s['sd_test'] * 100:.2f} | "
                     f"{s['range_test'][0] * 100:.2f}-{s['range_test'][1] * 100:.2f} |")
        cells = []
        for name in names:
            rhos[name].append(spearman([r[name] for r in rows], [r["final_val"] for r in rows]))
            cells.append(f"{rhos[name][-1]:+.2f}")
        per_signal.append(f"| {run.name} | " + " | ".join(cells) + " |")
    per_signal.append("| mean over runs | " + " | ".join(f"{statistics.fmean(rhos[n]):+.2f}" for n in names) + " |")
    if signals:
        lines += ["", *per_signal]
    print("\n".join(lines))
    if not args.no_docs:
        command = shlex.join(["python", "bench/search_signal.py", *sys.argv[1:]])
        write_section("\n".join([START, "## Does the search score predict the finalist? (`bench/search_signal.py`)",
                                 "", f"Command: `{command}`.", "", *lines, END]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
