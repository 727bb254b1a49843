"""Render a terminal capture (``tmux capture-pane -p``) to a PNG, for the docs' screenshots.

    tmux capture-pane -p -t SESSION > pane.txt
    python benchmarks/render_terminal.py pane.txt docs/figures/progress_terminal.png [--title TEXT]
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("png")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    lines = open(args.capture, encoding="utf-8").read().rstrip("\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    width = max(60, max(len(l) for l in lines))
    fig = plt.figure(figsize=(width * 0.0815 + 0.4, len(lines) * 0.175 + 0.35 + (0.3 if args.title else 0)))
    fig.patch.set_facecolor("#1e1e1e")
    text = "\n".join(lines)
    fig.text(0.012, 0.98 - (0.06 if args.title else 0), text, family="DejaVu Sans Mono", fontsize=9.5, color="#e6e6e6",
             va="top", ha="left", linespacing=1.25)  # fmt: skip
    if args.title:
        fig.text(0.012, 0.985, args.title, family="DejaVu Sans", fontsize=10, color="#9cdcfe", va="top")
    fig.savefig(args.png, dpi=110, facecolor=fig.get_facecolor())


if __name__ == "__main__":
    main()
