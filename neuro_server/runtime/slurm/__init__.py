"""The ``slurm`` runtime: one Slurm job per neuro job, run by the process runtime's supervisor.

runtime.py   SlurmRuntime: the Runtime interface (base.py) over the Slurm commands
commands.py  sbatch/squeue/scontrol/scancel/sacct/sinfo, and their output parsed
script.py    the batch script and the sbatch command
states.py    Slurm's states and reasons in our words
capacity.py  the nodes (sinfo): capacity and addresses
local.py     a job's port and CPU/memory use, read on its node
plugin.py    its entry in the registry (registry.py; never chosen by ``auto``)
"""
