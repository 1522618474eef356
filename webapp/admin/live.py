"""The live refresh's answer: a page fragment, or 304 while nothing shown has changed.

The pages poll with ``If-None-Match``; a view's ETag is derived from exactly what its
fragment shows, so an unchanged view costs no template rendering and no bytes."""
from __future__ import annotations

from flask import current_app, render_template, request


def fragment(template: str, view):
    """``template`` rendered with ``view``, or 304 when the client already has ``view.etag``."""
    if request.if_none_match.contains(view.etag.strip('"')):
        response = current_app.response_class(status=304)
    else:
        response = current_app.response_class(render_template(template, view=view), mimetype="text/html")
    response.headers["ETag"] = view.etag
    return response
