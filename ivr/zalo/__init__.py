"""The Zalo Official Account "Phản ánh về thủ tục hành chính Hậu Giang".

One module a step: ``webhook`` (signed events in, durably), ``intake`` (events → cases),
``api`` (the HTTP client and Zalo's error codes), ``tokens`` (access-token refresh with the
single-use refresh token stored atomically), ``outbox`` (answers, auto replies and surveys out,
with retries, backoff and quiet hours), ``surveys`` (SIPAS-style satisfaction surveys) and
``service`` (what ``tongdai serve`` starts).

Zalo's public documentation (developers.zalo.me, also served at docs.zaloplatforms.com) is the
reference; each module cites the pages it relies on.
"""
