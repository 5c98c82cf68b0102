"""Using the requester portal as a browser without scripts does: read the form's CSRF
token from the page, post forms, follow the link mailed to a real SMTP relay."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from support.mailsink import MailSink, text_of
from support.wait import eventually

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FORM_KEY = re.compile(r'name="form_key" value="([^"]+)"')
LINK = re.compile(r"https?://\S+/portal/link\?token=[A-Za-z0-9_%-]+")


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def form_key_of(page: str) -> str:
    found = FORM_KEY.search(page)
    assert found, "the page has no form key"
    return found.group(1)


async def mailed_link(relay: MailSink, email: str, *, already: int = 0) -> str:
    """The newest sign-in link mailed to ``email``, once there are more than ``already``."""
    def links() -> list[str]:
        found = (LINK.search(text_of(m)) for m in mail_to(relay, email))
        return [link.group(0) for link in found if link]

    async def newer() -> str | None:
        current = links()
        return current[-1] if len(current) > already else None

    return await eventually(newer, what=f"a sign-in link mailed to {email}")


def mail_to(relay: MailSink, email: str) -> list[EmailMessage]:
    """What the relay got for this address, whatever capitals either side wrote."""
    return [m for m in relay.messages if email.casefold() in str(m["To"]).casefold()]


def links_mailed(relay: MailSink, email: str) -> int:
    return sum(1 for m in mail_to(relay, email) if LINK.search(text_of(m)))


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def ask_for_link(client: httpx.AsyncClient, email: str) -> httpx.Response:
    page = await client.get("/portal")
    return await client.post("/portal/sign-in",
                             data={"email": email, "csrf": csrf_of(page.text)})


async def follow(client: httpx.AsyncClient, token: str) -> httpx.Response:
    page = await client.get("/portal/link", params={"token": token})
    assert page.status_code == 200, page.text
    return await client.post("/portal/link", data={"token": token, "csrf": csrf_of(page.text)})


async def signed_in(client: httpx.AsyncClient, relay: MailSink, email: str) -> str:
    """Sign ``client`` in as ``email`` by the mailed link; the session's CSRF token."""
    already = links_mailed(relay, email)
    asked = await ask_for_link(client, email)
    assert asked.status_code == 200, asked.text
    token = token_of(await mailed_link(relay, email, already=already))
    done = await follow(client, token)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/portal/requests"
    mine = await client.get("/portal/requests")
    assert mine.status_code == 200, mine.text
    return csrf_of(mine.text)


async def ask(client: httpx.AsyncClient, subject: str, description: str, *,
              name: str = "Mario Rossi", form_key: str | None = None,
              **fields: Any) -> httpx.Response:
    page = await client.get("/portal/new")
    return await client.post("/portal/new", data={
        "csrf": csrf_of(page.text), "form_key": form_key or form_key_of(page.text),
        "subject": subject, "description": description, "name": name, **fields})
