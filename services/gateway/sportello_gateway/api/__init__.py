"""The gateway's HTTP API, one router per subject; every route passes ``deps.guard``."""
