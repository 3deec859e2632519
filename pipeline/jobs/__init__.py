"""Jobs: the lifecycle of a Job row, heartbeats and re-queueing, the job kinds, the storage sweep, and the system
report."""
