#!/usr/bin/env python
"""Draw method_diagram.png: data -> recommender -> embeddings -> Matryoshka SAE (prediction-aware loss
through the frozen scorer) -> neurons -> concepts and interventions.

    python scripts/make_method_diagram.py [--out method_diagram.png]
"""
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

BOXES = {
    # name: (x, y, width, height, title, lines, colour)
    "data": (0.1, 3.1, 2.7, 1.5, "Interactions", ["ML-1M · ML-100k · Last.FM", "implicit feedback", "seeded leave-one-out"], "#dbe9f6"),
    "rec": (3.4, 3.1, 2.5, 1.5, "Recommender", ["MF · NCF · SASRec", "score(user, item)"], "#fde2c8"),
    "emb": (6.5, 3.1, 2.0, 1.5, "Embeddings", ["user rows  (b, d)", "item rows  (n, d)"], "#e4f2dc"),
    "sae": (9.1, 2.6, 3.5, 2.5, "Matryoshka SAE", ["z = TopK / ReLU(W_enc x + b)", "x̂ = W_dec z   (unit-norm rows)",
                                               "nested prefixes 16 ⊂ 32 ⊂ … ⊂ n", "one SAE for users and items"], "#ead9f2"),
    "loss": (8.6, 0.2, 4.5, 1.8, "Loss", ["λ_emb Σ_prefix ‖x − x̂‖²", "+ λ_pred d(score(x̂_u, x̂_i), score(x_u, x_i))",
                                      "+ λ_L1 |z| + λ_KL KL(ρ‖ρ̂) (+ AuxK)"], "#f6dada"),
    "neurons": (13.2, 3.1, 2.5, 1.5, "Neurons", ["purity@K, lift, BH q", "vs raw / PCA / rotation", "/ untrained controls"], "#fff4c2"),
    "concepts": (16.6, 4.0, 2.9, 1.3, "Concepts", ["genre · era · popularity", "music style · demographics"], "#e0f0f0"),
    "steer": (16.6, 1.9, 2.9, 1.6, "Interventions", ["filter / promote a concept", "promote an item", "x + D(z') − D(z)"], "#e0f0f0"),
}
ARROWS = [("data", "rec", "train"), ("rec", "emb", "read out"), ("emb", "sae", "encode"),
          ("sae", "neurons", "codes z"), ("neurons", "concepts", "label"), ("neurons", "steer", "edit z"),
          ("sae", "loss", ""), ("rec", "loss", "frozen scorer")]


def anchor(name: str, side: str) -> tuple[float, float]:
    """A point on the named box's side ('l', 'r', 't', 'b')."""
    x, y, w, h = BOXES[name][:4]
    return {"l": (x, y + h / 2), "r": (x + w, y + h / 2), "t": (x + w / 2, y + h), "b": (x + w / 2, y)}[side]


def draw(out: Path) -> Path:
    """Render the diagram to `out` (PNG)."""
    fig, ax = plt.subplots(figsize=(15, 5.2), dpi=150)
    ax.set_xlim(0, 19.6)
    ax.set_ylim(0, 5.6)
    ax.axis("off")
    for x, y, w, h, title, lines, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05,rounding_size=0.15",
                                    fc=colour, ec="#444444", lw=1.2))
        ax.text(x + w / 2, y + h - 0.28, title, ha="center", va="center", fontsize=10.5, weight="bold")
        for i, line in enumerate(lines):
            ax.text(x + w / 2, y + h - 0.62 - 0.33 * i, line, ha="center", va="center", fontsize=8.3)
    sides = {("sae", "loss"): ("b", "t"), ("rec", "loss"): ("b", "l"), ("neurons", "concepts"): ("r", "l"),
             ("neurons", "steer"): ("r", "l")}
    for a, b, label in ARROWS:
        sa, sb = sides.get((a, b), ("r", "l"))
        p, q = anchor(a, sa), anchor(b, sb)
        if (a, b) == ("rec", "loss"):
            q = (BOXES["loss"][0], BOXES["loss"][1] + 0.5)
            style = "arc3,rad=0.25"
        else:
            style = "arc3,rad=0.0"
        ax.add_patch(FancyArrowPatch(p, q, arrowstyle="-|>", mutation_scale=14, lw=1.3, color="#333333",
                                     connectionstyle=style))
        if label:
            lift = 0.3 if b in ("concepts", "steer") else 0.18
            ax.text((p[0] + q[0]) / 2 - (0.25 if b in ("concepts", "steer") else 0), (p[1] + q[1]) / 2 + lift, label, ha="center", fontsize=8, color="#333333")
    ax.text(0.2, 5.35, "monosemrec: monosemantic neurons of recommender embeddings, found and used without retraining",
            fontsize=12, weight="bold")
    fig.savefig(out, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "method_diagram.png")
    print(draw(ap.parse_args().out))
