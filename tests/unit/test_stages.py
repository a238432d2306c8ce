"""Training stages: what ModelsLab says (webhooks, status calls, v3 and v6) mapped to ordered
stages, the ETA read from free-text logs, and the words people see."""

from __future__ import annotations

import pytest

from bot.stages import FAILED, READY, V3_STAGES, Stage, normalise, parse_eta


@pytest.mark.parametrize(
    ("raw", "name", "rank"),
    [
        ("deploying_gpu", "deploying_gpu", 1),
        ("training_started", "training_started", 2),
        ("training_success", "training_success", 3),
        ("trained_model_compressing", "trained_model_compressing", 4),
        ("trained_model_uploading", "trained_model_uploading", 5),
        ("trained_model_uploaded", "trained_model_uploaded", 6),
        ("deploying_model", "deploying_model", 7),
        ("model_ready", READY, 8),
        # As people and proxies write them: case, spaces, padding.
        ("  Training Started ", "training_started", 2),
        ("MODEL_READY", READY, 8),
        # Failures, whatever words carry them.
        ("failed", FAILED, 100),
        ("training_failed", FAILED, 100),
        ("error", FAILED, 100),
        ("training_cancelled", FAILED, 100),
        # Queued / running words some payloads use.
        ("queued", "training_queued", 0),
        ("processing", "training_queued", 0),
        ("running", "training_running", 2),
    ],
)
def test_v3_words_map_to_ordered_stages(raw: str, name: str, rank: int) -> None:
    assert normalise(raw) == Stage(name, rank)


@pytest.mark.parametrize(
    ("raw", "name", "rank"),
    [
        # v6: a run stopped by a user reads training_completed; training_cancelled means it FAILED.
        ("training_completed", READY, len(V3_STAGES)),
        ("completed", READY, len(V3_STAGES)),
        ("success", READY, len(V3_STAGES)),
        ("training_cancelled", FAILED, 100),
        ("Training_Cancelled", FAILED, 100),
        ("training_queued", "training_queued", 0),
        ("training_running", "training_running", 2),
        ("training_started", "training_started", 2),
        ("training_failed", FAILED, 100),
    ],
)
def test_v6_states_map_to_the_same_stages(raw: str, name: str, rank: int) -> None:
    assert normalise(raw, api="v6") == Stage(name, rank)


@pytest.mark.parametrize("raw", [None, "", "something_new", "training_completed", "success"])
def test_unknown_or_empty_is_no_stage_in_v3(raw: str | None) -> None:
    # v3 has no "completed"/"success" state: only model_ready finishes a v3 training.
    assert normalise(raw) is None


def test_stage_order_follows_the_training() -> None:
    ranks = [normalise(s).rank for s in V3_STAGES]  # type: ignore[union-attr]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert normalise("failed").rank > normalise("model_ready").rank  # type: ignore[union-attr]
    # A v6 finish outranks every v3 stage before model_ready, so it is never "going back".
    v6_done = normalise("training_completed", api="v6")
    assert v6_done is not None and v6_done.rank >= normalise("deploying_model").rank  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "api", "final"),
    [
        ("model_ready", "v3", True),
        ("failed", "v3", True),
        ("training_completed", "v6", True),
        ("training_cancelled", "v6", True),
        ("deploying_model", "v3", False),
        ("trained_model_uploaded", "v3", False),
        ("training_running", "v6", False),
        ("training_queued", "v6", False),
    ],
)
def test_only_ready_and_failed_are_final(raw: str, api: str, final: bool) -> None:
    stage = normalise(raw, api=api)
    assert stage is not None and stage.final is final


@pytest.mark.parametrize(
    ("raw", "api", "words"),
    [
        ("deploying_gpu", "v3", "GPU being deployed"),
        ("training_started", "v3", "training"),
        ("training_success", "v3", "training finished, packaging"),
        ("trained_model_compressing", "v3", "compressing model"),
        ("trained_model_uploading", "v3", "uploading model"),
        ("trained_model_uploaded", "v3", "model uploaded"),
        ("deploying_model", "v3", "deploying model"),
        ("model_ready", "v3", "ready"),
        ("failed", "v3", "failed"),
        ("training_completed", "v6", "ready"),
        ("training_cancelled", "v6", "failed"),
        ("training_queued", "v6", "queued"),
        ("training_running", "v6", "training"),
    ],
)
def test_words_people_read(raw: str, api: str, words: str) -> None:
    stage = normalise(raw, api=api)
    assert stage is not None and stage.words == words


def test_words_of_a_stage_without_a_phrase_are_readable() -> None:
    assert Stage("some_new_state", 3).words == "some new state"


@pytest.mark.parametrize(
    ("text", "eta"),
    [
        ("ETA : 12 minutes", "12 minutes"),
        ("ETA: 1 minute", "1 minute"),
        ("ETA : 1 minutes", "1 minute"),
        ("eta 5 min", "5 minutes"),
        ("ETA : 1 min", "1 minute"),
        ("ETA : 5 mins", "5 minutes"),
        ("ETA : 2 hours", "2 hours"),
        ("ETA : 30 seconds", "30 seconds"),
        ("step 300/1000, loss 0.12 | ETA : 42 minutes remaining", "42 minutes"),
        ("line one\nline two ETA : 7 minutes\nline three", "7 minutes"),
    ],
)
def test_eta_is_read_from_free_text(text: str, eta: str) -> None:
    assert parse_eta(text) == eta


@pytest.mark.parametrize(
    "text", [None, "", "no estimate yet", "ETA : soon", "ETA : minutes", "12 minutes"]
)
def test_no_eta_without_one(text: str | None) -> None:
    assert parse_eta(text) is None
