"""Choosing an inference precision by measurement, and the quality guard between precisions.

``auto`` tries every precision this hardware runs natively (fp32; bf16 on avx512_bf16/AMX CPUs
and sm80+ GPUs; fp16 on CUDA; int8 dynamic quantisation on AVX2 CPUs), times each on the same
calibration texts, measures its drift from fp32 (cosine between the two embeddings of each
text), and keeps the fastest whose mean drift is inside ``max_drift``. This module measures;
core.embedding.set_precision is the policy every entry point calls, and its record (trials
included) is what an index manifest keeps and the service's ``/ready`` shows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.device import bf16_supported, int8_supported, native_precision
from core.precision_names import DEFAULT_MAX_DRIFT
from core.unit_vectors import cosine_rows

if TYPE_CHECKING:
    from core.encoder import Encoder

log = logging.getLogger(__name__)

# A faster precision must win by this much to be chosen over a more exact one: timings on a
# shared machine wobble by a few per cent and the choice should not flip with them.
MIN_SPEEDUP = 1.1

# Used when the caller has no texts of its own (the service and the indexer pass real ones):
# varied lengths and topics, so the timing sees short and long batches.
CALIBRATION_TEXTS = (
    "A man is playing a guitar on the street.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "How do I reset my password if I no longer have access to my email?",
    "Children are building a sandcastle on the beach while their parents watch.",
    "The patient was treated with antibiotics and recovered within a week.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "A woman slices tomatoes in the kitchen.",
    "The committee postponed its decision on the new zoning rules until next month.",
    "What is the best way to learn a second language as an adult?",
    "Heavy rain caused flooding in several low-lying neighbourhoods overnight.",
    "The algorithm sorts the list in place using a divide and conquer strategy.",
    "Two dogs are running through a field of tall grass.",
    "Researchers measured the effect of the drug on blood pressure in elderly patients over two "
    "years, and found a small but significant reduction compared with the placebo group.",
    "The train to the airport leaves every fifteen minutes from platform four.",
    "She won the award for her novel about three generations of a fishing family.",
    "Can you recommend a good restaurant near the museum?",
    "The new smartphone has a larger battery, a brighter screen and a faster processor than the "
    "previous model, but it is also more expensive.",
    "Glaciers are retreating faster than scientists predicted a decade ago.",
    "A cat sleeps on a sunny windowsill.",
    "The court ruled that the contract was void because one party had been misled.",
    "Enzymes lower the activation energy of chemical reactions in living cells.",
    "He forgot his umbrella and got soaked on the way home.",
    "Which programming language should I learn first for data analysis?",
    "The orchestra performed the symphony without a conductor for the first time.",
    "Local farmers are switching to drought-resistant crops as summers get hotter.",
    "The bridge was closed for repairs after inspectors found cracks in two of its supports.",
    "A group of people are dancing at a wedding.",
    "Inflation eased slightly in October, mainly because of lower energy prices.",
    "The software update fixes a bug that drained the battery when the screen was off.",
    "Is it safe to eat raw cookie dough?",
    "The museum's new wing displays sculptures from the ancient Mediterranean world.",
    "Several species of frogs have disappeared from the region since the fungus arrived.",
)


@dataclass
class PrecisionTrial:
    precision: str
    texts_per_s: float  # on one thread, by its CPU time (CPU); by the wall clock (GPU)
    mean_cosine: float  # to fp32, over the calibration texts
    min_cosine: float

    @property
    def drift(self) -> float:
        return 1.0 - self.mean_cosine


@dataclass
class PrecisionChoice:
    precision: str
    max_drift: float
    texts: int
    trials: list[PrecisionTrial] = field(default_factory=list)
    # Each trial's embeddings of the texts, so a caller (set_precision) need not redo them.
    embeddings: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def trial(self, precision: str) -> PrecisionTrial | None:
        return next((t for t in self.trials if t.precision == precision), None)

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(replace(self, embeddings={}))  # asdict would deep-copy the arrays
        del fields["embeddings"]
        return fields


def candidates(device: torch.device) -> list[str]:
    """The precisions this hardware runs natively, most exact first."""
    found = ["fp32"]
    if bf16_supported(device):
        found.append("bf16")
    if device.type == "cuda":
        found.append("fp16")
    if int8_supported(device):
        found.append("int8")
    return found


def cosine_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean, min) cosine between matching rows of two embedding matrices."""
    cos = cosine_rows(a, b)
    return float(cos.mean()), float(cos.min())


def _interleaved(
    encoders: dict[str, Encoder], texts: Sequence[str], batch_size: int, rounds: int
) -> tuple[dict[str, np.ndarray], dict[str, list[float]]]:
    """Each encoder's embeddings of ``texts``, and its seconds per pass in each round.

    The candidates take turns, one pass each per round, so a neighbour's burst of load falls on
    all of them alike instead of on whichever happened to be timed then (timing one candidate's
    passes in a block, then the next's, let one busy second decide).

    On a CPU the passes run on this one thread (torch's intra-op threads set to 1 for the
    calibration) and are timed by this thread's CPU time, not the wall clock. A neighbour then
    takes wall time from a pass, never CPU time, and the verdict holds under load: on 2 vCPUs
    beside one busy process, a 2-thread pass went from 27 ms to 130-950 ms at random (a team
    waiting at every kernel's barrier for its preempted thread), so that wall-clock timing chose
    fp32 over a bf16 twice as fast in some runs. The precisions' ratio is a property of the
    kernels, which one thread shows as well as two. A GPU pass is timed on the wall clock."""
    one_thread = next(iter(encoders.values())).device.type == "cpu"
    clock = time.thread_time if one_thread else time.perf_counter
    threads = torch.get_num_threads()
    if one_thread:
        torch.set_num_threads(1)
    try:
        out = {name: enc.encode(texts, batch_size=batch_size) for name, enc in encoders.items()}  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in encoders}
        for r in range(rounds):
            order = list(encoders) if r % 2 == 0 else list(reversed(encoders))  # no fixed position
            for name in order:
                start = clock()
                encoders[name].encode(texts, batch_size=batch_size)
                seconds[name].append(max(clock() - start, 1e-9))
    finally:
        if one_thread:
            torch.set_num_threads(threads)
    return out, seconds


def _faster(candidate: list[float], than: list[float]) -> bool:
    """Whether ``candidate`` is faster than ``than`` by :data:`MIN_SPEEDUP`, on the best pass of
    each (load only ever adds time, so the best pass is the closest to the hardware's speed) and
    in most rounds of the same-round comparison (so one lucky pass cannot decide either)."""
    best = min(than) / min(candidate) >= MIN_SPEEDUP
    wins = sum(t / c >= MIN_SPEEDUP for c, t in zip(candidate, than, strict=True))
    return best and wins * 2 > len(candidate)


def choose_precision(
    encoder: Encoder,
    texts: Sequence[str] | None = None,
    max_drift: float = DEFAULT_MAX_DRIFT,
    batch_size: int = 32,
    repeats: int = 5,
) -> PrecisionChoice:
    """Measure each candidate precision on ``texts`` and pick the fastest inside ``max_drift``,
    timing the candidates in ``repeats`` interleaved rounds.

    The choice starts from :func:`core.device.native_precision` (when inside ``max_drift``) and
    moves only to a precision that is consistently faster than it, by ``MIN_SPEEDUP`` (:func:`_faster`): a
    neighbour's load can make any pass slow, so timing may overrule the hardware rule only when
    it says so in most rounds, never on one busy second. ``encoder`` must hold fp32 weights; it
    is not changed: each trial runs on a copy."""
    if encoder.precision != "fp32":
        raise ValueError(f"calibration needs the fp32 weights; this encoder is {encoder.precision}")
    sample = list(texts or CALIBRATION_TEXTS)
    variants = {
        name: encoder if name == "fp32" else encoder.variant(name) for name in candidates(encoder.device)
    }
    embeddings, seconds = _interleaved(variants, sample, batch_size, max(1, repeats))
    del variants
    reference = embeddings["fp32"]
    trials = []
    for name, passes in seconds.items():
        mean, low = (1.0, 1.0) if name == "fp32" else cosine_agreement(reference, embeddings[name])
        trials.append(PrecisionTrial(name, len(sample) / min(passes), mean, low))
    by_name = {t.precision: t for t in trials}
    prior = by_name[native_precision(encoder.device, tuple(by_name))]
    best = prior if prior.drift <= max_drift else trials[0]
    for trial in trials:
        ok = trial is not best and trial.drift <= max_drift
        if ok and _faster(seconds[trial.precision], seconds[best.precision]):
            best = trial
    choice = PrecisionChoice(best.precision, max_drift, len(sample), trials, embeddings)
    log.info(
        "precision auto -> %s (%s)",
        best.precision,
        ", ".join(f"{t.precision}: {t.texts_per_s:.0f} texts/s, drift {t.drift:.2e}" for t in trials),
    )
    return choice
