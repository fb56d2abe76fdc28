"""The source systems edulake loads: Clever and LibInsight."""
