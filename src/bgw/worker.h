/*-------------------------------------------------------------------------
 *
 * bgw/worker.h
 *	  What the rest of the extension may ask of its background workers.
 *	  The only header of src/bgw/ that files outside it include.
 *
 * The workers: one static launcher (launcher.c) and one dynamic worker per
 * database that has the extension (db_worker.c), which meet in per-database
 * slots in shared memory (worker_slots.c); plus a one-shot chunk maker
 * (chunk_maker.c).  What is declared here touches only the slots or starts
 * a chunk maker, so a module below the workers (storage, delivery) may call
 * it without depending on what the workers run.
 *
 * Requests and tickets.  Any backend may post a request to its database's
 * worker: an int32 key whose meaning belongs to the module that posts it
 * (the worker hands the keys to the round that serves them and learns
 * nothing from them).  Posting returns a ticket; tickets grow by one per
 * request, and the worker reports a watermark: every ticket at or below it
 * is done.  Keys of requests not yet taken are merged; when more are
 * pending than a slot holds, the request stands for every key.
 *
 * Hook-up from module.c:
 *	 - in _PG_init(), when preloading:   stream_worker_register_launcher()
 *	 - in the shmem_request_hook:        stream_worker_shmem_request()
 *	 - in the shmem_startup_hook, with
 *	   AddinShmemInitLock held:          stream_worker_shmem_init()
 * Without shared_preload_libraries there are no slots: waking and posting
 * say that no worker runs (false); the chunk maker works either way.
 *
 * Include postgres.h before this file.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_BGW_WORKER_H
#define STREAM_BGW_WORKER_H

/* module.c */
extern void stream_worker_register_launcher(void);
extern void stream_worker_shmem_request(void);
extern void stream_worker_shmem_init(void);

/* a maintenance round now (a put found no chunk); false: no worker here */
extern bool stream_worker_wake_now(void);

/* chunk chunk_no of stream_id made in a transaction of its own; false: could not start */
extern bool stream_make_chunk_in_worker(int32 stream_id, int64 chunk_no);

/*
 * The request key of stream.flush_metrics(): flush the metrics (no
 * delivery stream has a negative id).
 */
#define STREAM_REQUEST_METRICS	(-1)

/* post a request to this database's worker; false: no worker runs here */
extern bool stream_worker_post_request(int32 key, uint32 *ticket);

/* true when ticket is done; *worker_gone when the worker has left */
extern bool stream_worker_request_done(uint32 ticket, bool *worker_gone);

#endif							/* STREAM_BGW_WORKER_H */
