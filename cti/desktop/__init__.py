"""The agent desktop in the browser: the page, its API, a broker login per session."""
