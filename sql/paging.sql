--
-- paging: list_streams (exclusive_start_stream_name, limit, next_token,
-- has_more_streams) and list_stream_consumers (max_results, next_token);
-- next tokens are signed and expire.  The streams are named zzpag... so
-- that they sort after those the other tests leave.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

-- 23 streams, created in a scrambled order; code point order puts 'zzpagA' before 'zzpag_' before 'zzpaga'
SELECT count(*) AS created
  FROM (SELECT stream.create_stream(n, 1)
          FROM (SELECT 'zzpag.' || lpad(i::text, 2, '0') AS n FROM generate_series(1, 20) i
                UNION ALL VALUES ('zzpagA'), ('zzpag_'), ('zzpaga')) s
         ORDER BY md5(n)) x;

-- without paging arguments: at most 100, all of ours, in code point order
SELECT array_agg(stream_name ORDER BY stream_name COLLATE "C") = array_agg(stream_name) AS in_order,
       count(*) FILTER (WHERE stream_name LIKE 'zzpag%') AS ours, bool_or(has_more_streams) AS more
  FROM (SELECT * FROM stream.list_streams()) l;
SELECT stream_name FROM stream.list_streams(exclusive_start_stream_name => 'zzpag.19');

-- pages of 7 from just before ours, followed by next_token to the end: every stream once, in order
CREATE TEMP TABLE pages AS
WITH RECURSIVE pages(n, names, more, token) AS (
    SELECT 1, array_agg(stream_name ORDER BY stream_name COLLATE "C"), bool_or(has_more_streams), max(next_token)
      FROM stream.list_streams('zzpag', 7)
    UNION ALL
    SELECT p.n + 1, p.names || x.names, x.more, x.token
      FROM pages p, LATERAL (SELECT array_agg(stream_name ORDER BY stream_name COLLATE "C") AS names,
                                    bool_or(has_more_streams) AS more, max(next_token) AS token
                               FROM stream.list_streams(next_token => p.token, "limit" => 7)) x
     WHERE p.more)
SELECT * FROM pages;
SELECT n AS page, cardinality(names) AS listed, more, token IS NOT NULL AS has_token FROM pages ORDER BY n;
SELECT (SELECT names FROM pages ORDER BY n DESC LIMIT 1)
     = (SELECT array_agg(stream_name ORDER BY stream_name COLLATE "C") FROM stream.streams WHERE stream_name LIKE 'zzpag%') AS all_once;

-- every row of a page carries the same has_more_streams and next_token
SELECT count(DISTINCT has_more_streams) AS one_more, count(DISTINCT next_token) AS one_token, count(*) AS rows
  FROM stream.list_streams('zzpag', 5);
-- limit above 100 returns at most 100 (as Kinesis); a page that reaches the end has no token
SELECT count(*) <= 100 AS at_most_100 FROM stream.list_streams("limit" => 10000);
SELECT count(*) AS last_page, bool_or(has_more_streams) AS more, count(next_token) AS tokens
  FROM stream.list_streams('zzpag.20', 100);
SELECT count(*) AS after_the_last FROM stream.list_streams('zzpaga');

-- Kinesis' checks
SELECT * FROM stream.list_streams("limit" => 0);
SELECT * FROM stream.list_streams("limit" => 10001);
SELECT * FROM stream.list_streams('');
SELECT * FROM stream.list_streams('a b');
SELECT * FROM stream.list_streams(next_token => '');
SELECT * FROM stream.list_streams(next_token => 'bm90IGEgdG9rZW4=');
SELECT next_token AS token FROM stream.list_streams('zzpag', 2) LIMIT 1 \gset
SELECT * FROM stream.list_streams('zzpag', next_token => :'token');
-- a forged or altered token is refused; so is a token of another list function
SELECT * FROM stream.list_streams(next_token => overlay(:'token' PLACING (CASE WHEN substr(:'token', 12, 1) = 'A' THEN 'B' ELSE 'A' END) FROM 12 FOR 1));
SELECT stream_name FROM stream.list_streams(next_token => :'token', "limit" => 1);
-- expired after stream.next_token_lifetime (Kinesis: 300 s)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || regexp_replace(SQLERRM, '[0-9]{10,}', '<ms>', 'g');
END $$;
SET stream.next_token_lifetime = 1;
SELECT pg_sleep(0.05);
SELECT pg_temp.try(format('SELECT * FROM stream.list_streams(next_token => %L)', :'token')) AS expired;
RESET stream.next_token_lifetime;
SELECT count(*) AS valid_again FROM stream.list_streams(next_token => :'token');

--
-- list_stream_consumers: max_results, next_token
--
SELECT count(*) AS registered
  FROM (SELECT stream.register_stream_consumer('zzpag.01', c)
          FROM (SELECT 'c' || lpad(i::text, 2, '0') AS c FROM generate_series(1, 12) i ORDER BY md5(i::text)) x) y;
SELECT stream.register_stream_consumer('zzpag.02', 'other') IS NOT NULL AS other_stream;
SELECT array_agg(consumer_name) AS consumers, count(next_token) AS tokens FROM stream.list_stream_consumers('zzpag.01');
SELECT consumer_name, next_token IS NOT NULL AS more FROM stream.list_stream_consumers('zzpag.01', 5);
SELECT next_token AS ctoken FROM stream.list_stream_consumers('zzpag.01', 5) LIMIT 1 \gset
SELECT consumer_name, next_token IS NOT NULL AS more FROM stream.list_stream_consumers('zzpag.01', 5, :'ctoken');
SELECT next_token AS ctoken2 FROM stream.list_stream_consumers('zzpag.01', 5, :'ctoken') LIMIT 1 \gset
SELECT consumer_name, next_token IS NOT NULL AS more FROM stream.list_stream_consumers('zzpag.01', 5, :'ctoken2');
SELECT count(*) <= 100 AS at_most_100 FROM stream.list_stream_consumers('zzpag.01', 10000);
SELECT * FROM stream.list_stream_consumers('zzpag.01', 0);
SELECT * FROM stream.list_stream_consumers('zzpag.01', 10001);
-- a token of another stream's listing, and a list_streams token, are refused
SELECT * FROM stream.list_stream_consumers('zzpag.02', 5, :'ctoken');
SELECT * FROM stream.list_stream_consumers('zzpag.01', 5, :'token');
SELECT * FROM stream.list_streams(next_token => :'ctoken');
SELECT * FROM stream.list_stream_consumers('zzpag.missing', 5);

SELECT count(*) AS deleted
  FROM (SELECT stream.delete_stream(stream_name, enforce_consumer_deletion => true)
          FROM stream.streams WHERE stream_name LIKE 'zzpag%') x;
