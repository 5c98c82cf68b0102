"""The gateway's rules, no I/O: who may do what (``access``), accounts and secrets
(``accounts``), the desk's queue lines and versions (``desk``), webhooks (``webhooks``)."""
