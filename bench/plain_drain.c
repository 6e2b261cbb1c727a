/*
 * plain_drain.c: the baseline of bench/fanout.py -- one client draining every
 * shard of a stream with a plain get_records loop (no leases, no
 * checkpoints), fetching the same columns as examples/kcl_worker.c.
 *
 *   plain_drain CONNINFO STREAM LIMIT
 *
 * Reads each shard from TRIM_HORIZON, round robin, until a whole pass over
 * the shards returns nothing; prints "<records> <seconds>" on stdout.
 *
 * Build: cc -Wall -Wextra -O2 -o plain_drain plain_drain.c -I$(pg_config --includedir) -lpq
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static PGresult *
must(PGconn *conn, PGresult *res, const char *what)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "plain_drain: %s failed: %s", what, PQerrorMessage(conn));
		PQclear(res);
		PQfinish(conn);
		exit(1);
	}
	return res;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	const char *params[3];
	char	  **its;
	int			nshards;
	long long	total = 0;
	double		start;
	int			idle_pass = 0;

	if (argc != 4)
	{
		fprintf(stderr, "usage: plain_drain CONNINFO STREAM LIMIT\n");
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "plain_drain: could not connect: %s", PQerrorMessage(conn));
		return 1;
	}
	must(conn, PQprepare(conn, "read",
						 "SELECT g.next_shard_iterator, g.millis_behind_latest, r.sequence_number, r.partition_key, r.data "
						 "FROM stream.get_records($1, $2::int) g LEFT JOIN LATERAL unnest(g.records) r ON true",
						 0, NULL), "prepare");

	start = now_seconds();
	params[0] = argv[2];
	res = must(conn, PQexecParams(conn,
								  "SELECT stream.get_shard_iterator($1, shard_id, 'TRIM_HORIZON') FROM stream.list_shards($1)",
								  1, NULL, params, NULL, NULL, 0), "get_shard_iterator");
	nshards = PQntuples(res);
	its = calloc(nshards, sizeof(char *));
	for (int i = 0; i < nshards; i++)
		its[i] = strdup(PQgetvalue(res, i, 0));
	PQclear(res);

	while (!idle_pass)
	{
		idle_pass = 1;
		for (int i = 0; i < nshards; i++)
		{
			int			n = 0;

			if (its[i] == NULL)
				continue;
			params[0] = its[i];
			params[1] = argv[3];
			res = must(conn, PQexecPrepared(conn, "read", 2, params, NULL, NULL, 0), "get_records");
			for (int r = 0; r < PQntuples(res); r++)
				if (!PQgetisnull(res, r, 2))
					n++;
			total += n;
			if (n > 0)
				idle_pass = 0;
			free(its[i]);
			its[i] = (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0)) ? strdup(PQgetvalue(res, 0, 0)) : NULL;
			PQclear(res);
		}
	}
	printf("%lld %.6f\n", total, now_seconds() - start);
	for (int i = 0; i < nshards; i++)
		free(its[i]);
	free(its);
	PQfinish(conn);
	return 0;
}
