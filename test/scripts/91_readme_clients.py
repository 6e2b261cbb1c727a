#!/usr/bin/env python3
"""The README's client examples work: its ```python block (psycopg2) runs and
its ```c block (libpq) compiles warning-free with `cc ... -lpq` and runs, both
against a fresh database with a stream "clicks", and both read back what they
put (and the psycopg2 one also a binary record put beforehand).

    python3 test/scripts/91_readme_clients.py [README.md]
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DB = "stream_readme_clients"


def blocks(path, lang):
    out, cur, start = [], None, 0
    for n, line in enumerate(open(path, encoding="utf-8").read().split("\n"), 1):
        if cur is None and re.match(r"^```" + lang + r"(\s|$)", line):
            cur, start = [], n + 1
        elif cur is not None and line.startswith("```"):
            out.append((start, "\n".join(cur)))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def psql(*args):
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *args], text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"FAIL: psql {' '.join(args)}:\n{r.stdout}")
    return r.stdout


def fresh_db():
    psql("-d", "postgres", "-c", "SET client_min_messages = warning",
         "-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)", "-c", f"CREATE DATABASE {DB}")
    psql("-d", DB, "-c", "CREATE EXTENSION stream", "-c", "SELECT stream.create_stream('clicks', 4)",
         "-c", "SELECT stream.put_record('clicks', 'binary', '\\xff00fe'::bytea)")


def main():
    readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "README.md")
    py, c = blocks(readme, "python"), blocks(readme, "c")
    if len(py) != 1 or len(c) != 1:
        sys.exit(f"FAIL: expected one ```python and one ```c block in README.md, found {len(py)} and {len(c)}")
    env = dict(os.environ, PGDATABASE=DB)
    failed = False
    tmp = tempfile.mkdtemp()

    # psycopg2
    fresh_db()
    path = os.path.join(tmp, "example.py")
    open(path, "w").write(py[0][1])
    r = subprocess.run([os.environ.get("STREAM_PYTHON", "/usr/bin/python3"), path], env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    lines = r.stdout.strip().split("\n") if r.stdout.strip() else []
    users = sorted(int(m.group(1)) for l in lines for m in [re.search(r"'user': (\d+)", l)] if m)
    binary = [l for l in lines if " binary b'\\xff\\x00\\xfe'" in l]
    if r.returncode != 0 or users != list(range(10)) or len(binary) != 1 or len(lines) != 11:
        print(f"FAIL: README python example (line {py[0][0]}): exit {r.returncode}, read users {users} "
              f"(want 0..9), binary record lines {len(binary)} (want 1), {len(lines)} lines (want 11)\n"
              f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        failed = True
    else:
        print(f"PASS: README python example read back its 10 JSON records and the binary one")

    # libpq
    fresh_db()
    src = os.path.join(tmp, "read_json.c")
    exe = os.path.join(tmp, "read_json")
    open(src, "w").write(c[0][1])
    incdir = subprocess.run([os.environ.get("PG_CONFIG", "pg_config"), "--includedir"], text=True,
                            stdout=subprocess.PIPE).stdout.strip()
    cc = subprocess.run(["cc", "-Wall", "-Wextra", "-Werror", "-o", exe, src, f"-I{incdir}", "-lpq"],
                        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if cc.returncode != 0:
        print(f"FAIL: README c example (line {c[0][0]}) does not compile with cc -Wall -Wextra -Werror -lpq:\n{cc.stdout}")
        failed = True
    else:
        r = subprocess.run([exe, f"dbname={DB}"], env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        lines = r.stdout.strip().split("\n") if r.stdout.strip() else []
        mine = [l for l in lines if re.search(r' from-c \{"client": "libpq"\}$', l)]
        binary = [l for l in lines if l.endswith(" binary (binary)")]
        if r.returncode != 0 or len(mine) != 1 or len(binary) != 1 or len(lines) != 2:
            print(f"FAIL: README c example (line {c[0][0]}): exit {r.returncode}, its record read "
                  f"{len(mine)} times (want 1), binary {len(binary)} (want 1)\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
            failed = True
        else:
            print("PASS: README c example compiled warning-free and read back its record and the binary one")
    psql("-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
