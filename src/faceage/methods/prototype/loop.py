"""Step 6, the target loop: per face, the strength at which faceage's own age regressor reads the
target, kept above an identity floor and within the artifact guard.

The regressor is read relative to the input: its reading of the unedited face minus the face's
source age is that face's own offset (on the example photo, a 30-year-old, it reads 51), and every
reading of an edit is corrected by it. The loop thus asks the regressor how many years the edit
added or removed, which it judges far better than absolute age on a face it never saw (with
absolute readings the loop stopped at the weakest strength on faces the regressor reads as older).

The constrained optimisation of MaskFaceGAN ("High Resolution Face Editing with Masked GAN Latent
Code Optimization", Pernuš & Štruc), applied to the prototype route's one free parameter: the
strength scales shape, colour and detail together. Candidate strengths are rendered and read in
one batch; the weakest one within ``tolerance`` years of the target wins (a stronger edit costs
identity), a bracketing pair is refined by one interpolated evaluation, and the choice is stepped
down while SFace's similarity to the input is below ``identity_floor``. The independent age
estimator that judges results never drives this loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Strengths tried in the first batch: never below the prototypes' whole difference (1), more when the
# regressor asks for it; weaker ones only when the identity floor demands (``FALLBACK``). When
# rejuvenating, the shape stops growing at 1 (``shape.younger_gain`` sets its size) and the detail at 1: beyond, the
# strength smooths the skin further.
CANDIDATES = (1.0, 1.3, 1.7, 2.2, 2.6)
FALLBACK = (0.7, 0.4)
TOLERANCE = 3.0  # years: the target counts as reached within this
REGRESSOR_SIZE = 128  # the face size the own regressor was trained on (it shrinks further itself)
IDENTITY_FLOOR = 0.45  # SFace cosine similarity to the input (its same-person threshold is 0.363)


@dataclass(frozen=True)
class LoopResult:
    """What the loop chose for one face and why."""

    strength: float
    own_age: float  # faceage's own regressor on the chosen result
    identity: float | None  # SFace similarity of the chosen result to the input
    reached: bool  # own_age within the tolerance of the target
    limited_by_identity: bool
    evaluations: int
    offset: float = 0.0  # the regressor's reading of the input minus the source age
    limited_by_guard: bool = False  # stronger candidates failed the artifact guard


class OwnJudges:
    """faceage's own age regressor and the SFace embedder, loaded on first use."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._regressor: Any = None  # AgeRegressor, loaded on first use (torch only when needed)
        self._verifier: Any = None  # IdentityVerifier

    def ages(self, faces: list[np.ndarray]) -> np.ndarray:
        """The own regressor's ages; faces are shrunk to its training size first with OpenCV
        (cheaper than the network's own resize of a full batch, and the same framing)."""
        import cv2
        import torch

        from faceage.models.io import load_age_regressor

        if self._regressor is None:
            self._regressor = load_age_regressor(device=self.device).eval()
        small = np.stack([cv2.resize(f, (REGRESSOR_SIZE, REGRESSOR_SIZE), interpolation=cv2.INTER_AREA) for f in faces])
        x = torch.from_numpy(small).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        with torch.inference_mode():
            return self._regressor(x.to(self.device)).age.cpu().numpy().astype(np.float64)

    def clean(self, reference: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
        """(N,) bool: each face passes the benchmark's artifact guard against ``reference`` (fine
        chroma detail at most ``CHROMA_MEDIAN_MAX`` times the input's: strong luma detail clipped
        in RGB turns into colour speckle)."""
        from faceage.eval.guards import CHROMA_MEDIAN_MAX, chroma_ratio

        refs = np.repeat(reference[None], len(faces), axis=0)
        return chroma_ratio(refs, np.stack(faces)) <= CHROMA_MEDIAN_MAX

    def similarity(self, reference: np.ndarray, faces: list[np.ndarray]) -> np.ndarray:
        from faceage.eval.identity import IdentityVerifier

        if self._verifier is None:
            self._verifier = IdentityVerifier("sface")
        emb = self._verifier.embed_aligned(np.stack([reference, *faces]))
        return np.atleast_1d(np.asarray(self._verifier.similarity(emb[:1], emb[1:]), np.float64)).reshape(-1)


def choose_strength(
    render: Callable[[float], np.ndarray],
    face: np.ndarray,
    source: float,
    target: float,
    judges: OwnJudges,
    scale: float = 1.0,
    tolerance: float = TOLERANCE,
    identity_floor: float = IDENTITY_FLOOR,
) -> LoopResult:
    """The strength for one face: ``render(strength) -> aligned face``, ``face`` the input, whose age
    is ``source`` (known or estimated). Ages below are the regressor's, corrected by its offset on
    ``face``."""
    strengths = [c * scale for c in CANDIDATES]
    images = [render(s) for s in strengths]
    clean = judges.clean(face, images)
    # the artifact guard bounds the strength: candidates from the first that fails are dropped
    keep = len(strengths) if clean.all() else max(int(np.argmin(clean)), 1)
    guarded = keep < len(strengths)
    strengths, images = strengths[:keep], images[:keep]
    readings = judges.ages([face, *images])
    offset = float(readings[0]) - source

    def corrected(batch: list[np.ndarray]) -> np.ndarray:
        return judges.ages(batch) - offset

    ages = readings[1:] - offset
    evaluations = len(strengths) + 1

    def between(i: int) -> tuple[float, np.ndarray, float] | None:
        """One interpolated evaluation between candidates i - 1 and i: (strength, image, age), or
        None when it fails the artifact guard."""
        nonlocal evaluations
        s = _interpolate(strengths[i - 1], strengths[i], ages[i - 1], ages[i], target)
        img = render(s)
        age = float(corrected([img])[0])
        evaluations += 1
        return (s, img, age) if judges.clean(face, [img])[0] else None

    errors = np.abs(ages - target)
    within = [i for i in range(len(strengths)) if errors[i] <= tolerance]
    best = within[0] if within else int(errors.argmin())
    order = np.sign(ages - target)
    if not within and np.ptp(ages) < tolerance and len(set(order)) == 1:
        # out of reach and the regressor cannot tell the candidates apart: its "nearest" is noise,
        # so the edit goes as far as the limits below allow
        best = len(strengths) - 1
    pick_s, pick_img, pick_age = strengths[best], images[best], float(ages[best])
    if within:
        # refine towards the weaker neighbour when the target lies between the two
        if best > 0 and order[best - 1] != order[best]:
            found = between(best)
            if found is not None and abs(found[2] - target) <= tolerance:
                pick_s, pick_img, pick_age = found
    else:
        pairs = [i for i in range(1, len(strengths)) if order[i - 1] != order[i]]
        if pairs:
            found = between(pairs[0])
            if found is not None and abs(found[2] - target) < abs(pick_age - target):
                pick_s, pick_img, pick_age = found
    similarity = float(judges.similarity(face, [pick_img])[0])
    limited = False
    if similarity < identity_floor:
        weaker = [(s, im) for s, im in zip(strengths, images) if s < pick_s]
        weaker = [(c * scale, render(c * scale)) for c in FALLBACK[::-1]] + weaker
        sims = judges.similarity(face, [im for _, im in weaker])
        ok = [k for k in range(len(weaker)) if sims[k] >= identity_floor]
        k = ok[-1] if ok else 0
        pick_s, similarity = weaker[k][0], float(sims[k])
        pick_age = float(corrected([weaker[k][1]])[0])
        evaluations += len(FALLBACK) + 1
        limited = True
    return LoopResult(
        strength=float(pick_s),
        own_age=float(pick_age),
        identity=similarity,
        reached=abs(pick_age - target) <= tolerance,
        limited_by_identity=limited,
        evaluations=evaluations,
        offset=offset,
        limited_by_guard=guarded,
    )


def _interpolate(s0: float, s1: float, a0: float, a1: float, target: float) -> float:
    if a1 == a0:
        return 0.5 * (s0 + s1)
    t = float(np.clip((target - a0) / (a1 - a0), 0.0, 1.0))
    return s0 + t * (s1 - s0)
