"""The web app: signup with double opt-in, confirmation, one-click unsubscribe, preferences and a JSON API."""
