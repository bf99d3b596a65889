#!/bin/sh
# Guest side (from the data disk, run by vmtest.service): the variables, the helpers, then
# the scenario. Results go to out/result as key=value lines.
set -u
D=/mnt/data
set -a; . "$D/env"; set +a
if [ -f "$D/oomguard-hog" ]; then install -m 755 "$D/oomguard-hog" /usr/local/bin/oomguard-hog; fi
. "$D/lib.sh"
. "$D/scenarios/$SCENARIO.sh"
