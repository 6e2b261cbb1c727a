/*-------------------------------------------------------------------------
 *
 * settings.h
 *	  The settings (GUCs) of the stream extension.
 *
 * Every setting is defined once, in settings.c (settings_define(), called
 * by _PG_init() in module.c): its name,
 * variable, default, range, context and description.  A module that reads
 * a setting includes this header instead of writing its own extern, so the
 * compiler checks every use against the one definition.
 *
 * Settings with context PGC_POSTMASTER (stream.max_shards,
 * stream.worker_enabled, stream.max_databases, stream.metrics_slots) exist only when the library
 * is in shared_preload_libraries; loaded lazily their variables keep the
 * defaults below, and nothing that uses them (shared memory, workers) runs.
 *
 * Include postgres.h before this file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_SETTINGS_H
#define STREAM_SETTINGS_H

/* Define every setting and reserve the prefix "stream" (module.c's _PG_init). */
extern void settings_define(void);

/* stream.iterator_lifetime (ms): how long a shard iterator stays valid */
extern int	stream_iterator_lifetime_ms;

/* stream.next_token_lifetime (ms): how long a NextToken of a list function stays valid */
extern int	stream_next_token_lifetime_ms;

/* stream.chunk_premake: chunks maintenance keeps ready ahead of the current one */
extern int	stream_chunk_premake;

/* stream.max_shards (PGC_POSTMASTER): shards with counters in shared memory */
extern int	stream_max_shards;

/* stream.max_shards_per_transaction: shards one transaction may have puts in flight on */
extern int	stream_max_shards_per_xact;

/* stream.shard_limit: open shards of all streams of a database together (the account quota) */
extern int	stream_shard_limit;

/* stream.owner_code_timeout (ms): owner code of one unit of the worker's work */
extern int	stream_owner_code_timeout_ms;

/* stream.worker_enabled (PGC_POSTMASTER): start the launcher and the workers */
extern bool stream_worker_enabled;

/* stream.max_databases (PGC_POSTMASTER): databases served at the same time */
extern int	stream_max_databases;

/* stream.launcher_naptime (s): between two scans of pg_database */
extern int	stream_launcher_naptime;

/* stream.delivery_naptime (ms): between two delivery rounds of a database worker */
extern int	stream_delivery_naptime_ms;

/* stream.maintenance_naptime (s): between two maintenance rounds of a database worker */
extern int	stream_maintenance_naptime;

/* stream.enforce_shard_limits: refuse what exceeds a shard's throughput limits */
extern bool stream_enforce_shard_limits;

/* stream.track_metrics: count puts and reads in the per-shard metrics */
extern bool stream_track_metrics;

/* stream.throttle_test_clock (ms): tests' clock for the token buckets; -1 the real one */
extern int	stream_throttle_test_clock_ms;

/* stream.metrics_slots (PGC_POSTMASTER): shards metered in shared memory at once */
extern int	stream_metrics_slots;

/* stream.metrics_flush_interval (s): between two metrics flushes of a database worker */
extern int	stream_metrics_flush_interval;

/* stream.metrics_retention (min): how long per-minute metrics are kept */
extern int	stream_metrics_retention_min;

/* stream.on_demand_stream_limit: on-demand streams of a database (the account quota) */
extern int	stream_on_demand_stream_limit;

/* stream.on_demand_scaling (PGC_SIGHUP): the worker scales on-demand streams */
extern bool stream_on_demand_scaling;

/* stream.on_demand_scaling_interval (ms): between two looks at the on-demand streams' write rates */
extern int	stream_on_demand_interval_ms;

/* stream.on_demand_split_threshold: share of a shard's write capacity above which it is hot */
extern double stream_on_demand_split_threshold;

/* stream.on_demand_split_after (ms): how long a shard stays hot before it is split */
extern int	stream_on_demand_split_after_ms;

/* stream.on_demand_merge_threshold: share of a shard's write capacity below which it is cold */
extern double stream_on_demand_merge_threshold;

/* stream.on_demand_merge_after (ms): how long two neighbours stay cold before they are merged */
extern int	stream_on_demand_merge_after_ms;

/* stream.json_fast_decode: off forces JSON records through jsonb (runtime/json_decode.c) */
extern bool stream_json_fast_decode;

#endif							/* STREAM_SETTINGS_H */
