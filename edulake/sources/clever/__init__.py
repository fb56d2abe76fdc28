"""Clever Participation Reports: file names, test data, processing."""
