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

-- Takes a seat in one round trip: under a lock for the room (held to the end of
-- the calling statement's transaction), counts the seats of servers seen alive
-- since p_alive_since and adds p_peer's below p_max. Returns the room's seats
-- then, p_peer's among them if it was seated. Each statement of a plpgsql
-- function reads the database as it is when that statement starts, so the count
-- sees every seat committed before the lock was taken.
CREATE FUNCTION keygate_take_seat(p_room TEXT, p_peer TEXT, p_node TEXT, p_info TEXT, p_max BIGINT, p_alive_since BIGINT)
RETURNS TABLE (peer_id TEXT, node TEXT, info TEXT)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    seated BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1801941876, hashtext(p_room));
    SELECT count(*) INTO seated FROM seats s
     WHERE s.room_id = p_room AND s.node IN (SELECT n.node FROM nodes n WHERE n.seen_ms >= p_alive_since);
    IF seated < p_max THEN
        INSERT INTO seats (room_id, peer_id, node, info) VALUES (p_room, p_peer, p_node, p_info);
    END IF;
    RETURN QUERY SELECT s.peer_id, s.node, s.info FROM seats s
     WHERE s.room_id = p_room AND s.node IN (SELECT n.node FROM nodes n WHERE n.seen_ms >= p_alive_since);
END
$$;
