"""Sending to clients from other processes: the ``Emitter``/``SyncEmitter`` API and its CLI."""
