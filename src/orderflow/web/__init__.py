"""HTTP views on the worker's Faust web server: orders, health. See ``orders.py``."""
