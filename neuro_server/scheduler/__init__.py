"""The scheduler: moves jobs through their lifecycle and keeps the store and runtime in step.

pending --(fits in free resources, oldest first)--> running --> succeeded | failed | cancelled

- A job waits with reason ``Scheduling`` and a description of what it waits for while its preset
  does not fit in the free CPU, memory and GPUs of the runtime's capacity.
- A running job is watched until it exits; its exit code decides the final status
  (0: succeeded/Completed, OOM: failed/OOMKilled, other: failed/Error, could not run:
  failed/ContainerCannotRun).  A job killed on request ends cancelled/UserRequested, one past
  its life span cancelled/LifeSpanEnded.
- ``life_span_signal`` (our extension, as Slurm's --signal): the job gets that signal once,
  the given seconds of run time before its life span ends; a bump-life-span re-arms it.
- ``restart_policy`` on-failure (a non-zero exit or OOM) or always (any exit): instead of
  ending, the job restarts in place, as on the platform: it stays running with reason
  ``Restarting`` (the description says the exit and the backoff; the transition has the exit
  code), ``restarts`` counts it, it keeps its resources, GPUs, disks and seat, and it starts
  again after a backoff (1, 2, 4... 30 s; back to 1 s after a run of 10 minutes).  Never after
  a kill (between two runs: cancelled at once), the end of its life span (the backoff is run
  time), or a command that cannot run.  It is not suspended between two runs (nothing to
  freeze).  Its output continues in the same log.
- Jobs on presets with ``scheduler_enabled`` are preemptible: when a pending job does not fit,
  running preemptible jobs (the longest-running first) are suspended (status suspended, their
  processes frozen, not killed: they keep their memory and GPUs, give back their CPU) if that
  makes it fit, and resumed (oldest suspension first) when CPU is free again.  Among
  preemptible jobs this is round robin: a suspended or pending one may take the place of one
  that has run for ``round_robin_seconds`` since it last (re)started.  Each suspension counts
  in ``restarts``.
- On start, ``reconcile`` brings every active job up to date with what the runtime knows, so
  jobs that ran or ended while the server was down are neither lost nor restarted.  A job whose
  supervisor was lost (SIGKILLed) has what is left of it killed by the runtime and ends
  failed/SupervisorLost, whether the watcher or a restarted server finds it.
- A full disk never loses a job's end: a record that fails for want of space (or a busy
  database) is retried with backoff until it holds, and the first such failure gives up the
  data dir's reserve (diskfull.py) so that it usually holds at once.

    plan.py       the policy, pure: a snapshot (jobs, capacity, time) -> decisions
    resources.py  what is free of the capacity, and what fits
    lifecycle.py  how a run ends, pure: a restart and its backoff, or the final status
    executor.py   Scheduler: the loop (snapshot, plan, apply), requests, starts, suspensions
    launch.py     what a start needs: secrets, passed config, GPUs' environment, mounts, JobSpec
    watch.py      a run to its end; reconcile after a server restart; retries on a full disk
    state.py      what the parts share
"""

from __future__ import annotations

from .executor import NameTaken, QuotaExhausted, Scheduler

__all__ = ["NameTaken", "QuotaExhausted", "Scheduler"]
