"""The agent desktop's page: a shell (``static/agent.html``) the script fills from the
broker and the API.

Its automation hooks (``data-testid``) are a contract (docs/agent-desktop.md).
The words are keys of the one catalogue (``hotline/web/static/catalogue.json``),
filled in by the script in the user's language.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

PAGE = Path(__file__).with_name("static") / "agent.html"
# Read once, when the server is assembled (not in a request, on the event loop).
_HTML = PAGE.read_text(encoding="utf-8")


def agent_page() -> web.Response:
    return web.Response(text=_HTML, content_type="text/html")
