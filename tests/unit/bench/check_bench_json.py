#!/usr/bin/env python3
"""check_bench_json.py - smoke check of a benchmark's --json output.

Runs the benchmark given on the command line, parses its standard output as ONE JSON array, and
checks that every (name, impl) pair asked for with --row is present, with a unit, and either
numeric median and p99 or a skipped flag and a note saying why.  Benchmarks are not tests; this
only proves that the bench runs end to end and that its output stays machine-readable.

usage: check_bench_json.py --row NAME:IMPL ... -- BENCH ARGS...
"""
import json
import subprocess
import sys


def main():
    argv = sys.argv[1:]
    if '--' not in argv:
        sys.exit(__doc__)
    cut = argv.index('--')
    opts, cmd = argv[:cut], argv[cut + 1:]
    want = [opts[i + 1] for i, o in enumerate(opts) if o == '--row']
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=600)
    if proc.returncode != 0:
        sys.exit('%s exited with %d' % (cmd[0], proc.returncode))
    rows = json.loads(proc.stdout)
    if not isinstance(rows, list) or not rows:
        sys.exit('output is not a non-empty JSON array')
    seen = {}
    for r in rows:
        for key in ('name', 'impl', 'unit', 'median', 'p99'):
            if key not in r:
                sys.exit('row %r has no %s' % (r, key))
        if r.get('skipped'):
            if not r.get('note'):
                sys.exit('skipped row %s/%s gives no reason' % (r['name'], r['impl']))
        elif not all(isinstance(r[k], (int, float)) and r[k] >= 0 for k in ('median', 'p99')):
            sys.exit('row %s/%s has no numeric median/p99' % (r['name'], r['impl']))
        seen['%s:%s' % (r['name'], r['impl'])] = r
    missing = [w for w in want if w not in seen]
    if missing:
        sys.exit('rows missing: %s' % ', '.join(missing))
    for k, r in seen.items():
        print('%-32s %s' % (k, 'skipped: ' + r['note'] if r.get('skipped')
                            else '%.2f / %.2f %s' % (r['median'], r['p99'], r['unit'])))


if __name__ == '__main__':
    main()
