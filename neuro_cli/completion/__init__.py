"""Shell completion: scripts generated from the command tree, and the cache of job ids, job
names and preset names that dynamic completion answers from (see ``cache``)."""
