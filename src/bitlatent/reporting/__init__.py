"""Figures for the reports under ``data/08_reporting`` (matplotlib, headless)."""
