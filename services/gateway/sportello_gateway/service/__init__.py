"""The gateway's use cases: accounts and the audit log (``accounts``), the desk: queues,
workspace and commands (``desk``), the live stream (``live``), webhooks (``webhooks``)."""
