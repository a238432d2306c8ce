"""``python -m bench.dispatch``: the CPU of Bolt's own dispatch of one click, in-process.

Every ack of this bot goes through ``AsyncApp.async_dispatch`` (design §2: the web layer hands
Bolt the verified request). This measures that part alone, for a bare app with one action
listener that only acks, next to slack_sdk's signature check: what an ack costs before any of
the bot's own work, and so the least the bot's CPU per ack can be measured against the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bench.common import SIGNING_SECRET as SECRET
from bench.common import SINGLE_BOT_TOKEN
from tests.fakes.slack_requests import TEAM_ID, block_actions_payload, form_payload_body, sign


def _app() -> AsyncApp:
    async def authorize(**_: Any) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=None, team_id=TEAM_ID, bot_token=SINGLE_BOT_TOKEN, bot_user_id="U0BOT"
        )

    app = AsyncApp(signing_secret=SECRET, authorize=authorize, process_before_response=True)

    @app.action("cancel_training")
    async def handle(ack: Any) -> None:
        await ack()

    return app


async def measure(n: int) -> dict[str, float]:
    """CPU ms per click: Bolt's dispatch (signature check included) and the check alone."""
    app = _app()
    body = form_payload_body(block_actions_payload())
    text = body.decode()

    def request() -> AsyncBoltRequest:
        headers = {k.lower(): [v] for k, v in sign(body, SECRET).items()}
        headers["content-type"] = ["application/x-www-form-urlencoded"]
        return AsyncBoltRequest(body=text, headers=headers)

    for _ in range(200):  # warm up
        await app.async_dispatch(request())
    started = time.process_time()
    for _ in range(n):
        response = await app.async_dispatch(request())
        assert response.status == 200, response.body
    dispatch = (time.process_time() - started) * 1000 / n
    verifier = SignatureVerifier(SECRET)
    started = time.process_time()
    for _ in range(n):
        headers = sign(body, SECRET)
        verifier.is_valid(text, headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
    check = (time.process_time() - started) * 1000 / n
    return {"bolt_dispatch_cpu_ms": dispatch, "signature_check_cpu_ms": check}


def main() -> None:
    """Print both figures as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__)
    p.add_argument("-n", type=int, default=5000, help="clicks to dispatch (default 5000)")
    print(json.dumps(asyncio.run(measure(p.parse_args().n)), indent=2))


if __name__ == "__main__":
    main()
