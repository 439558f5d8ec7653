"""Help texts of the model section's longer fields (``ad.config.ModelConfig``), kept here so that
``ad/config.py`` stays short; ``--help-config`` prints them with the other fields."""

from __future__ import annotations

MODEL_HELP = {
    "attn_dropout": "Attention-probability dropout (the paper: 0.5, 0 on DarkRoomHard).",
    "norm": "Pre-norm (default, trains more stably) or post-norm (paper).",
    "input_mask_prob": (
        "Probability of replacing an input token by a learned mask token in training (the "
        "paper's 0.3; without it the quick Dark Room model stops exploring on many goals)."
    ),
    "context_steps": (
        "Context length c in environment steps (one token per step); None: derived from the "
        "family's episode length and the histories (see the rule at the end; Dark Room: 200)."
    ),
    "action_head": (
        "Action head: categorical (Discrete), bins (Box: per dimension a categorical over "
        "action_bins uniform bins of its bounds, dimensions in parallel), gaussian (Box: mean "
        "and log-std per dimension); auto: categorical for Discrete, bins for Box."
    ),
    "vector_encoder": (
        "Encoder of 1-D Box observations: linear (a two-layer MLP on the observation scaled to "
        "[-1, 1] by its bounds) or tokens (Gato: each dimension mu-law companded with token_mu "
        "and token_max, clipped to [-1, 1] and put into one of token_bins uniform bins; the "
        "bin's learned embedding plus a learned embedding of the dimension, through a GELU, "
        "summed over the dimensions and projected into the step's one token). Other observation spaces take only linear. "
        "Box actions are not companded: like Gato's actions in [-1, 1], the bins action head "
        "discretises them uniformly over their Box bounds."
    ),
    "image_encoder": (
        "Encoder of (H, W, C) Box observations (other spaces ignore it): cnn (a small CNN; "
        "integer images' values are learned per-channel codes, as MiniGrid's object/colour/state "
        "codes need), codes (integer images only: one learned embedding per cell, channel and "
        "code, summed, the MultiDiscrete encoder over every value of the image; no convolution: "
        "1.64x cnn's training speed on MiniGrid's views) or patches (Gato: pixels scaled from "
        "the Box bounds to [-1, 1] and divided by 4, zero-padded at the bottom and right to "
        "multiples of 16, cut into non-overlapping 16x16 patches in raster order, each through "
        "a ResNet v2 block with GroupNorm and GELU, "
        "plus learned row and column embeddings of the patch, through a GELU and averaged over "
        "the patches into the step's one token; values are intensities, so it refuses images "
        "smaller than 16x16 such as MiniGrid's (7, 7, 3) codes)."
    ),
    "token_bins": "vector_encoder=tokens: uniform bins on [-1, 1] (Gato: 1024).",
    "token_mu": "vector_encoder=tokens: mu-law companding strength mu (Gato: 100).",
    "token_max": (
        "vector_encoder=tokens: M, the magnitude that compands to 1; larger values share the "
        "outermost bins (Gato: 256)."
    ),
}
