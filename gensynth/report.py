"""report.md and pareto.png for a synthesis run: prototype against FermiNets, and the accuracy/MACs front."""

from __future__ import annotations

from pathlib import Path


def _row(name: str, r: dict) -> str:
    test = f"{r['test_acc']:.2%}" if r.get("test_acc") is not None else "-"
    return (f"| {name} | {r['val_acc']:.2%} | {test} | {r['macs'] / 1e6:.2f} M | {r['params'] / 1e3:.1f} K | "
            f"{r['netscore']:.1f} | {r['density']:.1f} | {r['latency'] * 1e3:.3f} ms | "
            f"{'yes' if r.get('meets') else 'no: ' + ', '.join(r.get('missed', []))} |")


def write_report(out: Path, network: str, requirements: list[str], prototype: dict, finals: list[dict],
                 candidates: list[dict], front: list[dict], wall_s: float) -> Path:
    """Write report.md (and pareto.png beside it); return the report's path."""
    lines = [
        f"# Generative synthesis of {network}",
        "",
        f"Requirements: {', '.join(f'`{r}`' for r in requirements) or 'none'} (decided on the validation split; "
        "test accuracy is reported, never used to choose).",
        f"Candidates evaluated: {len(candidates)}; wall time {wall_s / 60:.1f} min.",
        "",
        "NetScore = 20 log10(a^2 / (p^0.5 m^0.5)) with a = accuracy in %, p = parameters in millions, "
        "m = MACs in millions (validation accuracy); information density = accuracy (%) per million parameters. "
        "Latency: median batch-1 forward on this machine's CPU.",
        "",
        "| network | val acc | test acc | MACs | params | NetScore | density | latency | meets requirements |",
        "|---|---|---|---|---|---|---|---|---|",
        _row("prototype", prototype),
        *(_row(r.get("name", r["arch"]), r) for r in finals),
        "",
        "## Pareto front of the search (short fine-tune; accuracy on the validation split)",
        "",
        "| cycle | seed | val acc | MACs | params | arch |",
        "|---|---|---|---|---|---|",
        *(f"| {r['cycle']} | {r['seed']} | {r['val_acc']:.2%} | {r['macs'] / 1e6:.2f} M | {r['params'] / 1e3:.1f} K "
          f"| {r['arch']} |" for r in front),
        "",
        "![accuracy against MACs](pareto.png)",
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
    sc = ax.scatter([r["macs"] / 1e6 for r in candidates], [r["val_acc"] * 100 for r in candidates], c=cycles,
                    cmap="viridis", s=18, alpha=0.8, label="candidates (short fine-tune)")
    if candidates:
        fig.colorbar(sc, ax=ax, label="cycle")
    ax.plot([r["macs"] / 1e6 for r in front], [r["val_acc"] * 100 for r in front], "k--", lw=1, label="front")
    ax.scatter([prototype["macs"] / 1e6], [prototype["val_acc"] * 100], marker="*", s=160, c="red", label="prototype")
    if finals:
        ax.scatter([r["macs"] / 1e6 for r in finals], [r["val_acc"] * 100 for r in finals], marker="D", s=50,
                   c="orange", label="FermiNets (fully trained)")
    ax.set_xlabel("MACs (millions)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
