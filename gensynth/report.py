"""report.md and pareto.png for a synthesis run: prototype against FermiNets, and the accuracy/MACs front."""

from __future__ import annotations

from pathlib import Path

# How the primary metric of each task is named in the report (records carry "metric" and "score").
METRIC_NAMES = {"acc": "accuracy", "miou": "mean IoU", "map50": "mAP@0.5"}


def metric_name(r: dict) -> str:
    """The record's primary metric in words ("accuracy" for runs journaled before tasks existed)."""
    return METRIC_NAMES.get(r.get("metric", "acc"), r.get("metric", "acc"))


def score(r: dict) -> float:
    """The validation value of the record's primary metric."""
    return r["score"] if "score" in r else r["val_acc"]


def _row(name: str, r: dict) -> str:
    test = r.get("test_score", r.get("test_acc"))
    test = f"{test:.2%}" if test is not None else "-"
    return (f"| {name} | {score(r):.2%} | {test} | {r['macs'] / 1e6:.2f} M | {r['params'] / 1e3:.1f} K | "
            f"{r['netscore']:.1f} | {r['density']:.1f} | {r['latency'] * 1e3:.3f} ms | "
            f"{'yes' if r.get('meets') else 'no: ' + ', '.join(r.get('missed', []))} |")


def write_report(out: Path, network: str, requirements: list[str], prototype: dict, finals: list[dict],
                 candidates: list[dict], front: list[dict], wall_s: float) -> Path:
    """Write report.md (and pareto.png beside it); return the report's path."""
    what = metric_name(prototype)
    lines = [
        f"# Generative synthesis of {network}",
        "",
        f"Requirements: {', '.join(f'`{r}`' for r in requirements) or 'none'} (decided on the validation split; "
        f"test {what} is reported, never used to choose).",
        f"Candidates evaluated: {len(candidates)}; wall time {wall_s / 60:.1f} min.",
        "",
        f"NetScore = 20 log10(a^2 / (p^0.5 m^0.5)) with a = validation {what} in %, p = parameters in millions, "
        f"m = MACs in millions; information density = {what} (%) per million parameters. "
        "Latency: median batch-1 forward on this machine's CPU.",
        "",
        f"| network | val {what} | test {what} | MACs | params | NetScore | density | latency | meets requirements |",
        "|---|---|---|---|---|---|---|---|---|",
        _row("prototype", prototype),
        *(_row(r.get("name", r["arch"]), r) for r in finals),
        "",
        f"## Pareto front of the search (short fine-tune; {what} on the validation split)",
        "",
        f"| cycle | seed | val {what} | MACs | params | arch |",
        "|---|---|---|---|---|---|",
        *(f"| {r['cycle']} | {r['seed']} | {score(r):.2%} | {r['macs'] / 1e6:.2f} M | {r['params'] / 1e3:.1f} K "
          f"| {r['arch']} |" for r in front),
        "",
        f"![{what} against MACs](pareto.png)",
        "",
    ]
    path = Path(out) / "report.md"
    path.write_text("\n".join(lines))
    plot_front(Path(out) / "pareto.png", prototype, finals, candidates, front)
    return path


def plot_front(path: Path, prototype: dict, finals: list[dict], candidates: list[dict], front: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    cycles = [r["cycle"] for r in candidates]
    sc = ax.scatter([r["macs"] / 1e6 for r in candidates], [score(r) * 100 for r in candidates], c=cycles,
                    cmap="viridis", s=18, alpha=0.8, label="candidates (short fine-tune)")
    if candidates:
        fig.colorbar(sc, ax=ax, label="cycle")
    ax.plot([r["macs"] / 1e6 for r in front], [score(r) * 100 for r in front], "k--", lw=1, label="front")
    ax.scatter([prototype["macs"] / 1e6], [score(prototype) * 100], marker="*", s=160, c="red", label="prototype")
    if finals:
        ax.scatter([r["macs"] / 1e6 for r in finals], [score(r) * 100 for r in finals], marker="D", s=50,
                   c="orange", label="FermiNets (fully trained)")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel(f"validation {metric_name(prototype)} (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
