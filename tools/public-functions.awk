# public-functions.awk [-v prefix=ubdma_] HEADER... - the functions the C headers declare, one name
# a line (unsorted, may repeat).  Comments (block and line) and preprocessor lines are removed
# first, so that a function named in prose or in a macro is not taken for a declaration; a
# statement holding `typedef` (a callback type) declares no function.  Used by tools/check-man.sh
# (every public function has a page) and tests/unit/abi/check_exports.sh (the library exports
# exactly the declared API), which must agree on what "declared" means.
BEGIN { if (prefix == "") prefix = "ubdma_" }
{
	line = $0; out = ""
	while (line != "") {
		if (inc) {
			i = index(line, "*/")
			if (!i) { line = ""; break }
			line = substr(line, i + 2); inc = 0
		} else {
			i = index(line, "/*")
			if (!i) { out = out line; break }
			out = out substr(line, 1, i - 1) " "; line = substr(line, i + 2); inc = 1
		}
	}
	sub(/\/\/.*/, "", out)
	if (out !~ /^[ \t]*#/)
		text = text " " out
}
END {
	n = split(text, st, /[;{}]/)
	for (k = 1; k <= n; k++) {
		if (st[k] ~ /(^|[^A-Za-z0-9_])typedef[^A-Za-z0-9_]/)
			continue
		if (match(st[k], prefix "[A-Za-z0-9_]*[ \t]*\\(")) {
			f = substr(st[k], RSTART, RLENGTH); sub(/[ \t]*\($/, "", f); print f
		}
	}
}
