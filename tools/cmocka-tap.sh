#!/usr/bin/env bash
# cmocka-tap.sh PROGRAM [ARGS...] - run a cmocka test program so that meson sees one result a
# case (test(..., protocol : 'tap')): a skip() is then counted as a skip, not as a pass.
#
# cmocka writes TAP when CMOCKA_MESSAGE_OUTPUT=TAP.  cmocka 1.1.5 (Debian 12's) writes a skipped
# case as "not ok N # SKIP name", which TAP readers, meson's among them, count as a failure;
# "ok N # SKIP name" is what they count as a skip, so the line is rewritten as it passes.  What
# the program prints itself becomes a TAP comment ("# " in front), so a reader never takes it
# for a result.  The exit status is the program's (cmocka's: the number of failed cases), so a
# crash after the last case still fails the test.
set -u
export CMOCKA_MESSAGE_OUTPUT=TAP
"$@" | sed -u -e 's/^not ok \([0-9][0-9]*\) # SKIP/ok \1 # SKIP/' \
	-e '/^$/b' -e '/^\(\(not \)\?ok\b\|[0-9][0-9]*\.\.[0-9]\|#\|Bail out!\|TAP version\)/!s/^/# /'
rc=${PIPESTATUS[0]}
# exit 77 before any case ran (a program that cannot run here, e.g. fork_calls under ASan): TAP's
# way to say the whole program was skipped, which meson counts as one skip, not as an error
if [ "$rc" -eq 77 ]; then
	echo "1..0 # SKIP the program exited 77 (its reason is in the comments above)"
	exit 0
fi
exit "$rc"
