-- Last part of the install script.

-- The internal schema's functions are for the API alone (00_core.sql).  These
-- few run inside API functions that execute as the caller, in row-level
-- security policies or in views, so PUBLIC keeps EXECUTE on them; each checks the
-- caller's rights itself or only formats and parses.  test/expected/acl.txt
-- lists every object's privileges and test/scripts/05_privilege_audit.py
-- compares them.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA stream_internal FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    stream_internal._raise(text, text, text, text),
    stream_internal._raise_null(text),
    stream_internal._limit(text),
    stream_internal._check_name(text, text, int),
    stream_internal._stream(text),
    stream_internal._arn(text),
    stream_internal._shard_id(int),
    stream_internal._shard_index(text),
    stream_internal._sequence_text(int, int, bigint),
    stream_internal._sequence_parts(text),
    stream_internal._can_read(int),
    stream_internal._data_table(int),
    stream_internal._consumer_json(stream.streams, stream.stream_consumers),
    stream_internal._delivery_stream(text),
    stream_internal._delivery_arn(text),
    stream_internal._delivery_buffer(int),
    stream_internal._owns_processor(int),
    stream_internal._page_start(text, int, text, text, text, text),
    stream_internal._consumer_page_start(int, text, int, text),
    stream_internal._next_token(text, text),
    stream_internal._next_token_position(text, text),
    stream_internal._list_shards(text, int, text, text, text, text, timestamptz),
    stream_internal._shard_token(int, int, text, timestamptz),
    stream_internal._shard_expired(stream.shards, stream.streams),
    stream_internal._stream_status(stream.streams),
    stream_internal._resharding(int),
    stream_internal._shard_limit(),
    stream_internal._open_shard_count(),
    stream_internal._on_demand_stream_limit(),
    stream_internal._on_demand_stream_count(),
    stream_internal._checkpoint_next_seq(int, int, text, timestamptz),
    stream_internal._shard_lag(int, int, bigint),
    stream_internal._fanout_positions(),
    stream_internal._cq_batch()
TO PUBLIC;

-- Start this database's maintenance worker now rather than at the launcher's next round.
SELECT stream_internal._wake_worker();

-- install time only (00_core.sql)
DROP FUNCTION stream_internal._api_entry(text);
