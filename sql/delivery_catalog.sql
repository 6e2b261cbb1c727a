--
-- delivery_catalog: creating, listing, describing and deleting delivery
-- streams, and everything create_delivery_stream refuses (each message names
-- the Firehose exception); nothing refused is created.  (Delivering:
-- test/scripts/60_delivery.py and the specs; who may do what: 62, 65.)
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR

-- _delivery_validate with NULL array elements: NULLs name no key
SELECT stream_internal._delivery_validate('!{partitionKeyFromQuery:k}/', '!{firehose:error-output-type}/', NULL, ARRAY[NULL, 'k'], false);
SELECT stream_internal._delivery_validate('!{partitionKeyFromQuery:k}/', '!{firehose:error-output-type}/', NULL, ARRAY[NULL]::text[], NULL);

--
-- 1. create, list, describe, delete
--
CREATE TABLE dc_sink (n int, s text);
CREATE TYPE dc_row AS (n int, s text);
SELECT stream.create_stream('dc_src', 2);
SELECT stream.create_delivery_stream('dc_direct', destination_table => 'dc_sink') ~ '^arn:aws:firehose:[a-z0-9-]+:[0-9]{12}:deliverystream/dc_direct$' AS arn_ok;
-- (no server directory: the worker would make its staging directory there at once)
SELECT stream.create_delivery_stream('dc_stream', source_stream_name => 'dc_src', destination_table => 'dc_sink',
                                     starting_position => 'TRIM_HORIZON',
                                     buffer_size_mb => 128, buffer_interval_seconds => 0) IS NOT NULL AS created;
SELECT delivery_stream_name, delivery_stream_type, delivery_stream_status
FROM stream.list_delivery_streams() WHERE delivery_stream_name LIKE 'dc%' ORDER BY 1;
SELECT delivery_stream_name FROM stream.list_delivery_streams('DirectPut') WHERE delivery_stream_name LIKE 'dc%';
SELECT delivery_stream_name FROM stream.list_delivery_streams('KinesisStreamAsSource') WHERE delivery_stream_name LIKE 'dc%';
SELECT stream.describe_delivery_stream('dc_stream') AS d \gset
SELECT jsonb_typeof(:'d'::jsonb) AS type,
       :'d'::jsonb ->> 'DeliveryStreamName' AS name,
       :'d'::jsonb ->> 'DeliveryStreamType' AS kind,
       :'d'::jsonb ->> 'DeliveryStreamStatus' AS status,
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'d'::jsonb) k) AS keys;
SELECT stream.describe_delivery_stream('dc_direct') ->> 'DeliveryStreamType' AS direct_kind;

--
-- 2. names: [a-zA-Z0-9_.-]{1,64}, unique, case sensitive
--
SELECT stream.create_delivery_stream('dc_direct', destination_table => 'dc_sink');
SELECT stream.create_delivery_stream(NULL, destination_table => 'dc_sink');
SELECT stream.create_delivery_stream('', destination_table => 'dc_sink');
SELECT stream.create_delivery_stream(repeat('d', 65), destination_table => 'dc_sink');
SELECT stream.create_delivery_stream('has space', destination_table => 'dc_sink');
SELECT stream.describe_delivery_stream('dc_nope');
SELECT stream.describe_delivery_stream('DC_DIRECT');
SELECT stream.delete_delivery_stream('dc_nope');
SELECT stream.put_delivery_record('dc_nope', '\x7b7d');
SELECT stream.flush_delivery_stream('dc_nope', 0);
SELECT * FROM stream.put_delivery_record('dc_stream', '\x7b7d');

--
-- 3. destinations, formats, schemas, buffering, sources, transforms
--
SELECT stream.create_delivery_stream('dc_bad');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', destination_table => 'dc_sink');
SELECT stream.create_delivery_stream('dc_bad', destination => 'relative/dir');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/../etc');
SELECT stream.create_delivery_stream('dc_bad', destination => '/');
SELECT stream.create_delivery_stream('dc_bad', destination_table => 'dc_sink', schema => 'dc_row');
SELECT stream.create_delivery_stream('dc_bad', destination_table => 'dc_sink', prefix => 'p/');
SELECT stream.create_delivery_stream('dc_bad', destination_table => 'dc_sink', format => 'csv');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', format => 'xml');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', compression => 'lz4');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', format => 'csv');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', format => 'parquet');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', format => 'raw', schema => 'dc_row');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', format => 'csv', schema => 'int4');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', buffer_size_mb => 0);
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', buffer_size_mb => 129);
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', buffer_interval_seconds => -1);
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', buffer_interval_seconds => 901);
SELECT stream.create_delivery_stream('dc_bad', source_stream_name => 'dc_src', destination => '/tmp/x', starting_position => 'AT_TIMESTAMP');
SELECT stream.create_delivery_stream('dc_bad', source_stream_name => 'dc_nope', destination => '/tmp/x');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', partition_key_queries => '["$.k"]');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', prefix => '!{partitionKeyFromQuery:k}/',
                                     partition_key_queries => '{"k": "$.k"}');
SELECT stream.create_delivery_stream('dc_bad', destination => '/tmp/x', transform_function => 'abs(int)');
-- none of them was created
SELECT count(*) AS dc_bad FROM stream.list_delivery_streams() WHERE delivery_stream_name = 'dc_bad';

--
-- 4. a stream read by a delivery stream is in use; deleting frees it
--
SELECT stream.delete_stream('dc_src');
SELECT stream.delete_delivery_stream('dc_stream');
SELECT stream.delete_delivery_stream('dc_direct');
SELECT stream.delete_stream('dc_src');
SELECT count(*) AS dc_left FROM stream.list_delivery_streams() WHERE delivery_stream_name LIKE 'dc%';
DROP TABLE dc_sink;
DROP TYPE dc_row;
