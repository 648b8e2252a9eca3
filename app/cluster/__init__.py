"""Redis: the cluster bus (a stream), presence and session stores, cluster history, cluster
queries, and the ``websocket:*`` bridge for existing services."""
