"""The service layer: cancellations, access policy, workspaces and the listeners' queries, in plain
values (no Slack, SQL or HTTP)."""
