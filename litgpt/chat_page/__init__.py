"""The chat page `litgpt serve` answers GET / with: one self-contained HTML file (no CDN), which talks to the
server's OpenAI-style /v1/chat/completions, streamed."""

from pathlib import Path
from typing import Any

PAGE = Path(__file__).with_name("index.html")


def route() -> Any:
    """The Starlette route of GET /; the page itself asks for the API key when the server wants one."""
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(request: Any) -> Any:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Cache-Control": "no-cache"})

    return Route("/", page)
