"""The services behind the gateway, over their internal HTTP APIs (with the service token).

Each call has a time budget. A service that does not answer in time, or answers 5xx,
is ``Unavailable``; its 4xx answers come back as ``Refused`` with the service's own
body, so the caller's error still names the field and the reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx


class Unavailable(Exception):
    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} is unavailable: {reason}")
        self.service = service
        self.reason = reason


class Refused(Exception):
    def __init__(self, service: str, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{service} refused: {status} {body}")
        self.service = service
        self.status = status
        self.body = body


@dataclass
class Backend:
    name: str
    client: httpx.AsyncClient
    timeout_s: float

    async def call(self, method: str, path: str, *, json: Any = None,
                   params: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Any:
        response = await self.raw(method, path, json=json, params=params, headers=headers)
        if response.status_code == 204:
            return None
        return response.json()

    async def raw(self, method: str, path: str, *, json: Any = None,
                  params: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> httpx.Response:
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.request(method, path, json=json, params=params,
                                                     headers=headers)
        except TimeoutError as exc:
            raise Unavailable(self.name, f"no answer within {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(self.name, type(exc).__name__) from exc
        if response.status_code >= 500:
            raise Unavailable(self.name, f"answered {response.status_code}")
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": "refused", "message": response.text[:200]}
            raise Refused(self.name, response.status_code,
                          body if isinstance(body, dict) else {"detail": body})
        return response

    async def healthy(self) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.get("/health/ready")
        except (TimeoutError, httpx.HTTPError):
            return False
        return response.status_code == 200


class Backends:
    """One pooled client per service, shared by every request of the process."""

    def __init__(self, urls: dict[str, str | None], token: str | None,
                 timeout_s: float) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
        self._all: dict[str, Backend] = {
            name: Backend(name, httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                                  timeout=timeout_s), timeout_s)
            for name, url in urls.items() if url
        }

    def __getitem__(self, name: str) -> Backend:
        return self._all[name]

    def has(self, name: str) -> bool:
        return name in self._all

    @property
    def names(self) -> list[str]:
        return list(self._all)

    async def close(self) -> None:
        for backend in self._all.values():
            await backend.client.aclose()
