"""Asterisk configuration templates, installed as ivr.asterisk (package data of tongdai render)."""
