"""report.md and pareto.png for a synthesis run: prototype against FermiNets, and the accuracy/MACs front."""

from __future__ import annotations

from pathlib import Path

from compiler.cost.diff import BLOCK_COLUMNS, LAYER_COLUMNS, NetworkDiff
from gensynth.records import Candidate, Failure
from gensynth.tasks.metrics import METRICS


def _cells(r: Candidate, *metrics: str) -> str:
    """Table cells of the record's values, as the metric registry writes them."""
    return " | ".join(METRICS[m].format(r.value(m)) for m in metrics)


def latency_cell(r: Candidate) -> str:
    """The measured median with the spread of single runs ("1.234 ms (1.20-1.31)"), and the prediction if any."""
    fmt = METRICS["latency"].format
    cell = fmt(r.latency)
    if r.latency_fast is not None and r.latency_slow is not None:
        cell += f" ({r.latency_fast * 1e3:.3f}-{r.latency_slow * 1e3:.3f})"
    if r.predicted_latency is not None:
        cell += f"; predicted {fmt(r.predicted_latency)}"
    return cell


def _row(name: str, r: Candidate) -> str:
    test = METRICS[r.metric].format(r.test_score) if r.test_score is not None else "-"
    return (f"| {name} | {METRICS[r.metric].format(r.score)} | {test} | {_cells(r, 'macs', 'params')} | "
            f"{_cells(r, 'netscore')} | {r.density:.1f} | {latency_cell(r)} | "
            f"{'yes' if r.meets else 'no: ' + ', '.join(r.missed)} |")


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *("| " + " | ".join(r) + " |" for r in rows)]


def diff_section(diffs: dict[str, NetworkDiff]) -> list[str]:
    """Per FermiNet: the layers it changed of the prototype, and the MACs and params of every block."""
    lines = []
    for name, d in diffs.items():
        changed = d.changed()
        lines += [f"### {name} against the prototype", "",
                  *(_table(LAYER_COLUMNS, [c.cells() for c in changed]) if changed else ["No layer changed."]), "",
                  *_table(BLOCK_COLUMNS, [b.cells() for b in d.blocks] + [d.total_cells()]), ""]
    return ["## What each FermiNet changed", "",
            "Layers that compute (convs, linears) whose channels, kernel or stride changed, or that were removed or "
            "added; then every block's MACs and params (`netdsl diff` prints the same).", "", *lines] if lines else []


def exported_section(exported: list, what: str) -> list[str]:
    """Float and int8 ONNX of each FermiNet: test score from the exported files, batch-1 onnxruntime latency."""
    if not exported:
        return []
    fmt = METRICS[exported[0].metric].format
    rows = []
    for e in exported:
        row = [e.name, f"`{e.float_path.name}`", fmt(e.float_score), e.float_latency.items()[0]]
        if e.int8_path is not None:
            speed = e.float_latency.median / e.int8_latency.median
            row += [f"`{e.int8_path.name}`", fmt(e.int8_score), f"{(e.int8_score - e.float_score) * 100:+.2f}",
                    e.int8_latency.items()[0], f"{speed:.2f}x", ", ".join(e.float_ops) or "none"]
        rows.append(row)
    columns = ("network", "float file", f"test {what}", "latency")
    if exported[0].int8_path is not None:
        columns += ("int8 file", f"int8 test {what}", "points", "int8 latency", "speed-up", "kept float")
    threads = exported[0].float_latency.threads
    return ["## Exported FermiNets", "",
            "Scored on the test split from the exported ONNX files with onnxruntime, fed the pixels as read (8-bit "
            "values / 255; the files normalise them); latency: median batch-1 forward with onnxruntime on "
            f"{threads} thread(s), the files timed side by side. int8: static quantization calibrated on training "
            "images (QDQ, per-channel weights).", "", *_table(columns, rows), ""]


def write_report(out: Path, network: str, requirements: list[str], prototype: Candidate, finals: list[Candidate],
                 candidates: list[Candidate], front: list[Candidate], wall_s: float, executors: list[str] = (),
                 failed: list[Failure] = (), diffs: dict[str, NetworkDiff] | None = None,
                 exported: list | None = None, measured_with: str = "PyTorch eager, 1 thread") -> Path:
    """Write report.md (and pareto.png beside it); return the report's path. `executors`: where each session
    evaluated the candidates, in words; `diffs`: each FermiNet against the prototype; `exported`: the FermiNets'
    exported files (gensynth.deploy.compare.Exported); `measured_with`: how latency was measured (runtime,
    threads)."""
    what = METRICS[prototype.metric].words
    failures = [f"Failed candidates: {len(failed)} (journaled; left out of everything below):", "",
                *(f"- {r.key} after {r.attempts} attempt(s): {r.error}" for r in failed), ""]
    lines = [
        f"# Generative synthesis of {network}",
        "",
        f"Requirements: {', '.join(f'`{r}`' for r in requirements) or 'none'} (decided on the validation split; "
        f"test {what} is reported, never used to choose).",
        f"Candidates evaluated: {len(candidates)}; wall time {wall_s / 60:.1f} min.",
        *([f"Evaluated on: {'; then '.join(executors)}."] if executors else []),
        "",
        *(failures if failed else []),
        f"NetScore = 20 log10(a^2 / (p^0.5 m^0.5)) with a = validation {what} in %, p = parameters in millions, "
        f"m = MACs in millions; information density = {what} (%) per million parameters. "
        f"Latency: median batch-1 forward on this machine ({measured_with}), timed until its 95% interval was "
        "within ±2% or for at most a few seconds; in brackets the 10th-90th percentiles of single runs, then the "
        "latency model's prediction where the run had one (gensynth.latency).",
        "",
        f"| network | val {what} | test {what} | MACs | params | NetScore | density | latency | meets requirements |",
        "|---|---|---|---|---|---|---|---|---|",
        _row("prototype", prototype),
        *(_row(r.name or r.arch, r) for r in finals),
        "",
        f"## Pareto front of the search (short fine-tune; {what} on the validation split)",
        "",
        f"| cycle | seed | val {what} | MACs | params | arch |",
        "|---|---|---|---|---|---|",
        *(f"| {r.cycle} | {r.seed} | {METRICS[r.metric].format(r.score)} | {_cells(r, 'macs', 'params')} "
          f"| {r.arch} |" for r in front),
        "",
        f"![{what} against MACs](pareto.png)",
        "",
        *exported_section(exported or [], what),
        *diff_section(diffs or {}),
    ]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines))
    plot_front(Path(out) / "pareto.png", prototype, finals, candidates, front)
    return path


def plot_front(path: Path, prototype: Candidate, finals: list[Candidate], candidates: list[Candidate],
               front: list[Candidate]) -> None:
    """pareto.png: every candidate's validation score against its MACs, the front, prototype and FermiNets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    cycles = [r.cycle for r in candidates]
    n = max(cycles, default=0) + 1  # one colour per cycle, as the report's table numbers them
    sc = ax.scatter([r.macs / 1e6 for r in candidates], [r.score * 100 for r in candidates], c=cycles,
                    cmap=plt.get_cmap("viridis", n), vmin=-0.5, vmax=n - 0.5, s=18, alpha=0.8,
                    label="candidates (short fine-tune)")
    if candidates:
        fig.colorbar(sc, ax=ax, label="cycle", ticks=range(n))
    ax.plot([r.macs / 1e6 for r in front], [r.score * 100 for r in front], "k--", lw=1, label="front")
    ax.scatter([prototype.macs / 1e6], [prototype.score * 100], marker="*", s=160, c="red", label="prototype")
    if finals:
        ax.scatter([r.macs / 1e6 for r in finals], [r.score * 100 for r in finals], marker="D", s=50,
                   c="orange", label="FermiNets (fully trained)")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel(f"validation {METRICS[prototype.metric].words} (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
