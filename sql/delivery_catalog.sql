--
-- delivery_catalog: creating, describing and validating delivery streams.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse
\getenv abs_srcdir PG_ABS_SRCDIR

-- _delivery_validate with NULL array elements: NULLs name no key
SELECT stream_internal._delivery_validate('!{partitionKeyFromQuery:k}/', '!{firehose:error-output-type}/', NULL, ARRAY[NULL, 'k'], false);
SELECT stream_internal._delivery_validate('!{partitionKeyFromQuery:k}/', '!{firehose:error-output-type}/', NULL, ARRAY[NULL]::text[], NULL);
