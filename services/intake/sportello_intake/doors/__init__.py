"""How channels reach intake besides plain HTTP: mail (parsing, the SMTP listener) and the
signatures that authenticate channels that sign their requests."""
