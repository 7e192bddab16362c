"""``python -m bench.baselines.typical_faust worker -l info``: Faust's own command line."""

from bench.baselines.typical_faust.app import app

app.main()
