"""The web console (docs/console.md): its static pages (assets.py), sign-in sessions (sessions.py, session_api.py),
the recent-requests ring behind `/admin/requests` (recent.py) and the playground's wire capture (wire.py).
Everything here is a client of the admin API or feeds it; nothing on a client request's path costs anything
unless the request carries a console session."""
