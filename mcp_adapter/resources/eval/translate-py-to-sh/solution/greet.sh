#!/bin/sh
# greet.sh NAME [TIMES]: number and print a greeting TIMES times (default 1).
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: greet NAME [TIMES]" >&2
    exit 2
fi
name=$1
times=${2:-1}
if [ "$times" -lt 0 ]; then
    echo "greet: TIMES cannot be negative" >&2
    exit 1
fi
i=1
while [ "$i" -le "$times" ]; do
    printf '%s: Hello, %s!\n' "$i" "$name"
    i=$((i + 1))
done
if [ "$times" -eq 0 ]; then
    echo "(nobody greeted)"
fi
exit 0
