"""The "tutorial shape": this bot as Bolt's getting-started guide would have it written.

A sync Bolt ``App`` with a bot token and signing secret, served by Bolt's built-in
``app.start(port)`` (http.server, listeners on Bolt's default thread pool), whose listeners call
ModelsLab with the sync httpx client *inside the listener, before ``ack()``*. The only change from
the tutorial is that the Web API client points at the fake Slack (``SLACK_API_URL``) instead of
slack.com. Run: ``python -m bench.tutorial --port P`` with the bot's usual environment variables.

Importing this module has no side effects (the import-baseline RSS measures ``import
bench.tutorial``); ``create_app()`` builds the app, which calls ``auth.test`` once as Bolt does.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx
from slack_bolt import App
from slack_sdk import WebClient


def create_app() -> App:
    token = os.environ["SLACK_BOT_TOKEN"]
    app = App(
        client=WebClient(token=token, base_url=os.environ["SLACK_API_URL"]),
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    )
    allowed = set(os.environ.get("CANCEL_ALLOWED_USERS", "").split(","))
    modelslab = os.environ["MODELSLAB_API_URL"]
    key = os.environ["MODELSLAB_API_KEY"]

    def cancel_training(training_id: str) -> str:
        response = httpx.post(
            f"{modelslab}/cancle_training/{training_id}", json={"key": key}, timeout=30
        )
        data = response.json()
        return f"{data.get('status')}: {data.get('messege') or data.get('message')}"

    @app.command("/cancel-training")
    def cancel_command(ack: Any, command: dict[str, Any]) -> None:
        user = command["user_id"]
        training_id = command["text"].strip()
        if user not in allowed:
            ack(f"Sorry <@{user}>, you may not cancel trainings.")
            return
        result = cancel_training(training_id)
        ack(f"<@{user}> cancelled training `{training_id}`: {result}")

    @app.action("cancel_training")
    def cancel_button(ack: Any, body: dict[str, Any], client: WebClient, respond: Any) -> None:
        user = body["user"]["id"]
        training_id = body["actions"][0]["value"]
        if user not in allowed:
            ack()
            respond(text=f"Sorry <@{user}>, you may not cancel trainings.", replace_original=False)
            return
        result = cancel_training(training_id)
        ack()
        text = f"<@{user}> cancelled training `{training_id}`: {result}"
        message = body.get("message")
        if message:
            client.chat_postMessage(
                channel=body["channel"]["id"],
                thread_ts=message.get("thread_ts") or message["ts"],
                text=text,
            )
        else:
            respond(text=text, replace_original=False)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tutorial")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    args = parser.parse_args()
    create_app().start(port=args.port)


if __name__ == "__main__":
    main()
