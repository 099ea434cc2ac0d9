"""SAEConfig documents every field (a one-line comment each, grouped as architecture / loss / optimisation)."""
import dataclasses
import json
from pathlib import Path

from ipynb.fs.defs.sae import SAEConfig

FIELDS = ("input_dim", "n_neurons", "activation", "k", "prefixes", "tied", "lambda_emb", "lambda_pred",
          "lambda_l1", "lambda_kl", "rho", "kl_temperature", "lambda_aux", "aux_k", "dead_steps", "pred_loss",
          "pred_random", "pred_top", "pred_pos", "pred_every", "epochs", "batch_size", "lr", "seed", "attn_heads",
          "attn_dropout", "lambda_contrastive", "contrastive_temperature", "contrastive_noise",
          # issue 11 (appended; defaults keep the epoch schedule and the linear encoder)
          "steps", "warmup_steps", "decay_frac", "grad_clip", "dict_init", "remove_parallel_grad",
          "pred_finetune_steps", "finetune_lr", "dead_rate", "homeostasis", "encoder", "threads",
          # issue 15 (appended; 0 keeps the per-user random draw)
          "pred_pool",
          # issue 11, adaptive sparsity (appended; defaults keep the pursuit encoder at <= k atoms, training linear)
          "pursuit_tol", "pursuit_train")


def _class_source() -> list[str]:
    """Source lines of the SAEConfig class in notebooks/sae.ipynb."""
    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "sae.ipynb").read_text())
    lines = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code").splitlines()
    start = lines.index("class SAEConfig:")
    end = next(i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith((" ", "#")))
    return lines[start:end]


def test_field_names_and_order_unchanged():
    assert tuple(f.name for f in dataclasses.fields(SAEConfig)) == FIELDS  # checkpoints store them


def test_every_field_has_a_comment_and_groups_are_marked():
    source = _class_source()
    for name in FIELDS:
        line = next(x for x in source if x.strip().startswith(f"{name}:"))
        assert "  # " in line and len(line.split("  # ", 1)[1]) > 10, f"{name} is not documented: {line}"
    groups = [x.strip() for x in source if x.strip().startswith("# ---")]
    assert [g.split()[2].rstrip(":") for g in groups[:3]] == ["architecture", "loss", "optimisation"]
