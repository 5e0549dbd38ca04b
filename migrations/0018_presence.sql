-- Who is in which call, for a service of several servers sharing one bus
-- (`bus = "nats://…"`): each admitted peer holds a seat, written by the server
-- it is connected to. A room's capacity is counted here, under a lock per room,
-- so two servers admitting at once cannot overfill it; a server that joins a
-- call reads here who is already in it on the others. A single server without
-- a bus never writes these tables.
CREATE TABLE nodes (
    node     TEXT PRIMARY KEY,
    -- When the server last said it is alive (milliseconds since 1970). Seats of
    -- a server silent for longer than a few seconds no longer count.
    seen_ms  BIGINT NOT NULL
);
CREATE TABLE seats (
    room_id  TEXT NOT NULL,
    peer_id  TEXT NOT NULL,
    node     TEXT NOT NULL,
    -- The peer as the protocol describes it (`peer-joined`), JSON.
    info     TEXT NOT NULL,
    PRIMARY KEY (room_id, peer_id)
);
CREATE INDEX seats_by_node ON seats (node);
