/*
 * safe_path.c: the pinned search_path of the extension's own SQL (safe_path.h).
 */
#include "postgres.h"

#include "safe_path.h"

#include "utils/guc.h"

/*
 * The extension's SQL run by C code in a user's session under another
 * identity must not resolve names through the user's search_path.
 */
int
safe_search_path_begin(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

void
safe_search_path_end(int level)
{
	AtEOXact_GUC(true, level);
}
