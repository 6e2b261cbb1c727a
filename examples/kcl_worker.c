/*
 * kcl_worker.c: an example consumer worker for the stream extension.
 *
 * Start it several times (on one machine or many) with the same application
 * name: the workers share the stream's shards through stream.acquire_leases,
 * each shard read by one worker at a time, and a worker that dies has its
 * shards picked up by the others, which resume from its last checkpoint.
 *
 *   loop:
 *     every lease_duration / 3:  stream.acquire_leases(app, worker, duration)
 *     for each held shard:
 *       iterator := stream.get_lease_iterator(app, worker, shard)   (first time)
 *       records  := stream.get_records(iterator, limit)
 *       process the records (count them, print them with -v)
 *       stream.checkpoint(app, worker, shard, last sequence number)
 *       at the end of a closed shard: stream.checkpoint(..., 'SHARD_END')
 *   SIGINT / SIGTERM: stream.release_leases(app, worker), exit
 *
 * A lease taken by another worker shows up as SQLSTATE 55000
 * (LeaseLostException) from checkpoint or get_lease_iterator, or as a shard
 * missing from the next acquire_leases result: the worker then drops the
 * shard.  Processing is at least once: records after the last checkpoint
 * are processed again by the next owner.
 *
 * Build:  cc -Wall -Wextra -O2 -o kcl_worker kcl_worker.c -I$(pg_config --includedir) -lpq
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define SQLSTATE_LEASE_LOST "55000"

typedef struct Shard
{
	char	   *shard_id;
	char	   *iterator;		/* NULL: get one from the lease's checkpoint */
	int			held;			/* in the latest acquire_leases result */
	long long	counter;		/* lease_counter as this worker last left it */
	double		retry_at;		/* after an error, wait until then */
	long long	records;		/* processed from this shard by this worker */
} Shard;

typedef struct Options
{
	const char *conninfo;
	const char *application;
	char	   *worker_id;
	double		lease_seconds;
	int			limit;
	int			idle_ms;
	int			verbose;
	int			quiet;
	double		max_runtime;
} Options;

static volatile sig_atomic_t stop_requested = 0;
static Options opt;
static PGconn *conn;
static Shard *shards;
static int	nshards;

/* statistics */
static long long total_records;
static long long interval_records;
static long long total_checkpoints;
static long long lost_leases;
static long long max_behind_ms;

static void
on_signal(int signo)
{
	(void) signo;
	stop_requested = 1;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
logmsg(const char *fmt,...)
{
	char		buf[4096];
	size_t		len;
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* libpq messages end with a newline of their own */
	len = strlen(buf);
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	fprintf(stderr, "kcl_worker %s: %s\n", opt.worker_id, buf);
}

static void
sleep_seconds(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t) s;
	ts.tv_nsec = (long) ((s - ts.tv_sec) * 1e9);
	/* a signal interrupts the sleep (no SA_RESTART): stop at once */
	(void) nanosleep(&ts, NULL);
}

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n);

	if (p == NULL)
	{
		fprintf(stderr, "kcl_worker: out of memory\n");
		exit(2);
	}
	return p;
}

static char *
xstrdup(const char *s)
{
	char	   *p = xmalloc(strlen(s) + 1);

	strcpy(p, s);
	return p;
}

/* ---------------------------------------------------------------- libpq */

static const char *const statements[][2] = {
	{"acquire", "SELECT shard_id, checkpoint, lease_counter FROM stream.acquire_leases($1, $2, make_interval(secs => $3::float8))"},
	{"iterator", "SELECT stream.get_lease_iterator($1, $2, $3)"},
	{"read", "SELECT g.next_shard_iterator, g.millis_behind_latest, r.sequence_number, r.partition_key, r.data "
	"FROM stream.get_records($1, $2::int) g LEFT JOIN LATERAL unnest(g.records) r ON true"},
	{"checkpoint", "SELECT stream.checkpoint($1, $2, $3, $4)"},
	{"release", "SELECT stream.release_leases($1, $2)"},
};

static int
prepare_statements(void)
{
	for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++)
	{
		PGresult   *res = PQprepare(conn, statements[i][0], statements[i][1], 0, NULL);

		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			logmsg("could not prepare \"%s\": %s", statements[i][0], PQerrorMessage(conn));
			PQclear(res);
			return 0;
		}
		PQclear(res);
	}
	return 1;
}

static int
connect_db(void)
{
	conn = PQconnectdb(opt.conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		logmsg("could not connect: %s", PQerrorMessage(conn));
		return 0;
	}
	/* errors as message, detail and hint, without the PL/pgSQL call stack */
	PQsetErrorContextVisibility(conn, PQSHOW_CONTEXT_NEVER);
	return prepare_statements();
}

/* Run a prepared statement; on failure report it and return NULL (sqlstate set). */
static PGresult *
run(const char *stmt, int nparams, const char *const *params, char *sqlstate)
{
	PGresult   *res = PQexecPrepared(conn, stmt, nparams, params, NULL, NULL, 0);

	sqlstate[0] = '\0';
	if (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK)
		return res;
	{
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		snprintf(sqlstate, 6, "%s", state ? state : "");
	}
	/* a lost lease is routine: say so briefly */
	if (strcmp(sqlstate, SQLSTATE_LEASE_LOST) != 0)
		logmsg("%s failed: %s", stmt, PQerrorMessage(conn));
	PQclear(res);
	return NULL;
}

/* ---------------------------------------------------------------- shards */

static Shard *
find_shard(const char *shard_id)
{
	for (int i = 0; i < nshards; i++)
		if (strcmp(shards[i].shard_id, shard_id) == 0)
			return &shards[i];
	return NULL;
}

static void
drop_shard(Shard *s, const char *why)
{
	if (opt.verbose && why != NULL)
		logmsg("dropping %s (%s)", s->shard_id, why);
	free(s->shard_id);
	free(s->iterator);
	*s = shards[--nshards];
}

static void
drop_all_shards(void)
{
	while (nshards > 0)
		drop_shard(&shards[0], NULL);
}

/*
 * One round of renew and take.  Returns 1 on success, 0 on a failure worth
 * retrying, -1 when retrying cannot help (no such application, bad input).
 */
static int
acquire(void)
{
	char		seconds[32];
	const char *params[3];
	char		state[6];
	PGresult   *res;

	snprintf(seconds, sizeof(seconds), "%.3f", opt.lease_seconds);
	params[0] = opt.application;
	params[1] = opt.worker_id;
	params[2] = seconds;
	res = run("acquire", 3, params, state);
	if (res == NULL)
		return (strncmp(state, "42", 2) == 0 || strncmp(state, "22", 2) == 0) ? -1 : 0;

	for (int i = 0; i < nshards; i++)
		shards[i].held = 0;
	for (int r = 0; r < PQntuples(res); r++)
	{
		const char *id = PQgetvalue(res, r, 0);
		long long	counter = atoll(PQgetvalue(res, r, 2));
		Shard	   *s = find_shard(id);

		if (s == NULL)
		{
			shards = realloc(shards, sizeof(Shard) * (nshards + 1));
			if (shards == NULL)
			{
				fprintf(stderr, "kcl_worker: out of memory\n");
				exit(2);
			}
			s = &shards[nshards++];
			memset(s, 0, sizeof(*s));
			s->shard_id = xstrdup(id);
			if (opt.verbose)
				logmsg("took lease on %s at checkpoint %s", id, PQgetvalue(res, r, 1));
		}
		else if (counter != s->counter + 1)
		{
			/*
			 * Every change of a lease increments its counter; this round's
			 * renewal adds one.  Anything else means that another worker held
			 * the lease in between (and may have checkpointed further): read
			 * again from the lease's checkpoint.
			 */
			if (opt.verbose)
				logmsg("lease on %s changed hands since the last round; resuming from checkpoint %s",
					   id, PQgetvalue(res, r, 1));
			free(s->iterator);
			s->iterator = NULL;
		}
		s->counter = counter;
		s->held = 1;
	}
	PQclear(res);

	/* leases that another worker took since the last round */
	for (int i = nshards - 1; i >= 0; i--)
		if (!shards[i].held)
		{
			lost_leases++;
			drop_shard(&shards[i], "lease lost");
		}
	return 1;
}

static int
checkpoint(Shard *s, const char *sequence_number)
{
	const char *params[4] = {opt.application, opt.worker_id, s->shard_id, sequence_number};
	char		state[6];
	PGresult   *res = run("checkpoint", 4, params, state);

	if (res == NULL)
	{
		if (strcmp(state, SQLSTATE_LEASE_LOST) == 0)
		{
			lost_leases++;
			drop_shard(s, "lease lost at checkpoint");
		}
		else
		{
			/* e.g. another owner checkpointed further: resume from the lease's checkpoint */
			free(s->iterator);
			s->iterator = NULL;
			s->retry_at = now_seconds() + 1.0;
		}
		return 0;
	}
	PQclear(res);
	s->counter++;				/* a checkpoint increments the lease counter */
	total_checkpoints++;
	return 1;
}

static void
print_record(const Shard *s, PGresult *res, int row)
{
	const char *data = PQgetvalue(res, row, 4);
	size_t		len;
	unsigned char *raw = PQunescapeBytea((const unsigned char *) data, &len);
	int			printable = raw != NULL;

	for (size_t i = 0; raw != NULL && i < len; i++)
		if (raw[i] < 0x20 || raw[i] > 0x7e)
			printable = 0;
	if (printable)
		printf("%s %s %s %.*s\n", s->shard_id, PQgetvalue(res, row, 2),
			   PQgetvalue(res, row, 3), (int) len, (const char *) raw);
	else
		printf("%s %s %s %s\n", s->shard_id, PQgetvalue(res, row, 2),
			   PQgetvalue(res, row, 3), data);
	PQfreemem(raw);
}

/*
 * Read one batch from a held shard, process it and checkpoint.  Returns the
 * number of records processed, or -1 when the shard was dropped or failed.
 */
static int
process_shard(Shard *s)
{
	char		state[6];
	char		limit[16];
	const char *params[3];
	PGresult   *res;
	int			n = 0;
	int			ended;
	long long	behind;

	if (s->retry_at > now_seconds())
		return 0;

	if (s->iterator == NULL)
	{
		params[0] = opt.application;
		params[1] = opt.worker_id;
		params[2] = s->shard_id;
		res = run("iterator", 3, params, state);
		if (res == NULL)
		{
			if (strcmp(state, SQLSTATE_LEASE_LOST) == 0)
			{
				lost_leases++;
				drop_shard(s, "lease lost");
			}
			else
				s->retry_at = now_seconds() + 1.0;
			return -1;
		}
		if (PQgetisnull(res, 0, 0))
		{
			/* already checkpointed at SHARD_END */
			PQclear(res);
			drop_shard(s, "shard finished");
			return -1;
		}
		s->iterator = xstrdup(PQgetvalue(res, 0, 0));
		PQclear(res);
	}

	snprintf(limit, sizeof(limit), "%d", opt.limit);
	params[0] = s->iterator;
	params[1] = limit;
	res = run("read", 2, params, state);
	if (res == NULL)
	{
		/* e.g. an expired iterator: start again from the checkpoint */
		free(s->iterator);
		s->iterator = NULL;
		s->retry_at = now_seconds() + 1.0;
		return -1;
	}

	/* one row per record, or one row with NULL record columns when there are none */
	for (int r = 0; r < PQntuples(res); r++)
	{
		if (PQgetisnull(res, r, 2))
			continue;
		n++;
		if (opt.verbose)
			print_record(s, res, r);
	}
	ended = PQntuples(res) > 0 && PQgetisnull(res, 0, 0);
	behind = PQntuples(res) > 0 ? atoll(PQgetvalue(res, 0, 1)) : 0;
	if (behind > max_behind_ms)
		max_behind_ms = behind;

	s->records += n;
	total_records += n;
	interval_records += n;

	if (n > 0)
	{
		char	   *last = xstrdup(PQgetvalue(res, PQntuples(res) - 1, 2));

		if (!checkpoint(s, last))
		{
			free(last);
			PQclear(res);
			return -1;
		}
		free(last);
	}
	if (ended)
	{
		/* the end of a closed shard: finish it so that its children can start */
		PQclear(res);
		if (checkpoint(s, "SHARD_END"))
			drop_shard(s, "shard ended");
		return n;
	}
	free(s->iterator);
	s->iterator = xstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return n;
}

static void
release(void)
{
	const char *params[2] = {opt.application, opt.worker_id};
	char		state[6];
	PGresult   *res;

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return;
	res = run("release", 2, params, state);
	if (res != NULL)
	{
		logmsg("released %s lease(s)", PQgetvalue(res, 0, 0));
		PQclear(res);
	}
}

/* ---------------------------------------------------------------- main */

static void
usage(FILE *out)
{
	fprintf(out,
			"Usage: kcl_worker [options] -a APPLICATION\n"
			"Consume a stream as one worker of an application (stream.register_application).\n\n"
			"  -d, --dsn=CONNINFO         libpq connection string (env KCL_DSN; default: PG* variables)\n"
			"  -a, --application=NAME     application name (env KCL_APPLICATION)\n"
			"  -w, --worker-id=ID         worker id (env KCL_WORKER_ID; default hostname-pid)\n"
			"  -l, --lease-duration=SECS  lease duration (env KCL_LEASE_DURATION; default 10)\n"
			"  -n, --limit=N              records per get_records call (env KCL_LIMIT; default 10000)\n"
			"  -i, --idle-ms=MS           pause when no shard had records (env KCL_IDLE_MS; default 200)\n"
			"  -t, --max-runtime=SECS     stop after this long (default: run until SIGINT/SIGTERM)\n"
			"  -v, --verbose              print every record: shard sequence_number partition_key data\n"
			"  -q, --quiet                no per-second statistics\n"
			"  -h, --help                 this help\n");
}

static const char *
env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return (v != NULL && v[0] != '\0') ? v : dflt;
}

static double
parse_number(const char *what, const char *s, double min)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min)
	{
		fprintf(stderr, "kcl_worker: invalid %s: \"%s\"\n", what, s);
		exit(2);
	}
	return v;
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dsn", required_argument, NULL, 'd'},
		{"application", required_argument, NULL, 'a'},
		{"worker-id", required_argument, NULL, 'w'},
		{"lease-duration", required_argument, NULL, 'l'},
		{"limit", required_argument, NULL, 'n'},
		{"idle-ms", required_argument, NULL, 'i'},
		{"max-runtime", required_argument, NULL, 't'},
		{"verbose", no_argument, NULL, 'v'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	const char *worker = env_or("KCL_WORKER_ID", NULL);
	int			c;

	opt.conninfo = env_or("KCL_DSN", "");
	opt.application = env_or("KCL_APPLICATION", NULL);
	opt.lease_seconds = parse_number("lease duration", env_or("KCL_LEASE_DURATION", "10"), 0.001);
	opt.limit = (int) parse_number("limit", env_or("KCL_LIMIT", "10000"), 1);
	opt.idle_ms = (int) parse_number("idle pause", env_or("KCL_IDLE_MS", "200"), 0);

	while ((c = getopt_long(argc, argv, "d:a:w:l:n:i:t:vqh", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				opt.conninfo = optarg;
				break;
			case 'a':
				opt.application = optarg;
				break;
			case 'w':
				worker = optarg;
				break;
			case 'l':
				opt.lease_seconds = parse_number("lease duration", optarg, 0.001);
				break;
			case 'n':
				opt.limit = (int) parse_number("limit", optarg, 1);
				break;
			case 'i':
				opt.idle_ms = (int) parse_number("idle pause", optarg, 0);
				break;
			case 't':
				opt.max_runtime = parse_number("max runtime", optarg, 0);
				break;
			case 'v':
				opt.verbose = 1;
				break;
			case 'q':
				opt.quiet = 1;
				break;
			case 'h':
				usage(stdout);
				exit(0);
			default:
				usage(stderr);
				exit(2);
		}
	}
	if (optind < argc || opt.application == NULL)
	{
		usage(stderr);
		exit(2);
	}
	if (worker != NULL)
		opt.worker_id = xstrdup(worker);
	else
	{
		char		host[256];
		size_t		n;

		if (gethostname(host, sizeof(host)) != 0)
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		n = strlen(host) + 32;
		opt.worker_id = xmalloc(n);
		snprintf(opt.worker_id, n, "%s-%ld", host, (long) getpid());
	}
}

static void
print_stats(double elapsed, double interval)
{
	if (opt.quiet)
		return;
	fprintf(stderr, "kcl_worker %s: %7.1fs %9.0f rec/s  total %lld  shards %d  checkpoints %lld  lost %lld  behind %lld ms\n",
			opt.worker_id, elapsed, interval > 0 ? interval_records / interval : 0.0,
			total_records, nshards, total_checkpoints, lost_leases, max_behind_ms);
	interval_records = 0;
	max_behind_ms = 0;
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	double		start,
				next_acquire,
				last_stats;
	int			status = 0;

	parse_options(argc, argv);
	setvbuf(stdout, NULL, _IOLBF, 0);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;			/* no SA_RESTART: a signal ends a sleep at once */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	if (!connect_db())
	{
		PQfinish(conn);
		return 1;
	}
	logmsg("application %s, lease duration %.3g s, limit %d", opt.application,
		   opt.lease_seconds, opt.limit);

	start = last_stats = now_seconds();
	next_acquire = start;
	while (!stop_requested)
	{
		double		now = now_seconds();
		int			got = 0;

		if (opt.max_runtime > 0 && now - start >= opt.max_runtime)
			break;

		if (PQstatus(conn) != CONNECTION_OK)
		{
			/* the server went away: forget every lease and reconnect */
			logmsg("connection lost; reconnecting");
			drop_all_shards();
			PQreset(conn);
			if (PQstatus(conn) != CONNECTION_OK || !prepare_statements())
			{
				logmsg("reconnect failed: %s", PQerrorMessage(conn));
				sleep_seconds(1.0);
				continue;
			}
			next_acquire = now;
		}

		if (now >= next_acquire)
		{
			int			ok = acquire();

			if (ok < 0)
			{
				/* e.g. the application does not exist: nothing to release */
				status = 1;
				break;
			}
			if (ok == 0)
			{
				/* keep the shards we have: their leases are good until they expire */
				next_acquire = now + 1.0;
				if (PQstatus(conn) != CONNECTION_OK)
					continue;
			}
			else
				next_acquire = now + opt.lease_seconds / 3.0;
		}

		for (int i = nshards - 1; i >= 0 && !stop_requested; i--)
		{
			int			n = process_shard(&shards[i]);

			if (n > 0)
				got += n;
		}

		now = now_seconds();
		if (now - last_stats >= 1.0)
		{
			print_stats(now - start, now - last_stats);
			last_stats = now;
		}
		if (got == 0 && !stop_requested)
		{
			double		pause = opt.idle_ms / 1000.0;

			if (now + pause > next_acquire)
				pause = next_acquire - now;
			sleep_seconds(pause);
		}
	}

	if (status == 0)
		release();
	logmsg("stopped: %lld records processed, %lld checkpoints, %lld leases lost",
		   total_records, total_checkpoints, lost_leases);
	drop_all_shards();
	free(shards);
	free(opt.worker_id);
	PQfinish(conn);
	return status;
}
