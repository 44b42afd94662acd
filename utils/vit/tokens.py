"""Exercise 4: ``embed_tokens(patch_embeddings, class_token, pos_embedding) -> (N, L + 1, D)``.

patch_embeddings (N, L, D), class_token (1, 1, D), pos_embedding (1, L + 1, D): the class token is
prepended to every sequence, then the position embedding is added, as in torchvision's ViT.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks.adapters import float64_array, float64_tensor, returned_array
from utils.checks.characterise import Layout
from utils.checks.diagnose import Mistake
from utils.checks.exercise import Case, Exercise, run_check, visible_then_hidden
from utils.checks.feedback import show
from utils.checks.rules import kept_unchanged
from utils.checks.seeding import case_rng

# (N, L, D)
_SETTINGS = [(1, 2, 3), (2, 4, 5), (3, 9, 8)]
_HIDDEN_SETTINGS = [(4, 16, 6), (2, 1, 7)]

# Shared with the ViT model's mistakes.
POS_BEFORE_CLS = "position embedding added before the class token is concatenated"
POS_BEFORE_CLS_HINT = ("pos_embedding has L + 1 rows, row 0 belongs to the class token: concatenate "
                       "[class token, patches] first, then add pos_embedding.")


def embed_tokens_variant(patches, class_token, pos_embedding, mistake: str = "correct") -> np.ndarray:
    """The tokens (N, L + 1, D) with a known ``mistake``: "appended" (class token last), "no_pos",
    "pos_before_cls" (patches get pos[1:], the class token none), "pos_before_cls_first" (patches get pos[:L])."""
    patches = np.asarray(patches, dtype=np.float64)
    N, L, D = patches.shape
    cls = np.broadcast_to(np.asarray(class_token, dtype=np.float64), (N, 1, D))
    pos = np.asarray(pos_embedding, dtype=np.float64)
    if mistake == "appended":
        return np.concatenate([patches, cls], axis=1) + pos
    if mistake == "no_pos":
        return np.concatenate([cls, patches], axis=1)
    if mistake == "pos_before_cls":
        return np.concatenate([cls, patches + pos[:, 1:]], axis=1)
    if mistake == "pos_before_cls_first":
        return np.concatenate([cls, patches + pos[:, :L]], axis=1)
    assert mistake == "correct"
    return np.concatenate([cls, patches], axis=1) + pos


def _describe_index(index):
    return (f"[{index[0]}, {index[1]}, {index[2]}] = sequence {index[0]}, "
            f"{'the class token' if index[1] == 0 else f'token {index[1]}'}, feature {index[2]}")


def _cases(hidden: bool) -> list[Case]:
    cases = []
    for number, ((N, L, D), salt) in enumerate(visible_then_hidden(_SETTINGS, _HIDDEN_SETTINGS, hidden), start=1):
        rng = case_rng("embed_tokens", number, salt)
        if number == 1 and not salt:
            patches = np.arange(N * L * D, dtype=np.float64).reshape(N, L, D) + 1
            cls = np.full((1, 1, D), 100.0)
            pos = np.arange(1, L + 2, dtype=np.float64).reshape(1, L + 1, 1) * np.full((1, 1, D), 0.5)
            text = (f"N={N}, L={L} patches, D={D}: patches 1…{N * L * D}, class token all 100, "
                    f"position embedding 0.5·(t + 1) for token t (check by hand)")
        else:
            patches, cls, pos = rng.normal(size=(N, L, D)), rng.normal(size=(1, 1, D)), rng.normal(size=(1, L + 1, D))
            text = f"N={N}, L={L} patches, D={D}, random values"
        token_0 = np.zeros((1, L + 1, 1), dtype=bool)
        token_0[0, 0] = True
        cases.append(Case(text, {"patches": patches, "class_token": cls, "pos_embedding": pos}, _describe_index,
                          regions={"the class token (token 0)": token_0, "the patch tokens": ~token_0}))
    return cases


_SIZE_HINT = ("a size mismatch? The class token (1, 1, D) is shared by the N images: it has to be repeated "
              "(expanded) along the batch axis before it is concatenated; and pos_embedding has L + 1 rows, "
              "one per token once the class token is in, so it is added after the concatenation.")


def _reference(inputs) -> np.ndarray:
    patches = float64_tensor(inputs["patches"])
    tokens = torch.cat([float64_tensor(inputs["class_token"]).expand(len(patches), -1, -1), patches], dim=1)
    return float64_array(tokens + float64_tensor(inputs["pos_embedding"]))


_UNCHANGED = "embed_tokens leaves its three inputs unchanged: no in-place operations on them (Exercise 4)"


def _call(fn, inputs):
    given = {name: float64_tensor(inputs[key]) for name, key in (("patch_embeddings", "patches"),
                                                                  ("class_token", "class_token"),
                                                                  ("pos_embedding", "pos_embedding"))}
    with kept_unchanged(given, rule=_UNCHANGED):
        out = fn(*given.values())
    return returned_array(out)


def _variant(mistake: str):
    return lambda inputs: embed_tokens_variant(inputs["patches"], inputs["class_token"], inputs["pos_embedding"],
                                               mistake)


EMBED_TOKENS = Exercise(
    function="embed_tokens",
    reference_name="torchvision's ViT: the class token prepended, then encoder.pos_embedding added",
    make_cases=_cases,
    reference=_reference,
    call=_call,
    mistakes=[
        Mistake("class token appended instead of prepended: it must be token 0",
                "the class token goes in front of the patches: it is token 0 of every sequence, the token the "
                "classifier reads, and row 0 of pos_embedding belongs to it.",
                _variant("appended")),
        Mistake("no position embedding: the tokens carry no information about where their patch was",
                "pos_embedding is part of the token embedding: one learned row per token, the same rows for "
                "every image of the batch, added to the whole sequence.",
                _variant("no_pos")),
        Mistake(POS_BEFORE_CLS + ": the class token got no position embedding", POS_BEFORE_CLS_HINT,
                _variant("pos_before_cls")),
        Mistake(POS_BEFORE_CLS + ": the patches got rows 0…L−1 and the class token none", POS_BEFORE_CLS_HINT,
                _variant("pos_before_cls_first")),
    ],
    hint="section 3 in order: every image gets the same class token as token 0, then the whole sequence of "
         "L + 1 tokens gets the position embedding, row t to token t.",
    exception_hints={"RuntimeError": _SIZE_HINT, "ValueError": _SIZE_HINT},
    section="Exercise 4",
    layout=Layout(axes=("sequence", "token", "feature")),
    covers={
        "a batch of 2 or more sequences (one class token for all)": lambda case: case.inputs["patches"].shape[0] >= 2,
        "a single patch (L = 1)": lambda case: case.inputs["patches"].shape[1] == 1,
        "16 or more patches": lambda case: case.inputs["patches"].shape[1] >= 16,
        "a class token that differs from feature to feature":
            lambda case: bool(np.ptp(case.inputs["class_token"]) > 0),
        "position embedding rows that differ in every feature":
            lambda case: bool(np.all(np.ptp(case.inputs["pos_embedding"][0], axis=0) > 0)),
    },
)


def check_embed_tokens(embed_tokens, hidden: bool = False) -> None:
    """Check ``embed_tokens(patches, class_token, pos_embedding)``."""
    show(run_check(EMBED_TOKENS, embed_tokens, hidden))
