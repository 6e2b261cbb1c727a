/*
 * delivery/delivery.h: delivery streams (Firehose), as the rest of the
 * extension sees them: the worker's delivery round.  Delivery streams are
 * processors of kind "delivery" of the consumer runtime (runtime/runtime.h).
 *
 * Include postgres.h before this file.
 */
#ifndef STREAM_DELIVERY_H
#define STREAM_DELIVERY_H

/*
 * One delivery round of the current database: each delivery stream gets at
 * most one unit of work, each in transactions of its own.  flush_ids names
 * delivery streams to flush now (flush_all: all of them).  Returns true when
 * some delivery stream has more to deliver at once; *extension_missing when
 * the extension is gone.  ticket numbers this round's flush requests;
 * *done_ticket is the highest ticket whose flushes are all over.  Call
 * outside a transaction.
 */
/* Register the processor kind "delivery" with the runtime (module.c's _PG_init). */
extern void delivery_init(void);

extern bool delivery_run_round(const int32 *flush_ids, int nflush, bool flush_all,
							   uint32 ticket, uint32 *done_ticket,
							   bool *extension_missing);

#endif							/* STREAM_DELIVERY_H */
