"""Sort the valgrind reports of test/valgrind.sh: ours (stream.so) or PostgreSQL's.

    python3 test/valgrind_report.py <directory of vg.<pid>.log files> <checkout root>

A report is ours when a frame of stream.so appears
  - in the error's stack above PostgreSQL's machinery that our code merely
    called into (a commit's WAL flush, the executor consuming our result: see
    BOUNDARY), or
  - anywhere in the stack where the bad bytes came from ("Uninitialised value
    was created by ...", "Address ... alloc'd / free'd").
Ours are written to <directory>/stream-reports.txt; the others are counted and
summarised by their first PostgreSQL frame and origin.  Exit status 1 when any
report is ours.
"""
import glob
import os
import re
import sys

out, root = sys.argv[1], sys.argv[2]
# a frame of ours: stream.so without debug information, else one of our source files
OURS = re.compile(r'stream\.so|' + re.escape(root) + r'/src/(?:[a-z_]+/)?[a-z_]+\.c:|\(src/(?:[a-z_]+/)?[a-z_]+\.c:')
BOUNDARY = re.compile(r': (CommitTransactionCommand|StartTransactionCommand|AbortCurrentTransaction|'
                      r'PortalRun|standard_ExecutorRun|ExecMakeTableFunctionResult|SPI_[a-z_]+) ')
HEADS = re.compile(r'^(Invalid|Conditional|Use of uninit|Syscall param|Source and dest|Mismatched|'
                   r'Argument|Jump to|Process terminating|Warning: invalid|.*uninitialised)')
NOISE = re.compile(r'[(/](write|pwrite64|fileops|iofwrite|genops)\.c:|vgpreload|libc\.so|\?\?\? ')


def is_frame(line):
    return line.strip().startswith(('at 0x', 'by 0x'))


def classify(block):
    main, i = [], 1
    while i < len(block) and is_frame(block[i]):
        main.append(block[i])
        i += 1
    origin = [x for x in block[i:] if is_frame(x)]
    top = []
    for f in main:
        if BOUNDARY.search(f):
            break
        top.append(f)
    return any(OURS.search(f) for f in top + origin), main, origin


def main():
    ours, theirs, procs = [], {}, 0
    for path in sorted(glob.glob(os.path.join(out, 'vg.*.log'))):
        procs += 1
        block = []
        lines = [re.sub(r'^==\d+== ?', '', x.rstrip('\n')) for x in open(path, errors='replace')]
        for line in lines + ['']:
            if line.strip():
                block.append(line)
                continue
            if block and HEADS.match(block[0]):
                mine, stack, origin = classify(block)
                if mine:
                    ours.append(f'{os.path.basename(path)}:\n' + '\n'.join(block) + '\n')
                else:
                    frames = [x.strip()[3:] for x in stack if not NOISE.search(x)]
                    source = [x.strip()[3:] for x in origin if not NOISE.search(x)]
                    key = (f'{block[0]} | {frames[0] if frames else ""}' +
                           (f' | from {source[0]}' if source else ''))
                    theirs[key] = theirs.get(key, 0) + 1
            block = []
    with open(os.path.join(out, 'stream-reports.txt'), 'w') as f:
        f.write('\n'.join(ours))
    print(f'processes traced: {procs}')
    print(f'error reports involving stream.so: {len(ours)}')
    print(f'other error reports (PostgreSQL itself, not suppressed): {sum(theirs.values())}')
    for k, n in sorted(theirs.items(), key=lambda x: -x[1])[:15]:
        print(f'  {n:5d}  {k[:220]}')
    for r in ours[:3]:
        print(r)
    return 1 if ours else 0


sys.exit(main())
