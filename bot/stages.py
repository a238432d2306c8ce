"""Training stages as ModelsLab reports them, in order, and what they mean to people."""

from __future__ import annotations

import re
from dataclasses import dataclass

# v3 fine-tune stages, in the order a training goes through them.
V3_STAGES = (
    "deploying_gpu",
    "training_started",
    "training_success",
    "trained_model_compressing",
    "trained_model_uploading",
    "trained_model_uploaded",
    "deploying_model",
    "model_ready",
)
WORDS = {
    "deploying_gpu": "GPU being deployed",
    "training_started": "training",
    "training_success": "training finished, packaging",
    "trained_model_compressing": "compressing model",
    "trained_model_uploading": "uploading model",
    "trained_model_uploaded": "model uploaded",
    "deploying_model": "deploying model",
    "model_ready": "ready",
    "failed": "failed",
    # v6 trainer states
    "training_queued": "queued",
    "training_running": "training",
    "training_completed": "finished",
}
READY = "model_ready"
FAILED = "failed"
FINAL_STAGES = frozenset({READY, FAILED})
_FAILURE_WORDS = ("fail", "error", "cancelled")
_ETA = re.compile(r"ETA\s*:?\s*(\d+)\s*(minute|min|hour|second)s?", re.IGNORECASE)


@dataclass(frozen=True)
class Stage:
    """A normalised stage: its name, its order, and whether nothing more can happen."""

    name: str
    rank: int

    @property
    def final(self) -> bool:
        """True when the training cannot be cancelled any more."""
        return self.name in FINAL_STAGES

    @property
    def words(self) -> str:
        """The stage in words for the notification."""
        return WORDS.get(self.name, self.name.replace("_", " "))


def normalise(raw: str | None, *, api: str = "v3") -> Stage | None:
    """Map what ModelsLab said (webhook `training_status`/`status`, or a status answer) to a Stage."""
    if not raw:
        return None
    name = str(raw).strip().lower().replace(" ", "_")[:48]
    if api == "v6":
        # v6: training_cancelled means the run failed; a run a user stopped reads training_completed.
        if name == "training_cancelled":
            return Stage(FAILED, 100)
        if name in ("training_completed", "completed", "success"):
            return Stage(READY, len(V3_STAGES))
    if name in V3_STAGES:
        return Stage(name, V3_STAGES.index(name) + 1)
    if any(word in name for word in _FAILURE_WORDS):
        return Stage(FAILED, 100)
    if name in ("training_queued", "queued", "processing"):
        return Stage("training_queued", 0)
    if name in ("training_running", "running"):
        return Stage("training_running", 2)
    return None


def parse_eta(text: str | None) -> str | None:
    """Return "N minutes" from free text such as "ETA : 12 minutes", if present."""
    if not text:
        return None
    match = _ETA.search(str(text))
    if not match:
        return None
    amount, unit = match.group(1), match.group(2).lower()
    unit = {"min": "minute"}.get(unit, unit)
    return f"{amount} {unit}{'' if amount == '1' else 's'}"
