#!/bin/sh
# archive.sh SRC DEST: copy every .log file of SRC into DEST/logs-YYYYMMDD/ and say how many were copied.
set -eu
if [ $# -ne 2 ]; then
    echo "usage: archive.sh SRC DEST" >&2
    exit 2
fi
src="$1"
dest="$2"
stamp="$(date +%Y%m%d)"
target="$dest/logs-$stamp"
mkdir -p "$target"
count=0
for f in "$src"/*.log; do
    [ -e "$f" ] || continue
    cp "$f" "$target/"
    count=$((count + 1))
done
echo "copied $count file(s) to $target"
