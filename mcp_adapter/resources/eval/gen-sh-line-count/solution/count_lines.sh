#!/bin/sh
# count_lines.sh FILE...: the number of lines of each FILE, then their total.
if [ "$#" -eq 0 ]; then
    echo "usage: count_lines.sh FILE..." >&2
    exit 2
fi
total=0
for file in "$@"; do
    count=$(wc -l < "$file")
    count=$((count + 0))
    echo "$count $file"
    total=$((total + count))
done
echo "total $total"
