--
-- tags: add_tags_to_stream, remove_tags_from_stream, list_tags_for_stream
-- with Kinesis' limits and messages, privileges, and deletion with the stream.
--
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS stream;
\set VERBOSITY terse

SELECT stream.create_stream('tag_s', 1);
SELECT stream.create_stream('tag_other', 1);

-- no tags yet: no rows
SELECT count(*) AS tags FROM stream.list_tags_for_stream('tag_s');

-- the characters Kinesis takes: Unicode letters, digits, space, _ . / = + - @ :
SELECT stream.add_tags_to_stream('tag_s', '{"env": "prod", "ü0 _.": "Ω", "/=+-@:": "", "鍵": "値 1"}');
SELECT * FROM stream.list_tags_for_stream('tag_s');
-- a key added again gets the new value
SELECT stream.add_tags_to_stream('tag_s', '{"env": "staging"}');
SELECT key, value FROM stream.list_tags_for_stream('tag_s') WHERE key = 'env';
-- other streams' tags are their own
SELECT stream.add_tags_to_stream('tag_other', '{"env": "other"}');
SELECT key, value FROM stream.list_tags_for_stream('tag_other');

-- paging: limit, exclusive_start_tag_key, has_more_tags
SELECT * FROM stream.list_tags_for_stream('tag_s', "limit" => 2);
SELECT * FROM stream.list_tags_for_stream('tag_s', 'env', 2);
SELECT * FROM stream.list_tags_for_stream('tag_s', 'ü0 _.');
SELECT * FROM stream.list_tags_for_stream('tag_s', 'zzz');
-- pages, followed to the end, give every tag once
WITH RECURSIVE pages(n, last_key, keys, more) AS (
    SELECT 1, max(key COLLATE "C"), array_agg(key ORDER BY key COLLATE "C"), bool_or(has_more_tags)
      FROM stream.list_tags_for_stream('tag_s', "limit" => 1)
    UNION ALL
    SELECT p.n + 1, x.last_key, p.keys || x.keys, x.more
      FROM pages p, LATERAL (SELECT max(key COLLATE "C") AS last_key, array_agg(key ORDER BY key COLLATE "C") AS keys,
                                    bool_or(has_more_tags) AS more
                               FROM stream.list_tags_for_stream('tag_s', p.last_key, 1)) x
     WHERE p.more)
SELECT max(n) AS pages, (SELECT keys FROM pages ORDER BY n DESC LIMIT 1) AS keys FROM pages;

-- validation (ValidationException), before the stream is looked up
SELECT stream.add_tags_to_stream('tag_s', NULL);
SELECT stream.add_tags_to_stream('tag_s', '[]');
SELECT stream.add_tags_to_stream('tag_s', '{"a": 1}');
SELECT stream.add_tags_to_stream('tag_s', '{}');
SELECT stream.add_tags_to_stream('tag_s', (SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(1, 11) i));
SELECT stream.add_tags_to_stream('tag_s', '{"": "v"}');
SELECT stream.add_tags_to_stream('tag_s', jsonb_build_object(repeat('k', 129), 'v'));
SELECT stream.add_tags_to_stream('tag_s', jsonb_build_object('k', repeat('v', 257)));
SELECT stream.add_tags_to_stream('', '{"a": "b"}');
SELECT stream.add_tags_to_stream(repeat('s', 129), '{"a": "b"}');
SELECT stream.add_tags_to_stream('tag_missing', '{"a": "b"}');
-- the longest key and value
SELECT stream.add_tags_to_stream('tag_s', jsonb_build_object(repeat('é', 128), repeat('ß', 256)));
SELECT char_length(key) AS key_chars, char_length(value) AS value_chars
  FROM stream.list_tags_for_stream('tag_s') WHERE key LIKE 'é%';
SELECT stream.remove_tags_from_stream('tag_s', ARRAY[repeat('é', 128)]);
-- characters (InvalidArgumentException): ; tab newline comma, then %
SELECT stream.add_tags_to_stream('tag_s', '{"a;b": "x"}');
SELECT stream.add_tags_to_stream('tag_s', '{"ab": "x\ty"}');
SELECT stream.add_tags_to_stream('tag_s', '{"a\nb": "x"}');
SELECT stream.add_tags_to_stream('tag_s', '{"a,b": "x"}');
SELECT stream.add_tags_to_stream('tag_s', '{"a%b": "x"}');
SELECT stream.add_tags_to_stream('tag_s', '{"ab": "50%"}');
SELECT stream.add_tags_to_stream('tag_s', '{"AWS:x": "y"}');
-- nothing of a refused call was added
SELECT count(*) AS tags FROM stream.list_tags_for_stream('tag_s');

-- at most 50 tags a stream: 4 are there, 46 more fit, then none
SELECT stream.add_tags_to_stream('tag_s', (SELECT jsonb_object_agg('t' || lpad(i::text, 2, '0'), 'v') FROM generate_series(b, b + 9) i))
  FROM generate_series(1, 41, 10) b WHERE b <= 31;
SELECT stream.add_tags_to_stream('tag_s', (SELECT jsonb_object_agg('t' || lpad(i::text, 2, '0'), 'v') FROM generate_series(41, 46) i));
SELECT count(*) AS tags FROM stream.list_tags_for_stream('tag_s');
SELECT stream.add_tags_to_stream('tag_s', '{"one more": "x"}');
-- overwriting existing keys adds none
SELECT stream.add_tags_to_stream('tag_s', '{"t01": "new", "t02": "new"}');
SELECT count(*) AS tags, bool_and(has_more_tags) AS more_than_50_rows FROM stream.list_tags_for_stream('tag_s');
SELECT count(*) AS first_page, bool_and(has_more_tags) AS more FROM stream.list_tags_for_stream('tag_s', "limit" => 49);

-- list limits (1 to 50) and the start key (1 to 128)
SELECT * FROM stream.list_tags_for_stream('tag_s', "limit" => 0);
SELECT * FROM stream.list_tags_for_stream('tag_s', "limit" => 51);
SELECT * FROM stream.list_tags_for_stream('tag_s', '');
SELECT * FROM stream.list_tags_for_stream('tag_s', repeat('k', 129));
SELECT * FROM stream.list_tags_for_stream('tag_missing');

-- remove: 1 to 10 keys, checked as keys are; unknown keys are no error
SELECT stream.remove_tags_from_stream('tag_s', ARRAY['t01', 't02', 'no such key']);
SELECT count(*) AS tags FROM stream.list_tags_for_stream('tag_s');
SELECT stream.remove_tags_from_stream('tag_s', NULL);
SELECT stream.remove_tags_from_stream('tag_s', '{}');
SELECT stream.remove_tags_from_stream('tag_s', (SELECT array_agg(i::text) FROM generate_series(1, 11) i));
SELECT stream.remove_tags_from_stream('tag_s', ARRAY['a', NULL]);
SELECT stream.remove_tags_from_stream('tag_s', ARRAY['a', repeat('k', 129), 'b']);
SELECT stream.remove_tags_from_stream('tag_s', ARRAY['a;b']);
SELECT stream.remove_tags_from_stream('tag_s', ARRAY['a%b']);
SELECT stream.remove_tags_from_stream('tag_missing', ARRAY['a']);

-- privileges: adding and removing are for administrators, listing for readers of the stream
CREATE ROLE tag_reader;
CREATE ROLE tag_stranger;
SELECT stream.grant_stream_access('tag_s', 'tag_reader', 'read');
SET ROLE tag_reader;
SELECT count(*) AS reader_sees FROM stream.list_tags_for_stream('tag_s');
SELECT stream.add_tags_to_stream('tag_s', '{"x": "y"}');
SELECT stream.remove_tags_from_stream('tag_s', ARRAY['env']);
SELECT count(*) FROM stream.stream_tags;
RESET ROLE;
SET ROLE tag_stranger;
SELECT count(*) FROM stream.list_tags_for_stream('tag_s');
RESET ROLE;

-- a stream's tags go with it; a new stream of that name has none
SELECT stream.delete_stream('tag_s');
SELECT stream.create_stream('tag_s', 1);
SELECT count(*) AS tags_of_new_stream FROM stream.list_tags_for_stream('tag_s');
SELECT count(*) AS tags_left FROM stream.stream_tags t WHERE NOT EXISTS (SELECT 1 FROM stream.streams s WHERE s.stream_id = t.stream_id);
-- DescribeStreamSummary shows no tags, as Kinesis
SELECT stream.describe_stream_summary('tag_other') ? 'Tags' AS summary_has_tags;

SELECT stream.revoke_stream_access('tag_s', 'tag_reader');
DROP ROLE tag_reader;
DROP ROLE tag_stranger;
SELECT stream.delete_stream(s) FROM unnest(ARRAY['tag_s', 'tag_other']) s;
