"""Batch mode: the same work as `process` through Gemini's Batch API (half the price, a 24 h
target), into the same history, never two requests for one piece of work.

    runner      the entry points: submit_process, submit_retry, collect, cancel, refresh
    building    planned images -> claimed variations -> JSONL lines -> jobs under a size cap
    submission  upload and create each job exactly once (found by display name after doubt)
    waiting     poll with backoff; stop at the end, or report what will not end by waiting
    importing   results -> outputs and closed attempts; job endings -> failures, interruptions
    jsonl       the request and result lines      members   attempt rows in engine terms
    clients     a Batch API client per backend      session   what one run's parts share

Where a variation stands while its job is at Google, and what each command does with it:

* Planned and claimed, its line not yet in a recorded job: `pending` under the run's lease,
  as in interactive mode. A crash before the job is recorded sent nothing; the next run takes
  it over (`interrupted`, then claimed again).
* In a recorded job: `batched`, with an open attempt (trigger `batch`, started at
  submission) naming the job. The job holds it, not a run: `recover_dead_runs` leaves it and
  its attempt alone however long the job takes, since the job may still deliver it.
  `process` (either mode) skips it (`in_batch`), even with `--force`; `retry-failed` does not
  offer it; `abandon` refuses it; `history` shows it waiting in its job. A rerun of
  `process --batch` follows the job instead of making another; `batch collect` finishes it.
* When its job ends: the result line's outcome (completed, with its one credit, or failed,
  classified), or the job's ending: FAILED and EXPIRED fail it (retry-failed offers it),
  CANCELLED or a job the API no longer knows interrupt it (the next `process --batch` or
  `retry-failed` sends it again). The attempt closes at import.
"""
