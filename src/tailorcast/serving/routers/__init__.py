"""The API's routers, one per resource; :func:`tailorcast.serving.app.create_app` mounts them."""
