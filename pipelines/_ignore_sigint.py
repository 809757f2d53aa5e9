"""Imported only by the fork server that starts Dask worker processes (``PRELOAD`` in
:mod:`pipelines.cluster`, first): the fork server and the workers it forks ignore SIGINT.

A Ctrl-C in a terminal reaches every process of the foreground group.  Workers that die
of it print their own tracebacks and leave the client to tear down a half-dead cluster;
ignoring it there lets the client stop the build and close the cluster quietly.  The fork
server records the SIGINT disposition *after* its preload imports and restores it in each
child, so the setting below is what every worker starts with.  Imported first, it also
keeps a Ctrl-C during the fork server's own (slow) preload imports from killing it with a
traceback.
"""

import signal

from matdata import testhooks

signal.signal(signal.SIGINT, signal.SIG_IGN)
testhooks.cluster_starting()  # no-op unless MATDATA_TEST_SIGINT_IN_CLUSTER_START is set
