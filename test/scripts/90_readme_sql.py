#!/usr/bin/env python3
"""Every ```sql block of README.md runs as printed.

The blocks are run in README order, in one psql session (so \\gset variables
carry from block to block), against a freshly created database, with
ON_ERROR_STOP.  A block that is deliberately not runnable is fenced as
```sql no-run (keep them rare).  After the last block, every delivery stream
the README created must have delivered without an error.

On failure the message names the block (its number and README line), shows
its text and psql's error.

    python3 test/scripts/90_readme_sql.py [README.md]
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))
DB = "stream_readme"
FENCE = re.compile(r"^```(\S*)\s*(.*)$")


def sql_blocks(path):
    """[(number, line, info, text)] for every ```sql block, in order."""
    blocks = []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, info = m.group(1), m.group(2).strip()
        start = i + 1
        j = start
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        if j == len(lines):
            sys.exit(f"README block at line {start} is not closed")
        if lang == "sql":
            blocks.append((len(blocks) + 1, start, info, "\n".join(lines[start:j])))
        i = j + 1
    return blocks


def unterminated(text):
    """True when the block's last statement lacks its ';' (it would run with the next block)."""
    body = [l for l in (re.sub(r"--.*$", "", l).rstrip() for l in text.split("\n")) if l.strip()]
    if not body:
        return False
    last = body[-1].strip()
    return not (last.endswith(";") or last.startswith("\\") or re.search(r"\\g\w*(\s+\S+)?$", last))


def psql(*args, **kw):
    return subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", *args], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def main():
    readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "README.md")
    blocks = sql_blocks(readme)
    run = [b for b in blocks if "no-run" not in b[2].split()]
    skipped = [b for b in blocks if b not in run]
    print(f"README.md: {len(blocks)} sql blocks, {len(run)} to run, {len(skipped)} marked no-run "
          f"(lines {', '.join(str(b[1]) for b in skipped) or '-'})")
    if not run:
        sys.exit("FAIL: README.md has no runnable ```sql block")
    bad = [b for b in run if unterminated(b[3])]
    for n, line, _, text in bad:
        print(f"FAIL: README.md sql block #{n} (line {line}) ends without ';': it would run "
              f"together with the next block\n{text}")
    if bad:
        sys.exit(1)

    r = psql("-q", "-d", "postgres", "-c", "SET client_min_messages = warning",
             "-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", "-c", f"CREATE DATABASE {DB}")
    if r.returncode != 0:
        sys.exit(f"FAIL: could not create database {DB}:\n{r.stdout}")

    script = []
    for n, line, _, text in run:
        script.append(f"\\echo '@@README-BLOCK {n} {line}'")
        script.append(text)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("\n".join(script) + "\n")
        path = f.name
    os.chmod(path, 0o644)
    try:
        r = psql("-d", DB, "-f", path, timeout=300)
    finally:
        os.unlink(path)
    out = r.stdout
    if r.returncode != 0:
        marks = re.findall(r"^@@README-BLOCK (\d+) (\d+)$", out, re.M)
        if not marks:
            sys.exit(f"FAIL: psql failed before the first README block:\n{out}")
        n, line = int(marks[-1][0]), int(marks[-1][1])
        text = next(b[3] for b in run if b[0] == n)
        tail = out[out.rindex(f"@@README-BLOCK {n} {line}"):]
        errors = "\n".join(l for l in tail.split("\n")
                           if re.match(r"^(psql:|ERROR|DETAIL|HINT|CONTEXT|LINE|\s+\^)", l))
        print(f"FAIL: README.md sql block #{n} (line {line}) failed as printed.\n"
              f"--- block #{n}:\n{text}\n--- psql:\n{errors or tail[-3000:]}")
        sys.exit(1)

    # Delivery examples must actually deliver, not just be accepted.
    r = psql("-At", "-F", "|", "-d", DB, "-c",
             "SELECT delivery_stream_name, coalesce(last_error, ''), records_delivered, records_failed,"
             "       coalesce(buffered_records, 0) "
             "  FROM stream.delivery_stream_status ORDER BY 1")
    if r.returncode != 0:
        sys.exit(f"FAIL: could not read stream.delivery_stream_status:\n{r.stdout}")
    failed = False
    for row in filter(None, r.stdout.strip().split("\n")):
        name, err, delivered, nfailed, buffered = row.split("|")
        print(f"delivery stream {name}: delivered {delivered}, failed {nfailed}, "
              f"still buffered {buffered}{', last error: ' + err if err else ''}")
        if err or int(nfailed) or int(buffered) or not int(delivered):
            print(f"FAIL: the README's delivery stream {name} did not deliver every record cleanly")
            failed = True
    psql("-q", "-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    if failed:
        sys.exit(1)
    print(f"PASS: {len(run)} README sql blocks ran as printed")


if __name__ == "__main__":
    main()
