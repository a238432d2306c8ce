"""Custody of response_urls (bot/slack/delivery/response_urls.py): never in the store in plain text."""

from __future__ import annotations

from cryptography.fernet import Fernet

from bot.crypto import SecretBox
from bot.model import Cancellation, Origin, ReportState, State
from bot.slack.delivery.response_urls import ResponseUrls
from tests.fakes.slack import FakeSlack, server_error

URL_PATH = "cmd"


def row(cancellation_id: int, sealed: str | None) -> Cancellation:
    return Cancellation(
        id=cancellation_id,
        workspace_id="T0TEAM001",
        training_id="F5jvdzGnYi",
        requested_by="U0ALICE01",
        origin=Origin.COMMAND,
        state=State.CANCELLED,
        outcome="accepted",
        reason=None,
        dry_run=False,
        requested_at=0.0,
        updated_at=0.0,
        finished_at=0.0,
        attempts=1,
        next_attempt_at=0.0,
        lease_owner=None,
        lease_expires_at=None,
        channel_id="C0TRAIN01",
        report_state=ReportState.PENDING,
        response_url=sealed,
    )


async def test_with_a_key_the_url_is_sealed_for_the_store_and_posted_to(slack: FakeSlack) -> None:
    urls = ResponseUrls(box=SecretBox([Fernet.generate_key().decode()]))
    url = slack.response_url(URL_PATH)
    sealed = urls.seal(url)
    assert sealed is not None and url not in sealed
    assert await urls.post(row(1, sealed), "cancel accepted")
    [posted] = await slack.wait_for_response(URL_PATH)
    assert posted["text"] == "cancel accepted" and posted["response_type"] == "ephemeral"


async def test_without_a_key_the_url_stays_in_memory(slack: FakeSlack) -> None:
    urls = ResponseUrls(box=SecretBox([]))
    url = slack.response_url(URL_PATH)
    assert urls.seal(url) is None
    assert urls.url_for(row(1, None)) is None
    urls.remember(1, url)
    assert urls.url_for(row(1, None)) == url
    slack.fail_response(URL_PATH, server_error(500))
    assert not await urls.post(row(1, None), "cancel accepted")
    assert not await urls.post(row(2, None), "nobody to tell")
