#!/bin/sh
# image-packages.sh LIST TARGET: the Debian packages an image target of docker/ivr.Dockerfile
# installs, the lines of the host's package list (testpbx/packages/host.txt) that name TARGET
# from their third column on. Fails when none does (a mistyped target installs nothing).
set -eu
list=$1
target=$2
names=$(awk -v t="$target" '
  { sub(/#.*/, "") }
  NF >= 3 { for (i = 3; i <= NF; i++) if ($i == t) print $2 }' "$list")
[ -n "$names" ] || { echo "$list: no package for the image target $target" >&2; exit 1; }
echo $names
