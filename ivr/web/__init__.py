"""The staff console (`tongdai web`): its own process, never the controller's event loop.

Rooms: :mod:`.accounts` (staff accounts, Argon2id), :mod:`.auth` (sign-in, lockout, sessions),
:mod:`.csrf`, :mod:`.http` (request keys, refusals), :mod:`.access` (roles: who may see and do what), :mod:`.audit` (the audit trail),
:mod:`.pages` (cases), :mod:`.live` (the live board, desk phones), :mod:`.reports` (monthly
report, exports); :mod:`.app` wires them together. Templates and static files are package data.
"""
