"""Frozen records of one sample of each domain, and views derived from two samples.

This package imports nothing else of memtop.
"""
