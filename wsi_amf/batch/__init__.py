"""Screen whole cohorts: every slide of a folder or manifest, with resume, failure isolation, a cohort table,
on one machine (the next slide's patches read while the current one is classified) or on a Ray cluster.

Layout: ``jobs`` (finding slides and their points, output stems), ``resume`` (fingerprints of finished
slides), ``cohort`` (the table's rows and files), ``worker`` (one model, many slides), ``executors`` (local,
Ray), ``run`` (:func:`screen_batch`).
"""

from .jobs import SLIDE_SUFFIXES, SlideJob, find_slides, folder_jobs, manifest_jobs
from .run import BatchResult, screen_batch

__all__ = ["SLIDE_SUFFIXES", "BatchResult", "SlideJob", "find_slides", "folder_jobs", "manifest_jobs", "screen_batch"]
