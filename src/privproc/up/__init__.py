"""``privproc up``: the whole system on one machine, on loopback, simulated platform."""
