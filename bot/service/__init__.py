"""The service layer: cancellations, access policy and workspaces, in plain values (no Slack, SQL or HTTP)."""
