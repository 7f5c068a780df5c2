"""The mixture plot: tokens per source for each group, CPT and IT side by side, finance vs general coloured."""
from __future__ import annotations

from pathlib import Path


def plot_mixtures(groups: dict[str, dict], path: Path) -> Path:
    """`groups`: {group: mixture_stats_columns(...)}; writes a PNG atomically and returns its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    from findap.io import write_bytes

    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 5), squeeze=False)
    for ax, (name, stats) in zip(axes[0], groups.items()):
        sources = sorted(stats["sources"].items(), key=lambda kv: (kv[1]["kind"], kv[1]["domain"], kv[0]))
        labels = [f"{s} ({v['kind']})" for s, v in sources]
        values = [v["tokens"] / 1e6 for _, v in sources]
        colors = ["tab:green" if v["domain"] == "finance" else "tab:blue" for _, v in sources]
        ax.barh(labels, values, color=colors)
        shares = stats["kind_shares"]
        ax.set_title(f"{name}: {stats['tokens'] / 1e6:.2f}M tokens, CPT {shares.get('cpt', 0):.0%} / "
                     f"IT {shares.get('it', 0):.0%}")
        ax.set_xlabel("million tokens (green: finance, blue: general/math)")
        ax.invert_yaxis()
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())
