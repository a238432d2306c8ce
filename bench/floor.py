"""The floor: a bare aiohttp endpoint that only verifies the Slack signature and answers 200.

``python -m bench.floor --port P`` (env ``SLACK_SIGNING_SECRET``). No Bolt, no database, no
logging per request: what any Slack endpoint on aiohttp costs at least on this machine.
"""

from __future__ import annotations

import argparse
import os

from aiohttp import web
from slack_sdk.signature import SignatureVerifier


def create_app(signing_secret: str) -> web.Application:
    verifier = SignatureVerifier(signing_secret)

    async def events(request: web.Request) -> web.Response:
        body = await request.read()
        valid = verifier.is_valid(
            body=body,
            timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
            signature=request.headers.get("X-Slack-Signature", ""),
        )
        return web.Response(status=200 if valid else 401)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    app = create_app(os.environ["SLACK_SIGNING_SECRET"])
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
