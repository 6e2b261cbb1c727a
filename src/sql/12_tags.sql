---------------------------------------------------------------------------
-- Stream tags: AddTagsToStream, RemoveTagsFromStream, ListTagsForStream
---------------------------------------------------------------------------
-- Kinesis' limits: at most 50 tags a stream and 10 a call; keys of 1 to
-- 128 characters, not starting with aws:, values of 0 to 256; both of
-- Unicode letters, digits, space and _ . / = + - @ : (Kinesis names % too
-- but refuses it).  "Unicode letters" as kinesalite's suite, recorded from
-- Kinesis, shows them: U+00C0 to U+1FFF and U+2C00 to U+D7FF.
--
-- Adding and removing tags is for administrators, as the other changes to
-- a stream (EXECUTE revoked from PUBLIC); listing them is for every role
-- that may read the stream (checked against the calling role).  The table
-- is the API's alone; pg_dump saves it with the streams, and a stream's
-- tags go with it.

CREATE TABLE stream.stream_tags (
    stream_id   int NOT NULL REFERENCES stream.streams ON DELETE CASCADE,
    tag_key     text NOT NULL,
    tag_value   text NOT NULL DEFAULT '',
    PRIMARY KEY (stream_id, tag_key)
);
SELECT pg_catalog.pg_extension_config_dump('stream.stream_tags', '');
REVOKE ALL ON stream.stream_tags FROM PUBLIC;
ALTER TABLE stream.stream_tags ENABLE ROW LEVEL SECURITY;

-- Coral's rendering of a map and of a list in a validation message
CREATE FUNCTION stream_internal._tags_text(p_tags jsonb) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT '{' || coalesce(string_agg(e.key || '=' || coalesce(e.value #>> '{}', 'null'), ', '), '') || '}'
      FROM jsonb_each(p_tags) e
$$;
CREATE FUNCTION stream_internal._keys_text(p_keys text[]) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT '[' || coalesce(string_agg(coalesce(k, 'null'), ', ' ORDER BY n), '') || ']'
      FROM unnest(p_keys) WITH ORDINALITY u(k, n)
$$;

-- The characters Kinesis takes in tag keys and values (InvalidArgumentException):
-- first the set it names, then its refusal of %.
CREATE FUNCTION stream_internal._check_tag_chars(p_stream text, p_texts text[], p_verb text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM unnest(p_texts) t WHERE t !~ '^[A-Za-z0-9_./=+\- @%:\u00C0-\u1FFF\u2C00-\uD7FF]*$') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', 'Some tags contain invalid characters. Valid characters: Unicode letters, digits, white space, _ . / = + - % @ :.');
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_texts) t WHERE strpos(t, '%') > 0) THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Failed to %s stream %s under account 000000000000 because some tags contained illegal characters. The allowed characters are Unicode letters, white-spaces, ''_'','','',''/'',''='',''+'',''-'',''@'','':''.',
                                       p_verb, p_stream));
    END IF;
END $$;

-- tags: a JSON object of tag keys to string values.  Existing tags with
-- these keys get the new values.
CREATE FUNCTION stream_internal.add_tags_to_stream(stream_name text, tags jsonb) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    n int;
    v_bad text;
    v_per_call int := stream_internal._limit('TAGS_PER_CALL_MAX');
    v_key_max int := stream_internal._limit('TAG_KEY_MAX');
    v_value_max int := stream_internal._limit('TAG_VALUE_MAX');
    v_per_stream int := stream_internal._limit('TAGS_PER_STREAM_MAX');
BEGIN
    -- the request's constraints first (ValidationException), then its meaning
    PERFORM stream_internal._check_name(stream_name, 'streamName', stream_internal._limit('STREAM_NAME_MAX')::int);
    IF tags IS NULL THEN
        PERFORM stream_internal._raise_null('tags');
    ELSIF jsonb_typeof(tags) <> 'object' THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''tags'' failed to satisfy constraint: Member must be a map of tag keys to string values', tags));
    END IF;
    SELECT e.key INTO v_bad FROM jsonb_each(tags) e WHERE jsonb_typeof(e.value) <> 'string' ORDER BY e.key LIMIT 1;
    IF FOUND THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value at ''tags.%s'' failed to satisfy constraint: Member must be a string', v_bad));
    END IF;
    n := (SELECT count(*) FROM jsonb_object_keys(tags));
    IF n < 1 OR n > v_per_call THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''tags'' failed to satisfy constraint: Member must have length %s',
                                       stream_internal._tags_text(tags),
                                       CASE WHEN n < 1 THEN 'greater than or equal to 1' ELSE 'less than or equal to ' || v_per_call END));
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_object_keys(tags) k WHERE char_length(k) NOT BETWEEN 1 AND v_key_max) THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''tags'' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to %s, Member must have length greater than or equal to 1]',
                                       stream_internal._tags_text(tags), v_key_max));
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_each_text(tags) e WHERE char_length(e.value) > v_value_max) THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''tags'' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to %s, Member must have length greater than or equal to 0]',
                                       stream_internal._tags_text(tags), v_value_max));
    END IF;

    s := stream_internal._stream(stream_name);
    PERFORM stream_internal._check_tag_chars(s.stream_name,
        (SELECT array_agg(x) FROM jsonb_each_text(tags) e, LATERAL (VALUES (e.key), (e.value)) v(x)),
        'add tags to');
    IF EXISTS (SELECT 1 FROM jsonb_object_keys(tags) k WHERE lower(k) LIKE 'aws:%') THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Failed to add tags to stream %s under account 000000000000 because the tag key prefix aws: is reserved for AWS use.',
                                       s.stream_name));
    END IF;
    -- adds take turns on a stream (the limit of 50), and a deletion waits for them
    PERFORM 1 FROM stream.streams x WHERE x.stream_id = s.stream_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN       -- deleted meanwhile
        PERFORM stream_internal._raise('ResourceNotFoundException', format('Stream %s under account 000000000000 not found.', s.stream_name));
    END IF;
    IF (SELECT count(*) FROM (SELECT t.tag_key FROM stream.stream_tags t WHERE t.stream_id = s.stream_id
                              UNION SELECT k FROM jsonb_object_keys(tags) k) u) > v_per_stream THEN
        PERFORM stream_internal._raise('InvalidArgumentException', format('Failed to add tags to stream %s under account 000000000000 because a given stream cannot have more than %s tags associated with it.',
                                       s.stream_name, v_per_stream));
    END IF;
    INSERT INTO stream.stream_tags (stream_id, tag_key, tag_value)
    SELECT s.stream_id, e.key, e.value FROM jsonb_each_text(tags) e
    ON CONFLICT (stream_id, tag_key) DO UPDATE SET tag_value = EXCLUDED.tag_value;
END $$;
SELECT stream_internal._api_entry('add_tags_to_stream');


-- Keys the stream has no tag for are no error.
CREATE FUNCTION stream_internal.remove_tags_from_stream(stream_name text, tag_keys text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    n int := coalesce(cardinality(tag_keys), 0);
    v_per_call int := stream_internal._limit('TAGS_PER_CALL_MAX');
    v_key_max int := stream_internal._limit('TAG_KEY_MAX');
BEGIN
    PERFORM stream_internal._check_name(stream_name, 'streamName', stream_internal._limit('STREAM_NAME_MAX')::int);
    IF tag_keys IS NULL THEN
        PERFORM stream_internal._raise_null('tagKeys');
    ELSIF array_ndims(tag_keys) > 1 THEN
        PERFORM stream_internal._raise('ValidationException', 'tag_keys must be a one-dimensional array');
    ELSIF n < 1 OR n > v_per_call THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''tagKeys'' failed to satisfy constraint: Member must have length %s',
                                       stream_internal._keys_text(tag_keys),
                                       CASE WHEN n < 1 THEN 'greater than or equal to 1' ELSE 'less than or equal to ' || v_per_call END));
    ELSIF array_position(tag_keys, NULL) IS NOT NULL THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''tagKeys'' failed to satisfy constraint: Member must satisfy constraint: [Member must not be null]',
                                       stream_internal._keys_text(tag_keys)));
    ELSIF EXISTS (SELECT 1 FROM unnest(tag_keys) k WHERE char_length(k) NOT BETWEEN 1 AND v_key_max) THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''tagKeys'' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to %s, Member must have length greater than or equal to 1]',
                                       stream_internal._keys_text(tag_keys), v_key_max));
    END IF;
    s := stream_internal._stream(stream_name);
    PERFORM stream_internal._check_tag_chars(s.stream_name, tag_keys, 'remove tags from');
    PERFORM 1 FROM stream.streams x WHERE x.stream_id = s.stream_id FOR NO KEY UPDATE;
    DELETE FROM stream.stream_tags t WHERE t.stream_id = s.stream_id AND t.tag_key = ANY (tag_keys);
END $$;
SELECT stream_internal._api_entry('remove_tags_from_stream');


-- Tags in key order (by code point), from the first key after
-- exclusive_start_tag_key, at most "limit" (1 to 50; all without); each
-- row says whether more follow (HasMoreTags; no row: none).
CREATE FUNCTION stream_internal.list_tags_for_stream(stream_name text, exclusive_start_tag_key text DEFAULT NULL,
                                                     "limit" int DEFAULT NULL)
RETURNS TABLE(key text, value text, has_more_tags boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    s stream.streams;
    v_max int := stream_internal._limit('LIST_TAGS_LIMIT_MAX');
    v_key_max int := stream_internal._limit('TAG_KEY_MAX');
    v_limit int := coalesce("limit", v_max);
BEGIN
    PERFORM stream_internal._check_name(stream_name, 'streamName', stream_internal._limit('STREAM_NAME_MAX')::int);
    IF "limit" < 1 OR "limit" > v_max THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''limit'' failed to satisfy constraint: Member must have value %s',
                                       "limit", CASE WHEN "limit" < 1 THEN 'greater than or equal to 1' ELSE 'less than or equal to ' || v_max END));
    END IF;
    IF char_length(exclusive_start_tag_key) NOT BETWEEN 1 AND v_key_max THEN
        PERFORM stream_internal._raise('ValidationException', format('1 validation error detected: Value ''%s'' at ''exclusiveStartTagKey'' failed to satisfy constraint: Member must have length %s',
                                       exclusive_start_tag_key,
                                       CASE WHEN exclusive_start_tag_key = '' THEN 'greater than or equal to 1' ELSE 'less than or equal to ' || v_key_max END));
    END IF;
    s := stream_internal._stream(stream_name);
    PERFORM stream_internal._require_role_read(s, stream_internal._caller());
    RETURN QUERY
    WITH page AS (
        SELECT t.tag_key, t.tag_value
          FROM stream.stream_tags t
         WHERE t.stream_id = s.stream_id
           AND (exclusive_start_tag_key IS NULL OR t.tag_key COLLATE "C" > exclusive_start_tag_key COLLATE "C")
         ORDER BY t.tag_key COLLATE "C"
         LIMIT v_limit + 1)
    SELECT p.tag_key, p.tag_value, (SELECT count(*) FROM page) > v_limit
      FROM page p
     ORDER BY p.tag_key COLLATE "C"
     LIMIT v_limit;
END $$;
SELECT stream_internal._api_entry('list_tags_for_stream');

REVOKE ALL ON FUNCTION stream.add_tags_to_stream(text, jsonb), stream.remove_tags_from_stream(text, text[]) FROM PUBLIC;
