"""The scenario matrix: which load-generator runs make up a bench, and which table rows each
one yields. Sizes come from the command line (see run.py); --smoke shrinks all of them."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    """One line of the report: `metric` of the loadgen result, shown in `unit`."""

    label: str
    metric: str
    unit: str
    higher_is_better: bool = True
    has_latency: bool = True
    has_delivery: bool = False  # lost / duplicated / order columns apply


@dataclass(frozen=True)
class Case:
    key: str
    scenario: str  # loadgen scenario
    args: dict
    rows: tuple
    nodes: int = 1  # 2: a cluster through Redis, clients spread over both nodes
    needs_ws: bool = False
    fresh_server: bool = False  # run on a server started for this case alone
    only: tuple = ()  # run against these servers only (empty: all)
    env: dict = field(default_factory=dict)  # extra environment for the gateway (needs fresh_server)
    rate_of: str | None = None
    """Fixed-rate case: its `rate` is RATE_SHARE of Node's delivered msgs/s in case `rate_of` of
    the same run (this server's own when Node is not measured), divided by `rate_divisor`."""
    rate_divisor: int = 1


RATE_SHARE = 0.5


def k(n):
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def messages_for(clients, opts, share=1.0):
    """Messages per fan-out run: --messages if given, else `share` of --deliveries spread over
    the room (so a 5k room gets fewer messages than a 1k room, and runs do the same work)."""
    if opts.messages:
        return opts.messages
    return max(10, int(opts.deliveries * share) // clients)


def fanout_rows(label):
    return (Row(label, "msgs_per_s", "delivered msgs/s", has_delivery=True),)


def latency_rows(label):
    return (
        Row(
            f"{label} at {RATE_SHARE:.0%} of Node's saturation",
            "p99_ms",
            "p99 ms at a fixed rate",
            higher_is_better=False,
            has_delivery=True,
        ),
    )


def build_cases(opts):
    cases = []
    for n in opts.connect_clients:
        cases.append(
            Case(
                f"connect-{n}",
                "connect",
                {"clients": n},
                (
                    Row(f"connect {k(n)}", "conns_per_s", "connections/s"),
                    Row(
                        f"idle memory {k(n)}",
                        "kb_per_conn",
                        "KB per connection",
                        higher_is_better=False,
                        has_latency=False,
                    ),
                ),
                fresh_server=True,
            )
        )
    for n in filter(None, opts.ws_connect_clients):  # 0 skips them
        cases.append(
            Case(
                f"connect-ws-{n}",
                "connect",
                {"clients": n, "client": "ws"},
                (
                    Row(f"connect {k(n)}, plain /ws", "conns_per_s", "connections/s"),
                    Row(
                        f"idle memory {k(n)}, plain /ws",
                        "kb_per_conn",
                        "KB per connection",
                        higher_is_better=False,
                        has_latency=False,
                    ),
                ),
                needs_ws=True,
                fresh_server=True,
                only=("node", "gateway", "baseline"),  # vanilla python-socketio has no /ws
            )
        )
    for n in opts.clients:
        m = messages_for(n, opts)
        cases.append(Case(f"fanout-{n}", "fanout", {"clients": n, "messages": m}, fanout_rows(f"fan-out {k(n)} x {m}")))
    if opts.mixed_clients:
        n = opts.mixed_clients
        m = messages_for(n, opts)
        cases.append(
            Case(
                "mixed",
                "fanout",
                {"clients": n, "messages": m, "ws-share": 0.5},
                fanout_rows(f"mixed room {k(n)} x {m} (half plain WS)"),
                needs_ws=True,
            )
        )
    if opts.ping_clients:
        args = {"clients": opts.ping_clients, "duration-ms": int(opts.ping_seconds * 1000)}
        for key, label in (("ping", "ping"), ("ack", "join_room ack")):
            row = Row(f"{label} {opts.ping_clients} clients", "rtt_per_s", "round trips/s")
            cases.append(Case(key, key, args, (row,)))
    if opts.rooms_clients:
        n, size = opts.rooms_clients, opts.room_size
        rooms = f"{k(n)} in {n // size} rooms of {size}"
        cases.append(
            Case(
                "rooms",
                "rooms",
                {"clients": n, "room-size": size, "messages": opts.rooms_messages},
                fanout_rows(f"small rooms {rooms}, {opts.rooms_messages} each, saturation"),
            )
        )
        cases.append(
            Case(
                "rooms-rate",
                "rooms",
                {"clients": n, "room-size": size, "duration-ms": int(opts.latency_seconds * 1000)},
                latency_rows(f"small rooms {rooms}"),
                rate_of="rooms",
                rate_divisor=size,
            )
        )
    if opts.clients and opts.latency_seconds:
        n = opts.clients[0]
        cases.append(
            Case(
                f"fanout-rate-{n}",
                "fanout",
                {"clients": n, "messages": 0},  # messages: rate x --latency-seconds, set with the rate
                latency_rows(f"fan-out {k(n)}"),
                rate_of=f"fanout-{n}",
                rate_divisor=n,
            )
        )
    if opts.stock_clients:
        n = opts.stock_clients
        m = messages_for(n, opts, share=0.1)  # a cross-check: a tenth of the work will do
        cases.append(
            Case(
                "stock",
                "fanout",
                {"clients": n, "messages": m, "client": "stock"},
                fanout_rows(f"fan-out {k(n)} x {m}, stock socket.io-client"),
            )
        )
    if opts.storm_clients:
        n = opts.storm_clients
        cases.append(
            Case(
                "storm-all",
                "connect",
                {"clients": n, "users": 0},
                (Row(f"connect {k(n)} distinct users, --presence-announce all", "conns_per_s", "connections/s"),),
                fresh_server=True,
                only=("gateway",),  # Node's presence to everyone: 3,000 users took 2 minutes, some timed out
            )
        )
    if opts.watch_storm_clients:
        n = opts.watch_storm_clients
        cases.append(
            Case(
                "storm-watchers",
                "connect",
                {"clients": n, "users": 0, "watch": 10},
                (
                    Row(
                        f"connect {k(n)} distinct users, each watching 10, --presence-announce watchers",
                        "conns_per_s",
                        "connections/s",
                    ),
                ),
                fresh_server=True,
                only=("gateway",),
                env={"PRESENCE_ANNOUNCE": "watchers"},
            )
        )
    if opts.polling_clients:
        n = opts.polling_clients
        m = messages_for(n, opts, share=0.25)  # every batch costs a poll round trip: a quarter of the work
        cases.append(
            Case(
                "polling",
                "fanout",
                {"clients": n, "messages": m, "client": "polling"},
                fanout_rows(f"fan-out {k(n)} x {m}, long-polling clients"),
            )
        )
    if opts.cluster_clients:
        n = opts.cluster_clients
        m = messages_for(n, opts)
        cases.append(
            Case(
                "cluster",
                "fanout",
                {"clients": n, "messages": m},
                fanout_rows(f"2 nodes + Redis, fan-out {k(n)} x {m}"),
                nodes=2,
            )
        )
    return cases
