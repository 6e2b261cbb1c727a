/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  Every setting (GUC) of the stream extension, declared in settings.h.
 *
 * Rules a reader must keep:
 *	- Every setting is defined here and declared in settings.h; no other file
 *	  calls DefineCustom*Variable or writes an extern for a setting.
 *	- A PGC_POSTMASTER setting may be defined only while preloading
 *	  (defining one later is FATAL); loaded lazily, the library has no
 *	  shared memory and no workers, so those settings have nothing to
 *	  configure.
 *	- A leaf: this file depends on nothing of the extension, so that every
 *	  module may read its settings without an arrow pointing up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "settings.h"

int			stream_iterator_lifetime_ms = 300000;
bool		stream_json_fast_decode = true;
int			stream_next_token_lifetime_ms = 300000;
int			stream_chunk_premake = 4;
int			stream_max_shards = 8192;
int			stream_max_shards_per_xact = 1024;
int			stream_shard_limit = 10000;	/* Kinesis' default quota, ACCOUNT_SHARDS_MAX */
int			stream_owner_code_timeout_ms = 30000;
bool		stream_worker_enabled = true;
int			stream_max_databases = 64;
int			stream_launcher_naptime = 10;
int			stream_delivery_naptime_ms = 1000;
int			stream_maintenance_naptime = 60;
bool		stream_enforce_shard_limits = false;
bool		stream_track_metrics = true;
int			stream_throttle_test_clock_ms = -1;
int			stream_metrics_slots = 8192;
int			stream_metrics_flush_interval = 10;
int			stream_metrics_retention_min = 24 * 60;
int			stream_on_demand_stream_limit = 50;	/* Kinesis' default quota, ON_DEMAND_STREAMS_MAX */
bool		stream_on_demand_scaling = true;
int			stream_on_demand_interval_ms = 10000;
double		stream_on_demand_split_threshold = 0.5;
int			stream_on_demand_split_after_ms = 60000;
double		stream_on_demand_merge_threshold = 0.1;
int			stream_on_demand_merge_after_ms = 15 * 60000;

/* the data path: iterators, chunks, sequence counters, owner code */
static void
define_stream_settings(void)
{
	DefineCustomIntVariable("stream.iterator_lifetime",
							"How long a shard iterator stays valid.",
							"Kinesis uses 300 seconds; lower it only to test expiry.",
							&stream_iterator_lifetime_ms,
							300000, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.next_token_lifetime",
							"How long a NextToken of list_streams, list_stream_consumers or list_shards stays valid.",
							"Kinesis uses 300 seconds; lower it only to test expiry.",
							&stream_next_token_lifetime_ms,
							300000, 1, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.chunk_premake",
							"How many chunks ahead of the current one maintenance keeps ready.",
							NULL,
							&stream_chunk_premake,
							4, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("stream.max_shards",
								"Most shards whose sequence counters live in shared memory at once.",
								NULL,
								&stream_max_shards,
								8192, 16, 1000000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	DefineCustomIntVariable("stream.max_shards_per_transaction",
							"Most shards one transaction may have puts in flight on.",
							"Bounds each transaction's share of the shared in-flight pool.",
							&stream_max_shards_per_xact,
							1024, 1, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.shard_limit",
							"Most open shards of all streams of a database together (Kinesis' account shard quota).",
							"create_stream, split_shard and update_shard_count refuse to pass it (LimitExceededException); set it per database with ALTER DATABASE.",
							&stream_shard_limit,
							10000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.owner_code_timeout",
							"Time owner code may run in the stream worker per delivery batch and phase.",
							"The transform calls, the record conversions and the table inserts of one batch each share it; 0 turns the limit off.",
							&stream_owner_code_timeout_ms,
							30000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* the background workers (src/bgw/) and their cadences */
static void
define_worker_settings(void)
{
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomBoolVariable("stream.worker_enabled",
								 "Starts the stream launcher and the per-database maintenance workers.",
								 "Takes effect only when stream is listed in shared_preload_libraries.",
								 &stream_worker_enabled,
								 true,
								 PGC_POSTMASTER, 0,
								 NULL, NULL, NULL);
		DefineCustomIntVariable("stream.max_databases",
								"Maximum number of databases served by stream workers at the same time.",
								"Each served database also uses one of max_worker_processes.",
								&stream_max_databases,
								64, 1, 10000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	}
	DefineCustomIntVariable("stream.launcher_naptime",
							"Time between two scans of pg_database by the stream launcher.",
							NULL,
							&stream_launcher_naptime,
							10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.delivery_naptime",
							"Time between two delivery rounds of a database worker (delivery streams).",
							"Each round checks every delivery stream's buffer and delivers those that are due.",
							&stream_delivery_naptime_ms,
							1000, 10, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.maintenance_naptime",
							"Time between two calls of stream.run_maintenance() by a database worker.",
							NULL,
							&stream_maintenance_naptime,
							60, 1, INT_MAX / 1000,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
}

/* throughput limits and metrics (streams/meter.c, bgw/metrics_flush.c) */
static void
define_meter_settings(void)
{
	DefineCustomBoolVariable("stream.json_fast_decode",
							 "Decodes JSON records to a schema's columns with the streaming scanner.",
							 "Off, every record goes through jsonb and the column types' input functions (the general path the scanner must match; tests compare both).",
							 &stream_json_fast_decode,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("stream.enforce_shard_limits",
							 "Enforces Kinesis' per-shard throughput limits.",
							 "Writes of more than 1 MiB or 1,000 records per second and reads of more than 2 MiB or 5 get_records calls per second on a shard fail with ProvisionedThroughputExceededException.",
							 &stream_enforce_shard_limits,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("stream.track_metrics",
							 "Counts puts and reads in the per-shard metrics.",
							 "Off, puts and reads of the session are not counted (the limits of stream.enforce_shard_limits still apply); on-demand scaling and the metric views then miss them.",
							 &stream_track_metrics,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("stream.throttle_test_clock",
							"For tests only: the time, in milliseconds, that refills the throughput limits' token buckets.",
							"-1, the default, uses the real clock; a value freezes the buckets' clock there, so that a test decides when they refill.",
							&stream_throttle_test_clock_ms,
							-1, -1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("stream.metrics_slots",
								"Shards whose throughput limits and metrics live in shared memory at once.",
								"A shard beyond them is neither limited nor counted until a slot frees up; the worker logs how many operations went uncounted.",
								&stream_metrics_slots,
								8192, 16, 1000000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	DefineCustomIntVariable("stream.metrics_flush_interval",
							"Time between two flushes of the metrics counted in shared memory to stream.stream_metrics and stream.shard_metrics.",
							"A crash loses what was counted since the last flush.",
							&stream_metrics_flush_interval,
							10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("stream.metrics_retention",
							"How long per-minute metrics are kept.",
							NULL,
							&stream_metrics_retention_min,
							24 * 60, 1, 366 * 24 * 60,
							PGC_SIGHUP, GUC_UNIT_MIN,
							NULL, NULL, NULL);
}

/* capacity modes: the on-demand quota and the worker's scaling (bgw/autoscale.c) */
static void
define_capacity_settings(void)
{
	DefineCustomIntVariable("stream.on_demand_stream_limit",
							"Most on-demand streams of a database (Kinesis' account quota of on-demand streams).",
							"create_stream and update_stream_mode refuse to pass it (LimitExceededException); describe_limits() shows it as OnDemandStreamCountLimit.",
							&stream_on_demand_stream_limit,
							50, 0, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("stream.on_demand_scaling",
							 "Lets the database worker split hot and merge cold shards of on-demand streams.",
							 "Off, on-demand streams keep their shards.",
							 &stream_on_demand_scaling,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("stream.on_demand_scaling_interval",
							"Time between two looks of a database worker at the write rates of the on-demand streams' shards.",
							"Each look measures every open shard's write rate since the previous one.",
							&stream_on_demand_interval_ms,
							10000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomRealVariable("stream.on_demand_split_threshold",
							 "Share of a shard's write capacity (1 MiB or 1,000 records per second) above which a shard of an on-demand stream is hot.",
							 "The default, 0.5, keeps twice the write rate seen, as Kinesis' on-demand mode does.",
							 &stream_on_demand_split_threshold,
							 0.5, 0.001, 100.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("stream.on_demand_split_after",
							"How long a shard of an on-demand stream must stay hot before the worker splits it.",
							NULL,
							&stream_on_demand_split_after_ms,
							60000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomRealVariable("stream.on_demand_merge_threshold",
							 "Share of a shard's write capacity below which a shard of an on-demand stream is cold.",
							 "Two adjacent cold shards whose rates add up to less than it are merged; it is capped at half of stream.on_demand_split_threshold, so that a merged shard is not hot.",
							 &stream_on_demand_merge_threshold,
							 0.1, 0.0, 100.0,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("stream.on_demand_merge_after",
							"How long two adjacent shards of an on-demand stream must stay cold before the worker merges them.",
							"Scaling down is gradual, as in Kinesis.",
							&stream_on_demand_merge_after_ms,
							15 * 60000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

void
settings_define(void)
{
	define_stream_settings();
	define_worker_settings();
	define_meter_settings();
	define_capacity_settings();
	MarkGUCPrefixReserved("stream");
}
