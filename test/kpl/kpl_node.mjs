// test/kpl/kpl_node.mjs: the npm package aws-kinesis-agg (awslabs'
// kinesis-aggregation for Node.js) as test/scripts/76_kpl_interop.py uses
// it: aggregate batches of user records, de-aggregate records.  A test
// dependency only (package.json devDependencies).
//
//   node test/kpl/kpl_node.mjs < request.json > answer.json
//
// Request: {"aggregate": [[{"pk", "ehk" (or null), "data" (base64)}, ...], ...],
//           "deaggregate": [{"data" (base64), "pk", "seq"}, ...]}
// Answer:  {"aggregated": [{"pk", "ehk", "data"} or {"error"}],
//           "deaggregated": [{"records": [{"pk", "ehk", "sub", "data"}]} or {"error"}]}
import { readFileSync } from 'node:fs';
import agg from 'aws-kinesis-agg';

const request = JSON.parse(readFileSync(0, 'utf8'));

const aggregated = (request.aggregate || []).map((batch) => {
    try {
        const a = new agg.RecordAggregator();
        for (const r of batch) {
            const rec = { partitionKey: r.pk, data: Buffer.from(r.data, 'base64') };
            if (r.ehk !== null && r.ehk !== undefined) rec.explicitHashKey = r.ehk;
            a.addUserRecord(rec);
        }
        const out = a.build();
        return { pk: out.partitionKey, ehk: out.ExplicitHashKey ?? null, data: out.data.toString('base64') };
    } catch (e) {
        return { error: String(e && e.message || e) };
    }
});

const deaggregated = (request.deaggregate || []).map((r) => {
    let answer = null;
    agg.deaggregateSync({ data: r.data, partitionKey: r.pk, sequenceNumber: r.seq }, true, (err, users) => {
        if (err) {
            answer = { error: String(err && err.message || err) };
            return;
        }
        answer = {
            records: users.map((u) => ({
                pk: u.partitionKey,
                ehk: u.explicitPartitionKey === undefined ? null : String(u.explicitPartitionKey),
                sub: u.subSequenceNumber === undefined ? null : Number(u.subSequenceNumber),
                data: u.data,
            })),
        };
    });
    return answer;
});

process.stdout.write(JSON.stringify({ aggregated, deaggregated }));
