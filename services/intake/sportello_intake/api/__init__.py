"""Intake's HTTP routes, one module per audience: the channels' doors, the requester's
status page and rating, and the internal ticket API. ``app.py`` mounts the three routers."""

from sportello_intake.api.channels import channels, mail_limits
from sportello_intake.api.internal import internal
from sportello_intake.api.public import public

__all__ = ["channels", "internal", "mail_limits", "public"]
