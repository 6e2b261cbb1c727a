/*
 * analytics/analytics.h: continuous windowed queries over streams (issue
 * 13), a processor kind of the consumer runtime.
 *
 * analytics_init registers the kind "continuous_query" (from _PG_init,
 * module.c); analytics_run_round runs one runtime round over the
 * continuous queries (from the database worker, outside a transaction) and
 * returns whether one has more to do at once.
 */
#ifndef STREAM_ANALYTICS_H
#define STREAM_ANALYTICS_H

extern void analytics_init(void);
extern bool analytics_run_round(bool *extension_missing);

#endif							/* STREAM_ANALYTICS_H */
