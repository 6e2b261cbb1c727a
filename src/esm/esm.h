/*
 * esm/esm.h: event source mappings, Lambda's trigger of a function per
 * batch of a shard, as the processor kind "event_source_mapping" of the
 * consumer runtime (esm_kind.c).
 */
#ifndef STREAM_ESM_H
#define STREAM_ESM_H

/* register the kind (module.c, _PG_init) */
extern void esm_init(void);

/* one runtime round over the mappings; true when more is due at once */
extern bool esm_run_round(bool *extension_missing);

#endif							/* STREAM_ESM_H */
