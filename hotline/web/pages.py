"""The pages every role shares: the login page and the landing page.

Their words come from the one catalogue (``static/catalogue.json``, English
and Korean) that the feature pages read too.  Pages are plain HTML with
local assets only (the machines are offline); every value put into them is
escaped.
"""

from __future__ import annotations

import functools
import json
from html import escape
from pathlib import Path

from aiohttp import web

from hotline.records.users import Actor

CATALOGUE = Path(__file__).with_name("static") / "catalogue.json"


@functools.cache
def catalogue() -> dict[str, dict[str, str]]:
    """Every UI text by language (read once)."""
    data: dict[str, dict[str, str]] = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return data


def text(lang: str, key: str) -> str:
    words = catalogue()
    return words.get(lang, {}).get(key) or words["en"][key]


def _page(lang: str, title: str, body: str, status: int = 200) -> web.Response:
    html = f"""<!doctype html>
<html lang="{escape(lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<link rel="stylesheet" href="/static/base.css">
</head>
<body>
{body}
</body>
</html>
"""
    return web.Response(text=html, content_type="text/html", status=status)


def login_html(lang: str, error: str = "", status: int = 200) -> web.Response:
    """The one login page for every role: ``name``, ``password`` and a submit button."""
    t = functools.partial(text, lang)
    problem = {
        "wrong": t("login.wrong"),
        "throttled": t("login.throttled"),
        "missing": t("login.missing"),
    }.get(error, "")
    alert = f'<p class="alert" role="alert" data-testid="login-error">{escape(problem)}</p>'
    body = f"""<main class="login">
<h1>{escape(t("app.name"))}</h1>
<form method="post" action="/login" data-testid="login-form">
<label>{escape(t("login.name"))}
<input name="name" autocomplete="username" required autofocus></label>
<label>{escape(t("login.password"))}
<input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit" data-testid="login-submit">{escape(t("login.submit"))}</button>
{alert if problem else ""}
</form>
</main>"""
    return _page(lang, f"{t('app.name')}: {t('login.title')}", body, status)


def home_html(lang: str, actor: Actor, csrf: str) -> web.Response:
    """Where a role without a page of its own lands: who they are, and a way out."""
    t = functools.partial(text, lang)
    role = sorted(actor.roles)[0]
    body = f"""<main class="home">
<h1>{escape(t("app.name"))}</h1>
<p data-testid="signed-in">{escape(t("home.signed_in"))}
<b>{escape(actor.name)}</b> ({escape(role)})</p>
<p>{escape(t("home.no_page"))}</p>
<form method="post" action="/logout" data-csrf="{escape(csrf)}">
<button type="submit" data-testid="logout">{escape(t("logout"))}</button>
</form>
</main>
<script type="module" src="/static/logout.js"></script>"""
    return _page(lang, t("app.name"), body)
