"""Renderings of a run for people: terminal tables, markdown, HTML and plots."""
