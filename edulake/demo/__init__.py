"""Demo and test stand-ins: the Clever test-data generator and a LibInsight-compatible server."""
