"""A local Prefect server + process worker running every edulake deployment."""
