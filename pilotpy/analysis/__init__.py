"""Config analysis with istioctl analyze's codes: for `pilotpy analyze` and for every change
set at ingest."""
