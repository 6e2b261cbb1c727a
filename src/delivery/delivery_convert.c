/*
 * delivery/delivery_convert.c: the records of a batch, one by one.
 *
 * Failing a record (fail_record: it goes to the error output with its
 * reason), the UTF-8 rule (a JSON record that is not UTF-8 or holds a NUL
 * never reaches a destination), converting every OK record as the owner
 * (convert_records: a record whose conversion raises is failed alone and
 * the loop resumes after it; what concerns the whole batch, the time limit
 * included, is raised again by subxact_abort), and Firehose's error envelope.
 */
#include "stream.h"

#include "common/base64.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/regproc.h"

#include "streams/seqno.h"

#include "runtime/sandbox.h"
#include "delivery/delivery_int.h"

/* where record failures keep their messages: the current batch's context */
MemoryContext batch_cxt = NULL;

void
fail_record(SrcRec *r, const char *type, const char *code, const char *message)
{
	r->status = REC_FAILED;
	r->error_type = type;
	r->error_code = code;
	r->error_message = MemoryContextStrdup(batch_cxt ? batch_cxt : CurrentMemoryContext,
										   message ? message : "");
}


static int64
unix_ms(TimestampTz ts)
{
	return (ts + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) / 1000;
}

static void
append_base64(StringInfo out, const char *data, int len)
{
	int			enclen = pg_b64_enc_len(len);
	int			n;

	enlargeStringInfo(out, enclen + 1);
	n = pg_b64_encode(data, len, out->data + out->len, enclen);
	if (n < 0)
		elog(ERROR, "could not encode base64");
	out->len += n;
	out->data[out->len] = '\0';
}

/* Firehose's error envelope, one JSON line. */
void
append_error_line(StringInfo out, Batch *b, SrcRec *r, TimestampTz now)
{
	appendStringInfo(out, "{\"attemptsMade\":%d,\"arrivalTimestamp\":" INT64_FORMAT ",\"errorCode\":",
					 r->attempts, unix_ms(r->arrival));
	escape_json(out, r->error_code ? r->error_code : "");
	appendStringInfoString(out, ",\"errorMessage\":");
	escape_json(out, r->error_message ? r->error_message : "");
	appendStringInfo(out, ",\"attemptEndingTimestamp\":" INT64_FORMAT ",\"rawData\":\"", unix_ms(now));
	append_base64(out, r->data, r->len);
	appendStringInfoString(out, "\",\"sequenceNumber\":");
	escape_json(out, seq_to_text(b->info->stream_id, r->shard_index, r->seq));
	if (r->aggregated)
		appendStringInfo(out, ",\"subSequenceNumber\":" INT64_FORMAT, r->sub_seq);
	if (OidIsValid(b->cfg->transform) && strncmp(r->error_code ? r->error_code : "", "Lambda.", 7) == 0)
	{
		appendStringInfoString(out, ",\"lambdaArn\":");
		escape_json(out, format_procedure_qualified(b->cfg->transform));
	}
	appendStringInfoString(out, "}\n");
}


/*
 * What a record failure raised while converting is filed as, when not a
 * format conversion failure (set while partition keys are extracted).
 */
const char *convert_error_type = NULL;
const char *convert_error_code = NULL;

/*
 * A record that is no valid UTF-8 (overlong forms, surrogates, stray or
 * missing continuation bytes, code points past U+10FFFF, NUL bytes) never
 * reaches a destination: failed, with where it goes wrong.
 */
static bool
record_is_utf8(SrcRec *r)
{
	int			valid = pg_encoding_verifymbstr(PG_UTF8, r->out, r->outlen);
	const char *what = r->out == r->data ? "record" : "record the transform returned";

	if (valid >= r->outlen)
		return true;
	if (r->out[valid] == '\0')
		fail_record(r, "format-conversion-failed", "DataFormatConversion.InvalidUTF8",
					psprintf("The %s contains a NUL byte at offset %d; JSON records must be UTF-8 text without NUL bytes.",
							 what, valid));
	else
	{
		StringInfoData bytes;

		initStringInfo(&bytes);
		for (int i = valid; i < r->outlen && i < valid + 4; i++)
			appendStringInfo(&bytes, "%s0x%02x", i > valid ? " " : "", (unsigned char) r->out[i]);
		fail_record(r, "format-conversion-failed", "DataFormatConversion.InvalidUTF8",
					psprintf("The %s is not valid UTF-8: invalid byte sequence %s at offset %d; JSON records must be UTF-8.",
							 what, bytes.data, valid));
	}
	return false;
}

/* Converts one OK record; an error it raises fails that record alone. */
/*
 * Run convert on each OK record of the batch, for the file and the table
 * destinations alike.  Converting records runs type input and output
 * functions (a domain's CHECK, a cast to json): they run as the delivery
 * stream's owner, never as the worker's superuser, inside a subtransaction;
 * aborting it restores the user on error.  A record whose conversion fails
 * is failed alone and the loop resumes after it in a new subtransaction.
 * scratch, if not NULL, is reset after a failure (convert's per-record
 * allocations).
 */
void
convert_records(Batch *b, MemoryContext cxt, MemoryContext scratch,
				ConvertRecordFn convert, void *arg)
{
	volatile int cur = 0;
	DeliveryConfig *cfg = b->cfg;
	/* JSON read or written as text: it must be UTF-8 (RFC 8259), and NUL-free */
	bool		need_utf8 = cfg->format != DFMT_RAW || cfg->destination == NULL ||
		cfg->prefix_t->has_query_keys;
	/* one time limit for the batch's conversions: a record that fails does not restart it */
	TimestampTz deadline = sandbox_deadline();

	while (cur < b->nrecs)
	{
		ResourceOwner oldowner = subxact_begin(cxt);
		Sandbox		sb;

		PG_TRY();
		{
			sandbox_begin(&sb, b->cfg->owner, deadline);
			for (; cur < b->nrecs; cur++)
			{
				CHECK_FOR_INTERRUPTS();
				if (b->recs[cur].status != REC_OK)
					continue;
				if (need_utf8 && !record_is_utf8(&b->recs[cur]))
					continue;
				convert_error_type = NULL;
				convert_error_code = NULL;
				convert(&b->recs[cur], arg);
			}
			sandbox_end(&sb);
			subxact_commit(cxt, oldowner);
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			sandbox_abort(&sb);
			/* a conversion that runs out of time is not this record's fault */
			ed = subxact_abort(cxt, oldowner, TIME_LIMIT_FAILS_UNIT);

			if (scratch)
				MemoryContextReset(scratch);
			fail_record(&b->recs[cur], convert_error_type ? convert_error_type : "format-conversion-failed",
						convert_error_code ? convert_error_code : "DataFormatConversion.MalformedData",
						ed->message);
			convert_error_type = NULL;
			convert_error_code = NULL;
			cur++;
		}
		PG_END_TRY();
	}
}

