"""The streamlearn benchmark: the daemon beside bare River, a naive loop and Quix Streams.

Run it with ``python -m bench`` (``make bench``); ``python -m bench --help`` lists the
options. Results go to ``bench/results/latest.md``. Nothing here is imported by the
product packages, and tests never assert the times it measures.
"""
