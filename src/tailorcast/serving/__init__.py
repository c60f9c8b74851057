"""Serving: the HTTP API (app, routers, auth) over the ServingEngine (data and models)."""
