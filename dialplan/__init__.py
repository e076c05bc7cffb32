"""Renders the Asterisk configuration from routing.yaml."""
