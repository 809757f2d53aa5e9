"""Imported by the fork server that starts local Dask workers (``PRELOAD`` in
:mod:`pipelines.cluster`): drops one log record of distributed's that a local run can only
emit while it shuts down.

A local cluster's scheduler lives in the ``matdata`` process itself.  When that process
stops (end of a run, Ctrl-C), a worker whose heartbeat is in flight finds the scheduler
gone and logs "Failed to communicate with scheduler during heartbeat." with a traceback
at ERROR level, on a loaded machine often enough to break the one-line interruption
message.  The worker is being closed by that same shutdown, so the record says nothing
a user can act on.  Every other record, errors included, passes.
"""

import logging

#: the message distributed's ``Worker.heartbeat`` logs when the scheduler cannot be reached
HEARTBEAT_LOST = "Failed to communicate with scheduler during heartbeat"


def _keep(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(HEARTBEAT_LOST)


logging.getLogger("distributed.worker").addFilter(_keep)
