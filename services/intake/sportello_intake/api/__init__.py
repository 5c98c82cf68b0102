"""Intake's HTTP routes, one module per audience: the channels' doors, the requester's
status page and rating, the internal ticket API, and a requester's own tickets for the
portal (internal too: the gateway signs the requester in). ``app.py`` mounts them."""

from sportello_intake.api.channels import channels, mail_limits
from sportello_intake.api.internal import internal
from sportello_intake.api.public import public
from sportello_intake.api.requesters import requesters

__all__ = ["channels", "internal", "mail_limits", "public", "requesters"]
