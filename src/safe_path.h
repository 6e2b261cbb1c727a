/*
 * safe_path.h: a pinned search_path for the extension's own SQL run by C
 * code in a user's session (or as the owner of owner code), so that no name
 * resolves through the user's search_path.  A leaf: it depends on nothing
 * of the extension, and the data path, the runtime and delivery use it.
 *
 * Rules: begin and end pair in the same transaction, nested like GUC nest
 * levels; an error in between needs no end (the transaction's or
 * subtransaction's abort pops the level).
 *
 * Include postgres.h before this file.
 */
#ifndef STREAM_SAFE_PATH_H
#define STREAM_SAFE_PATH_H

/* search_path = pg_catalog, pg_temp in a GUC nest level of its own; returns the level */
extern int	safe_search_path_begin(void);
/* back to the search_path before the matching begin */
extern void safe_search_path_end(int level);

#endif							/* STREAM_SAFE_PATH_H */
