"""Connectors to external systems: folders, SFTP, HTTP APIs, AWS, Prefect blocks."""
