/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Background workers of the stream extension: one static launcher plus
 *	  one dynamic maintenance worker per database that has the extension.
 *
 * Include postgres.h before this file.
 *
 * Hook-up expected from the module's _PG_init():
 *	 - always:                         stream_worker_define_gucs()
 *	 - when preloaded
 *	   (process_shared_preload_libraries_in_progress):
 *									   stream_worker_register_launcher()
 *	 - in shmem_request_hook:          RequestAddinShmemSpace(
 *										   stream_worker_shmem_size())
 *	 - in shmem_startup_hook, with
 *	   AddinShmemInitLock held:        stream_worker_shmem_init()
 *
 *-------------------------------------------------------------------------
 */
#ifndef STREAM_WORKER_H
#define STREAM_WORKER_H

/* GUC stream.maintenance_naptime, in seconds */
extern int	stream_maintenance_naptime;

/* GUC stream.worker_enabled (PGC_POSTMASTER) */
extern bool stream_worker_enabled;

extern void stream_worker_define_gucs(void);
extern void stream_worker_register_launcher(void);
extern Size stream_worker_shmem_size(void);
extern void stream_worker_shmem_init(void);
extern bool stream_worker_available(void);
extern bool stream_worker_wake_now(void);
extern bool stream_make_chunk_in_worker(int32 stream_id, int64 chunk_no);

extern PGDLLEXPORT void stream_launcher_main(Datum main_arg);
extern PGDLLEXPORT void stream_db_worker_main(Datum main_arg);
extern PGDLLEXPORT void stream_chunk_maker_main(Datum main_arg);

#endif							/* STREAM_WORKER_H */
