"""Experiments built on training runs: sweeps (:mod:`.sweep`), reports (:mod:`.report`), snapshot
ensembles (:mod:`.ensemble`), and the results format sweeps write and reports read (:mod:`.results`).

Library code: the commands that drive them live in :mod:`wdlab.cli`.
"""
