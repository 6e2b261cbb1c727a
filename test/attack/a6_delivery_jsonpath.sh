#!/usr/bin/env bash
# ATTACK: a partition_key_queries SQL/JSON path that raises an error even in
# silent mode (a timestamp/timestamptz comparison needs the _tz variants)
# on one record: does the record go to the error output, or does the
# delivery stream stall?
set -u
source "$(dirname "$0")/../../scripts/env.sh"
DB=stream_attack_dl
D=/tmp/attack_dl/d$$
psql -X -q -d postgres -c "SET client_min_messages=warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
P="psql -X -qAt -d $DB"
$P -c "CREATE EXTENSION stream" -c "SELECT stream.create_stream('src', 1)" >/dev/null
$P -c "SELECT stream.create_delivery_stream('dl', source_stream_name => 'src', destination => '$D',
         starting_position => 'TRIM_HORIZON',
         prefix => 'k=!{partitionKeyFromQuery:k}/', error_output_prefix => 'errors/!{firehose:error-output-type}/',
         partition_key_queries => '{\"k\": \"\$.a ? (@.datetime() < \\\"2019-01-01 00:00:00+00\\\".datetime())\"}')" 2>&1 | head -3
$P -c "SELECT stream.put_record('src', 'x', convert_to('{\"a\": \"2018-01-01 10:00:00+00\"}', 'UTF8'))" \
   -c "SELECT stream.put_record('src', 'x', convert_to('{\"a\": \"2018-01-01 10:00:00\"}', 'UTF8'))" \
   -c "SELECT stream.put_record('src', 'x', convert_to('{\"a\": \"2018-01-02 10:00:00+00\"}', 'UTF8'))" >/dev/null
echo "flush: $($P -c "SELECT stream.flush_delivery_stream('dl', 20)" 2>&1 | head -2)"
$P -c "SELECT records_delivered, records_failed, buffered_records, last_error FROM stream.delivery_stream_status WHERE delivery_stream_name='dl'"
find $D -type f | sed "s|$D/||"
