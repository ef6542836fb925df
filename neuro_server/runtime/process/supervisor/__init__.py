"""The per-job supervisor of the process runtime, by concern:

    job.py       the job's lifecycle: start it, supervise it, stop it, record its exit
    spawn.py     fork+exec in the job's cgroup, namespaces and credentials
    clients.py   the control socket and its clients
    requests.py  what the clients ask (attach, stdin, resize, signal, exec)
    output.py    the job's output to the log and to attached clients; the TTY
    __main__.py  ``python -m neuro_server.runtime.process.supervisor JOB_DIR``

Standard library only, and nothing heavy: it starts for every job.
"""
