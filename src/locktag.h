/*
 * locktag.h: the heavyweight locks of the extension's own.
 *
 * They are advisory-type lock tags whose fourth field no SQL function can
 * produce (pg_advisory_lock and friends use 1 and 2), so no role can take
 * them to stall the extension: only its C code and the SECURITY DEFINER
 * functions that may call stream_internal._xact_lock() do.
 */
#ifndef STREAM_LOCKTAG_H
#define STREAM_LOCKTAG_H

#include "miscadmin.h"
#include "storage/lock.h"

typedef enum StreamLockKind
{
	STREAM_LOCK_SHARD_PUT = 0x5354,	/* (stream, shard): puts without shared memory */
	STREAM_LOCK_SEQUENCE_MARK = 0x5355,	/* moving the database's sequence mark */
	STREAM_LOCK_PROCESSOR_UNIT = 0x5356,	/* (processor): a unit of its work (runtime/round.c) */
	STREAM_LOCK_CONSUMERS = 0x5357,	/* (stream): registering a consumer */
	STREAM_LOCK_RESHARD = 0x5358,	/* (stream): a split, merge or shard count update */
	STREAM_LOCK_SHARD_LIMIT = 0x5359	/* (database): changes of its open shard count */
} StreamLockKind;

#define SET_STREAM_LOCKTAG(tag, kind, key1, key2) \
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) (key1), (uint32) (key2), (uint16) (kind))

#endif							/* STREAM_LOCKTAG_H */
