//! The ml-connector command line: run, demo, replay, backfill, reconcile, status
