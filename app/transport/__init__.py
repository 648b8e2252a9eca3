"""Everything that touches a client's socket: the Engine.IO WebSocket and long-polling
transports, the ``/ws`` adapter, the ordered frame writer (close included) and connection limits."""
