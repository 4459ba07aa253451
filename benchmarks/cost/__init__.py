"""The cost benchmark's parts, run by benchmarks/cost_per_step.py: prices and the meter
(meter.py), the scenarios (scenarios.py), and one module per report (report_*.py)."""
